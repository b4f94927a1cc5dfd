"""Poisson Tucker closed forms (models/poisson_tucker/rates.py): total rate, exposures and cell
rates against dense references."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.models import poisson_tucker as pt

from .cases import CONFIGS, make_problem, nonzero_data

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_total_rate_exposures_and_cell_rates_match_dense(name, tol):
    spec, mask, factors, core, mu, obs, y, _ = make_problem(name)
    data = nonzero_data(spec, y, mask)
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


@pytest.mark.parametrize("q", [0.025, 0.5, 0.975])
def test_a_new_counts_quantile_is_the_mixtures_by_enumeration(q):
    """The predictive quantile of a count under rate draws (a mixture of Poissons) against the
    mixture's CDF summed on every integer up to the largest draw's far tail."""
    from scipy import stats

    rng = np.random.default_rng(3)
    R = rng.gamma(2.0, [0.0, 0.02, 1.0, 7.0, 40.0, 900.0], size=(60, 6))
    got = pt.mixture_quantiles(R, q)
    ys = np.arange(int(stats.poisson.ppf(1 - 1e-12, R.max())) + 1)
    cdf = stats.poisson.cdf(ys[:, None, None], R[None]).mean(1)  # (y, cells)
    expect = np.array([ys[np.argmax(cdf[:, i] >= q)] for i in range(R.shape[1])])
    np.testing.assert_array_equal(got, expect)
    # one draw: the Poisson quantile itself
    np.testing.assert_array_equal(pt.mixture_quantiles(R[:1], q), stats.poisson.ppf(q, R[0]))
