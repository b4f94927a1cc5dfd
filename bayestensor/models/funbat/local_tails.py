"""Heavy-tailed predictive distributions for the local stage (:mod:`.local`).

Real residuals are rarely Gaussian: a few cells (a war year in a country's life expectancy, a
pollution episode) sit many noise sds from any smooth surface, and one noise variance has to
cover them. It comes out large, and the Gaussian intervals are too wide for the bulk of the
cells while the outliers still fall outside.

The local stage therefore calibrates the *shape* of its predictive distribution on
leave-one-out errors. For a Gaussian process conditioned on noisy values with noise variance
``σ²``, the leave-one-out error of training row ``i`` follows from the full posterior (mean
``m_i``, variance ``v_i``, leverage ``h_i = v_i / σ²``) without refitting::

    e_i = (r_i − m_i) / (1 − h_i),        Var[y_i | r_{−i}] = σ² / (1 − h_i),

exact for the fibre GP and for the neighbour GP's kriging from a set that holds row ``i``.
The standardised errors ``z_i = e_i / sd_i`` (``sd_i`` the predictive sd the stage would give
a new row there) are fitted by maximum likelihood with a Student-t of ``ν`` degrees of freedom
and scale ``c``; the predictive distribution of a new cell is then ``mean + c · sd · T_ν``
(the same scale mixture for the latent value, as in a Student-t process): ``predict`` gives
``sd`` as the scale ``c · sd`` of that Student-t, a column ``nu`` with its degrees of freedom,
and ``lower, upper`` its quantiles. Gaussian residuals give ``ν`` at its upper bound, which
counts as Gaussian (``ν = inf``, ``c = 1``: no ``nu`` column, the predictive unchanged).

The low-rank part is not refitted: its training residuals are shrunk (it saw those rows) by the
factor ``calibration`` in variance (:func:`shrinkage`),
and the errors are scaled back by its root. Where the low-rank part fits its training rows more
closely than that, the leave-one-out errors stay somewhat optimistic.
"""

from __future__ import annotations

import numpy as np

from bayestensor.metrics import student_t_logpdf, student_t_quantile

__all__ = [
    "GAUSSIAN",
    "NU_BOUNDS",
    "fit_student_t",
    "fit_level_scale",
    "level_factor",
    "loo_errors",
    "loo_scores",
    "loo_variance",
    "shrinkage",
    "rms",
    "bic",
    "iid_nll",
]

#: Bounds on the fitted degrees of freedom: above 1 the predictive mean exists; at the upper
#: bound the Student-t is within 1 % of the Gaussian in every central quantile up to 99 %.
NU_BOUNDS = (1.0, 500.0)
#: ``(ν, c)`` of a Gaussian predictive (no tail calibration).
GAUSSIAN = (np.inf, 1.0)


def _leverage(v, noise) -> np.ndarray:
    """``h = v / σ²``, kept below 1 (a noise-free process interpolates its rows: ``h → 1``)."""
    return np.clip(np.asarray(v, np.float64) / noise, 0.0, 1.0 - 1e-9)


def loo_errors(r, m, v, noise) -> np.ndarray:
    """Leave-one-out errors ``r_i − E[r_i | r_{−i}]`` of a Gaussian process conditioned on
    the residuals ``r`` (posterior mean ``m``, variance ``v`` of ``g`` at those rows, noise
    variance ``noise``): ``(r − m) / (1 − v/σ²)``."""
    return (np.asarray(r, np.float64) - m) / (1.0 - _leverage(v, noise))


def loo_variance(v, noise, calibration=1.0) -> np.ndarray:
    """The variance a new row at each training row would get from a local process (posterior
    variance ``v`` of ``g`` there given every row, noise variance ``noise``), but for the
    low-rank part's: ``Var g`` left one out plus ``calibration · σ²``."""
    h = _leverage(v, noise)
    return noise * h / (1.0 - h) + calibration * noise


def loo_scores(r, m, v, noise, calibration, var_base) -> np.ndarray:
    """Standardised leave-one-out errors of a local process's training rows.

    Parameters
    ----------
    r : array of shape (n,)
        The residuals the process was fitted to.
    m, v : arrays of shape (n,)
        Its posterior mean and variance of ``g`` at those rows (given every row).
    noise : float
        Its noise variance ``σ²``.
    calibration : float
        The factor applied to ``σ²`` in predictions (:class:`.local.LocalFit`).
    var_base : array of shape (n,)
        The low-rank part's variance of ``f`` at the rows (in the process's units).
    """
    # the residuals are the low-rank part's training residuals, shrunk by the factor
    # ``calibration`` in variance (it saw those rows): the errors are scaled back by its root
    e = loo_errors(r, m, v, noise) * np.sqrt(calibration)
    # the sd a new row there would get: Var f + Var g (left-one-out) + c σ²
    var = np.asarray(var_base, np.float64) + loo_variance(v, noise, calibration)
    return e / np.sqrt(var)


def shrinkage(noise: float, ms: float, var_f: np.ndarray) -> float:
    """The factor ``c ≥ 1`` by which the low-rank part's training residuals are shrunk in
    variance (it saw those rows): ``min(σ² / mean r², 1 / (1 − h̄))``, at least 1.

    ``σ²`` is FunBaT's noise variance, ``mean r²`` the residuals' mean square and
    ``h̄ = mean Var[f_n] / σ²`` the mean leverage of the training rows (``var_f``: ``Var[f_n]``,
    in the units of ``noise``). The two agree at the fixed point of FunBaT's noise update,
    ``n σ² = Σ r² + Σ Var f``. They part on (nearly) noise-free data, where the noise prior's
    floor ``b0`` and the update's slow approach to zero leave ``σ²`` many times the residuals'
    mean square (synthetic_r1: ``σ² / mean r²`` = 1,719, ``1 / (1 − h̄)`` = 1.56): the
    leverage form does not scale up errors that are not there. A fit pruned after its sweeps
    (its residuals larger than ``σ²``, the pruned signal in them) gets 1.
    """
    if ms <= 0.0 or noise <= 0.0:
        return 1.0
    hbar = min(float(np.mean(var_f)) / noise, 1.0 - 1e-9) if len(var_f) else 0.0
    return max(min(noise / ms, 1.0 / (1.0 - hbar)), 1.0)


def rms(r: np.ndarray) -> float:
    """Root mean square of ``r``, without overflow or underflow (values of 1e±200 included)."""
    big = float(np.max(np.abs(r))) if len(r) else 0.0
    if big == 0.0 or not np.isfinite(big):
        return big
    return big * float(np.sqrt(np.mean((r / big) ** 2)))


def iid_nll(r) -> float:
    """Mean negative log likelihood per row of ``r`` under iid ``N(0, mean r²)``: the baseline
    a local process's gain is measured against."""
    return 0.5 * float(np.log(2 * np.pi * np.mean(np.asarray(r, np.float64) ** 2))) + 0.5


def bic(n_par: int, n: int) -> float:
    """The BIC bound ``½ p log n`` in nats per row."""
    return 0.5 * n_par * np.log(n) / n


#: The level at which the fitted predictive must cover the left-out errors (see fit_student_t).
FLOOR_LEVEL = 0.95


def fit_student_t(z) -> tuple[float, float]:
    """Maximum-likelihood ``(ν, c)`` of ``z ~ c · T_ν`` (``ν`` within :data:`NU_BOUNDS`), the
    scale then raised, where needed, until the central :data:`FLOOR_LEVEL` interval
    ``± c · t_ν`` holds that fraction of the scores.

    Deterministic: a bounded quasi-Newton search on ``(log ν, log c)`` from two starts.
    Returns :data:`GAUSSIAN` for fewer than 20 finite scores; ``ν = inf`` (Gaussian, with the
    scale floor) when ``ν`` reaches its upper bound.
    """
    z = np.asarray(z, np.float64)
    z = z[np.isfinite(z)]
    if len(z) < 20 or not np.any(z):
        return GAUSSIAN
    sd = float(np.sqrt(np.mean(z**2)))

    def nll(p):
        nu, c = np.exp(p)
        return -float(np.mean(student_t_logpdf(z / c, nu))) + p[1]

    best = _two_start_fit(nll, sd)
    nu, c = (float(a) for a in np.exp(best.x))
    if nu >= 0.999 * NU_BOUNDS[1]:
        nu, c = GAUSSIAN
    # the 95 % interval covers at least 95 % of the left-out errors: scores whose shape no
    # Student-t has (a noise-free field: most errors near 0, a few large) would else get a
    # maximum-likelihood scale that fits the bulk and leaves too many outside
    return nu, max(c, _floor_scale(np.abs(z), nu))


def _two_start_fit(nll, sd: float):
    """The best of two bounded quasi-Newton searches of ``nll`` in ``(log ν, log c)`` (``ν``
    within :data:`NU_BOUNDS`, ``c`` within ``sd · [e⁻¹², e³]``), from a heavy-tailed and a
    near-Gaussian start: the scipy result."""
    from scipy import optimize

    box = _box(sd)
    starts = ([np.log(4.0), np.log(0.7 * sd)], [np.log(50.0), np.log(sd)])
    fits = [optimize.minimize(nll, s, method="L-BFGS-B", bounds=box) for s in starts]
    return min(fits, key=lambda f: f.fun)


def _box(sd: float) -> list[tuple[float, float]]:
    """The search box of ``(log ν, log c)`` for scores of root mean square ``sd``."""
    return [(np.log(NU_BOUNDS[0]), np.log(NU_BOUNDS[1])), (np.log(sd) - 12.0, np.log(sd) + 3.0)]


def _floor_scale(abs_scores, nu: float) -> float:
    """The scale at which the central :data:`FLOOR_LEVEL` interval ``± c · t_ν`` holds that
    fraction of the absolute scores ``abs_scores`` (the predictive's scale is raised to it)."""
    q = float(np.quantile(abs_scores, FLOOR_LEVEL))
    return q / float(student_t_quantile(FLOOR_LEVEL, nu))


#: The level factor is held within ``[1 / LEVEL_MAX_FACTOR, LEVEL_MAX_FACTOR]`` (and its level
#: within the training rows' range).
LEVEL_MAX_FACTOR = 30.0
#: The slope is kept where it gains more than this many times ``log n`` nats in the likelihood
#: of the ``n`` left-out scores (twice the BIC bound of one parameter: the scores come from a
#: fitted model, and at ``½ log n`` the slope was kept on 18 of 31 small sets and made the
#: held-out likelihood worse on 8; ``docs/benchmarks.md``).
LEVEL_MIN_GAIN = 1.0


def _levels(level, mean) -> np.ndarray:
    """The standardised levels ``u`` of the predictions ``mean`` (unclipped)."""
    _, centre, unit, _, _, floor = level
    mean = np.asarray(mean, np.float64)
    g = np.log(np.maximum(mean, floor)) if floor > 0 else mean
    return (g - centre) / unit


def level_factor(level, mean) -> np.ndarray:
    """``exp(b · u)`` at the predictive means ``mean`` for ``level = (b, centre, unit, lo, hi,
    floor)`` (:func:`fit_level_scale`): ``u = (g(mean) − centre) / unit`` held within ``[lo,
    hi]``, ``g(m) = log max(m, floor)`` for positive values (``floor`` > 0: sd ∝ mean^b in
    the values' own log units), ``g(m) = m`` for ``floor`` 0; the factor held within
    :data:`LEVEL_MAX_FACTOR`. 1 everywhere for ``level`` None."""
    if level is None:
        return np.ones_like(np.asarray(mean, np.float64))
    b, _, _, lo, hi, _ = level
    f = np.exp(b * np.clip(_levels(level, mean), lo, hi))
    return np.clip(f, 1.0 / LEVEL_MAX_FACTOR, LEVEL_MAX_FACTOR)


def fit_level_scale(z, mean, y) -> tuple[float, float, tuple] | None:
    """``(ν, c, level)`` where the left-out errors grow (or shrink) with the level: the
    maximum-likelihood ``z_i ~ c · exp(b · u_i) · T_ν``, ``u_i`` the standardised level of
    the left-out prediction ``mean_i`` — of its log, ``(log mean_i − mean log y) / sd(log y)``
    (held at the smallest value from below), where every training value ``y`` is positive
    (concentrations, counts, prices: errors in proportion to a power of the value); else
    ``(mean_i − ȳ) / sd(y)`` — kept where ``b`` gains more than :data:`LEVEL_MIN_GAIN` ``·
    log n`` in the likelihood over ``b = 0``; None where it does not, or for fewer than 20
    finite scores. ``level = (b, centre, unit, min u, max u, floor)`` (:func:`level_factor`;
    ``floor``: the smallest value, 0 for the linear level); the scale ``c`` raised, as in
    :func:`fit_student_t`, until the central :data:`FLOOR_LEVEL` interval holds that
    fraction of the rescaled scores."""
    from scipy import optimize

    z, mean = np.asarray(z, np.float64), np.asarray(mean, np.float64)
    ok = np.isfinite(z) & np.isfinite(mean)
    z, mean = z[ok], mean[ok]
    y = np.asarray(y, np.float64)
    floor = float(np.min(y)) if len(y) and np.min(y) > 0 else 0.0
    g = np.log(y) if floor > 0 else y
    big = float(np.max(np.abs(g))) if len(g) and floor == 0 else 1.0  # (no overflow at 1e200)
    big = big if big > 0 and np.isfinite(big) else 1.0
    centre, unit = big * float(np.mean(g / big)), big * float(np.std(g / big))
    if len(z) < 20 or not np.any(z) or not unit > 0:
        return None
    u = _levels((0.0, centre, unit, 0.0, 0.0, floor), mean)
    sd = float(np.sqrt(np.mean(z**2)))

    def nll(p, slope=True):
        nu, b = np.exp(p[0]), (p[2] if slope else 0.0)
        s = p[1] + b * u  # the log scale per row
        return -float(np.sum(student_t_logpdf(z / np.exp(s), nu))) + float(np.sum(s))

    flat = _two_start_fit(lambda p: nll(p, False), sd)
    # (the slope's bound: the factor within LEVEL_MAX_FACTOR at every training row's level)
    b_max = np.log(LEVEL_MAX_FACTOR) / max(float(np.max(np.abs(u))), 1e-9)
    bounds = [*_box(sd), (-b_max, b_max)]
    fits = [
        optimize.minimize(nll, [*flat.x, b0], method="L-BFGS-B", bounds=bounds)
        for b0 in (-0.3, 0.0, 0.3)
    ]
    best = min(fits, key=lambda f: f.fun)
    if not flat.fun - best.fun > LEVEL_MIN_GAIN * np.log(len(z)):  # (a NaN gain keeps none)
        return None
    nu, c, b = float(np.exp(best.x[0])), float(np.exp(best.x[1])), float(best.x[2])
    if nu >= 0.999 * NU_BOUNDS[1]:
        nu = np.inf
    level = (b, centre, unit, float(u.min()), float(u.max()), floor)
    return nu, max(c, _floor_scale(np.abs(z) / level_factor(level, mean), nu)), level


def choose(gains: dict[str, float], sq: dict[str, np.ndarray]) -> str | None:
    """The candidate kept among those in ``sq`` (their squared leave-one-out errors per row):
    the one with the largest gain, unless others have a smaller mean squared error by more than
    one standard error of the paired differences; then the best of those. None if no candidate
    has finite errors."""
    finite = [k for k, e in sq.items() if np.all(np.isfinite(e))]
    if not finite:
        return None
    best = max(finite, key=lambda k: gains[k])
    better = {}
    for k in finite:
        d = sq[best] - sq[k]
        if k != best and len(d) > 1 and d.mean() > d.std(ddof=1) / np.sqrt(len(d)):
            better[k] = d.mean()
    return max(better, key=better.get) if better else best
