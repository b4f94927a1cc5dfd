"""Poisson Tucker closed forms (models/poisson_tucker/rates.py): total rate, exposures and cell
rates against dense references."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.models import poisson_tucker as pt

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# --------------------------------------------------------------------------------------------
# small problems and dense references
# --------------------------------------------------------------------------------------------

CONFIGS = {
    "plain": dict(shape=(5, 4, 3), ranks=(2, 3, 2), opts={}),
    "pair": dict(shape=(5, 5, 3), ranks=(2, 3, 2), opts=dict(pair=(0, 1), exclude_diagonal=True)),
    "bptd": dict(
        shape=(6, 6, 3, 4),
        ranks=(3, 3, 2, 2),
        opts=dict(pair=(0, 1), share=True, within_between=True, mask_modes=(0, 1, 3)),
    ),
}


def _problem(name, seed=0, scale=1.0):
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
    mu = _dense_rate(core, factors)
    obs = _observed(spec, mask)
    y = rng.poisson(mu) * obs
    return spec, mask, factors, core, mu, obs, y, groups


def _dense_rate(core, factors):
    K = core.ndim
    letters = "abcdefgh"[:K]
    expr = letters + "," + ",".join(f"{'ABCDEFGH'[k]}{letters[k]}" for k in range(K))
    return np.einsum(expr + "->" + "ABCDEFGH"[:K], core, *factors, optimize=True)


def _observed(spec, mask):
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


def _data(spec, y, mask):
    idx = np.argwhere(y > 0)
    return pt.prepare_data(spec, idx, y[y > 0], mask)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_total_rate_exposures_and_cell_rates_match_dense(name, tol):
    spec, mask, factors, core, mu, obs, y, _ = _problem(name)
    data = _data(spec, y, mask)
    fs = [jnp.asarray(f) for f in factors]
    c = jnp.asarray(core)
    assert float(pt.total_rate(spec, fs, c, data.mask)) == pytest.approx(
        np.sum(mu * obs), rel=tol["poisson_closed_form"]
    )
    E, Z = pt.exposures(spec, fs, c, data.mask)
    K = spec.K
    letters = "abcdefgh"[:K]
    up = "ABCDEFGH"[:K]
    for k in range(K):
        # E^k[i, c] = Σ_{observed x, x_k = i} Σ_{r_k = c} λ[r] Π_{k'≠k} θ^{k'}[x_k', r_k']
        ops = [factors[j] for j in range(K) if j != k]
        subs = [up[j] + letters[j] for j in range(K) if j != k]
        ref = np.einsum(
            ",".join([letters, *subs, up]) + f"->{up[k]}{letters[k]}",
            core,
            *ops,
            obs,
            optimize=True,
        )
        np.testing.assert_allclose(E[k], ref, rtol=tol["poisson_closed_form"])
    subs = [up[j] + letters[j] for j in range(K)]
    Zref = np.einsum(",".join([*subs, up]) + "->" + letters, *factors, obs, optimize=True)
    np.testing.assert_allclose(Z, Zref, rtol=tol["poisson_closed_form"])
    idx = np.argwhere(y > 0)
    np.testing.assert_allclose(
        pt.cell_rates(spec, fs, c, idx), mu[tuple(idx.T)], rtol=tol["poisson_closed_form"]
    )
