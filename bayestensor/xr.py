"""xarray in and out: gridded data to the long-format path of :func:`bayestensor.fit`, and
predictions on a grid back as an :class:`xarray.Dataset`.

xarray is optional (``pip install "bayestensor[xarray]"``); it is imported on first use, and a
missing xarray is an :class:`ImportError` that says how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "FromXarray",
    "XarrayParts",
    "factors_dataset",
    "from_xarray",
    "grid_dataset",
    "is_chunked",
    "is_xarray",
    "require_xarray",
    "xarray_parts",
]

#: Grid cells predicted per chunk by :func:`grid_dataset` (a power of two: the predictions
#: of every full chunk share one compiled function).
GRID_CHUNK = 1 << 15


def require_xarray():
    """The xarray module, or an ImportError saying how to install it."""
    try:
        import xarray
    except ImportError:
        raise ImportError(
            "this needs xarray, an optional dependency of bayestensor: "
            "pip install 'bayestensor[xarray]' (or pip install xarray)"
        ) from None
    return xarray


def is_xarray(obj: Any) -> bool:
    """Whether ``obj`` is an xarray DataArray or Dataset (without importing xarray)."""
    return type(obj).__module__.startswith("xarray.") and type(obj).__name__ in (
        "DataArray",
        "Dataset",
    )


class FromXarray(NamedTuple):
    """What :func:`from_xarray` makes of a DataArray or Dataset."""

    df: pd.DataFrame
    """One row per non-missing cell: a column per dimension and the value column."""
    coords: list[str] | dict[str, str]
    """The coordinate columns (the ``coords`` given, or every dimension)."""
    value: str
    """The value column."""
    n_missing: int
    """Cells that were NaN (dropped)."""


def select(
    obj: Any,
    coords: Sequence[str] | Mapping[str, str] | None,
    value: str | None,
) -> tuple[Any, Sequence[str] | Mapping[str, str], str, list[str]]:
    """Check the arguments of :func:`from_xarray` without reading any cell.

    Returns
    -------
    tuple
        The DataArray to model transposed to mode order (still lazy when chunked), ``coords``
        (every dimension by default), the value name and the dimensions in mode order.
    """
    xr = require_xarray()
    if isinstance(obj, xr.Dataset):
        names = [str(v) for v in obj.data_vars]
        if value is None:
            if len(names) != 1:
                raise ValueError(
                    f"value must name the data variable to model; the Dataset has {names}"
                )
            value = names[0]
        if not isinstance(value, str) or value not in obj.data_vars:
            raise ValueError(f"value {value!r} is not a data variable of the Dataset: {names}")
        da = obj[value]
    else:
        da = obj
        if value is None:
            value = "value" if da.name is None else str(da.name)
        if not isinstance(value, str):
            raise ValueError(f"value must be a name (str), got {value!r}")
    dims = [str(d) for d in da.dims]
    if not dims:
        raise ValueError(
            f"{value!r} is a 0-d array (a single value with no dimension); the array needs at "
            "least one dimension, one per coordinate of the tensor"
        )
    if coords is None:
        coords = list(dims)
    if isinstance(coords, str):
        raise ValueError(f"coords must be a list of dimension names, got the string {coords!r}")
    order = list(coords.keys()) if isinstance(coords, Mapping) else list(coords)
    if sorted(map(str, order)) != sorted(dims) or len(set(order)) != len(order):
        raise ValueError(
            f"coords must list every dimension of the array once (in any order), got {order}; "
            f"its dimensions are {dims}"
        )
    if value in dims:
        raise ValueError(f"value {value!r} is also a dimension; pass another value name")
    if not (np.issubdtype(da.dtype, np.number) and not np.issubdtype(da.dtype, np.bool_)):
        raise ValueError(f"the values of {value!r} have dtype {da.dtype}; expected numbers")
    return da.transpose(*order), coords, value, order


def _rows(
    values: np.ndarray, indexes: Sequence[pd.Index], order: Sequence[str], value: str
) -> tuple[pd.DataFrame, int]:
    """The non-NaN cells of ``values`` (axes in ``order``, labelled by ``indexes``) as rows in
    C order, and the number of NaN cells."""
    observed = ~np.isnan(values)
    where = np.nonzero(observed)
    columns: dict[str, Any] = {
        dim: index[where[axis]]
        for axis, (dim, index) in enumerate(zip(order, indexes, strict=True))
    }
    columns[value] = values[observed]
    return pd.DataFrame(columns), int(values.size - len(where[0]))


def _indexes(da: Any, order: Sequence[str]) -> list[pd.Index]:
    """Each dimension's labels (its index, or positions when it has no coordinate)."""
    return [da.indexes[d] if d in da.indexes else pd.RangeIndex(da.sizes[d]) for d in order]


def from_xarray(
    obj: Any,
    coords: Sequence[str] | Mapping[str, str] | None,
    value: str | None,
) -> FromXarray:
    """A DataArray or Dataset as the long DataFrame :func:`bayestensor.fit` reads.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Gridded data; NaN cells are the missing entries.
    coords : list of str or dict, optional
        The dimensions in mode order (all of them), optionally with their kinds as in
        :func:`bayestensor.fit`; default: every dimension in the array's order.
    value : str, optional
        DataArray: the value column's name (default: the array's name, else ``"value"``).
        Dataset: the data variable to model (may be omitted when there is only one).

    Returns
    -------
    FromXarray
        The rows of the non-missing cells in C order of ``coords``, and how many were NaN.

    Raises
    ------
    ValueError
        If ``value`` names no data variable of a Dataset (or is missing with several), the
        array has no dimension (0-d), ``coords`` is not exactly the dimensions, a dimension
        is named like the value, every cell is NaN, or the values are not numeric.
    """
    da, coords, value, order = select(obj, coords, value)
    values = np.asarray(da.values, dtype=np.float64)
    df, n_missing = _rows(values, _indexes(da, order), order, value)
    if len(df) == 0:
        raise ValueError(f"every cell of {value!r} is NaN; nothing to fit")
    return FromXarray(df, coords, value, n_missing)


def is_chunked(obj: Any) -> bool:
    """Whether an xarray object holds chunked (e.g. dask) data: a DataArray's data, or any data
    variable of a Dataset (``.chunks`` is None for NumPy-backed data)."""
    arrays = obj.data_vars.values() if hasattr(obj, "data_vars") else [obj]
    return any(getattr(a, "chunks", None) is not None for a in arrays)


class XarrayBlocks:
    """A group of consecutive chunks (blocks) of a chunked DataArray: one part of an
    out-of-core fit (:mod:`bayestensor.models.funbat.blocked`).

    :meth:`read` computes the blocks one at a time (``np.asarray`` of one block: for a dask
    array, one ``compute`` of that block's tasks) and returns their non-NaN cells as the rows
    :func:`from_xarray` makes of them; the NaN cells are counted in ``missing`` (shared by all
    parts of one array, keyed by block, so reading a part twice counts it once).
    """

    def __init__(self, da, order, value, blocks, indexes, missing: dict):
        self.da, self.order, self.value = da, order, value
        self.blocks, self.indexes, self.missing = blocks, indexes, missing

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of this part's non-NaN cells, block after block (C order within each)."""
        frames = []
        for key, slices in self.blocks:
            block = self.da.isel(dict(zip(self.order, slices, strict=True)))
            values = np.asarray(block.values, dtype=np.float64)
            labels = [ix[s] for ix, s in zip(self.indexes, slices, strict=True)]
            df, self.missing[key] = _rows(values, labels, self.order, self.value)
            frames.append(df)
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class XarrayParts(NamedTuple):
    """A chunked DataArray / Dataset as parts of an out-of-core fit (:func:`xarray_parts`)."""

    parts: list[XarrayBlocks]
    """Groups of consecutive blocks, each read one block at a time."""
    coords: Sequence[str] | Mapping[str, str]
    """The coordinate columns (the ``coords`` given, or every dimension)."""
    value: str
    """The value column."""
    missing: dict
    """NaN cells per block, filled as the blocks are read."""

    @property
    def n_missing(self) -> int:
        """The NaN cells of the blocks read so far (all of them after a fit)."""
        return int(sum(self.missing.values()))


#: Cells per part of a chunked array: consecutive blocks are grouped up to this many (a larger
#: block is a part of its own).
PART_CELLS = 1 << 20


def xarray_parts(
    obj: Any,
    coords: Sequence[str] | Mapping[str, str] | None,
    value: str | None,
    part_cells: int = PART_CELLS,
) -> XarrayParts:
    """A chunked DataArray or Dataset as parts read block by block, without reading any cell.

    The arguments are those of :func:`from_xarray` (and checked alike). The blocks are the
    array's chunks (in the C order of the block grid along ``coords``); consecutive blocks are
    grouped into parts of at most ``part_cells`` cells (one block at least). The rows of all
    parts are those of :func:`from_xarray` (the same columns, NaN cells left out, times as
    times), in another order. A NumPy-backed array is one block.
    """
    da, coords, value, order = select(obj, coords, value)
    chunks = da.chunks if da.chunks is not None else tuple((n,) for n in da.shape)
    edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    parts, group, cells, missing = [], [], 0, {}
    indexes = _indexes(da, order)

    def close():
        if group:
            parts.append(XarrayBlocks(da, order, value, list(group), indexes, missing))
            group.clear()

    for key in np.ndindex(*(len(c) for c in chunks)):
        slices = tuple(slice(e[i], e[i + 1]) for e, i in zip(edges, key, strict=True))
        size = math.prod(s.stop - s.start for s in slices)
        if group and cells + size > part_cells:
            close()
            cells = 0
        group.append((key, slices))
        cells += size
    close()
    return XarrayParts(parts, coords, value, missing)


def grid_axes(coords: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The axes of a prediction grid: per mode (the keys of ``defaults``, in order) the
    coordinates ``coords`` gives, else its default ones; a pandas Index or Series stays an Index
    (times and zones kept), anything else becomes a NumPy array.

    Raises
    ------
    ValueError
        If ``coords`` is not a dict, names a mode that is not one, or gives coordinates that
        are not a non-empty 1-D array or hold missing values (NaN, NaT, None, inf).
    """
    from bayestensor.checks import float_array, is_numeric

    coords = {} if coords is None else coords
    if not isinstance(coords, Mapping):
        raise ValueError(f"coords must be a dict of mode -> 1-D coordinates, got {coords!r}")
    names = list(defaults)
    unknown = [c for c in coords if c not in names]
    if unknown:
        raise ValueError(f"coords names {unknown}, which are not modes; modes are {names}")
    axes = {}
    for name in names:
        values = coords.get(name, defaults[name])
        if isinstance(values, pd.Index | pd.Series):
            values = pd.Index(values)
        else:
            values = np.asarray(values)
        if values.ndim != 1 or len(values) == 0:
            raise ValueError(f"coords[{name!r}] must be a non-empty 1-D array")
        column = pd.Series(values)
        missing = column.isna().to_numpy()
        if is_numeric(column):
            missing = missing | ~np.isfinite(float_array(column))
        if missing.any():
            raise ValueError(
                f"coords[{name!r}] has {int(missing.sum())} NaN, NaT, None or inf values; "
                "every grid coordinate must be a value"
            )
        if column.duplicated().any():
            raise ValueError(
                f"coords[{name!r}] repeats {column[column.duplicated()].iloc[0]!r}; a grid's "
                "coordinates along a mode must be distinct"
            )
        axes[name] = values
    return axes


def grid_dataset(
    axes: Mapping[str, Any],
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    columns: Sequence[str],
    chunk: int = GRID_CHUNK,
    attrs: Mapping[str, Any] | None = None,
):
    """``predict`` on every cell of the grid spanned by ``axes``, as an xarray Dataset.

    Parameters
    ----------
    axes : dict of str to 1-D array-like
        The coordinates of each dimension, in order (a pandas Index keeps times and zones).
    predict : callable
        Maps a DataFrame of grid cells (one column per dimension) to a prediction frame.
    columns : sequence of str
        Columns of the prediction to return (each becomes a float64 data variable).
    chunk : int
        Cells per call of ``predict``: memory is bounded by the chunk, not the grid, apart
        from the output arrays themselves.
    attrs : dict, optional
        Attributes of the Dataset.

    Returns
    -------
    xarray.Dataset
        One float64 variable per column, on dimensions ``tuple(axes)``.
    """
    xr = require_xarray()
    index = {dim: pd.Index(values) for dim, values in axes.items()}
    shape = tuple(len(ix) for ix in index.values())
    size = math.prod(shape)
    out = {c: np.empty(size, dtype=np.float64) for c in columns}
    for start in range(0, size, chunk):
        flat = np.arange(start, min(start + chunk, size))
        positions = np.unravel_index(flat, shape)
        cells = pd.DataFrame(
            {dim: ix[pos] for (dim, ix), pos in zip(index.items(), positions, strict=True)}
        )
        pred = predict(cells)
        for c in columns:
            out[c][flat] = pred[c].to_numpy(dtype=np.float64)
    dims = tuple(index)
    return xr.Dataset(
        {c: (dims, out[c].reshape(shape)) for c in columns},
        coords={dim: ix for dim, ix in index.items()},
        attrs=dict(attrs or {}),
    )


def factors_dataset(frame: pd.DataFrame):
    """FunBaT's long factor table (:meth:`FitResult.factors`) as an :class:`xarray.Dataset`.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``mode``, ``coordinate``, ``component``, ``mean``, ``sd``.

    Returns
    -------
    xarray.Dataset
        Per mode ``m``, variables ``m_mean`` and ``m_sd`` on dims ``(m, "m_component")``, the
        mode's coordinates (times for a datetime mode) along ``m``. Modes may have different
        ranks, hence one component dimension each.
    """
    xr = require_xarray()
    variables = {}
    for mode, part in frame.groupby("mode", sort=False):
        # (the long table's column is of object dtype where modes of several kinds meet)
        coords = pd.unique(part["coordinate"].infer_objects())
        R = int(part["component"].max()) + 1
        dims = (str(mode), f"{mode}_component")
        shape = (len(coords), R)
        coordinates = {dims[0]: coords, dims[1]: np.arange(R)}
        for stat in ("mean", "sd"):
            values = part[stat].to_numpy().reshape(shape)
            variables[f"{mode}_{stat}"] = xr.DataArray(values, dims=dims, coords=coordinates)
    return xr.Dataset(variables)
