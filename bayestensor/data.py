"""Conversion between long DataFrames and per-mode coordinates plus integer indices.

A *long* DataFrame has one row per observed tensor entry: one column per mode (the
entry's coordinate along that mode) and, optionally, a numeric value column. Each mode is
either *continuous* (real-valued coordinates, kept as sorted unique ``float64`` values) or
*categorical* (a finite set of labels, kept as sorted unique categories). :func:`encode`
turns such a frame into an :class:`Encoded` tensor (the modes plus, for every row, its
integer position along each mode), :func:`decode` turns it back, and :func:`encode_new`
locates new rows (for prediction) relative to the modes learned from training data.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayestensor.checks import (
    CATEGORICAL,
    CONTINUOUS,
    MODE_KINDS,
    check_column,
    check_finite,
    check_frame,
    check_value_column,
    float_array,
    is_numeric,
    is_time,
    python_scalar,
)
from bayestensor.log_scale import to_log
from bayestensor.modes import TIME_UNITS, Encoded, Mode, NewEncoded, TimeScale

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "DEFAULT_TIME_UNIT",
    "Encoded",
    "Mode",
    "TimeScale",
    "category_codes",
    "category_levels",
    "NewEncoded",
    "decode",
    "encode",
    "encode_new",
    "parse_coords",
    "row_order",
]


_MAX_LISTED = 5

#: Unit of the float coordinate of a datetime / timedelta mode unless ``time_unit`` says.
DEFAULT_TIME_UNIT = "D"


def parse_coords(
    df: pd.DataFrame,
    coords: Sequence[str] | Mapping[str, str],
    value: str | None = None,
) -> dict[str, str]:
    """Validate the coordinate (and value) columns and decide each mode's kind.

    Parameters
    ----------
    df : pandas.DataFrame
        Long DataFrame with one row per observed entry.
    coords : sequence of str or mapping of str to str
        Coordinate column names, in mode order. A list or tuple gives default kinds:
        numeric (integer or float, not bool), datetime (naive or tz-aware) and timedelta
        columns are continuous, all others categorical. A dict
        ``{column: "continuous" | "categorical"}`` sets the kinds explicitly.
    value : str, optional
        Name of the numeric value column.

    Returns
    -------
    dict of str to str
        ``{column: kind}`` in mode order.

    Raises
    ------
    ValueError
        If ``df`` is not a non-empty DataFrame; ``coords`` is empty, a bare string, not a
        list/tuple/dict, contains a non-string or duplicated name, or an unknown kind; a
        column is missing (or duplicated in ``df``); an explicitly continuous column is
        neither numeric nor a time; or the value column is missing, non-numeric or also a
        coordinate.
    """
    check_frame(df)
    if isinstance(coords, str):
        raise ValueError(
            f"coords must be a list of column names (or a dict of column -> kind), got the "
            f"string {coords!r}; pass [{coords!r}] for a single column"
        )
    if isinstance(coords, Mapping):
        names = list(coords.keys())
        kinds: dict[Any, Any] = dict(coords)
    elif isinstance(coords, list | tuple | pd.Index | np.ndarray):
        names = list(coords)
        kinds = {}
    else:
        raise ValueError(
            "coords must be a list or tuple of column names or a dict of column -> kind, "
            f"got {type(coords).__name__}"
        )
    if not names:
        raise ValueError("coords is empty; give at least one coordinate column")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"coords must contain column names (str), got {name!r}")
        if name in seen:
            raise ValueError(f"column {name!r} appears twice in coords")
        seen.add(name)
    for name, kind in kinds.items():
        if kind not in MODE_KINDS:
            raise ValueError(
                f"coords[{name!r}] has unknown kind {kind!r}; "
                f"expected {CONTINUOUS!r} or {CATEGORICAL!r}"
            )
    for name in names:
        check_column(df, name)
    if value is not None:
        check_value_column(df, value, names)
    result: dict[str, str] = {}
    for name in names:
        numeric = is_numeric(df[name]) or is_time(df[name])
        kind = kinds.get(name, CONTINUOUS if numeric else CATEGORICAL)
        if kind == CONTINUOUS and not numeric:
            raise ValueError(
                f"column {name!r} is declared continuous but has dtype {df[name].dtype}; "
                "expected a numeric (integer or float), datetime64 or timedelta64 column, "
                "or declare it categorical"
            )
        result[name] = kind
    return result


def _sort_order(uniques: np.ndarray) -> np.ndarray:
    """Permutation that sorts unique categories; mixed types are sorted by their str."""
    if uniques.dtype != object:
        return np.argsort(uniques, kind="stable")
    items = list(uniques)
    positions = range(len(items))
    try:
        order = sorted(positions, key=items.__getitem__)
    except TypeError:
        order = sorted(positions, key=lambda i: (str(items[i]), type(items[i]).__name__))
    return np.asarray(order, dtype=np.int64)


def check_labels(values: np.ndarray, name: str | None = None) -> None:
    """Raise if categorical labels mix bool with other numbers.

    pandas treats ``True`` as ``1`` and ``False`` as ``0`` when it hashes labels, so such
    labels would merge into one category (and prediction would then refuse the other one).
    Equal numbers of different types (``1`` and ``1.0``) are one label and are left alone.

    Parameters
    ----------
    values : numpy.ndarray
        The labels of a categorical column (only ``object`` arrays can mix types).
    name : str, optional
        The column's name, for the message.

    Raises
    ------
    ValueError
        If ``values`` holds bools and numbers that are not bools.
    """
    if values.dtype != object:
        return
    types = set(map(type, values.ravel()))
    bools = {t for t in types if issubclass(t, bool | np.bool_)}
    if bools and any(issubclass(t, numbers.Number) for t in types - bools):
        column = "a categorical column" if name is None else f"categorical column {name!r}"
        raise ValueError(
            f"{column} has labels that mix bool with numbers (e.g. True and 1), which pandas "
            "cannot keep apart; convert the column to str first (e.g. df[col].astype(str))"
        )


def category_levels(*columns: Any, name: str | None = None) -> np.ndarray:
    """Sorted unique categories of one or more columns (their union), as an object array.

    A ValueError (naming ``name`` if given) refuses labels that mix bool with numbers (see
    :func:`check_labels`).
    """
    values = np.concatenate([np.asarray(c, dtype=object).ravel() for c in columns])
    check_labels(values, name)
    uniques = np.asarray(pd.unique(values), dtype=object)
    return uniques[_sort_order(uniques)]


def category_codes(values: Any, levels: np.ndarray, name: str) -> np.ndarray:
    """Position of every value among ``levels``; a ValueError names unseen categories."""
    column = np.asarray(values, dtype=object)
    codes = pd.Index(levels).get_indexer(column)
    if np.any(codes < 0):
        unseen = np.asarray(pd.unique(column[codes < 0]))
        raise ValueError(
            f"column {name!r} has categories not seen in training: {_format_unseen(unseen)}"
        )
    return codes.astype(np.int64)


def row_order(index: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The permutation that puts encoded rows in one order whatever order they came in: by
    their coordinate indices (the first mode varying slowest), then by value. The fits apply
    it first, so that what they draw by row position depends on the rows alone."""
    return np.lexsort((np.asarray(y), *np.asarray(index).T[::-1]))


def _encode_categorical(series: pd.Series, name: str) -> tuple[Mode, np.ndarray]:
    """Sorted unique categories of a column and each row's code; a ValueError refuses
    labels that mix bool with numbers (see :func:`check_labels`)."""
    values = series.to_numpy()
    check_labels(values, name)
    codes, uniques = pd.factorize(values)
    uniques = np.asarray(uniques)
    order = _sort_order(uniques)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return Mode(name, CATEGORICAL, uniques[order]), rank[codes]


def check_time_unit(
    time_unit: str | Mapping[str, str] | None, time_columns: Sequence[str]
) -> dict[str, str]:
    """The unit of every time column: ``time_unit`` (one for all, or per column) or days.

    Raises
    ------
    ValueError
        If a unit is not a key of :data:`bayestensor.modes.TIME_UNITS`, a dict names a column
        that is not a continuous time coordinate, or a unit is given but no coordinate is one.
    """
    if time_unit is None:
        return {c: DEFAULT_TIME_UNIT for c in time_columns}
    given = dict(time_unit) if isinstance(time_unit, Mapping) else None
    units = given if given is not None else {c: time_unit for c in time_columns}
    if not time_columns:
        raise ValueError(
            "time_unit is given but no coordinate is a continuous datetime or timedelta "
            "column; leave time_unit out, or pass times (e.g. pd.to_datetime(...))"
        )
    extra = sorted(set(given or {}) - set(time_columns))
    if extra:
        raise ValueError(
            f"time_unit is given but {extra} is not a continuous datetime or timedelta "
            f"coordinate (those are {list(time_columns)})"
        )
    for c, unit in units.items():
        if not isinstance(unit, str) or unit not in TIME_UNITS:
            raise ValueError(
                f"time_unit{'' if given is None else f'[{c!r}]'} must be one of "
                f"{list(TIME_UNITS)}, got {unit!r}"
            )
    return {c: units.get(c, DEFAULT_TIME_UNIT) for c in time_columns}


def _naive_times(series: pd.Series) -> tuple[np.ndarray, str, str | None]:
    """A time column as naive ``datetime64`` (UTC for tz-aware) or ``timedelta64``.

    Returns the array, ``"datetime"`` or ``"timedelta"``, and the zone name (or ``None``).
    """
    dtype = series.dtype
    tz = None
    if isinstance(dtype, pd.DatetimeTZDtype):
        tz = str(dtype.tz)
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = series.to_numpy()
    if np.datetime_data(arr.dtype)[0] not in ("s", "ms", "us", "ns"):
        arr = arr.astype(f"{arr.dtype.kind}8[s]")
    return arr, "datetime" if arr.dtype.kind == "M" else "timedelta", tz


def _time_scale(series: pd.Series, name: str, unit: str) -> tuple[TimeScale, np.ndarray]:
    """The scale of a training time column (origin: its earliest time) and its floats."""
    times, kind, tz = _naive_times(series)
    resolution = np.datetime_data(times.dtype)[0]
    ticks = times.view(np.int64)
    origin = int(ticks.min()) if kind == "datetime" else 0
    # the coarsest unit in which every time is whole: decoded times are rounded to it
    precision = next(
        u
        for u in ("s", "ms", "us", resolution)
        if TIME_UNITS[u] <= TIME_UNITS[resolution]
        or not np.any(ticks % (TIME_UNITS[u] // TIME_UNITS[resolution]))
    )
    try:
        scale = TimeScale(kind, unit, resolution, origin, tz, precision)
    except ValueError as err:
        raise ValueError(
            f"column {name!r}: {err}; convert it with .dt.tz_convert('UTC') (or a named zone "
            "such as 'Europe/Paris')"
        ) from None
    return scale, scale.to_float(times)


def _check_times(series: pd.Series, mode: Mode) -> None:
    """Raise unless a new column of the time mode ``mode`` holds times (datetime64 or
    timedelta64); numbers and strings are not read as times."""
    if not is_time(series):
        raise ValueError(
            f"column {mode.name!r} is a {mode.time.describe()} time in the model but has "
            f"dtype {series.dtype}; pass times (e.g. pd.to_datetime(...))"
        )


def new_time_floats(series: pd.Series, mode: Mode) -> np.ndarray:
    """New times of a time mode as its float coordinates, or a ValueError naming the column.

    The column must be of the training column's kind (datetime or timedelta) and, for a
    datetime, equally tz-aware or naive (any zone: times are compared in UTC).
    """
    scale = mode.time
    _check_times(series, mode)
    times, kind, tz = _naive_times(series)
    if kind != scale.kind or (tz is None) != (scale.tz is None):
        aware = "tz-aware" if scale.tz is not None else "tz-naive"
        raise ValueError(
            f"column {mode.name!r} is a {aware} {scale.describe()} time in the model but has "
            f"dtype {series.dtype}; "
            + (
                "localize it (.dt.tz_localize(...)) or convert it (.dt.tz_convert(...))"
                if kind == scale.kind
                else "pass the same kind of time"
            )
        )
    return scale.to_float(times)


def encode(
    df: pd.DataFrame,
    coords: Sequence[str] | Mapping[str, str],
    value: str | None = None,
    time_unit: str | Mapping[str, str] | None = None,
) -> Encoded:
    """Encode a long DataFrame as per-mode unique coordinates and integer indices.

    Parameters
    ----------
    df : pandas.DataFrame
        Long DataFrame with one row per observed entry. It is not modified.
    coords : sequence of str or mapping of str to str
        Coordinate columns, in mode order; see :func:`parse_coords`.
    value : str, optional
        Name of the numeric value column.
    time_unit : str or dict of str to str, optional
        Unit of the float coordinate of continuous datetime / timedelta columns, one of
        :data:`bayestensor.modes.TIME_UNITS` (``"D"``, ``"h"``, ``"s"`` …), for all such
        columns or per column; default days. A datetime ``t`` becomes ``(t − t_min) / unit``
        (``t_min`` the earliest training time; UTC for tz-aware columns), a timedelta
        ``t / unit``; the mode's :class:`TimeScale` records how.

    Returns
    -------
    Encoded
        Continuous modes hold the sorted unique ``float64`` coordinates, categorical modes
        the sorted unique categories; ``index`` maps each row to its position in them and
        ``y`` holds the values as ``float64`` (``None`` without ``value``).

    Raises
    ------
    ValueError
        If ``df`` is not a DataFrame;
        For any problem reported by :func:`parse_coords`, if a coordinate or the value
        column has NaN, inf or missing values, a categorical column's labels mix bool with
        numbers (pandas would merge ``True`` and ``1``), or for a bad ``time_unit``.
    """
    kinds = parse_coords(df, coords, value)
    for name, kind in kinds.items():
        check_finite(df[name], name, kind)
    if value is not None:
        check_finite(df[value], value, CONTINUOUS, value=True)
    units = check_time_unit(
        time_unit, [c for c, kind in kinds.items() if kind == CONTINUOUS and is_time(df[c])]
    )

    modes: list[Mode] = []
    columns: list[np.ndarray] = []
    for name, kind in kinds.items():
        if name in units:
            scale, x = _time_scale(df[name], name, units[name])
            uniques, codes = np.unique(x, return_inverse=True)
            mode = Mode(name, CONTINUOUS, uniques, time=scale)
        elif kind == CONTINUOUS:
            uniques, codes = np.unique(float_array(df[name]), return_inverse=True)
            mode = Mode(name, CONTINUOUS, uniques)
        else:
            mode, codes = _encode_categorical(df[name], name)
        modes.append(mode)
        columns.append(np.asarray(codes, dtype=np.int64).reshape(-1))
    index = np.stack(columns, axis=1)
    y = None if value is None else float_array(df[value])
    return Encoded(modes=tuple(modes), index=index, y=y, value=value)


def _format_unseen(unseen: np.ndarray) -> str:
    """List up to a few unseen categories for an error message."""
    shown = [python_scalar(v) for v in unseen[:_MAX_LISTED]]
    text = repr(shown)
    if unseen.size > _MAX_LISTED:
        text = f"{text[:-1]}, ...] ({unseen.size} in total)"
    return text


def encode_new(df: pd.DataFrame, modes: Sequence[Mode]) -> NewEncoded:
    """Locate new rows (e.g. for prediction) relative to known modes.

    Parameters
    ----------
    df : pandas.DataFrame
        DataFrame with a column for every mode; other columns (such as the value column)
        are ignored. It is not modified.
    modes : sequence of Mode
        Known modes, usually ``Encoded.modes`` from the training data.

    Returns
    -------
    NewEncoded
        For each mode, the raw coordinate (continuous) or category code (categorical) of
        every row, its exact position among the known coordinates (``-1`` if unseen) and
        its position between known coordinates (see :class:`NewEncoded`).

    Raises
    ------
    ValueError
        If ``df`` is not a non-empty DataFrame; an element of ``modes`` is not a
        :class:`Mode`; ``modes`` is empty or has duplicated names; a column is missing
        (or duplicated in ``df``); a continuous mode's column is not numeric (a time mode's
        not a time of the same kind and tz-awareness); a column has NaN, inf or missing
        values; a log-scale mode's column has a value ≤ 0; or a categorical column has
        categories not seen in training.
    """
    check_frame(df)
    if isinstance(modes, Mode):
        raise ValueError("modes must be a sequence of Mode objects, got a single Mode")
    modes = tuple(modes)
    if not modes:
        raise ValueError("modes is empty; give at least one Mode")
    seen: set[str] = set()
    for mode in modes:
        if not isinstance(mode, Mode):
            raise ValueError(f"modes must contain Mode objects, got {type(mode).__name__}")
        if mode.name in seen:
            raise ValueError(f"column {mode.name!r} appears twice in modes")
        seen.add(mode.name)
    for mode in modes:
        check_column(df, mode.name)
    for mode in modes:
        if mode.kind == CONTINUOUS and mode.time is None and not is_numeric(df[mode.name]):
            raise ValueError(
                f"column {mode.name!r} is continuous in the model but has dtype "
                f"{df[mode.name].dtype}; expected a numeric (integer or float) column"
            )
        if mode.time is not None:  # before check_finite, which reads the column as numbers
            _check_times(df[mode.name], mode)
        check_finite(df[mode.name], mode.name, mode.kind)
    codes_by_mode = {
        mode.name: category_codes(df[mode.name].to_numpy(), mode.values, mode.name)
        for mode in modes
        if mode.kind == CATEGORICAL
    }

    xs: list[np.ndarray] = []
    index_columns: list[np.ndarray] = []
    left_columns: list[np.ndarray] = []
    for mode in modes:
        if mode.kind == CATEGORICAL:
            codes = codes_by_mode[mode.name]
            xs.append(codes.astype(np.float64))
            index_columns.append(codes)
            left_columns.append(codes)
            continue
        if mode.time is not None:
            x = new_time_floats(df[mode.name], mode)
        else:
            x = float_array(df[mode.name])
            x = to_log(x, mode.name) if mode.log else x
        # rows at known coordinates by hash (several times faster than a binary search over
        # many rows); only the others are searched
        index = pd.Index(mode.values).get_indexer(x).astype(np.int64)
        left = index.copy()
        off = index < 0
        if off.any():
            left[off] = np.searchsorted(mode.values, x[off], side="right") - 1
        xs.append(x)
        index_columns.append(index)
        left_columns.append(left)
    return NewEncoded(
        modes=modes,
        x=xs,
        index=np.stack(index_columns, axis=1),
        left=np.stack(left_columns, axis=1),
    )


def decode(enc: Encoded) -> pd.DataFrame:
    """Turn an :class:`Encoded` tensor back into a long DataFrame.

    Parameters
    ----------
    enc : Encoded
        Output of :func:`encode`.

    Returns
    -------
    pandas.DataFrame
        One row per encoded row, in the same order, with a default ``RangeIndex``; one
        column per mode (continuous as ``float64``, times as datetimes or timedeltas of the
        training column's resolution and zone, categorical with the original category
        values) followed by the value column (``float64``) if there is one.
    """
    data: dict[str, Any] = {
        mode.name: mode.coordinates(enc.index[:, k]) for k, mode in enumerate(enc.modes)
    }
    if enc.value is not None and enc.y is not None:
        data[enc.value] = enc.y
    return pd.DataFrame(data)
