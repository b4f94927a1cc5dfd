"""Poisson Tucker CAVI (models/poisson_tucker/vi.py): a non-decreasing ELBO that matches its
definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from bayestensor.models import poisson_tucker as pt
from bayestensor.models.poisson_tucker import vi

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


def test_cavi_elbo_never_decreases(tol):
    """Shared pair, within/between prior and a mask: every CAVI block step is exact."""
    spec, mask, factors, core, mu, obs, y, _ = _problem("bptd", seed=4)
    data = _data(spec, y, mask)
    _, elbos = pt.cavi_fit(spec, data, jax.random.key(0), max_iter=40, tol=0.0)
    e = np.asarray(elbos)
    assert np.all(np.diff(e) >= -tol["poisson_elbo_slack"] * np.abs(e[1:]))
    assert e[-1] > e[0]


def test_elbo_matches_its_definition_at_the_optimal_allocation(tol):
    """The collapsed bound's data term equals Σ y log Σ_r exp(E log λ + Σ E log θ) (dense)."""
    spec, mask, factors, core, mu, obs, y, _ = _problem("plain", seed=2)
    data = _data(spec, y, mask)
    st = pt.vi_init(spec, data, jax.random.key(0))
    F, counts, Ybar = vi.loglik_bound(spec, data, st)
    elt = [
        np.asarray(special.digamma(st.theta_shape[g]) - np.log(st.theta_rate[g]))
        for g in spec.group_of
    ]
    elc = np.asarray(special.digamma(st.core_shape) - np.log(st.core_rate))
    geo = _dense_rate(np.exp(elc), [np.exp(e) for e in elt])
    assert float(F) == pytest.approx(
        np.sum(y * np.log(np.where(y > 0, geo, 1.0))), rel=tol["poisson_closed_form"]
    )
    assert float(jnp.sum(Ybar)) == pytest.approx(y.sum(), rel=tol["poisson_closed_form"])
