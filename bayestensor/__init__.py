"""bayestensor: Bayesian tensor models on continuous and categorical coordinates.

The front door is :func:`bayestensor.fit`; every result (FunBaT, Poisson Tucker, PDE solution)
follows :mod:`~bayestensor.results` and comes back from :func:`bayestensor.load`. Shared parts:
:mod:`~bayestensor.checks` (argument checks), :mod:`~bayestensor.data` and
:mod:`~bayestensor.modes` (DataFrame encoding), :mod:`~bayestensor.driver` (the fit loop and
progress bar), :mod:`~bayestensor.io` (the save format), :mod:`~bayestensor.plotting`.
Numerics: :mod:`~bayestensor.kernels` (Matérn state-space forms), :mod:`~bayestensor.ssm`
(Kalman filter / RTS smoother with Gaussian messages), :mod:`~bayestensor.tensor`,
:mod:`~bayestensor.kron`, :mod:`~bayestensor.gp`. The systems: :mod:`~bayestensor.models`
(FunBaT, Poisson Tucker) and :mod:`~bayestensor.pde` (GP-HM). See ``docs/architecture.md``.
"""

from bayestensor import _cache, _xla

_xla.apply()  # must run before any JAX computation: see bayestensor/_xla.py
_cache.apply()  # JAX's persistent compilation cache, unless opted out: see bayestensor/_cache.py

__version__ = "0.1.0"

#: Submodules imported on first use, so that ``import bayestensor`` imports neither JAX nor
#: pandas, gpjax, NumPyro, SciPy or matplotlib (see "Performance" in docs/guide/datasets.md).
_LAZY = (
    "checks",
    "data",
    "datasets",
    "demo",
    "gp",
    "kernels",
    "kron",
    "metrics",
    "models",
    "pde",
    "plotting",
    "results",
    "ssm",
    "tensor",
)

#: Names imported on first use: name -> the module that defines it.
_LAZY_ATTRS = {
    "fit": "bayestensor.api",
    "FitResult": "bayestensor.models.funbat",
    "load": "bayestensor.results",
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = importlib.import_module(f"bayestensor.{name}")
    elif name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    else:
        raise AttributeError(f"module 'bayestensor' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_ATTRS))


__all__ = sorted(["__version__", *_LAZY, *_LAZY_ATTRS])
