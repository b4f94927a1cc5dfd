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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayestensor.checks import (
    CATEGORICAL,
    CONTINUOUS,
    check_column,
    check_finite,
    check_frame,
    check_value_column,
    float_array,
    is_numeric,
    python_scalar,
)

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "Encoded",
    "Mode",
    "category_codes",
    "category_levels",
    "NewEncoded",
    "decode",
    "encode",
    "encode_new",
    "parse_coords",
]


_KINDS = (CONTINUOUS, CATEGORICAL)
_MAX_LISTED = 5


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

    Raises
    ------
    ValueError
        If ``kind`` is unknown, ``values`` is not a non-empty 1-D array, a continuous mode's
        values are not strictly increasing finite ``float64``, or a categorical mode's
        values are not unique.
    """

    name: str
    kind: str
    values: np.ndarray

    def __post_init__(self) -> None:
        """Check the invariants described in the class docstring."""
        if not isinstance(self.name, str):
            raise ValueError(f"Mode name must be a str, got {type(self.name).__name__}")
        if self.kind not in _KINDS:
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
            ``bool``). :meth:`from_dict` inverts it.

        Raises
        ------
        ValueError
            If a category is not a ``str``, ``int``, ``float`` or ``bool`` scalar and so
            cannot be written as JSON.
        """
        if self.kind == CONTINUOUS:
            values: list[Any] = [float(v) for v in self.values]
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
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.values.dtype.str if self.values.dtype != object else "object",
            "values": values,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mode:
        """Rebuild a mode from the output of :meth:`to_dict`.

        Parameters
        ----------
        d : Mapping
            Mapping with keys ``"name"``, ``"kind"`` and ``"values"`` and, optionally,
            ``"dtype"`` (the NumPy dtype of the values; ``"object"`` if absent for a
            categorical mode).

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
        if kind == CONTINUOUS:
            values = np.asarray(raw, dtype=np.float64)
        else:
            dtype = d.get("dtype", "object")
            if dtype == "object":
                values = np.empty(len(raw), dtype=object)
                values[:] = raw
            else:
                values = np.asarray(raw, dtype=np.dtype(dtype))
        return cls(name=d["name"], kind=kind, values=values)


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
        Per mode, an ``(n,)`` ``float64`` array: the raw coordinate for a continuous mode,
        the category code (as a float) for a categorical mode.
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
        numeric (integer or float, not bool) columns are continuous, all others
        categorical. A dict ``{column: "continuous" | "categorical"}`` sets the kinds
        explicitly.
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
        column is missing (or duplicated in ``df``); an explicitly continuous column is not
        numeric; or the value column is missing, non-numeric or also a coordinate.
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
        if kind not in _KINDS:
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
        numeric = is_numeric(df[name])
        kind = kinds.get(name, CONTINUOUS if numeric else CATEGORICAL)
        if kind == CONTINUOUS and not numeric:
            raise ValueError(
                f"column {name!r} is declared continuous but has dtype {df[name].dtype}; "
                "expected a numeric (integer or float) column, or declare it categorical"
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


def category_levels(*columns: Any) -> np.ndarray:
    """Sorted unique categories of one or more columns (their union), as an object array."""
    values = np.concatenate([np.asarray(c, dtype=object).ravel() for c in columns])
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


def _encode_categorical(series: pd.Series, name: str) -> tuple[Mode, np.ndarray]:
    """Sorted unique categories of a column and each row's code."""
    codes, uniques = pd.factorize(series.to_numpy())
    uniques = np.asarray(uniques)
    order = _sort_order(uniques)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return Mode(name, CATEGORICAL, uniques[order]), rank[codes]


def encode(
    df: pd.DataFrame,
    coords: Sequence[str] | Mapping[str, str],
    value: str | None = None,
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
        For any problem reported by :func:`parse_coords`, or if a coordinate or the value
        column has NaN, inf or missing values.
    """
    kinds = parse_coords(df, coords, value)
    for name, kind in kinds.items():
        check_finite(df[name], name, kind)
    if value is not None:
        check_finite(df[value], value, CONTINUOUS)

    modes: list[Mode] = []
    columns: list[np.ndarray] = []
    for name, kind in kinds.items():
        if kind == CONTINUOUS:
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
        (or duplicated in ``df``); a continuous mode's column is not numeric; a column has
        NaN, inf or missing values; or a categorical column has categories not seen in
        training.
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
        if mode.kind == CONTINUOUS and not is_numeric(df[mode.name]):
            raise ValueError(
                f"column {mode.name!r} is continuous in the model but has dtype "
                f"{df[mode.name].dtype}; expected a numeric (integer or float) column"
            )
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
        x = float_array(df[mode.name])
        left = np.searchsorted(mode.values, x, side="right").astype(np.int64) - 1
        clipped = np.maximum(left, 0)
        exact = (left >= 0) & (mode.values[clipped] == x)
        xs.append(x)
        index_columns.append(np.where(exact, left, -1).astype(np.int64))
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
        column per mode (continuous as ``float64``, categorical with the original category
        values) followed by the value column (``float64``) if there is one.
    """
    data: dict[str, np.ndarray] = {
        mode.name: enc.coordinates(k) for k, mode in enumerate(enc.modes)
    }
    if enc.value is not None and enc.y is not None:
        data[enc.value] = enc.y
    return pd.DataFrame(data)
