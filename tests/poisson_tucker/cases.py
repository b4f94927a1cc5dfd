"""Small Poisson Tucker problems and their dense references, shared by the tests here."""

import jax.numpy as jnp
import numpy as np

from bayestensor.models import poisson_tucker as pt

CONFIGS = {
    "plain": dict(shape=(5, 4, 3), ranks=(2, 3, 2), opts={}),
    "pair": dict(shape=(5, 5, 3), ranks=(2, 3, 2), opts=dict(pair=(0, 1), exclude_diagonal=True)),
    "bptd": dict(
        shape=(6, 6, 3, 4),
        ranks=(3, 3, 2, 2),
        opts=dict(pair=(0, 1), share=True, within_between=True, mask_modes=(0, 1, 3)),
    ),
}


def make_problem(name, seed=0, scale=1.0):
    """Random parameters, the dense rate tensor, the observed-cell indicator and counts."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed)
    shape, ranks, opts = cfg["shape"], cfg["ranks"], cfg["opts"]
    spec = pt.make_spec(shape, ranks, **opts)
    mask = None
    if spec.mask_modes:
        mask = (rng.random([shape[k] for k in spec.mask_modes]) < 0.25).astype(float)
    groups = [rng.gamma(1.0, 1.0, (shape[m[0]], ranks[m[0]])) for m in spec.groups]
    core = scale * rng.gamma(1.0, 1.0, ranks)
    factors = [groups[g] for g in spec.group_of]
    mu = dense_rate(core, factors)
    obs = observed_cells(spec, mask)
    y = rng.poisson(mu) * obs
    return spec, mask, factors, core, mu, obs, y, groups


def dense_rate(core, factors):
    K = core.ndim
    letters = "abcdefgh"[:K]
    expr = letters + "," + ",".join(f"{'ABCDEFGH'[k]}{letters[k]}" for k in range(K))
    return np.einsum(expr + "->" + "ABCDEFGH"[:K], core, *factors, optimize=True)


def observed_cells(spec, mask):
    obs = np.ones(spec.shape, bool)
    if spec.exclude_diagonal:
        a, b = spec.pair
        sh = [1] * spec.K
        sh[a], sh[b] = spec.shape[a], spec.shape[b]
        obs &= ~np.eye(spec.shape[a], dtype=bool).reshape(sh)
    if mask is not None:
        sh = [1] * spec.K
        for _j, k in enumerate(spec.mask_modes):
            sh[k] = spec.shape[k]
        obs &= ~(mask.reshape(sh) > 0)
    return obs


def nonzero_data(spec, y, mask):
    idx = np.argwhere(y > 0)
    return pt.prepare_data(spec, idx, y[y > 0], mask)


def random_params(spec, groups, core, seed=1):
    rng = np.random.default_rng(seed)
    p = {f"theta{g}": jnp.asarray(t) for g, t in enumerate(groups)}
    for g in range(len(groups)):
        p[f"b{g}"] = jnp.asarray(rng.gamma(2.0, 1.0))
    if spec.shrinkage:
        p["zeta"] = jnp.asarray(rng.gamma(2.0, 1.0))
        for k in spec.weight_modes:
            p[f"w{k}"] = jnp.asarray(rng.gamma(1.0, 1.0, spec.ranks[k]))
        if spec.within_between:
            R = spec.ranks[spec.pair[0]]
            p["eta_within"] = jnp.asarray(rng.gamma(1.0, 1.0, R))
            p["eta_between"] = jnp.asarray(rng.gamma(1.0, 1.0, R))
    p["delta"] = jnp.asarray(rng.gamma(2.0, 1.0))
    p["core"] = jnp.asarray(core)
    return p


def dense_total(core, factors, obs):
    return float(np.sum(dense_rate(core, factors) * obs))
