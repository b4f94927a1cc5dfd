"""The one save/load format of every result: a zip of a JSON header and a ``.npz`` of arrays.

``header.json`` holds ``{"format": "bayestensor", "version": 1, "kind": ..., ...}`` — the kind
names the result class (``"funbat"``, ``"poisson-tucker"``, ``"pde"``) — and ``arrays.npz``
the arrays, each under a name (pytrees by the path of their fields, e.g. ``state/core/mean``,
never by position, so that adding a field cannot silently shift the others). Nothing is
pickled: the arrays are read with ``allow_pickle=False`` and the header is plain JSON.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["FORMAT", "VERSION", "arrays_to_tree", "read", "tree_to_arrays", "write"]

FORMAT = "bayestensor"
#: Version of the container and of every kind's header; checked on load.
VERSION = 1


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
        If the folder of ``path`` does not exist or the header cannot be written as JSON —
        before anything is written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot save to {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
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


def read(path: str | Path) -> tuple[str, dict, dict[str, np.ndarray]]:
    """Read a file written by :func:`write`: ``(kind, header, arrays)``.

    Raises
    ------
    ValueError
        If the file is missing, not a bayestensor model, or of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no saved model at {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a saved bayestensor model ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{str(path)!r} is not a saved bayestensor model (bad header)")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(
            f"{str(path)!r} has format {header.get('format')!r} version {header.get('version')!r};"
            f" this bayestensor reads {FORMAT!r} version {VERSION}"
        )
    return str(header.get("kind")), header, arrays


def _names(tree: Any, prefix: str) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [f"{prefix}/{jax.tree_util.keystr(p, simple=True, separator='/')}" for p, _ in paths]


def tree_to_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """The leaves of a pytree as ``{prefix/field/...: array}`` (names from the field paths)."""
    leaves = jax.tree.leaves(tree)
    return {name: np.asarray(a) for name, a in zip(_names(tree, prefix), leaves, strict=True)}


def arrays_to_tree(template: Any, arrays: Mapping[str, np.ndarray], prefix: str) -> Any:
    """Fill ``template``'s structure with the arrays saved by :func:`tree_to_arrays`.

    Every leaf is looked up by name and must have the template leaf's shape and a real
    (float or int) dtype; missing and unexpected names are errors.

    Raises
    ------
    ValueError
        Naming the first missing, unexpected or mismatched array.
    """
    names = _names(template, prefix)
    saved = {k for k in arrays if k.startswith(prefix + "/")}
    missing = [n for n in names if n not in saved]
    extra = sorted(saved - set(names))
    if missing or extra:
        raise ValueError(
            f"saved {prefix!r} does not match this version's layout "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    leaves = []
    for name, ref in zip(names, jax.tree.leaves(template), strict=True):
        a = arrays[name]
        if a.shape != np.shape(ref) or a.dtype.kind not in "fiu":
            raise ValueError(
                f"saved array {name!r} has shape {a.shape} and dtype {a.dtype}; expected shape "
                f"{np.shape(ref)} of real numbers"
            )
        leaves.append(jax.numpy.asarray(a))
    return jax.tree.unflatten(jax.tree.structure(template), leaves)
