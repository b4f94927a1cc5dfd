"""Helpers shared by the plot modules: interval half-widths, coordinate kinds, time axes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayestensor.metrics import normal_quantile

#: Names of the time units of :data:`bayestensor.modes.TIME_UNITS` (timedelta axes).
TIME_UNIT_NAMES = {
    "W": "weeks",
    "D": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
}


def z_of(level: float) -> float:
    """Half-width of the central ``level`` interval of a standard normal."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return normal_quantile(level)


def is_numeric(values) -> bool:
    """Whether every value converts to a finite float (a continuous coordinate)."""
    try:
        return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def time_kind(values) -> str | None:
    """``"datetime"`` or ``"timedelta"`` when every value is one (zone allowed), else None."""
    kind = pd.api.types.infer_dtype(np.asarray(values, dtype=object), skipna=False)
    if kind in ("datetime64", "datetime"):
        return "datetime"
    if kind in ("timedelta64", "timedelta"):
        return "timedelta"
    return None


def dates_to_num(values) -> tuple[np.ndarray, str | None]:
    """Datetimes as matplotlib date numbers (days since its epoch, UTC) and their zone.

    A tz-aware column is drawn at its UTC instants with ticks labelled in its own zone
    (:func:`set_date_axis`); a naive one as it is.
    """
    import matplotlib.dates as mdates

    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(values).to_numpy(dtype=object)))
    tz = None if index.tz is None else str(index.tz)
    if tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return np.asarray(mdates.date2num(index.to_numpy())), tz


def timedeltas_to_num(values, unit: str = "D") -> np.ndarray:
    """Timedeltas as floats in ``unit`` (a key of :data:`TIME_UNIT_NAMES`)."""
    if unit not in TIME_UNIT_NAMES:
        raise ValueError(f"time unit must be one of {list(TIME_UNIT_NAMES)}, got {unit!r}")
    td = pd.TimedeltaIndex(pd.Series(values).to_numpy(dtype=object))
    return np.asarray(td / pd.Timedelta(1, unit=unit), dtype=np.float64)


def set_date_axis(axis, tz: str | None = None) -> None:
    """Date ticks (``AutoDateLocator`` + ``ConciseDateFormatter``) on a matplotlib axis."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=tz)
    axis.set_major_locator(locator)
    axis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))


def axis_label(name: str, unit: str | None) -> str:
    """``name (unit)``, or the name alone when the unit is unknown."""
    return f"{name} ({unit})" if unit else str(name)
