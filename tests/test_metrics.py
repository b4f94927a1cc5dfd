"""Held-out metrics and the normal quantile (bayestensor/metrics.py) against scipy.stats."""

import numpy as np
import pytest
from conftest import TOL
from scipy import stats

from bayestensor.metrics import heldout_metrics, normal_quantile


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
