"""The containers of an encoded tensor: :class:`Mode` (one axis: column, kind, known
coordinates; JSON round trip), :class:`TimeScale` (how a datetime or timedelta column maps to
the float coordinates of a continuous mode), :class:`Encoded` (training rows as integer indices)
and :class:`NewEncoded` (new rows located relative to known modes). :mod:`bayestensor.data`
builds them from DataFrames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayestensor.checks import CATEGORICAL, CONTINUOUS, MODE_KINDS, python_scalar

__all__ = ["TIME_UNITS", "Encoded", "Mode", "NewEncoded", "TimeScale"]

#: Units a time coordinate can be measured in, with their length in nanoseconds.
TIME_UNITS = {
    "W": 7 * 86_400 * 10**9,
    "D": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "min": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
#: Storage resolutions of NumPy/pandas datetimes (a subset of :data:`TIME_UNITS`).
_RESOLUTIONS = ("s", "ms", "us", "ns")
_TIME_KINDS = ("datetime", "timedelta")


@dataclass(frozen=True)
class TimeScale:
    """How a datetime or timedelta column maps to the float coordinates of a continuous mode.

    A time ``t`` becomes ``x = (t − origin) / unit``; a datetime's ``origin`` is the earliest
    training time, a timedelta's is zero. Times are held as integer ``ticks`` of ``resolution``
    (the training column's storage unit), tz-aware datetimes in UTC with their zone in ``tz``.

    Parameters
    ----------
    kind : {"datetime", "timedelta"}
        What the column held.
    unit : str
        The unit of ``x``, a key of :data:`TIME_UNITS` (``"D"``: days, ``"h"``: hours …).
    resolution : {"s", "ms", "us", "ns"}
        Storage unit of the training column; decoded coordinates come back in it.
    origin : int
        ``t`` at ``x = 0``, in ticks of ``resolution`` since the Unix epoch (UTC); 0 for a
        timedelta.
    tz : str or None
        Time zone of a tz-aware datetime column (``None``: naive, or a timedelta).
    precision : {"s", "ms", "us", "ns"}, optional
        The coarsest unit in which every training time is whole (default ``resolution``);
        decoded times are rounded to it, so that whole-second times stored in nanoseconds come
        back exactly although ``x`` (a float64) cannot hold years of nanoseconds exactly.

    Raises
    ------
    ValueError
        If a field is out of its range, or ``tz`` is not a zone pandas can rebuild.
    """

    kind: str
    unit: str
    resolution: str
    origin: int
    tz: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        """Check the fields (see the class docstring)."""
        if self.precision is None:
            object.__setattr__(self, "precision", self.resolution)
        if self.kind not in _TIME_KINDS:
            raise ValueError(f"time kind must be one of {_TIME_KINDS}, got {self.kind!r}")
        if self.unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {list(TIME_UNITS)}, got {self.unit!r}")
        if self.resolution not in _RESOLUTIONS:
            raise ValueError(
                f"time resolution must be one of {_RESOLUTIONS}, got {self.resolution!r}"
            )
        if self.precision not in _RESOLUTIONS or (
            self.resolution in _RESOLUTIONS
            and TIME_UNITS[self.precision] < TIME_UNITS[self.resolution]
        ):
            raise ValueError(
                f"time precision must be one of {_RESOLUTIONS}, no finer than the resolution "
                f"{self.resolution!r}, got {self.precision!r}"
            )
        if isinstance(self.origin, bool) or not isinstance(self.origin, int | np.integer):
            raise ValueError(f"time origin must be an int (ticks), got {self.origin!r}")
        if self.tz is not None:
            if self.kind != "datetime" or not isinstance(self.tz, str):
                raise ValueError(f"tz must be None or a zone name of a datetime, got {self.tz!r}")
            try:
                pd.DatetimeTZDtype("ns", self.tz)
            except (TypeError, ValueError, KeyError) as err:
                raise ValueError(f"unknown time zone {self.tz!r}: {err}") from None

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype of the (UTC, naive) times: ``datetime64[res]`` or ``timedelta64[res]``."""
        return np.dtype(f"{'M8' if self.kind == 'datetime' else 'm8'}[{self.resolution}]")

    def describe(self) -> str:
        """The column's type as a user would write it, e.g. ``datetime64[s, UTC]``."""
        base = "datetime64" if self.kind == "datetime" else "timedelta64"
        return f"{base}[{self.resolution}{'' if self.tz is None else ', ' + self.tz}]"

    def to_float(self, times: np.ndarray) -> np.ndarray:
        """``(times − origin) / unit`` as float64, for naive UTC ``datetime64`` / ``timedelta64``.

        The difference is exact in integer ticks; one correctly rounded division follows.
        """
        origin = np.array(self.origin, dtype=np.int64).view(self.dtype)
        return np.asarray((times - origin) / _unit_delta(self.unit), dtype=np.float64)

    def to_time(self, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_float`, rounded to ``precision``: naive UTC times."""
        x = np.asarray(x, dtype=np.float64)
        unit, step = TIME_UNITS[self.unit], TIME_UNITS[self.precision]
        steps = np.rint(x * (unit // step)) if unit >= step else np.rint(x / (step // unit))
        ticks = steps.astype(np.int64) * (step // TIME_UNITS[self.resolution])
        return (ticks + self.origin).view(self.dtype)

    def to_pandas(self, x: np.ndarray) -> pd.Series | pd.Index:
        """The times at ``x`` as a pandas Index in the column's own type (zone included)."""
        times = self.to_time(x)
        if self.kind == "timedelta":
            return pd.TimedeltaIndex(times)
        index = pd.DatetimeIndex(times)
        return index if self.tz is None else index.tz_localize("UTC").tz_convert(self.tz)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (:meth:`from_dict` inverts it)."""
        return {
            "kind": self.kind,
            "unit": self.unit,
            "resolution": self.resolution,
            "origin": int(self.origin),
            "tz": self.tz,
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimeScale:
        """Rebuild from :meth:`to_dict`; a ValueError names a missing or unknown field."""
        fields = ("kind", "unit", "resolution", "origin", "tz", "precision")
        if not isinstance(d, Mapping) or set(d) != set(fields):
            raise ValueError(f"time scale must have exactly the fields {fields}, got {d!r}")
        return cls(**{f: d[f] for f in fields})


def _unit_delta(unit: str) -> np.timedelta64:
    """One ``unit`` as a NumPy timedelta (whole seconds where it is one, so that dividing
    a coarse-resolution time by it does not first convert the time to nanoseconds)."""
    ns = TIME_UNITS[unit]
    return np.timedelta64(ns // 10**9, "s") if ns >= 10**9 else np.timedelta64(ns, "ns")


@dataclass(frozen=True)
class Mode:
    """One mode (axis) of a tensor: its column name, kind and known coordinates.

    Parameters
    ----------
    name : str
        Name of the DataFrame column holding this mode's coordinates.
    kind : str
        :data:`CONTINUOUS` or :data:`CATEGORICAL`.
    values : numpy.ndarray
        One-dimensional, non-empty array of the known coordinates. For a continuous mode,
        strictly increasing finite ``float64`` values; for a categorical mode, the unique
        categories in sorted order (object or the column's original dtype).
    time : TimeScale, optional
        For a continuous mode of a datetime or timedelta column: how its times map to
        ``values`` (which then hold ``(t − origin) / unit``). ``None`` for a numeric column.
    log : bool, optional
        For a continuous mode of a positive numeric column: ``values`` hold the natural
        logarithms of the coordinates (the latent functions are GPs in ``log x``; see
        :mod:`bayestensor.log_scale`). Default False. Build one with :meth:`on_log_scale`.
    raw : numpy.ndarray, optional
        With ``log``: the coordinates themselves (``values == log(raw)``), reported by
        :meth:`coordinates` as they were given (``exp(log x)`` can be off by a rounding).

    Raises
    ------
    ValueError
        If ``kind`` is unknown, ``values`` is not a non-empty 1-D array, a continuous mode's
        values are not strictly increasing finite ``float64``, a categorical mode's
        values are not unique, a categorical mode has a ``time``, or ``log`` is not a bool,
        is set on a categorical or time mode, or does not come with ``raw`` whose logs are
        ``values`` (and ``raw`` without ``log``).
    """

    name: str
    kind: str
    values: np.ndarray
    time: TimeScale | None = None
    log: bool = False
    raw: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Check the invariants described in the class docstring."""
        if not isinstance(self.name, str):
            raise ValueError(f"Mode name must be a str, got {type(self.name).__name__}")
        if self.kind not in MODE_KINDS:
            raise ValueError(
                f"mode {self.name!r} has unknown kind {self.kind!r}; "
                f"expected {CONTINUOUS!r} or {CATEGORICAL!r}"
            )
        if not isinstance(self.values, np.ndarray) or self.values.ndim != 1:
            raise ValueError(f"mode {self.name!r}: values must be a 1-D numpy array")
        if self.values.size == 0:
            raise ValueError(f"mode {self.name!r}: values must not be empty")
        if self.kind == CONTINUOUS:
            if self.values.dtype != np.float64:
                raise ValueError(
                    f"mode {self.name!r}: continuous values must have dtype float64, "
                    f"got {self.values.dtype}"
                )
            if not np.all(np.isfinite(self.values)):
                raise ValueError(f"mode {self.name!r}: continuous values must be finite")
            if np.any(np.diff(self.values) <= 0):
                raise ValueError(
                    f"mode {self.name!r}: continuous values must be strictly increasing"
                )
        elif len(pd.unique(self.values)) != self.values.size:
            raise ValueError(f"mode {self.name!r}: categorical values must be unique")
        if self.time is not None and (
            self.kind != CONTINUOUS or not isinstance(self.time, TimeScale)
        ):
            raise ValueError(f"mode {self.name!r}: only a continuous mode has a TimeScale")
        if not isinstance(self.log, bool):
            raise ValueError(f"mode {self.name!r}: log must be a bool, got {self.log!r}")
        if self.log and (self.kind != CONTINUOUS or self.time is not None):
            raise ValueError(
                f"mode {self.name!r}: only a continuous mode of a numeric column can be on the "
                "log scale"
            )
        if self.log != (self.raw is not None) or (
            self.log
            and not (
                isinstance(self.raw, np.ndarray)
                and self.raw.shape == self.values.shape
                and np.array_equal(np.log(self.raw), self.values)
            )
        ):
            raise ValueError(
                f"mode {self.name!r}: a log-scale mode needs raw coordinates whose logs are its "
                "values (and only a log-scale mode has them); build it with Mode.on_log_scale"
            )

    @classmethod
    def on_log_scale(cls, name: str, raw: np.ndarray) -> Mode:
        """A continuous mode on the log scale of the sorted distinct positive coordinates
        ``raw`` (its values are ``log(raw)``)."""
        raw = np.asarray(raw, dtype=np.float64)
        return cls(name, CONTINUOUS, np.log(raw), log=True, raw=raw)

    def coordinates(self, positions: np.ndarray | None = None) -> np.ndarray | pd.Index:
        """The known coordinates (at ``positions``) in the column's own type.

        Floats or categories as stored; a time mode's as datetimes (zone included) or
        timedeltas, via :meth:`TimeScale.to_pandas`; a log-scale mode's as given (``raw``).
        """
        if self.log:
            return self.raw if positions is None else self.raw[positions]
        values = self.values if positions is None else self.values[positions]
        return values if self.time is None else self.time.to_pandas(values)

    @property
    def size(self) -> int:
        """Number of known coordinates (categories) of the mode."""
        return int(self.values.size)

    def __eq__(self, other: object) -> bool:
        """Same name, kind, value dtype and values (element-wise)."""
        if not isinstance(other, Mode):
            return NotImplemented
        return (
            self.name == other.name
            and self.kind == other.kind
            and self.values.dtype == other.values.dtype
            and self.values.shape == other.values.shape
            and bool(np.all(self.values == other.values))
            and self.time == other.time
            and self.log == other.log
        )

    def __hash__(self) -> int:
        """Hash of the name, kind and number of values (consistent with ``==``)."""
        return hash((self.name, self.kind, self.values.size))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description of the mode.

        Returns
        -------
        dict
            ``{"name": str, "kind": str, "dtype": str, "values": list}``; continuous values
            are Python floats, categories Python scalars (``str``, ``int``, ``float`` or
            ``bool``; datetime and timedelta categories as their integer ticks). A time mode
            adds ``"time"``: :meth:`TimeScale.to_dict`; a log-scale mode ``"log": True``, its
            ``"values"`` the coordinates as given (``raw``; the logs are taken again on load).
            :meth:`from_dict` inverts it.

        Raises
        ------
        ValueError
            If a category is not a ``str``, ``int``, ``float`` or ``bool`` scalar and so
            cannot be written as JSON.
        """
        if self.kind == CONTINUOUS:
            values: list[Any] = [float(v) for v in (self.raw if self.log else self.values)]
        elif self.values.dtype.kind in "mM":
            # datetime / timedelta categories: their integer ticks, restored with the dtype
            values = self.values.view(np.int64).tolist()
        else:
            values = [python_scalar(v) for v in self.values]
            bad = [v for v in values if not isinstance(v, str | int | float)]
            if self.values.dtype.kind not in "biufUO" and not bad:
                bad = list(self.values[:1])
            if bad:
                raise ValueError(
                    f"mode {self.name!r} has categories of type {type(bad[0]).__name__} "
                    f"(e.g. {bad[0]!r}); only str, int, float and bool categories can be "
                    "saved as JSON"
                )
        out = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.values.dtype.str if self.values.dtype != object else "object",
            "values": values,
        }
        if self.time is not None:
            out["time"] = self.time.to_dict()
        if self.log:
            out["log"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mode:
        """Rebuild a mode from the output of :meth:`to_dict`.

        Parameters
        ----------
        d : Mapping
            Mapping with keys ``"name"``, ``"kind"`` and ``"values"`` and, optionally,
            ``"dtype"`` (the NumPy dtype of the values; ``"object"`` if absent for a
            categorical mode), ``"time"`` (a :class:`TimeScale` as a dict) and ``"log"`` (a
            bool; False if absent, as in files written before it existed).

        Returns
        -------
        Mode
            The reconstructed mode.

        Raises
        ------
        ValueError
            If a key is missing or the contents violate the :class:`Mode` invariants.
        """
        missing = [key for key in ("name", "kind", "values") if key not in d]
        if missing:
            raise ValueError(f"Mode.from_dict: missing keys {missing}")
        kind = d["kind"]
        raw = list(d["values"])
        time = None if d.get("time") is None else TimeScale.from_dict(d["time"])
        if kind == CONTINUOUS:
            values = np.asarray(raw, dtype=np.float64)
        else:
            dtype = d.get("dtype", "object")
            if dtype == "object":
                values = np.empty(len(raw), dtype=object)
                values[:] = raw
            elif np.dtype(dtype).kind in "mM":
                values = np.asarray(raw, dtype=np.int64).view(np.dtype(dtype))
            else:
                values = np.asarray(raw, dtype=np.dtype(dtype))
        log = d.get("log", False)
        if log is True and kind == CONTINUOUS:  # (the saved values are the coordinates)
            with np.errstate(divide="ignore", invalid="ignore"):  # (≤ 0: refused below)
                values, raw = np.log(values), values
            return cls(d["name"], kind, values, time=time, log=True, raw=raw)
        return cls(name=d["name"], kind=kind, values=values, time=time, log=log)


@dataclass(frozen=True, eq=False)
class Encoded:
    """A long DataFrame encoded as per-mode coordinates and integer indices.

    Parameters
    ----------
    modes : tuple of Mode
        The modes, in the order of the ``coords`` argument of :func:`encode`.
    index : numpy.ndarray
        ``(n, K)`` ``int64`` array; ``index[i, k]`` is row ``i``'s position in
        ``modes[k].values``.
    y : numpy.ndarray or None
        ``(n,)`` ``float64`` observed values, or ``None`` without a value column.
    value : str or None
        Name of the value column, or ``None``.

    Raises
    ------
    ValueError
        If the array shapes do not match the modes.
    """

    modes: tuple[Mode, ...]
    index: np.ndarray
    y: np.ndarray | None
    value: str | None

    def __post_init__(self) -> None:
        """Check that the shapes of ``index`` and ``y`` agree with ``modes``."""
        if self.index.ndim != 2 or self.index.shape[1] != len(self.modes):
            raise ValueError(
                f"index must have shape (n, {len(self.modes)}), got {self.index.shape}"
            )
        if self.y is not None and self.y.shape != (self.index.shape[0],):
            raise ValueError(f"y must have shape ({self.index.shape[0]},), got {self.y.shape}")

    @property
    def n(self) -> int:
        """Number of rows (observed entries)."""
        return int(self.index.shape[0])

    @property
    def K(self) -> int:
        """Number of modes."""
        return len(self.modes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Size of the tensor along each mode."""
        return tuple(mode.size for mode in self.modes)

    def coordinates(self, k: int | str) -> np.ndarray:
        """Return every row's coordinate along one mode.

        Parameters
        ----------
        k : int or str
            Position of the mode, or its name.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` array ``modes[k].values[index[:, k]]``.

        Raises
        ------
        ValueError
            If ``k`` is a name that is not one of the modes.
        """
        if isinstance(k, str):
            names = [mode.name for mode in self.modes]
            if k not in names:
                raise ValueError(f"no mode named {k!r}; modes are {names}")
            k = names.index(k)
        return self.modes[k].values[self.index[:, k]]


@dataclass(frozen=True, eq=False)
class NewEncoded:
    """New rows (e.g. for prediction) located relative to known modes.

    Parameters
    ----------
    modes : tuple of Mode
        The known modes, as passed to :func:`encode_new`.
    x : list of numpy.ndarray
        Per mode, an ``(n,)`` ``float64`` array: the coordinate as a continuous mode holds it
        (times as floats, ``log x`` on a log-scale mode), the category code (as a float) for
        a categorical mode.
    index : numpy.ndarray
        ``(n, K)`` ``int64``. Categorical: the category code. Continuous: the position of
        the known coordinate equal to ``x``, or ``-1`` if ``x`` is not a known coordinate.
    left : numpy.ndarray
        ``(n, K)`` ``int64``. Continuous: ``searchsorted(values, x, side="right") - 1``,
        the position of the last known coordinate ``<= x`` (``-1`` left of the range,
        ``size - 1`` at or right of the last coordinate). Categorical: same as ``index``.
    """

    modes: tuple[Mode, ...]
    x: list[np.ndarray]
    index: np.ndarray
    left: np.ndarray

    @property
    def n(self) -> int:
        """Number of new rows."""
        return int(self.index.shape[0])
