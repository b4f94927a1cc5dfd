"""Settings and parameters of the GP-HM solver: :class:`GPHMConfig` (validated and resolved
against a problem), :class:`GPHMParams`, the initial kernels and the likelihood precisions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bayestensor.checks import check_int, check_positive
from bayestensor.driver import DTYPES
from bayestensor.pde.kernels import (
    SpectralMixture,
    check_spectrum,
    init_spectral_mixture,
)
from bayestensor.pde.problems import Problem

#: Grids with at most this many points use the dense solver by default.
DENSE_MAX_POINTS = 2500
#: Most grid points for ``method="kron_gn"``: its CG preconditioner is dense, N × N (about
#: 3 GiB in float64 at this size).
KRON_GN_MAX_POINTS = 20_000

#: ``U``-step solvers (:class:`GPHMConfig` ``method``).
METHODS = ("auto", "dense", "kron", "kron_gn")

#: The dense U-step uses the normal equations (Cholesky) when the squared ratio of the extreme
#: diagonal entries of their Cholesky factor, a lower bound of their condition number, is below
#: this; otherwise a QR factorisation of the stacked least-squares matrix.
NORMAL_EQ_MAX_COND = 1e14


#: Most profile evaluations of one L-BFGS line search (zoom line search, optax).
LBFGS_LINESEARCH_STEPS = 10


class GPHMConfig(NamedTuple):
    """Settings of the GP-HM solver (static: changing one recompiles).

    Attributes
    ----------
    spectrum : {"gaussian", "student_t"}
        Mixture family of every dimension's kernel.
    nu : float
        Matérn smoothness for ``"student_t"`` (≥ 2.5 so that second derivatives exist).
    n_components : int
        Q, mixture components per dimension.
    max_freq : tuple of float or None
        Highest initial frequency per dimension (cycles per unit length), see
        :func:`~bayestensor.pde.kernels.init_spectral_mixture`; ``None`` uses 0.6 × the grid's
        Nyquist frequency ``(n_d − 1) / (2 (b_d − a_d))`` in every dimension.
    jitter : float
        ε, added to the diagonal of every ``K_d`` relative to ``k_d(0)``.
    precision : float
        w; the precisions are ``λ_r = (w / s_f)²`` and ``λ_b = (w / s_g)²`` with ``s_f`` the RMS
        of the source and ``s_g = max(RMS of g, 1)``: the residual and boundary are fitted to
        about ``1/w`` of their scale.
    learning_rate : float
        Adam step size on the kernel parameters.
    n_steps : int
        Maximum number of Adam steps on the kernels (0: keep the initial kernels).
    patience : int
        Stop when the midpoint residual has not improved for this many steps.
    lbfgs_steps : int
        L-BFGS steps (optax) after Adam, on the same profile objective; they end early when
        the midpoint residual has not improved for ``patience`` steps or after ``lbfgs_time``.
    lbfgs_time : float
        Wall-time budget of the L-BFGS steps, in seconds (each step's line search evaluates
        the profile, with its U-solve, up to :data:`LBFGS_LINESEARCH_STEPS` times).
    newton_iters : int
        Gauss–Newton iterations of the first ``U``-solve for a nonlinear operator, and of the
        final polish of the returned iterate; the solves inside the Adam / L-BFGS steps are
        warm-started and take one step each.
    method : {"auto", "dense", "kron", "kron_gn"}
        ``U``-step solver (:mod:`bayestensor.pde.inference`); ``"auto"`` picks ``"dense"`` for
        grids of at most :data:`DENSE_MAX_POINTS` points and, above that (D ≥ 2), ``"kron"`` for
        a linear operator and ``"kron_gn"`` (:mod:`bayestensor.pde.kron_gn`: Gauss–Newton with
        the GP prior kept, by preconditioned CG with Kronecker products; kernels learned on a
        coarser grid) for a nonlinear one.
    chunk : int
        Steps per compiled ``lax.scan`` between early-stopping checks.
    dtype : {"float64", "float32"}
        What the solver computes in, whatever the global ``jax_enable_x64`` says
        (:func:`bayestensor.driver.precision`): spectral-mixture Gram matrices with high
        frequencies and the whitened least squares need float64; ``"float32"`` is there to
        measure that, not to be used.
    cg_tol : float
        ``method="kron_gn"``: each Gauss–Newton step's conjugate gradients stop at this
        relative residual of the normal equations.
    cg_maxiter : int
        ``method="kron_gn"``: most CG iterations per Gauss–Newton step.
    """

    spectrum: str = "gaussian"
    nu: float = 2.5
    n_components: int = 30
    max_freq: tuple[float, ...] | None = None
    jitter: float = 1e-10
    precision: float = 1e6
    learning_rate: float = 1e-2
    n_steps: int = 100
    patience: int = 30
    lbfgs_steps: int = 0
    lbfgs_time: float = 30.0
    newton_iters: int = 20
    method: str = "auto"
    chunk: int = 10
    dtype: str = "float64"
    cg_tol: float = 1e-10
    cg_maxiter: int = 1000


class GPHMParams(NamedTuple):
    """Learned quantities (a JAX pytree).

    Attributes
    ----------
    U : Float[Array, "*shape"]
        Solution values on the grid.
    kernels : tuple of SpectralMixture
        One spectral mixture per dimension.
    """

    U: Float[Array, "*shape"]
    kernels: tuple[SpectralMixture, ...]


def default_max_freq(problem: Problem) -> tuple[float, ...]:
    """0.6 × the Nyquist frequency ``(n_d − 1) / (2 (b_d − a_d))`` of each dimension's grid."""
    return tuple(
        0.6 * (n - 1) / (2.0 * (b - a))
        for n, (a, b) in zip(problem.shape, problem.box, strict=True)
    )


def resolve_config(problem: Problem, config: GPHMConfig | None = None) -> GPHMConfig:
    """Validate ``config`` against ``problem`` and fill in ``max_freq`` and ``method``.

    Raises
    ------
    ValueError
        Naming the offending setting.
    """
    config = GPHMConfig() if config is None else config
    if not isinstance(config, GPHMConfig):
        raise ValueError(f"config must be a GPHMConfig or None, got {type(config).__name__}")
    nu = check_positive("nu", config.nu)
    check_spectrum(config.spectrum, nu)
    if config.spectrum == "student_t" and nu < 2.5:
        raise ValueError(f"nu must be ≥ 2.5 for second derivatives, got {config.nu}")
    if not isinstance(config.dtype, str) or config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
    if not isinstance(config.method, str) or config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
    ints = {
        name: check_int(name, getattr(config, name))
        for name in ("n_components", "chunk", "cg_maxiter")
    }
    for name in ("n_steps", "lbfgs_steps", "patience", "newton_iters"):
        ints[name] = check_int(name, getattr(config, name), minimum=0)
    floats = {
        name: check_positive(name, getattr(config, name))
        for name in ("jitter", "precision", "learning_rate", "lbfgs_time", "cg_tol")
    }
    config = config._replace(nu=nu, **ints, **floats)
    D = len(problem.shape)
    mf = config.max_freq
    if mf is None:
        mf = default_max_freq(problem)
    elif np.ndim(mf) == 0:
        mf = (mf,) * D
    try:
        mf = tuple(float(m) for m in mf)
    except (TypeError, ValueError):
        mf = (float("nan"),)
    if len(mf) != D or not all(np.isfinite(m) and m > 0 for m in mf):
        raise ValueError(
            f"max_freq must be positive, one per dimension ({D}) or one for all, "
            f"got {config.max_freq!r}"
        )
    method = config.method
    if method == "auto":
        if math.prod(problem.shape) <= DENSE_MAX_POINTS:
            method = "dense"
        else:
            method = "kron" if is_linear(problem) else "kron_gn"
    if method in ("kron", "kron_gn") and D < 2:
        method = "dense"
    n = math.prod(problem.shape)
    if method == "kron_gn" and n > KRON_GN_MAX_POINTS:
        raise ValueError(
            f"method='kron_gn' on {problem.shape} = {n} points: its Gauss–Newton preconditioner "
            f"is a dense {n} × {n} matrix ({8 * n * n / 2**30:.0f} GiB in float64); it takes at "
            f"most {KRON_GN_MAX_POINTS} points. Use a coarser grid, or method='kron' (the "
            "collocation limit, without the prior)"
        )
    return config._replace(max_freq=mf, method=method)


def init_params(problem: Problem, config: GPHMConfig) -> GPHMParams:
    """``U = 0`` and the default mixture of :func:`init_spectral_mixture` per dimension."""
    config = resolve_config(problem, config)
    dtype = problem.source.dtype
    kernels = tuple(
        init_spectral_mixture(config.n_components, m, scale=_init_scale(config, m), dtype=dtype)
        for m in config.max_freq
    )
    return GPHMParams(jnp.zeros(problem.shape, dtype), kernels)


#: Initial spectral scale of a Student-t mixture, as a fraction of the spacing of the initial
#: frequencies. Its heavy spectral tails (∝ |s|^-(2ν+1)) put prior mass on every grid mode when
#: the components are as wide as their spacing (the Gaussian default): 0.86 relative error on
#: ``poisson_1d_sin100`` after 30 steps, against 2.6e-4 with this narrower start.
STUDENT_T_INIT_SCALE = 0.02


def _init_scale(config: GPHMConfig, max_freq: float) -> float | None:
    """Initial σ: the default of :func:`init_spectral_mixture`, narrowed for Student-t."""
    if config.spectrum != "student_t":
        return None
    Q = config.n_components
    return STUDENT_T_INIT_SCALE * (max_freq / (Q - 1) if Q > 1 else max_freq)


def is_linear(problem: Problem) -> bool:
    """Whether the operator is affine in the derivative grids (checked on random grids).

    Evaluated in float64 whatever JAX's global flag: in float32 the round-off of a linear
    operator exceeds the test's 1e-8 tolerance, which made every linear problem look nonlinear
    (and sent a large 2-D Poisson problem to ``"kron_gn"`` instead of ``"kron"``).
    """
    rng = np.random.default_rng(0)
    keys = ["u"] + [k for v in problem.variables for k in (f"u_{v}", f"u_{v}{v}")]

    def rand():
        return {k: jnp.asarray(rng.standard_normal(problem.shape)) for k in keys}

    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        a, b = rand(), rand()
        zero = {k: jnp.zeros(problem.shape) for k in keys}
        op = problem.operator
        ab = {k: a[k] + 2.0 * b[k] for k in keys}
        lhs = np.asarray(op(ab) - op(zero))
        rhs = np.asarray((op(a) - op(zero)) + 2.0 * (op(b) - op(zero)))
    if not (np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs))):
        return False  # NaN or inf on random grids (e.g. log u): not affine
    return bool(np.allclose(lhs, rhs, rtol=1e-8, atol=1e-8 * (1 + np.abs(rhs).max())))


def scales(problem: Problem) -> tuple[float, float]:
    """``(s_f, s_g)``: RMS of the source (1 if zero) and ``max(RMS of g, 1)``."""
    s_f = float(np.sqrt(np.mean(np.asarray(problem.source) ** 2)))
    s_g = float(np.sqrt(np.mean(np.asarray(problem.boundary_values) ** 2)))
    return (s_f if s_f > 0 else 1.0), max(s_g, 1.0)


def relative_jitter(config: GPHMConfig, dtype) -> float:
    """``max(ε, 100 eps)``: in float32 the float64 default would not make ``K_d`` positive."""
    return max(config.jitter, 100.0 * float(jnp.finfo(dtype).eps))


def precisions(problem: Problem, config: GPHMConfig) -> tuple[float, float]:
    """``(λ_r, λ_b) = ((w / s_f)², (w / s_g)²)`` (see :class:`GPHMConfig`).

    ``w`` is capped at ``0.1/√eps`` of the problem's dtype (6.7 × 10⁶ in float64, 290 in
    float32): beyond that the U-step's least squares cannot resolve the residual.
    """
    s_f, s_g = scales(problem)
    eps = float(jnp.finfo(problem.source.dtype).eps)
    w = min(config.precision, 0.1 / eps**0.5)
    return (w / s_f) ** 2, (w / s_g) ** 2


class FitTrace(NamedTuple):
    """What :func:`bayestensor.pde.estimator.fit` records.

    Attributes
    ----------
    losses : np.ndarray
        ``𝒥`` at each step (Adam, then L-BFGS), before the step's update.
    residuals : np.ndarray
        Midpoint residual (:func:`bayestensor.pde.inference.midpoint_residual`) at each step.
    best_step : int
        Index of the returned iterate (smallest midpoint residual).
    n_adam : int
        Adam steps run (early stopping may end them before ``n_steps``).
    step_time : float
        Median wall time of one Adam step, in seconds, over the compiled chunks after the first
        (which includes compilation); ``nan`` if only one chunk ran.
    """

    losses: np.ndarray
    residuals: np.ndarray
    best_step: int
    n_adam: int
    step_time: float = float("nan")
