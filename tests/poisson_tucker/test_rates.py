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
    mixture's CDF summed on every integer up to the largest draw's far tail: exact where the
    predictive sd is under 200, at most 1 % of the sd above it beyond."""
    from scipy import stats

    rng = np.random.default_rng(3)
    scales = [0.0, 0.02, 1.0, 7.0, 40.0, 900.0, 3e4]
    R = rng.gamma(2.0, scales, size=(60, len(scales)))
    R[:, -1] = rng.gamma(400.0, 50.0, size=60)  # sd about 1,000: past the exact range
    got = pt.mixture_quantiles(R, q)
    ys = np.arange(int(stats.poisson.ppf(1 - 1e-12, R.max())) + 1)
    expect = []
    for i in range(R.shape[1]):
        cdf = stats.poisson.cdf(ys[:, None], R[None, :, i]).mean(1)
        expect.append(ys[np.argmax(cdf >= q)])
    sd = np.sqrt(R.mean(0) + R.var(0))
    exact = sd < 200
    assert exact.sum() == 5 and not exact[-1]
    np.testing.assert_array_equal(got[exact], np.array(expect)[exact])
    slack = got[~exact] - np.array(expect)[~exact]
    assert np.all(slack >= 0) and np.all(slack <= np.floor(pt.QUANTILE_RESOLUTION * sd[~exact]))
    # one draw: the Poisson quantile itself
    small = R[:1, :5]
    np.testing.assert_array_equal(pt.mixture_quantiles(small, q), stats.poisson.ppf(q, small[0]))


def test_a_quantile_of_non_finite_rates_is_an_error():
    R = np.ones((4, 3))
    for bad in (np.nan, np.inf):
        R[2, 1] = bad
        with pytest.raises(ValueError, match="rate draws hold NaN or inf"):
            pt.mixture_quantiles(R, 0.975)
