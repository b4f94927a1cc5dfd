"""GP-HM solver for high-frequency and multi-scale PDEs (Fang et al., ICLR 2024).

Front door: :func:`solve` (returns a :class:`PDESolution`). Modules, in the roles every system
shares: :mod:`~bayestensor.pde.problems` (PDE problems on a tensor grid, manufactured solutions,
the benchmark problems), :mod:`~bayestensor.pde.kernels` (1-D spectral-mixture kernels and their
closed-form derivative kernels), :mod:`~bayestensor.pde.config` (settings, parameters, the
fit record), :mod:`~bayestensor.pde.factors` (per-dimension kernel algebra),
:mod:`~bayestensor.pde.inference` (the GP-HM objective, the ``U``-step solvers, prediction),
:mod:`~bayestensor.pde.kron_gn` (Gauss–Newton with the prior kept on large grids, by CG),
:mod:`~bayestensor.pde.estimator` (the Adam / L-BFGS loop, :func:`solve`),
:mod:`~bayestensor.pde.result` (:class:`PDESolution`), :mod:`~bayestensor.pde.reliability`
(how far a solution can be trusted, without the exact solution) and
:mod:`~bayestensor.pde.branches` (whether a nonlinear problem has another solution close by).
"""

from bayestensor.pde import (
    branches,
    config,
    estimator,
    factors,
    inference,
    kernels,
    problems,
    reliability,
    result,
)
from bayestensor.pde.config import FitTrace, GPHMConfig, GPHMParams
from bayestensor.pde.estimator import fit, solve
from bayestensor.pde.family import random_problem
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
from bayestensor.pde.reliability import Reliability
from bayestensor.pde.result import PDESolution

__all__ = [
    "BENCHMARKS",
    "FitTrace",
    "GPHMConfig",
    "GPHMParams",
    "PDESolution",
    "Problem",
    "SPECTRA",
    "SpectralMixture",
    "benchmark",
    "branches",
    "config",
    "estimator",
    "factors",
    "fit",
    "inference",
    "init_spectral_mixture",
    "kernels",
    "poisson_1d",
    "problems",
    "random_problem",
    "reliability",
    "Reliability",
    "result",
    "sm_kernel",
    "sm_kernel_dx",
    "sm_kernel_dxx",
    "sm_kernel_dxx_dyy",
    "sm_kernel_lag",
    "solve",
    "spectral_density",
]
