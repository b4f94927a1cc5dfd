"""Keep the traced programs of a fit on disk, next to JAX's compiled ones, so a fresh process
neither retraces nor recompiles them.

JAX's persistent compilation cache (:mod:`bayestensor._cache`) saves the *compiling* of a jitted
function in the next process, but not the tracing and lowering that come before it: a fresh
process still runs the Python of every jitted function once, and the first trace of a FunBaT fit
also imports gpjax (for the Matérn state-space forms), about 1.7 s. Measured on ``beijing_pm25``
(Tucker (5, 5, 3)), that was about 4 s of a 9 s fit in the second process.

:class:`CachedJit` is ``jax.jit(fun, static_argnames=...)`` plus, when a compilation-cache
folder is set, a second cache level: the first call with a new layout (static arguments, the
pytree structure, shapes and dtypes of the others) traces ``fun`` once through
:func:`jax.export.export` and writes the serialized program (StableHLO) to
``<cache folder>/bayestensor-programs/``; later calls, in this process or the next, run that
program through ``jax.jit(exported.call)``, whose compiled form JAX's persistent cache then
supplies. The first and every later process therefore run the same program, and a process that
finds its programs on disk does not trace them again.

A program file is named by a hash of everything its trace depends on: the function, the static
arguments, the argument layout, JAX's version and backend, the 64-bit mode, and the source of the
bayestensor package (an edited installation never reuses a stale program). A file that cannot be
read back (truncated, another JAX) is traced anew and overwritten. Nothing changes without a
cache folder (``BAYESTENSOR_COMPILE_CACHE=0``, as in the test suite), with more than one device
(sharded fits: the layout then includes shardings) or where exporting fails: those calls are the
plain ``jax.jit``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax

#: Subfolder of JAX's compilation-cache folder that holds the serialized programs.
SUBDIR = "bayestensor-programs"

_registered: set[type] = set()


@lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """SHA-256 of the package's Python sources (paths and contents), computed once."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _gpjax_version() -> str:
    """gpjax's installed version (read from its metadata, without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpjax")
    except PackageNotFoundError:
        return "absent"


def program_folder() -> Path | None:
    """Where programs are kept: under JAX's compilation-cache folder, or None (no cache)."""
    base = jax.config.jax_compilation_cache_dir
    if not base:
        return None
    return Path(base) / SUBDIR


def _register_namedtuples() -> None:
    """Make every NamedTuple class of the loaded bayestensor modules serializable as a pytree
    node (an exported program records the structure of its inputs and outputs)."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("bayestensor") or module is None:
            continue
        for obj in list(vars(module).values()):
            if (
                isinstance(obj, type)
                and issubclass(obj, tuple)
                and hasattr(obj, "_fields")
                and obj.__module__ == name
                and obj not in _registered
            ):
                _registered.add(obj)
                try:
                    jax.export.register_namedtuple_serialization(
                        obj, serialized_name=f"{obj.__module__}.{obj.__qualname__}"
                    )
                except ValueError:  # registered already (a reloaded module)
                    pass


def _single_device(leaves: list) -> bool:
    if jax.device_count() > 1:
        return False
    return all(
        not isinstance(leaf, jax.Array) or len(leaf.sharding.device_set) == 1 for leaf in leaves
    )


class CachedJit:
    """``jax.jit(fun, static_argnames=static_argnames)`` whose traced programs are kept on disk.

    Parameters
    ----------
    fun : callable
        A pure function; its parameters are positional-or-keyword (no ``*args``).
    static_argnames : tuple of str
        Parameters that are static (hashable, with a ``repr`` that names their value).
    per_fit : int or "mode"
        The layouts one fit compiles: a number, or ``"mode"`` for one per mode of the fit (for
        :func:`bayestensor.driver.bound_compiled`).
    """

    def __init__(self, fun, static_argnames: tuple[str, ...] = (), per_fit: int | str = 1):
        self.per_fit = per_fit
        self._fun = fun
        self._static = tuple(static_argnames)
        self._jit = jax.jit(fun, static_argnames=self._static)
        self._signature = inspect.signature(fun)
        self._name = f"{fun.__module__}.{fun.__qualname__}"
        self._calls: dict[str, Any] = {}  # layout key -> jax.jit(exported.call)
        self.__wrapped__ = fun
        self.__doc__ = fun.__doc__

    def _cache_size(self) -> int:
        """Number of compiled layouts held (for :func:`bayestensor.driver.bound_compiled`)."""
        return max(self._jit._cache_size(), len(self._calls))

    def clear_cache(self) -> None:
        """Drop the compiled layouts held in memory (the files on disk stay)."""
        self._jit.clear_cache()
        self._calls.clear()

    def __call__(self, *args, **kwargs):
        folder = program_folder()
        if folder is None:
            return self._jit(*args, **kwargs)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static = {n: bound.arguments[n] for n in self._static}
        names = tuple(n for n in bound.arguments if n not in self._static)
        dynamic = tuple(bound.arguments[n] for n in names)
        leaves, treedef = jax.tree.flatten(dynamic)
        if not _single_device(leaves):
            return self._jit(*args, **kwargs)
        key = self._key(static, treedef, leaves)
        call = self._calls.get(key)
        if call is None:
            call = self._program(key, static, names, dynamic, folder)
            self._calls[key] = call
        return call(*dynamic)

    def _key(self, static: dict, treedef, leaves: list) -> str:
        avals = []
        for leaf in leaves:
            aval = jax.typeof(leaf)
            avals.append((aval.shape, str(aval.dtype), getattr(aval, "weak_type", False)))
        parts = (
            self._name,
            repr(sorted(static.items())),
            str(treedef),
            repr(avals),
            jax.__version__,
            _gpjax_version(),  # the Matérn state-space forms are traced from gpjax
            jax.default_backend(),
            str(jax.dtypes.canonicalize_dtype(float)),  # the (scoped) 64-bit mode
            source_fingerprint(),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def _program(self, key: str, static: dict, names: tuple, dynamic: tuple, folder: Path):
        """``jax.jit(exported.call)`` for this layout: read from disk, else traced and written;
        the plain jitted function where exporting is not possible."""
        _register_namedtuples()
        path = folder / f"{self._fun.__name__}-{key[:40]}.jaxexport"
        exported = None
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # absent, truncated, or written by another JAX: trace anew
            exported = None
        if exported is None:
            fun = self._fun

            def bound(*values):
                return fun(**dict(zip(names, values, strict=True)), **static)

            try:
                exported = jax.export.export(jax.jit(bound))(*dynamic)
                _write(path, exported.serialize())
            except Exception:  # not exportable (e.g. a host callback): the plain jit
                return lambda *values: self._jit(**dict(zip(names, values, strict=True)), **static)
        return jax.jit(exported.call)


def _write(path: Path, data: bytes | bytearray) -> None:
    """Write ``data`` to ``path`` atomically; a folder that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
