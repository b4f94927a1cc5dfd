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

from bayestensor import _xla

_xla.apply()  # must run before any JAX computation: see bayestensor/_xla.py

from bayestensor import (  # noqa: E402
    checks,
    data,
    datasets,
    kernels,
    kron,
    metrics,
    models,
    results,
    ssm,
    tensor,
)
from bayestensor.api import fit  # noqa: E402
from bayestensor.models.funbat import FitResult  # noqa: E402
from bayestensor.results import load  # noqa: E402

__version__ = "0.1.0"

#: Submodules imported on first use (matplotlib and the PDE solver are not needed to fit).
_LAZY = ("demo", "gp", "pde", "plotting")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"bayestensor.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'bayestensor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "FitResult",
    "__version__",
    "checks",
    "data",
    "datasets",
    "demo",
    "fit",
    "gp",
    "kernels",
    "kron",
    "load",
    "metrics",
    "models",
    "pde",
    "plotting",
    "results",
    "ssm",
    "tensor",
]
