"""Held-out metrics and the normal quantile (bayestensor/metrics.py) against scipy.stats."""

import numpy as np
import pytest
from conftest import TOL
from scipy import stats

from bayestensor.metrics import (
    heldout_metrics,
    normal_quantile,
    student_t_logpdf,
    student_t_quantile,
)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_normal_quantile_matches_scipy(level):
    expected = stats.norm.ppf(0.5 + level / 2)
    assert abs(normal_quantile(level) - expected) <= TOL["normal_quantile"] * expected


def test_heldout_metrics_against_scipy_and_direct_sums():
    rng = np.random.default_rng(4)
    y = rng.normal(size=500)
    mean = y + rng.normal(scale=0.3, size=500)
    sd = rng.uniform(0.1, 0.6, size=500)
    got = heldout_metrics(y, mean, sd, level=0.9)
    err = y - mean
    np.testing.assert_allclose(got["rmse"], np.sqrt(np.mean(err**2)), rtol=1e-12)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(err)), rtol=1e-12)
    nll = -np.mean(stats.norm.logpdf(y, mean, sd))
    np.testing.assert_allclose(got["nll"], nll, rtol=TOL["normal_quantile"])
    inside = (y >= stats.norm.ppf(0.05, mean, sd)) & (y <= stats.norm.ppf(0.95, mean, sd))
    assert got["coverage"] == pytest.approx(np.mean(inside))


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1, "high"])
def test_heldout_metrics_refuse_a_level_outside_zero_one(level):
    with pytest.raises(ValueError, match="level"):
        heldout_metrics(np.zeros(3), np.zeros(3), np.ones(3), level=level)


def test_heldout_metrics_of_a_student_t_predictive_against_scipy():
    rng = np.random.default_rng(5)
    y = rng.normal(size=400)
    mean = y + 0.3 * rng.standard_t(2.0, size=400)
    sd = rng.uniform(0.1, 0.6, size=400)
    nu = np.where(np.arange(400) < 300, 2.5, np.inf)  # the last rows Gaussian
    got = heldout_metrics(y, mean, sd, level=0.9, nu=nu)
    t, g = nu < np.inf, nu == np.inf
    logp = np.concatenate(
        [stats.t.logpdf(y[t], nu[t], mean[t], sd[t]), stats.norm.logpdf(y[g], mean[g], sd[g])]
    )
    np.testing.assert_allclose(got["nll"], -np.mean(logp), rtol=1e-10)
    half = np.where(t, stats.t.ppf(0.95, 2.5), stats.norm.ppf(0.95)) * sd
    assert got["coverage"] == pytest.approx(np.mean(np.abs(y - mean) <= half))
    # nu=inf everywhere is the Gaussian
    assert heldout_metrics(y, mean, sd, nu=np.inf) == heldout_metrics(y, mean, sd)
    with pytest.raises(ValueError, match="nu"):
        heldout_metrics(y, mean, sd, nu=0.0)


@pytest.mark.parametrize("nu", [0.8, 1.0, 2.5, 30.0, 1e4])
def test_student_t_density_and_quantile_match_scipy(nu):
    x = np.linspace(-40, 40, 81)
    np.testing.assert_allclose(student_t_logpdf(x, nu), stats.t.logpdf(x, nu), rtol=1e-12)
    for level in (0.5, 0.9, 0.95, 0.999):
        q = student_t_quantile(level, nu)
        assert q == pytest.approx(stats.t.ppf(0.5 + level / 2, nu), rel=1e-10)
    assert student_t_quantile(0.95, np.inf) == pytest.approx(stats.norm.ppf(0.975), rel=1e-12)
