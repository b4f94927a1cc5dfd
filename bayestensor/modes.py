"""The containers of an encoded tensor: :class:`Mode` (one axis: column, kind, known
coordinates; JSON round trip), :class:`Encoded` (training rows as integer indices) and
:class:`NewEncoded` (new rows located relative to known modes). :mod:`bayestensor.data` builds
them from DataFrames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayestensor.checks import CATEGORICAL, CONTINUOUS, MODE_KINDS, python_scalar

__all__ = ["Encoded", "Mode", "NewEncoded"]


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
            ``bool``; datetime and timedelta categories as their integer ticks).
            :meth:`from_dict` inverts it.

        Raises
        ------
        ValueError
            If a category is not a ``str``, ``int``, ``float`` or ``bool`` scalar and so
            cannot be written as JSON.
        """
        if self.kind == CONTINUOUS:
            values: list[Any] = [float(v) for v in self.values]
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
            elif np.dtype(dtype).kind in "mM":
                values = np.asarray(raw, dtype=np.int64).view(np.dtype(dtype))
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
