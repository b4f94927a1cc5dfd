"""Checks of FunBaT's per-mode options: ``kernel=`` (one name or ``{column: name}``) and
``period=`` (one positive number or ``{column: number}``); the sweeps' stopping rule."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import numpy as np

from bayestensor.checks import CONTINUOUS, check_positive
from bayestensor.kernels import check_kernel

#: Kernel of a continuous mode that ``kernel={column: name}`` does not name.
DEFAULT_KERNEL = "matern32"
#: Kernels with a period.
PERIODIC_KERNELS = ("periodic", "quasiperiodic")
#: The kernel name that asks for the Matérn smoothness to be chosen by the evidence.
AUTO_KERNEL = "auto"


#: The kernels ``"auto"`` chooses among (:mod:`~bayestensor.models.funbat.select`).
AUTO_CANDIDATES = ("matern12", "matern32", "matern52")


def kernel_matches(asked: str, fitted: str | None) -> bool:
    """Whether a mode fitted with kernel ``fitted`` is what the option ``asked`` asks for."""
    return fitted == asked or (asked == AUTO_KERNEL and fitted in AUTO_CANDIDATES)


def _check_name(name):
    return name if name == AUTO_KERNEL else check_kernel(name)


def check_kernel_option(kernel):
    """``kernel`` as :class:`FunBaT` takes it: one kernel name, or ``{column: name}``.

    Parameters
    ----------
    kernel : str or mapping of str to str
        A key of :data:`bayestensor.kernels.KERNELS` or ``"auto"`` (the Matérn smoothness
        chosen by the evidence, :mod:`~bayestensor.models.funbat.select`) for every continuous
        mode, or one per named column.

    Returns
    -------
    str or dict
        The name, or a plain ``dict`` copy of the mapping.

    Raises
    ------
    ValueError
        Naming ``kernel`` if it is neither, or a name is unknown.
    """
    if isinstance(kernel, Mapping):
        for column, name in kernel.items():
            if not isinstance(column, str):
                raise ValueError(f"kernel keys must be column names (str), got {column!r}")
            _check_name(name)
        return dict(kernel)
    return _check_name(kernel)


def check_kernel_applies(kernel, modes) -> None:
    """Refuse one kernel name given for data with no continuous mode (it would be ignored).

    Raises
    ------
    ValueError
        Naming ``kernel`` and the coordinates when none of ``modes`` is continuous.
    """
    if not any(m.kind == CONTINUOUS for m in modes):
        raise ValueError(
            f"kernel={kernel!r} was given, but none of the coordinates "
            f"{[m.name for m in modes]} is continuous (a kernel is the prior along a "
            "continuous coordinate); leave kernel out, or name the continuous columns in "
            "coords (e.g. {'time': 'continuous'})"
        )


def check_period_option(period):
    """``period`` as :class:`FunBaT` takes it: ``None``, one positive number, or
    ``{column: positive number}``.

    Raises
    ------
    ValueError
        Naming ``period`` for anything else.
    """
    if period is None:
        return None
    if isinstance(period, Mapping):
        out = {}
        for column, value in period.items():
            if not isinstance(column, str):
                raise ValueError(f"period keys must be column names (str), got {column!r}")
            out[column] = _check_period(f"period[{column!r}]", value)
        return out
    return _check_period("period", period)


def _check_period(name: str, value) -> float:
    """One period: a positive number; a time span is refused with the unit it must be in."""
    if isinstance(value, datetime.timedelta | np.timedelta64):
        raise ValueError(
            f"{name} must be a positive number in the coordinate's units, got {value!r}; for a "
            "datetime or timedelta coordinate that is its time_unit (days by default), e.g. "
            "365.25 for a yearly cycle"
        )
    return check_positive(name, value)


def mode_periods(period, modes, kernels) -> list[float | None]:
    """Per mode, the period given by the user (``period``: :func:`check_period_option`'s
    value; ``None``: not given, or no period); ``kernels``: per mode, its kernel's name."""
    periodic = [m.name for m, k in zip(modes, kernels, strict=True) if k in PERIODIC_KERNELS]
    if period is None:
        return [None] * len(modes)
    if not periodic:
        raise ValueError("period was given but no mode has a periodic or quasiperiodic kernel")
    if isinstance(period, dict):
        unknown = [c for c in period if c not in periodic]
        if unknown:
            raise ValueError(
                f"period names {unknown}, which are not modes with a periodic or "
                f"quasiperiodic kernel ({periodic})"
            )
        return [period.get(m.name) for m in modes]
    return [period if m.name in periodic else None for m in modes]


#: Sweeps that met ``tol`` but are not counted as converged because the hyperparameter search
#: stepped in them (bounded: the discrete search can step every sweep).
MAX_SEARCH_SWEEPS = 4


class Stopping:
    """Whether the sweeps have converged, given the history so far and the last change.

    A sweep converges when its change is below ``tol`` — unless the hyperparameter search took
    a step in it (a step changes what the next sweeps converge to); such a sweep is not counted
    as converged, at most :data:`MAX_SEARCH_SWEEPS` times per fit. ``keys``: the history's
    hyperparameter columns.
    """

    def __init__(self, tol: float, keys: tuple[str, ...]):
        self.tol, self.keys, self.holds = tol, keys, 0

    def __call__(self, history: list[dict], change: float) -> bool:
        stepped = len(history) > 1 and any(history[-2][k] != history[-1][k] for k in self.keys)
        if change < self.tol and stepped and self.holds < MAX_SEARCH_SWEEPS:
            self.holds += 1
            return False
        return change < self.tol


#: Caps of :class:`InterceptSteps`' jump: the factor 1/(1 − ρ), and the step in z-scored units.
MAX_JUMP, MAX_JUMP_SIZE = 100.0, 1.0


class InterceptSteps:
    """The learned intercept's step after each sweep (``FunBaT(intercept=True)``).

    Given the rest, the intercept's exact update is the mean training residual ``δ``. Where
    the low-rank part can carry a constant too, these updates shrink geometrically at a rate ρ
    near 1 (for a smooth GP, thousands of sweeps). Where two plain steps point the same way and
    shrink (ρ = δ_t / δ_{t−1} in (0, 1)), the step is ``δ_t / (1 − ρ)``, the sum of that
    geometric series (exact for a fixed linear map: Steffensen's method), its factor capped at
    :data:`MAX_JUMP` and its size at :data:`MAX_JUMP_SIZE`; the step after a jump is a plain
    one (it measures ρ afresh).

    ``rows``: the training values (on the host, and as placed) less the steps so far
    (``total``), recomputed from the values at each call (no rounding builds up over sweeps in
    float32; on the placed rows only where ``mask`` is 1: padding rows stay 0). A call returns
    its step.
    """

    def __init__(self, y_host, y, mask=None):
        self.values, self.mask = (y_host, y), 1.0 if mask is None else mask
        self.rows, self.total, self.last = self.values, 0.0, None

    def __call__(self, delta: float) -> float:
        last, self.last = self.last, delta
        step = delta
        if last and 0.0 < delta / last < 1.0:  # (None or 0: no rate yet)
            self.last = None
            size = max(MAX_JUMP_SIZE, abs(delta))
            step = float(np.clip(delta * min(MAX_JUMP, 1.0 / (1.0 - delta / last)), -size, size))
        self.total += step
        self.rows = (self.values[0] - self.total, self.values[1] - self.total * self.mask)
        return step


#: What ``local=`` of :func:`bayestensor.fit` takes (besides ``"fibre:<column>"``).
LOCAL_CHOICES = (None, "auto", "fibre", "neighbours")
#: ``local="auto"`` (the default) is skipped above this many rows: its neighbour GP and its
#: fibre layouts hold every training row in memory (fit ``local=None``, or ask for a process).
LOCAL_AUTO_MAX_ROWS = 200_000


#: ... and below this many (ask for a process by name to fit one anyway). It was 200 (too few
#: residuals, it was thought, for a process's 3–5 hyperparameters), but the local stage keeps a
#: process only where it gains enough (:mod:`.local`), and on small data it predicts much
#: better where it does: on five small check sets new to it (49–146 training rows, 5 splits)
#: the held-out RMSE fell 0–60 % (never worse on average), and on 15–70-row samples of three
#: others it was never worse (``docs/benchmarks.md``). 15 is the smallest size measured.
LOCAL_AUTO_MIN_ROWS = 15


def auto_local(local, kinds: Mapping[str, str], n_rows: int, multiprocess: bool = False):
    """``local`` as the fit uses it: ``"auto"`` (the default) becomes None where it does not
    apply — no continuous coordinate, several JAX processes, fewer than
    :data:`LOCAL_AUTO_MIN_ROWS` or more than :data:`LOCAL_AUTO_MAX_ROWS` rows; any other value
    is returned as given."""
    if local != "auto":
        return local
    continuous = any(k == "continuous" for k in kinds.values())
    sized = LOCAL_AUTO_MIN_ROWS <= n_rows <= LOCAL_AUTO_MAX_ROWS
    if not continuous or multiprocess or not sized:
        return None
    return local


def check_local_option(local, kinds: Mapping[str, str] | None = None):
    """``local`` as :func:`bayestensor.fit` takes it (see
    :mod:`bayestensor.models.funbat.local`); with ``kinds`` (``{column: kind}`` of the fit)
    also that a fibre column is a continuous coordinate and that there is one.

    Raises
    ------
    ValueError
        Naming ``local`` and the allowed values.
    """
    allowed = 'None, "auto", "fibre", "fibre:<column>" or "neighbours"'
    if local is None:
        return None
    ok = isinstance(local, str) and (local in LOCAL_CHOICES or local.startswith("fibre:"))
    if not ok:
        raise ValueError(f"local must be {allowed}, got {local!r}")
    if kinds is None:
        return local
    continuous = [c for c, k in kinds.items() if k == "continuous"]
    if not continuous:
        raise ValueError(f"local={local!r} needs a continuous coordinate; this fit has none")
    column = local.split(":", 1)[1] if local.startswith("fibre:") else None
    if column is not None and column not in continuous:
        raise ValueError(
            f"local={local!r}: {column!r} is not a continuous coordinate; local must be "
            f"{allowed}, the column one of {continuous}"
        )
    return local
