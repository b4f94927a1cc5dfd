"""Turn on JAX's persistent compilation cache in a per-user folder, unless told not to.

Every fresh process recompiles the jitted fit loop (a FunBaT fit of ``beijing_pm25`` spends most
of its first run compiling). JAX can keep compiled programs on disk and reuse them in the next
process; it does so when ``jax_compilation_cache_dir`` is set. :func:`apply` sets it, when
``bayestensor`` is imported, to

- ``$BAYESTENSOR_CACHE_DIR`` if set, else
- ``$XDG_CACHE_HOME/bayestensor/jax`` or ``~/.cache/bayestensor/jax`` (Linux and other Unix),
  ``~/Library/Caches/bayestensor/jax`` (macOS), ``%LOCALAPPDATA%\\bayestensor\\cache\\jax``
  (Windows),

and lowers JAX's thresholds for what is worth caching
(``jax_persistent_cache_min_compile_time_secs`` to :data:`MIN_COMPILE_TIME_SECS`; every entry
size), because a fit compiles many programs that each take well under JAX's default 1 s.
Nothing is changed when

- ``BAYESTENSOR_COMPILE_CACHE`` is ``0``, ``false``, ``no`` or ``off`` (the opt-out);
- the user has configured JAX's cache already (``JAX_COMPILATION_CACHE_DIR`` in the environment,
  or ``jax.config.jax_compilation_cache_dir`` set before ``import bayestensor``); a threshold the
  user set (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``, ...) is kept too;
- the folder cannot be created or written: the import never fails, it runs without a cache (with
  one warning if the folder was named by ``BAYESTENSOR_CACHE_DIR``, silently otherwise).

If JAX is not imported yet, the settings go into the environment (``JAX_COMPILATION_CACHE_DIR``,
...), where JAX reads them when it is imported — so ``import bayestensor`` need not import JAX,
and child processes inherit the same cache. If JAX is imported already, they go through
``jax.config.update``, which JAX honours only if it has compiled nothing yet, so import
``bayestensor`` before running JAX code (as :mod:`bayestensor._xla` needs anyway).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

#: The opt-out switch and the folder override.
ENV_SWITCH = "BAYESTENSOR_COMPILE_CACHE"
ENV_DIR = "BAYESTENSOR_CACHE_DIR"

#: Cache programs that took at least this long to compile (JAX's default is 1 s).
MIN_COMPILE_TIME_SECS = 0.0

#: JAX option -> (JAX's default, the value bayestensor sets unless the user changed it).
_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": (1.0, MIN_COMPILE_TIME_SECS),
    "jax_persistent_cache_min_entry_size_bytes": (0, -1),
}

_OFF = {"0", "false", "no", "off"}


def default_dir() -> Path:
    """The platform's per-user cache folder for bayestensor's compiled programs."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "bayestensor" / "cache" / "jax"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "bayestensor" / "jax"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayestensor" / "jax"


def _writable(path: Path) -> bool:
    """Create ``path`` if needed and check a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def _user_configured() -> bool:
    """Whether the user pointed JAX's cache somewhere already (environment or jax.config)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and jax.config.jax_compilation_cache_dir is not None


def apply() -> Path | None:
    """Point JAX's persistent compilation cache at bayestensor's folder; return it, or None.

    Returns ``None`` (and changes nothing) when the cache is switched off, configured by the
    user, or the folder is not writable. Never raises.
    """
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in _OFF:
        return None
    try:
        if _user_configured():
            return None
        explicit = os.environ.get(ENV_DIR)
        path = Path(explicit).expanduser() if explicit else default_dir()
        if not _writable(path):
            if explicit:
                warnings.warn(
                    f"{ENV_DIR}={explicit!r} cannot be created or written; "
                    "bayestensor runs without a compilation cache",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None
        path = path.resolve()
        jax = sys.modules.get("jax")
        if jax is None:
            os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
            for name, (_, value) in _SETTINGS.items():
                os.environ.setdefault(name.upper(), str(value))
        else:
            jax.config.update("jax_compilation_cache_dir", str(path))
            for name, (default, value) in _SETTINGS.items():
                if getattr(jax.config, name) == default:
                    jax.config.update(name, value)
        return path
    except Exception:  # noqa: BLE001 - a cache is an optimisation; the import must not fail
        return None
