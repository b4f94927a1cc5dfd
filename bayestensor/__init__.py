"""bayestensor: Bayesian tensor models on continuous and categorical coordinates.

Submodules: :mod:`~bayestensor.data` (DataFrame encoding), :mod:`~bayestensor.kernels` (Matérn
state-space forms), :mod:`~bayestensor.ssm` (Kalman filter / RTS smoother with Gaussian
messages), :mod:`~bayestensor.gp` (1-D GP regression), :mod:`~bayestensor.metrics`,
:mod:`~bayestensor.demo`, :mod:`~bayestensor.models` (FunBaT). The front door is
:func:`bayestensor.fit`; saved models come back with :func:`bayestensor.load`.
"""

from bayestensor import _xla

_xla.apply()  # must run before any JAX computation: see bayestensor/_xla.py

from bayestensor import (  # noqa: E402
    data,
    datasets,
    kernels,
    kron,
    metrics,
    models,
    ssm,
    tensor,
)
from bayestensor.api import fit  # noqa: E402
from bayestensor.result import FitResult, load  # noqa: E402

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
    "ssm",
    "tensor",
]
