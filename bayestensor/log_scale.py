"""Continuous coordinates on the log scale: ``bt.fit(..., log_coords=...)``.

A GP prior on a coordinate laid out as a geometric series (a dilution series, doses that
double, ages 1, 3, 7, 14, 28, 56 … days) has one lengthscale for a range where the design
puts most points within a few units of the smallest value and a few far apart: the response
of such designs is usually smooth in ``log x``, not in ``x``. A mode on the log scale keeps
``log x`` as its coordinates (:class:`bayestensor.modes.Mode` ``log=True``): its latent
functions, lengthscales and the local stage's residual processes are in ``log x``; new rows
are mapped the same way, and coordinates are reported in ``x``.

``log_coords="auto"`` (the default of :func:`bayestensor.fit` for FunBaT) puts a column on
the log scale where its distinct training values look like such a design
(:func:`log_scale_columns`): all positive, at least :data:`MIN_VALUES` of them, spanning at
least :data:`MIN_SPAN` (max / min), and their gaps even on the log scale — the largest gap of
``log x`` at most :data:`MAX_UNEVEN` times the median gap — and more even than the gaps of
``x``. Evenly spaced coordinates (years, months, days, ages), irregular sampling times and any
column with a zero or a negative value stay as they are. Measured in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from bayestensor.checks import CONTINUOUS
from bayestensor.modes import Encoded, Mode

__all__ = [
    "MAX_UNEVEN",
    "MIN_SPAN",
    "MIN_VALUES",
    "check_log_coords",
    "is_geometric",
    "log_scale_columns",
    "on_log_scale",
    "to_log",
]

#: A column on the log scale by ``"auto"`` has at least this many distinct values ...
MIN_VALUES = 4
#: ... spanning at least this ratio (max / min) ...
MIN_SPAN = 10.0
#: ... and the largest gap of its ``log`` values at most this many times their median gap.
MAX_UNEVEN = 3.0


def _unevenness(u: np.ndarray) -> float:
    """The largest gap of sorted distinct values over their median gap (1: evenly spaced)."""
    g = np.diff(u)
    return float(g.max() / np.median(g))


def is_geometric(values: np.ndarray) -> bool:
    """Whether distinct positive ``values`` look like a geometric design (module docstring)."""
    u = np.unique(np.asarray(values, dtype=np.float64))
    if u.size < MIN_VALUES or u[0] <= 0 or u[-1] / u[0] < MIN_SPAN:
        return False
    on_log = _unevenness(np.log(u))
    return on_log <= MAX_UNEVEN and on_log < _unevenness(u)


def _numeric(mode: Mode) -> bool:
    """A continuous mode of a numeric (not datetime / timedelta) column."""
    return mode.kind == CONTINUOUS and mode.time is None


def log_scale_columns(modes: Sequence[Mode]) -> tuple[str, ...]:
    """The columns of the encoded ``modes`` that ``log_coords="auto"`` puts on the log scale
    (:func:`is_geometric` of their distinct training values), in mode order."""
    return tuple(m.name for m in modes if _numeric(m) and is_geometric(m.coordinates()))


def to_log(x: np.ndarray, name: str) -> np.ndarray:
    """``log x`` of a log-scale mode's coordinates, or a ValueError naming the column."""
    x = np.asarray(x, dtype=np.float64)
    bad = x <= 0
    if bad.any():
        raise ValueError(
            f"column {name!r} is on the log scale (log_coords) and needs coordinates > 0, got "
            f"{int(bad.sum())} that are not (e.g. {float(x[bad][0])!r}); fit with "
            f"log_coords=None (or without {name!r} in it) to keep it on its own scale"
        )
    return np.log(x)


def check_log_coords(log_coords, modes: Sequence[Mode], auto: bool = True) -> tuple[str, ...]:
    """``log_coords`` of :func:`bayestensor.fit` as the columns to put on the log scale, read
    off the encoded ``modes`` (their distinct training values: no pass over the rows).

    ``"auto"``: :func:`log_scale_columns` where ``auto`` (else none); ``None``: none; a column
    name or a sequence of them: those, each a continuous numeric (not datetime) coordinate
    with every training value > 0.

    Raises
    ------
    ValueError
        Naming ``log_coords`` and what it takes, or the column and what is wrong with it.
    """
    if isinstance(log_coords, str) and log_coords == "auto":
        return log_scale_columns(modes) if auto else ()
    if log_coords is None:
        return ()
    names = [log_coords] if isinstance(log_coords, str) else log_coords
    if not isinstance(names, Sequence) or not all(isinstance(c, str) for c in names):
        raise ValueError(
            'log_coords must be "auto", None, a column name or a list of column names, got '
            f"{log_coords!r}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"log_coords names a column twice: {list(names)}")
    by_name = {m.name: m for m in modes}
    for c in names:
        if c not in by_name:
            raise ValueError(f"log_coords names {c!r}, which is not one of coords {list(by_name)}")
        if not _numeric(by_name[c]):
            raise ValueError(
                f"log_coords names {c!r}, which is not a continuous numeric coordinate (a "
                "categorical or datetime column has no log scale)"
            )
        if not by_name[c].log:  # (a mode already on the log scale: a refit on its modes)
            to_log(by_name[c].values, c)
    return tuple(m.name for m in modes if m.name in names)


def on_log_scale(enc: Encoded, names: Sequence[str]) -> Encoded:
    """``enc`` with the modes ``names`` on the log scale (:meth:`Mode.on_log_scale` of their
    values; the rows' positions stay, ``log`` keeping the order); modes already on it (a fit
    encoded on another fit's modes, :func:`bayestensor.distributed.on_modes`) as they are."""
    modes = tuple(
        Mode.on_log_scale(m.name, m.values) if m.name in names and not m.log else m
        for m in enc.modes
    )
    return dataclasses.replace(enc, modes=modes)
