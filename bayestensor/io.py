"""The one save/load format of every result: a zip of a JSON header and a ``.npz`` of arrays.

``header.json`` holds ``{"format": "bayestensor", "version": 1, "kind": ..., ...}`` — the kind
names the result class (``"funbat"``, ``"poisson-tucker"``, ``"pde"``) — and ``arrays.npz``
the arrays, each under a name (pytrees by the path of their fields, e.g. ``state/core/mean``,
never by position, so that adding a field cannot silently shift the others). Nothing is
pickled: the arrays are read with ``allow_pickle=False`` and the header is plain JSON.

Loading is checked before anything is built: :func:`read` reads only the header (at most
:data:`MAX_HEADER_BYTES`) and the ``.npy`` headers of the arrays (declared at most
:data:`MAX_LOAD_BYTES` in all); each result's ``_from_record`` type-checks its header fields
(:func:`field`, :func:`record`) and compares every array's declared shape and dtype with the
layout its saved configuration implies (:func:`check_arrays`) before reading the data.
"""

from __future__ import annotations

import io
import json
import math
import types
import typing
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "BASE_FIELDS",
    "FORMAT",
    "MAX_HEADER_BYTES",
    "MAX_LOAD_BYTES",
    "VERSION",
    "Arrays",
    "Expect",
    "arrays_to_tree",
    "check_arrays",
    "check_fields",
    "declared_shape",
    "field",
    "read",
    "record",
    "tree_from_arrays",
    "tree_layout",
    "tree_to_arrays",
    "write",
]

FORMAT = "bayestensor"
#: Fields of every header, whatever the kind.
BASE_FIELDS = ("format", "version", "kind")
#: Version of the container and of every kind's header; checked on load.
VERSION = 1

#: Most bytes the arrays of one file may declare (their ``.npy`` headers, summed) before
#: :func:`read` refuses it; raise it (``bayestensor.io.MAX_LOAD_BYTES = ...``) for larger models.
MAX_LOAD_BYTES = 4 * 2**30
#: Most bytes of ``header.json``.
MAX_HEADER_BYTES = 16 * 2**20
#: Room for the zip and ``.npy`` headers of ``arrays.npz`` on top of the array data.
_NPZ_SLACK = 2**20


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, setting: str) -> bytes:
    """The member ``name`` of ``zf``, refusing more than ``limit`` bytes (whatever it declares)."""
    with zf.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(
            f"{name} is larger than {limit} bytes; if the file is trusted, raise "
            f"bayestensor.io.{setting}"
        )
    return data


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(int(n) for n in shape), np.dtype(dtype)


class _Declared(Mapping):
    """A mapping of arrays known by their declared ``specs`` (name → (shape, dtype)): listing
    and membership never read an array (``Mapping``'s default ``in`` would)."""

    specs: dict[str, tuple[tuple[int, ...], np.dtype]]

    def __contains__(self, name: object) -> bool:  # Mapping's would read the array
        return name in self.specs

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


class Arrays(_Declared):
    """The arrays of a saved file, by name: shapes and dtypes first, the data on access.

    Parsing reads only the ``.npy`` headers inside ``arrays.npz``; an array is read (with
    ``allow_pickle=False``) when it is looked up, so a loader can compare :attr:`specs` with the
    layout its configuration implies before any allocation.

    Attributes
    ----------
    specs : dict of str to (tuple of int, numpy.dtype)
        Declared shape and dtype of every array.

    Raises
    ------
    ValueError
        If ``arrays.npz`` is not a zip of ``.npy`` files, an array has an object dtype, or the
        arrays declare more than :data:`MAX_LOAD_BYTES` in all.
    """

    def __init__(self, npz: bytes):
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(npz))
            members = self._zip.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError(f"arrays.npz is not a zip of arrays ({err})") from None
        self.specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        total = 0
        for info in members:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"arrays.npz holds {info.filename!r}, not a .npy array")
            name = info.filename[:-4]
            try:
                with self._zip.open(info) as f:
                    shape, dtype = _npy_header(f)
            except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile) as e:
                raise ValueError(f"saved array {name!r} has a bad .npy header ({e})") from None
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise ValueError(
                    f"saved array {name!r} has dtype {dtype}; only plain numeric arrays are read"
                )
            if any(n < 0 for n in shape):
                raise ValueError(f"saved array {name!r} declares a negative shape {shape}")
            self.specs[name] = (shape, dtype)
            total += math.prod(shape) * dtype.itemsize
        if total > MAX_LOAD_BYTES:
            raise ValueError(
                f"the arrays declare {total} bytes, more than bayestensor.io.MAX_LOAD_BYTES = "
                f"{MAX_LOAD_BYTES}; if the file is trusted, raise that limit and load again"
            )

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.specs:
            raise KeyError(name)
        try:
            with self._zip.open(name + ".npy") as f:
                a = np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"saved array {name!r} cannot be read ({err})") from None
        if (a.shape, a.dtype) != self.specs[name]:
            raise ValueError(f"saved array {name!r} does not match its declared shape and dtype")
        return a

    def shape(self, name: str) -> tuple[int, ...]:
        """Declared shape of ``name`` (read from its ``.npy`` header)."""
        return self.specs[name][0]

    def dtype(self, name: str) -> np.dtype:
        """Declared dtype of ``name``."""
        return self.specs[name][1]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a model header")


def write(path: str | Path, kind: str, header: Mapping, arrays: Mapping[str, Any]) -> Path:
    """Write ``header`` (JSON-safe) and named ``arrays`` to one zip file at ``path``.

    Raises
    ------
    ValueError
        If the folder of ``path`` does not exist, ``path`` is a folder, or the header cannot be
        written as JSON — before anything is written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot save to {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    if path.is_dir():
        raise ValueError(f"cannot save to {str(path)!r}: it is a folder; give a file name")
    full = {"format": FORMAT, "version": VERSION, "kind": kind, **header}
    try:
        text = json.dumps(full, default=_json_default, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"cannot save this {kind} result: {err}") from None
    buf = io.BytesIO()
    np.savez_compressed(buf, **{name: np.asarray(a) for name, a in arrays.items()})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", text)
        zf.writestr("arrays.npz", buf.getvalue())
    return path


def read(path: str | Path) -> tuple[str, dict, Arrays]:
    """Read a file written by :func:`write`: ``(kind, header, arrays)``.

    Only the header and the ``.npy`` headers of the arrays are read here: ``arrays`` is an
    :class:`Arrays` mapping whose shapes and dtypes are known (:attr:`Arrays.specs`) before any
    array is read, so that a loader can check them against the saved configuration first.

    Raises
    ------
    ValueError
        If the file is missing, not a bayestensor model, of another format version, has a
        header over :data:`MAX_HEADER_BYTES`, an object (pickled) array, or arrays declaring more
        than :data:`MAX_LOAD_BYTES` in all.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no saved model at {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as zf:
            text = _read_member(zf, "header.json", MAX_HEADER_BYTES, "MAX_HEADER_BYTES")
            header = json.loads(text)
            npz = _read_member(zf, "arrays.npz", MAX_LOAD_BYTES + _NPZ_SLACK, "MAX_LOAD_BYTES")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a saved bayestensor model ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{str(path)!r} is not a saved bayestensor model (bad header)")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(
            f"{str(path)!r} has format {header.get('format')!r} version {header.get('version')!r};"
            f" this bayestensor reads {FORMAT!r} version {VERSION}"
        )
    try:
        arrays = Arrays(npz)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from None
    return str(header.get("kind")), header, arrays


def _names(tree: Any, prefix: str) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [f"{prefix}/{jax.tree_util.keystr(p, simple=True, separator='/')}" for p, _ in paths]


def tree_to_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """The leaves of a pytree as ``{prefix/field/...: array}`` (names from the field paths)."""
    leaves = jax.tree.leaves(tree)
    return {name: np.asarray(a) for name, a in zip(_names(tree, prefix), leaves, strict=True)}


class Expect(typing.NamedTuple):
    """What the saved configuration implies for one array.

    Attributes
    ----------
    shape : tuple of int or None
        Exact shape; ``None`` entries accept any length along that axis.
    kind : {"f", "i", "b"}
        Real floating point, integer (signed or not) or boolean.
    finite : bool
        Refuse NaN and infinite values (floating point only).
    """

    shape: tuple
    kind: str = "f"
    finite: bool = True


_KIND_NAMES = {"f": "real floating point", "i": "integer", "b": "boolean"}
_KIND_CODES = {"f": "f", "i": "iu", "b": "b"}


def _spec(arrays: Mapping[str, Any], name: str) -> tuple[tuple[int, ...], np.dtype]:
    specs = getattr(arrays, "specs", None)
    if specs is not None:
        return specs[name]
    a = np.asarray(arrays[name])
    return a.shape, a.dtype


def check_arrays(arrays: Mapping[str, Any], expected: Mapping[str, Expect]) -> dict[str, Any]:
    """Check the arrays of a file against the layout its configuration implies, then read them.

    Names, declared shapes and dtypes are compared first (from the ``.npy`` headers, before any
    array is read); the arrays are then read and, where asked, checked to be finite.

    Parameters
    ----------
    arrays : Arrays or dict
        Every array of the file.
    expected : dict of str to Expect
        Every array the file must hold.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    ValueError
        Naming the first missing, unexpected, misshapen, mistyped or non-finite array.
    """
    missing = [n for n in expected if n not in arrays]
    extra = sorted(n for n in arrays if n not in expected)
    if missing or extra:
        raise ValueError(
            f"saved arrays do not match this version's layout "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, exp in expected.items():
        shape, dtype = _spec(arrays, name)
        ok_shape = len(shape) == len(exp.shape) and all(
            e is None or n == e for n, e in zip(shape, exp.shape, strict=True)
        )
        if not ok_shape or dtype.kind not in _KIND_CODES[exp.kind]:
            want = tuple("any" if e is None else e for e in exp.shape)
            raise ValueError(
                f"saved array {name!r} has shape {shape} and dtype {dtype}; the saved "
                f"configuration implies shape {want} of {_KIND_NAMES[exp.kind]} numbers"
            )
    out = {}
    for name, exp in expected.items():
        a = arrays[name]
        if exp.kind == "f" and exp.finite and not np.all(np.isfinite(a)):
            raise ValueError(f"saved array {name!r} holds NaN or infinite values")
        out[name] = a
    return out


def declared_shape(arrays: Mapping[str, Any], name: str) -> tuple[int, ...] | None:
    """Declared shape of ``name`` (from its ``.npy`` header, nothing read), ``None`` if absent."""
    return _spec(arrays, name)[0] if name in arrays else None


def tree_layout(template: Any, prefix: str) -> dict[str, Expect]:
    """The arrays :func:`tree_to_arrays` writes for ``template`` (arrays or shape structs)."""
    leaves = jax.tree.leaves(template)
    return {
        name: Expect(tuple(np.shape(ref)), "f" if np.dtype(ref.dtype).kind == "f" else "i")
        for name, ref in zip(_names(template, prefix), leaves, strict=True)
    }


def tree_from_arrays(template: Any, arrays: Mapping[str, Any], prefix: str) -> Any:
    """``template``'s structure filled with the (already checked) arrays named by their paths."""
    leaves = [jax.numpy.asarray(arrays[name]) for name in _names(template, prefix)]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def arrays_to_tree(template: Any, arrays: Mapping[str, Any], prefix: str) -> Any:
    """Fill ``template``'s structure with the arrays saved by :func:`tree_to_arrays`.

    Every leaf is looked up by name and must have the template leaf's shape, a matching (real
    floating point or integer) dtype and finite values; missing and unexpected names under
    ``prefix`` are errors. ``template`` may hold :class:`jax.ShapeDtypeStruct` leaves (from
    :func:`jax.eval_shape`), so that nothing of the saved size is allocated before the check.

    Raises
    ------
    ValueError
        Naming the first missing, unexpected or mismatched array.
    """
    checked = check_arrays(_Subset(arrays, prefix), tree_layout(template, prefix))
    return tree_from_arrays(template, checked, prefix)


class _Subset(_Declared):
    """The arrays under ``prefix/`` (an :class:`Arrays` still reads them on access)."""

    def __init__(self, arrays: Mapping[str, Any], prefix: str):
        self._arrays = arrays
        self.specs = {k: _spec(arrays, k) for k in arrays if k.startswith(prefix + "/")}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.specs:
            raise KeyError(name)
        return self._arrays[name]


# --------------------------------------------------------------------------------------------
# header fields
# --------------------------------------------------------------------------------------------


def _matches(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits the annotation ``tp`` (lists stand for tuples)."""
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(_matches(v, args[0]) for v in value) if args else True
        return len(value) == len(args) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    if tp is dict:
        return isinstance(value, dict)
    if tp is list:
        return isinstance(value, list)
    return False


def _describe(tp: Any) -> str:
    if tp is None or tp is type(None):
        return "null"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {_describe(args[0])}" if args else "a list"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return f"an object of {_describe(args[1])}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any) -> Any:
    """JSON lists to tuples where ``tp`` asks for a tuple (recursively)."""
    if isinstance(value, list):
        origin = typing.get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            tp = next(a for a in typing.get_args(tp) if _matches(value, a))
            origin = typing.get_origin(tp)
        if origin is tuple:
            args = typing.get_args(tp)
            inner = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
            return tuple(_convert(v, a) for v, a in zip(value, inner, strict=True))
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field(header: Any, key: str, tp: Any, where: str = "header") -> Any:
    """``header[key]`` checked against the annotation ``tp`` (JSON lists become tuples where
    ``tp`` is a tuple).

    Raises
    ------
    ValueError
        Naming the field (``where.key``) if it is missing or of the wrong type.
    """
    if not isinstance(header, Mapping):
        raise ValueError(f"saved {where} must be a JSON object, got {_short(header)}")
    if key not in header:
        raise ValueError(f"saved {where} has no field {key!r}")
    value = header[key]
    if not _matches(value, tp):
        raise ValueError(f"saved field {where}.{key} must be {_describe(tp)}, got {_short(value)}")
    return _convert(value, tp)


def check_fields(header: Any, known: typing.Iterable[str], where: str = "header") -> None:
    """Refuse a ``header`` that is not an object or has fields outside ``known``."""
    if not isinstance(header, Mapping):
        raise ValueError(f"saved {where} must be a JSON object, got {_short(header)}")
    unknown = sorted(str(k) for k in header if k not in set(known))
    if unknown:
        raise ValueError(f"saved {where} has unknown fields {unknown}")


def record(cls: type, data: Any, where: str) -> Any:
    """A :class:`typing.NamedTuple` ``cls`` from its saved dict, every field type-checked.

    Raises
    ------
    ValueError
        Naming the unknown, missing or mistyped field.
    """
    check_fields(data, cls._fields, where)
    missing = [f for f in cls._fields if f not in data and f not in cls._field_defaults]
    if missing:
        raise ValueError(f"saved {where} has no field {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: field(data, k, hints[k], where) for k in data})
