"""Held-out predictive metrics shared by the demo, the examples and the benchmarks."""

from __future__ import annotations

import numpy as np


def heldout_metrics(y, mean, sd, level: float = 0.95) -> dict[str, float]:
    """RMSE, MAE, mean Gaussian negative log predictive density and interval coverage.

    Parameters
    ----------
    y : array-like of shape (n,)
        Held-out observations.
    mean, sd : array-like of shape (n,)
        Predictive means and standard deviations of the observations (noise included).
    level : float
        Central interval probability for the coverage.

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``nll`` (mean of −log N(y | mean, sd²)) and ``coverage``.
    """
    y, mean, sd = (np.asarray(a, dtype=np.float64) for a in (y, mean, sd))
    if not y.shape == mean.shape == sd.shape:
        raise ValueError(
            f"y, mean and sd must have one shape, got {y.shape}, {mean.shape}, {sd.shape}"
        )
    from scipy import stats  # imported here: it takes ~0.4 s

    z = stats.norm.ppf(0.5 + level / 2)
    err = y - mean
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "nll": float(-np.mean(stats.norm.logpdf(y, mean, sd))),
        "coverage": float(np.mean(np.abs(err) <= z * sd)),
    }
