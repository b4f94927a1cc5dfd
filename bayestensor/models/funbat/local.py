"""A local residual process on top of a fitted FunBaT model: ``bt.fit(..., local=...)``.

The model is ``y = f(x) + g(x) + ε``: ``f`` the fitted low-rank (Tucker / CP) function and ``g``
a zero-mean GP for the short-range variation a low rank cannot carry. ``g`` is fitted
*stage-wise* to the training residuals ``r = y − E[f]`` of a converged fit, with its
hyperparameters (and a noise variance) chosen by the marginal likelihood, and every cost linear
in the rows. Two kinds:

``"fibre"`` (exact, state space)
    ``g`` varies along one continuous mode ``k`` and is independent across the *fibres* of the
    tensor (each combination of the other coordinates): ``Cov(g(x), g(x')) =
    κ_k(x_k, x'_k) · 1[x_{−k} = x'_{−k}]``, ``κ_k`` a Matérn kernel with one lengthscale and
    variance shared by all fibres. Every fibre is one Kalman filter + RTS smoother over its
    sorted coordinates (:func:`bayestensor.kernels.kernel_sde`), all fibres in one vmapped scan;
    the log marginal likelihood is exact. Cost O(n + F·L) for F fibres padded to length L.
``"neighbours"`` (nearest-neighbour GP)
    ``g`` has a product Matérn-3/2 kernel over every continuous coordinate, independent across
    the categorical ones. The likelihood is Vecchia's approximation (each row conditioned on its
    ``m`` nearest predecessors in a random order, in the lengthscale-scaled metric), prediction
    is kriging from the ``m`` nearest training rows. Cost O(n m³).

``local="auto"`` fits every candidate (fibres along each continuous mode that has at least two
training rows per fibre on average, and the neighbour GP). A candidate qualifies if its
log-likelihood of the residuals beats iid ``N(0, mean r²)`` by more than the BIC penalty
``½ p log n`` of its ``p`` hyperparameters (or ``min_gain`` nats per row). Of those it keeps the
one with the largest gain, unless another predicts the residuals left out one at a time (in
closed form: :mod:`.local_tails`) better by more than one standard error of the paired
difference of squared errors: then the one of those with the smallest leave-one-out error.
The likelihood can favour a process that fits its own rows (a fibre GP along one coordinate of
a smooth field) over one that predicts unseen cells better. With no candidate qualifying the
base predictions are returned unchanged. A process the data do not need also switches itself
off (its variance goes to the lower bound), so the rule mostly saves prediction time.

``"auto"`` then compares the result with a GP on the values alone (:mod:`.local_cavity`), the
low-rank part's leave-one-out predictions taken from its cavities so that its in-sample fit
does not flatter it: past 5,000 training rows the neighbour GP (``"neighbours:values"``), up to
5,000 an exact GP whose kernel adds main effects — each unit's offset, a curve shared by all —
to the product (``"anova:values"``, :mod:`.local_anova`; a low rank carries an additive offset
only at the cost of a rank). Where the GP predicts the left-out rows clearly better, the
predictions blend the two (:attr:`LocalFit.weight`, the weight with the smallest left-out error
of the blend, at most one half on data of up to 256 rows); where that weight is 1, the GP
replaces the low-rank part.

Prediction: ``E[y*] = E[f*] + E[g* | r]``, ``Var[f* + g*] = Var[f*] + Var[g* | r]`` (``f`` and
``g`` treated as independent), ``Var[y*] = Var[f* + g*] + c · σ²_g`` with ``σ²_g`` the residual
model's noise and ``c ≥ 1`` the shrinkage of the low-rank fit's training residuals (it saw those
rows): ``min(σ²_FunBaT / mean(r²), 1 / (1 − h̄))``, ``h̄`` the rows' mean leverage
(:func:`.local_tails.shrinkage`).
The predictive distribution is then a Student-t around that mean, its degrees of freedom and
scale fitted to the process's leave-one-out errors (:mod:`.local_tails`): heavy-tailed residuals
give heavy-tailed intervals, Gaussian ones the Gaussian.

Usage::

    res = bt.fit(train, coords=["lat", "lon", "month"], value="ozone", local="auto")
    res.local.label, res.local.gains     # what was kept; every candidate's gain per row
    res.predict(test)                    # mean, sd, lower, upper, sd_f, lower_f, upper_f (, nu)
    res.predict(test, local=False)       # the low-rank part alone
    fit_local(res0, train, "fibre:lon")  # the same stage on a fit made without local=

Saving and loading: :mod:`bayestensor.models.funbat.local_record`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayestensor.checks import check_finite_result
from bayestensor.driver import bound_compiled
from bayestensor.metrics import student_t_quantile
from bayestensor.models.funbat.local_anova import PROGRAMS as ANOVA_PROGRAMS
from bayestensor.models.funbat.local_anova import AnovaGP
from bayestensor.models.funbat.local_cavity import PROGRAMS as CAVITY_PROGRAMS
from bayestensor.models.funbat.local_cavity import VALUES, VALUES_MIN_ROWS, values_alone
from bayestensor.models.funbat.local_fibre import (  # (_fibre_vg: tests use it from here)
    FibreGP,
    _fibre_post_jit,
    _fibre_vg,
    fibre_layout,
)
from bayestensor.models.funbat.local_neighbours import PROGRAMS, NeighbourGP, vecchia_neighbours
from bayestensor.models.funbat.local_tails import (
    GAUSSIAN,
    bic,
    choose,
    fit_level_scale,
    fit_student_t,
    iid_nll,
    level_factor,
    loo_errors,
    loo_scores,
    loo_variance,
    rms,
    shrinkage,
)

#: The label of the exact GP on the values alone (small data, :mod:`.local_anova`).
ANOVA_VALUES = "anova:values"
#: ``update(scope="new")`` conditions the exact GP on the values on every row; beyond this many
#: rows (its n × n covariance: 200 MB at 5,000) the local stage is fitted again on all rows
#: instead, as a fit of that many rows would be (with the neighbour GP from there on).
ANOVA_UPDATE_MAX_ROWS = VALUES_MIN_ROWS
#: Whether the predictive scale may grow with the level (:func:`.local_tails.fit_level_scale`).
LEVEL_SCALE = True

__all__ = [
    "FibreGP",
    "NeighbourGP",
    "LocalFit",
    "fit_local",
    "update_local",
    "fibre_layout",
    "vecchia_neighbours",
]


def _bound_local_programs(modes: int) -> None:
    """Release the local stage's compiled programs once one holds too many shape variants
    (:func:`bayestensor.driver.bound_compiled`, as the sweep's; the per-mode ones for fits of
    ``modes`` modes): memory stays flat over many fits and predictions of different sizes."""
    bound_compiled(
        _fibre_vg, _fibre_post_jit, *PROGRAMS, *CAVITY_PROGRAMS, *ANOVA_PROGRAMS, modes=modes
    )


# --------------------------------------------------------------------------------------------
# the user-facing wrapper
# --------------------------------------------------------------------------------------------


def encoded(result, df: pd.DataFrame) -> pd.DataFrame:
    """The coordinates of ``df`` as the fit encodes them: floats per mode (continuous ones in
    the fit's units, times as floats in their time unit; categories as their codes)."""
    from bayestensor.data import encode_new

    enc = encode_new(df, result.modes)
    return pd.DataFrame({m.name: x for m, x in zip(result.modes, enc.x, strict=True)})


@dataclass
class LocalFit:
    """A local residual process fitted on top of a FunBaT result (or none, if ``"auto"``
    found no gain); ``result.local`` of ``bt.fit(..., local=...)``.

    Attributes
    ----------
    base : FitResult
        The low-rank fit.
    kind : str or None
        ``"fibre"``, ``"neighbours"`` or None (no local process kept).
    mode : str or None
        The fibre mode (``kind == "fibre"``).
    process : FibreGP or NeighbourGP or None
        Fitted to the residuals divided by ``scale`` (its own hyperparameters are in those
        units; :attr:`hyperparameters` reports them in the value's units).
    gains : dict
        Every candidate's log-likelihood gain over iid noise, nats per training row.
    calibration : float
        ``c = σ²_FunBaT / mean(r²)`` (see the module docstring).
    asked : str
        The ``local=`` option it was fitted with.
    scale : float
        The residuals' root mean square at the fit (the process's unit).
    rows : pandas.DataFrame or None
        The training rows (coordinates and value), kept in memory for :meth:`FitResult.update`
        and not saved; None for a loaded result.
    nu, t_scale : float
        The predictive Student-t's degrees of freedom and scale factor ``c``, fitted to the
        leave-one-out errors (:mod:`.local_tails`); ``inf`` and 1: Gaussian.
    loo : dict
        The leave-one-out mean squared error of every candidate that gained enough, as a
        fraction of the residuals' mean square (below 1: it predicts left-out residuals).
        With ``"auto"`` also ``"low-rank"`` (the low-rank part with the kept process, the
        low-rank part's predictions left out too: :mod:`.local_cavity`) and
        ``"neighbours:values"`` (the neighbour GP on the values alone).
    offset : float or None
        Set when the neighbour GP on the values alone (``"neighbours:values"``) enters the
        predictions: their training mean (that GP models ``(y − offset) / scale``). None
        otherwise.
    values : NeighbourGP or None
        That GP where the predictions *blend* it with the low-rank part and its residual
        process (``process``, or none): ``weight`` times its predictive plus ``1 − weight``
        times theirs (:mod:`.local_cavity`). None where the GP on the values alone replaces the
        low-rank part (then it is ``process``, with ``offset`` set) or does not enter.
    weight : float
        The GP on the values' weight in a blend, in (0, 1]; 0 without a blend (where the GP
        replaces the low-rank part it is ``process``, and ``values`` is None).
    compared : NeighbourGP or AnovaGP or None
        The GP on the values that ``"auto"`` compared, for a later local stage on the same
        rows to rescale instead of fitting again (``fit_local(..., values=(compared,
        scale))``): the exact GP kept or not, the neighbour GP only where it was kept (it is
        then also ``process`` or ``values``); None where no comparison was made. Not saved.
    level : tuple or None
        ``(b, centre, unit, lo, hi, floor)`` where the left-out errors grew (or shrank) with
        the predicted level: the predictive scale is then multiplied by ``exp(b · u)``, ``u``
        the standardised level of the predictive mean (of its log for positive values)
        (:func:`~.local_tails.level_factor`); None: one scale everywhere.
    """

    base: object
    kind: str | None
    mode: str | None
    process: object
    gains: dict
    calibration: float
    seconds: float
    asked: str = "auto"
    scale: float = 1.0
    rows: pd.DataFrame | None = field(default=None, repr=False)
    nu: float = np.inf
    t_scale: float = 1.0
    loo: dict = field(default_factory=dict)
    offset: float | None = None
    values: object = None
    weight: float = 0.0
    compared: object = field(default=None, repr=False)
    level: tuple | None = None

    @property
    def hyperparameters(self) -> dict:
        """The process's hyperparameters in the value's units (variances × ``scale²``): the
        residual process's, else (alone or blended with the bare low-rank part) the GP on the
        values'."""
        p = self.process if self.process is not None else self.values
        if p is None:
            return {}
        out = dict(p.hyperparameters)
        for k in out:  # (the exact GP on the values has a variance per coordinate too)
            if k in ("noise", "constant") or k.startswith("variance"):
                out[k] = float(out[k]) * self.scale**2
        return out

    @property
    def residual(self):
        """The residual process on top of the low-rank part (None: none, or the GP on the
        values alone replaced the low-rank part)."""
        return None if self.offset is not None and self.values is None else self.process

    @property
    def values_kept(self) -> bool:
        """Whether the GP on the values enters the predictions (blended, or alone): it predicted
        the left-out rows clearly better (the rule of :func:`~.local_cavity.values_alone`).
        :func:`bayestensor.api.fit` then checks the leniently pruned fit."""
        return self.offset is not None

    @property
    def kept_any(self) -> bool:
        """Whether any process enters the predictions."""
        return self.process is not None or self.values is not None

    @property
    def values_gp(self):
        """The neighbour GP on the values, where it enters the predictions (else None)."""
        if self.values is not None:
            return self.values
        return self.process if self.residual is None else None

    @property
    def residual_label(self) -> str:
        """``"fibre:<column>"``, ``"neighbours"`` or ``"none"``: the residual process."""
        return "none" if self.kind is None else self.kind + (f":{self.mode}" if self.mode else "")

    @property
    def label(self) -> str:
        """``"fibre:<column>"``, ``"neighbours"``, ``"neighbours:values"`` (``"anova:values"``
        for the exact GP of small data) or ``"none"``; a blend as
        ``"<residual> + neighbours:values (<weight>)"``."""
        values = ANOVA_VALUES if isinstance(self.values_gp, AnovaGP) else VALUES
        if self.values is not None:
            return f"{self.residual_label} + {values} ({self.weight:.2f})"
        return values if self.offset is not None else self.residual_label

    def predict(self, df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
        """``mean, sd, lower, upper, sd_f, lower_f, upper_f`` (and ``nu``) per row of ``df``."""
        return self.combine(df, self.base.predict(df, level=level, local=False), level)

    def combine(self, df: pd.DataFrame, pred: pd.DataFrame, level: float) -> pd.DataFrame:
        """The base prediction ``pred`` at the rows of ``df`` plus the local process (or the
        blend: the weighted means, and the weighted sds, as for errors fully correlated)."""
        _bound_local_programs(len(self.base.coords))
        if not self.kept_any:  # the low-rank part alone: its predictive, scaled by the level
            if self.level is None:
                return pred
            mean = pred["mean"].to_numpy()
            c = self.t_scale * level_factor(self.level, mean)
            return self._predictive(df, mean, c * pred["sd_f"].to_numpy(), c * pred["sd"], level)
        X, s = encoded(self.base, df), self.scale
        parts = []  # (weight, mean, Var f, noise variance), variances in units of the scale
        if self.values is None and self.offset is not None:  # the GP on the values alone
            # (no low-rank part; a blend without a residual process has none either: below)
            g_mean, g_var = self.process.posterior(X)
            parts.append((1.0, self.offset + s * g_mean, g_var, _noise(self.process)))
        else:
            mean = pred["mean"].to_numpy()
            var_f = (pred["sd_f"].to_numpy() / s) ** 2
            noise = np.maximum((pred["sd"].to_numpy() / s) ** 2 - var_f, 0.0)  # FunBaT's
            if self.process is not None:
                g_mean, g_var = self.process.posterior(X)
                mean, var_f = mean + s * g_mean, var_f + g_var
                noise = _noise(self.process) * self.calibration
            w = self.weight if self.values is not None else 0.0
            parts.append((1.0 - w, mean, var_f, noise))
            if self.values is not None:
                v_mean, v_var = self.values.posterior(X)
                parts.append((w, self.offset + s * v_mean, v_var, _noise(self.values)))
        mean = sum(w * m for w, m, _, _ in parts)
        root_f = sum(w * np.sqrt(v) for w, _, v, _ in parts)
        root = sum(w * np.sqrt(v + n) for w, _, v, n in parts)
        # the Student-t scale: c times the Gaussian sd (the sd itself when nu is inf), times the
        # level's factor where the left-out errors grew with the level
        c = self.t_scale * s * level_factor(self.level, mean)
        return self._predictive(df, mean, c * root_f, c * root, level)

    def _predictive(self, df, mean, sd_f, sd, level: float) -> pd.DataFrame:
        """The prediction frame of means ``mean`` and (Student-t) scales ``sd_f``, ``sd``."""
        sd_f, sd = np.asarray(sd_f, np.float64), np.asarray(sd, np.float64)
        z = float(student_t_quantile(level, self.nu))
        check_finite_result(
            "the prediction with the local process", mean, mean - z * sd, mean + z * sd
        )
        out = pd.DataFrame(
            {
                "mean": mean,
                "sd": sd,
                "lower": mean - z * sd,
                "upper": mean + z * sd,
                "sd_f": sd_f,
                "lower_f": mean - z * sd_f,
                "upper_f": mean + z * sd_f,
            },
            index=df.index,
        )
        if np.isfinite(self.nu):  # a Student-t predictive (Gaussian ones have no nu column)
            out["nu"] = self.nu
        return out


def _noise(process) -> float:
    return float(process.hyperparameters["noise"])


def _residuals(result, df: pd.DataFrame, sd_f: bool = False):
    """``y − E[f]`` of the low-rank part at the rows of ``df`` (and ``sd(f)`` there)."""
    y = df[result.value].to_numpy(dtype=np.float64)
    base = result.predict(df, local=False)
    r = y - base["mean"].to_numpy()
    return (r, base["sd_f"].to_numpy()) if sd_f else r


def _kept_rows(result, df: pd.DataFrame) -> pd.DataFrame:
    return df[[*result.coords, result.value]].reset_index(drop=True)


_STARTS: ContextVar[Mapping[str, np.ndarray] | None] = ContextVar(
    "bayestensor_local_starts", default=None
)


@contextmanager
def warm_starts(starts: Mapping[str, np.ndarray]) -> Iterator[None]:
    """Inside this block the local stage's candidate ``label`` (a key of ``starts``) starts its
    hyperparameter search at ``starts[label]`` (a process's ``theta``, in the residuals' RMS
    units) instead of at the data's default. ``bt.fit``'s check refits at a fit's own ranks
    start where that fit's residual process ended (``bayestensor.api._refits``): their
    residuals are those of the same model on half the rows, and L-BFGS-B then needs fewer
    evaluations."""
    token = _STARTS.set(dict(starts))
    try:
        yield
    finally:
        _STARTS.reset(token)


def _candidate(label, X, rs, noise, kinds, kernel="matern32", neighbours=16, start=None):
    """The residual process ``label`` (``"fibre:<col>"`` or ``"neighbours"``) fitted to ``rs``
    (its hyperparameter search from ``start``, else from :func:`warm_starts`' or the data's)."""
    start = (_STARTS.get() or {}).get(label) if start is None else start
    if label.startswith("fibre:"):
        fibre = FibreGP(label.split(":", 1)[1], kernel=kernel, start=start)
        return fibre.fit(X, list(kinds), rs, noise)
    return NeighbourGP(m=neighbours, start=start).fit(X, list(kinds), rs, noise, kinds=kinds)


def still_needed(result, df: pd.DataFrame, kept: LocalFit) -> bool:
    """Whether the residual process ``kept`` (of another fit of ``df``), refitted from its
    hyperparameters to ``result``'s residuals, passes the BIC bound ``"auto"`` asks there too."""
    if (scale := rms(r := _residuals(result, df))) == 0.0:  # nothing left to model
        return False
    rs, noise, p = r / scale, (float(result.noise_sd) / scale) ** 2, kept.process
    kernel, m = getattr(p, "kernel", "matern32"), getattr(p, "m", 16)  # as the kept process
    label = kept.residual_label
    fit = _candidate(label, encoded(result, df), rs, noise, result.coords, kernel, m, p.theta)
    gain = iid_nll(rs) - fit.nll / len(r)
    return bool(np.isfinite(gain) and gain >= bic(len(fit.theta), len(r)))


def fit_local(
    result,
    df: pd.DataFrame,
    local: str = "auto",
    *,
    kernel: str = "matern32",
    neighbours: int = 16,
    min_gain: float | None = None,
    min_per_fibre: float = 2.0,
    values: tuple | None = None,
) -> LocalFit:
    """Fit a local residual process to a FunBaT result's training rows ``df``.

    ``bt.fit(..., local=...)`` calls this and keeps the result as ``result.local``.

    Parameters
    ----------
    result : FitResult
        A FunBaT fit of ``df``.
    df : pandas.DataFrame
        The training rows (coordinates and value).
    local : {"auto", "fibre", "fibre:<column>", "neighbours"}
        Which process: ``"fibre"`` alone picks among the continuous modes as ``"auto"`` does
        among all candidates.
    kernel : str
        Matérn kernel of the fibre process.
    neighbours : int
        ``m`` of the neighbour GP.
    min_gain : float, optional
        ``auto`` keeps a process only if it gains at least this many nats per row; by default
        a BIC rule: the total gain must exceed ``½ p log n`` for ``p`` hyperparameters.
    min_per_fibre : float
        With ``"auto"``, a mode is a fibre candidate only with at least this many training
        rows per fibre.
    values : tuple, optional
        ``(process, scale)``: the GP on the values alone as another fit's local stage fitted
        it to the same rows (its :attr:`LocalFit.compared` and ``scale`` there; ``process``
        None: none at hand); ``"auto"`` rescales it instead of fitting it again.
    """
    t = time.perf_counter()
    _bound_local_programs(len(result.coords))
    coords = list(result.coords)
    r, sd_f = _residuals(result, df, sd_f=True)
    scale = rms(r)
    rows = _kept_rows(result, df)
    if scale == 0.0:  # the low-rank part interpolates: nothing left to model
        return LocalFit(result, None, None, None, {}, 1.0, 0.0, local, 1.0, rows)
    rs = r / scale  # every process is fitted in units of the residuals' RMS (mean rs² = 1)
    noise = (float(result.noise_sd) / scale) ** 2
    ms = float(np.mean(rs**2))
    iid = iid_nll(rs)
    continuous = [c for c in coords if result.coords[c] == "continuous"]
    X = encoded(result, df)

    candidates: dict[str, object] = {}
    if local in ("auto", "fibre") or local.startswith("fibre:"):
        modes = [local.split(":", 1)[1]] if local.startswith("fibre:") else continuous
        for mode in modes:
            others = [c for c in coords if c != mode]
            n_fibres = len(X[others].drop_duplicates()) if others else 1
            if local != "auto" or len(X) / n_fibres >= min_per_fibre:
                fit = _candidate(f"fibre:{mode}", X, rs, noise, result.coords, kernel, neighbours)
                candidates[f"fibre:{mode}"] = fit
    if local in ("auto", "neighbours"):
        fit = _candidate("neighbours", X, rs, noise, result.coords, kernel, neighbours)
        candidates["neighbours"] = fit
    if not candidates:
        raise ValueError(f"local={local!r}: no candidate process for these data")
    gains = {k: float(iid - p.nll / len(r)) for k, p in candidates.items()}

    def enough(k: str) -> bool:  # a NaN likelihood is never kept
        rule = min_gain if min_gain is not None else bic(len(candidates[k].theta), len(r))
        return bool(np.isfinite(gains[k])) and (local != "auto" or gains[k] >= rule)

    # of the candidates that gain enough: the likeliest, unless another predicts the left-out
    # residuals better by more than one standard error of the paired difference
    posts = {k: candidates[k].posterior(None) for k in candidates if enough(k)}
    errors = {
        k: loo_errors(rs, m, v, candidates[k].hyperparameters["noise"])
        for k, (m, v) in posts.items()
    }
    sq = {k: e**2 for k, e in errors.items()}
    loo = {k: float(np.mean(e)) for k, e in sq.items()}
    best = choose(gains, sq)
    process = None if best is None else candidates[best]
    kind = None if process is None else best.split(":")[0]
    mode = best.split(":", 1)[1] if kind == "fibre" else None
    calibration = shrinkage(noise, ms, (sd_f / scale) ** 2)
    tails, kept = GAUSSIAN, None
    if process is not None:  # the predictive's tails, from the leave-one-out errors
        m, v = posts[best]
        own = process.hyperparameters["noise"]
        tails = fit_student_t(loo_scores(rs, m, v, own, calibration, (sd_f / scale) ** 2))
        kept = (errors[best], loo_variance(v, own, calibration))
    elif local == "auto":  # the low-rank part alone: its noise
        kept = (rs, np.full(len(rs), noise))
    offset, alone, blend = None, None, (None, 0.0)
    y = df[result.value].to_numpy(np.float64)
    if local == "auto":  # against the neighbour GP on the values alone
        alone = values_alone(result, X, y, rs, scale, kept, values)
    if alone is not None:
        loo.update(alone["loo"])
        if alone["better"] and alone["weight"] >= 1.0:  # it replaces the low-rank part
            kind, mode, process, calibration = "neighbours", None, alone["process"], 1.0
            offset, tails = alone["offset"], alone["tails"]
        elif alone["better"]:  # blended with it
            offset, tails = alone["offset"], alone["blend_tails"]
            blend = (alone["process"], alone["weight"])
    # the chosen predictive's standardised left-out errors and left-out predictions: does its
    # scale grow with the level?
    scores = None
    if alone is not None and alone["better"]:
        scores = alone["levels"][VALUES if alone["weight"] >= 1.0 else "blend"]
    elif process is not None:
        z = loo_scores(rs, *posts[best], own, calibration, (sd_f / scale) ** 2)
        scores = (z, y - scale * errors[best])
    elif alone is not None:
        scores = alone["levels"]["low-rank"]
    level = None
    if LEVEL_SCALE and scores is not None:
        got = fit_level_scale(*scores, y)
        if got is not None:
            tails, level = got[:2], got[2]
    fitted = (kind, mode, process, gains, calibration, time.perf_counter() - t, local, scale)
    # (an exact GP that was not kept is held for a later stage to rescale; a neighbour GP only
    # where it was kept, and is held as the process or the blend anyway: no memory for nothing)
    reuse = alone is not None and (alone["better"] or isinstance(alone["process"], AnovaGP))
    compared = alone["process"] if reuse else None
    # (in the fields' order)
    return LocalFit(
        result, *fitted, rows, *tails, loo, offset, *blend, compared=compared, level=level
    )


def update_local(loc: LocalFit, result, df: pd.DataFrame, scope: str) -> LocalFit:
    """The local process of ``result`` (``FitResult.update`` of ``loc.base`` with the rows
    ``df``) on the combined rows.

    ``scope="new"``: the kept process (or none), its hyperparameters, scale and calibration
    held; its posterior conditions on every row's residual under the updated low-rank part.
    ``scope="all"``: the local stage fitted again on all rows (as ``fit_local``); so too, with
    a warning, where ``"new"`` would condition the exact GP on the values of small data on more
    than :data:`ANOVA_UPDATE_MAX_ROWS` rows.
    """
    import copy

    if loc.rows is None:
        raise ValueError("update needs the local process's training rows, not saved with it")
    rows = pd.concat([loc.rows, _kept_rows(result, df)], ignore_index=True)
    if scope == "new" and isinstance(loc.values_gp, AnovaGP) and len(rows) > ANOVA_UPDATE_MAX_ROWS:
        warnings.warn(
            f"update: the exact GP on the values would condition on {len(rows)} rows (more than "
            f"{ANOVA_UPDATE_MAX_ROWS}); the local stage is fitted again on all rows instead",
            stacklevel=3,
        )
        scope = "all"
    if scope == "all":
        return fit_local(result, rows, loc.asked)
    out = copy.copy(loc)
    out.base, out.rows = result, rows
    X = encoded(result, rows)

    def moved(p, r):  # the process conditioned on every row (r: its values there)
        p = copy.copy(p)
        return p._restore(X[list(p._train.columns)], r / loc.scale)

    values = None if loc.offset is None else rows[result.value].to_numpy(np.float64) - loc.offset
    if loc.residual is not None:
        out.process = moved(loc.process, _residuals(result, rows))
    elif loc.process is not None:  # the GP on the values alone
        out.process = moved(loc.process, values)
    if loc.values is not None:
        out.values = moved(loc.values, values)
    return out
