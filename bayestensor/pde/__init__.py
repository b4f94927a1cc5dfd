"""GP-HM solver for high-frequency and multi-scale PDEs (Fang et al., ICLR 2024).

Front door: :func:`solve` (returns a :class:`PDESolution`). Submodules:
:mod:`~bayestensor.pde.kernels` (1-D spectral-mixture kernels and their closed-form derivative
kernels), :mod:`~bayestensor.pde.problems` (PDE problems on a tensor grid, manufactured
solutions, the benchmark problems) and :mod:`~bayestensor.pde.solver` (the GP-HM objective, the
``U``-step solvers and the Adam / L-BFGS fit).
"""

from bayestensor.pde import kernels, problems, solver
from bayestensor.pde.kernels import (
    SPECTRA,
    SpectralMixture,
    init_spectral_mixture,
    sm_kernel,
    sm_kernel_dx,
    sm_kernel_dxx,
    sm_kernel_dxx_dyy,
    sm_kernel_lag,
    spectral_density,
)
from bayestensor.pde.problems import BENCHMARKS, Problem, benchmark, poisson_1d
from bayestensor.pde.solution import PDESolution, solve
from bayestensor.pde.solver import GPHMConfig, GPHMParams, fit

__all__ = [
    "BENCHMARKS",
    "GPHMConfig",
    "GPHMParams",
    "PDESolution",
    "Problem",
    "SPECTRA",
    "SpectralMixture",
    "benchmark",
    "fit",
    "init_spectral_mixture",
    "kernels",
    "poisson_1d",
    "problems",
    "sm_kernel",
    "sm_kernel_dx",
    "sm_kernel_dxx",
    "sm_kernel_dxx_dyy",
    "sm_kernel_lag",
    "solve",
    "solver",
    "spectral_density",
]
