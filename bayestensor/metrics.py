"""Held-out predictive metrics shared by the demo, the examples and the benchmarks."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from bayestensor.checks import check_level


def normal_quantile(level: float) -> float:
    """Half-width ``z`` of the central ``level`` interval of a standard normal (the
    ``0.5 + level/2`` quantile; the standard library's, as ``scipy.stats.norm.ppf`` gives it
    without scipy.stats' ~1 s import in a fresh process)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def heldout_metrics(y, mean, sd, level: float = 0.95) -> dict[str, float]:
    """RMSE, MAE, mean Gaussian negative log predictive density and interval coverage.

    Parameters
    ----------
    y : array-like of shape (n,)
        Held-out observations.
    mean, sd : array-like of shape (n,)
        Predictive means and standard deviations of the observations (noise included).
    level : float
        Central interval probability for the coverage, in (0, 1).

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``nll`` (mean of −log N(y | mean, sd²)) and ``coverage``.

    Raises
    ------
    ValueError
        Naming ``level`` unless it lies in (0, 1); naming the arrays if their shapes differ.
    """
    z = normal_quantile(check_level(level))
    y, mean, sd = (np.asarray(a, dtype=np.float64) for a in (y, mean, sd))
    if not y.shape == mean.shape == sd.shape:
        raise ValueError(
            f"y, mean and sd must have one shape, got {y.shape}, {mean.shape}, {sd.shape}"
        )
    err = y - mean
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "nll": float(np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * (err / sd) ** 2)),
        "coverage": float(np.mean(np.abs(err) <= z * sd)),
    }
