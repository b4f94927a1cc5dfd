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

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayestensor.checks import CONTINUOUS, float_array, is_time

__all__ = [
    "MAX_UNEVEN",
    "MIN_SPAN",
    "MIN_VALUES",
    "check_log_coords",
    "log_scale_columns",
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


def log_scale_columns(df: pd.DataFrame, kinds: Mapping[str, str]) -> tuple[str, ...]:
    """The continuous numeric columns of ``df`` (``kinds``: ``{column: kind}``) that
    ``log_coords="auto"`` puts on the log scale (:func:`is_geometric`), in ``kinds`` order."""
    return tuple(
        c
        for c, kind in kinds.items()
        if kind == CONTINUOUS and not is_time(df[c]) and is_geometric(float_array(df[c]))
    )


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


def check_log_coords(
    log_coords, df: pd.DataFrame, kinds: Mapping[str, str], auto: bool = True
) -> tuple[str, ...]:
    """``log_coords`` of :func:`bayestensor.fit` as the columns to put on the log scale.

    ``"auto"``: :func:`log_scale_columns` where ``auto`` (else none); ``None``: none; a column
    name or a sequence of them: those, each a continuous numeric (not datetime) coordinate
    with every training value > 0.

    Raises
    ------
    ValueError
        Naming ``log_coords`` and what it takes, or the column and what is wrong with it.
    """
    if isinstance(log_coords, str) and log_coords == "auto":
        return log_scale_columns(df, kinds) if auto else ()
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
    for c in names:
        if c not in kinds:
            raise ValueError(f"log_coords names {c!r}, which is not one of coords {list(kinds)}")
        if kinds[c] != CONTINUOUS or is_time(df[c]):
            raise ValueError(
                f"log_coords names {c!r}, which is not a continuous numeric coordinate (a "
                "categorical or datetime column has no log scale)"
            )
        to_log(float_array(df[c]), c)
    return tuple(c for c in kinds if c in names)
