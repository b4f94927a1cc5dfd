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


def student_t_logpdf(x, nu):
    """``log p(x)`` of a standard Student-t with ``nu`` degrees of freedom (scipy.special's
    log-gamma: ``scipy.stats`` costs ~0.3 s to import in a fresh process)."""
    from scipy.special import gammaln

    x, nu = np.asarray(x, np.float64), np.asarray(nu, np.float64)
    norm = gammaln(0.5 * (nu + 1)) - gammaln(0.5 * nu) - 0.5 * np.log(nu * np.pi)
    return norm - 0.5 * (nu + 1) * np.log1p(x * x / nu)


def student_t_quantile(level: float, nu):
    """Half-width of the central ``level`` interval of a standard Student-t (``nu`` may be an
    array; ``inf``: the normal's)."""
    from scipy.special import stdtrit

    nu = np.asarray(nu, np.float64)
    q = stdtrit(np.where(np.isfinite(nu), nu, 1.0), 0.5 + level / 2)
    return np.where(np.isfinite(nu), q, normal_quantile(level))


def heldout_metrics(y, mean, sd, level: float = 0.95, nu=None) -> dict[str, float]:
    """RMSE, MAE, mean negative log predictive density and interval coverage.

    Parameters
    ----------
    y : array-like of shape (n,)
        Held-out observations.
    mean, sd : array-like of shape (n,)
        Predictive means and standard deviations of the observations (noise included).
    level : float
        Central interval probability for the coverage, in (0, 1).
    nu : float or array-like of shape (n,), optional
        Degrees of freedom of a Student-t predictive whose scale is ``sd`` (the ``nu`` column
        of a prediction); ``inf`` or None: Gaussian.

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``nll`` (mean of −log p(y), ``p`` the Gaussian ``N(mean, sd²)`` or
        the Student-t) and ``coverage`` (of the central ``level`` intervals).

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
    nll = 0.5 * np.log(2 * np.pi * sd**2) + 0.5 * (err / sd) ** 2
    half = np.full(y.shape, z)
    nu = np.broadcast_to(np.inf if nu is None else np.asarray(nu, np.float64), y.shape)
    if np.any(nu <= 0) or np.any(np.isnan(nu)):
        raise ValueError("nu must be > 0 (inf: Gaussian)")
    t = np.isfinite(nu)
    if t.any():
        nll[t] = np.log(sd[t]) - student_t_logpdf(err[t] / sd[t], nu[t])
        half[t] = student_t_quantile(level, nu[t])
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "nll": float(np.mean(nll)),
        "coverage": float(np.mean(np.abs(err) <= half * sd)),
    }
