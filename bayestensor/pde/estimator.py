"""Solving a PDE problem: :func:`fit` (Adam on the kernels with ``U`` solved for, optional
L-BFGS, early stopping on the midpoint residual; the loop runs through
:func:`bayestensor.driver.iterate`) and the front door :func:`solve`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence

import jax
import numpy as np
import optax
from jax import lax

from bayestensor.checks import check_finite_result, check_int
from bayestensor.driver import Step, iterate, release_compiled
from bayestensor.driver import precision as scope
from bayestensor.pde.branches import NEAR_SOLUTION
from bayestensor.pde.checks import check_grid_sizes
from bayestensor.pde.config import (
    DENSE_MAX_POINTS,
    LBFGS_LINESEARCH_STEPS,
    NORMAL_EQ_MAX_COND,
    FitTrace,
    GPHMConfig,
    GPHMParams,
    init_params,
    is_linear,
    resolve_config,
)
from bayestensor.pde.factors import all_factors
from bayestensor.pde.inference import (
    coefficients,
    cross_kernel,
    dense_normal_condition,
    loss_terms,
    midpoint_residual,
    midpoint_source,
    predict_tensor,
    solve_grid,
)
from bayestensor.pde.kron_gn import coarse_problem, solve_kron_gn
from bayestensor.pde.problems import Problem
from bayestensor.pde.reliability import WARN_ERROR, assess, is_uniform, likely_cause
from bayestensor.pde.result import PDESolution
from bayestensor.pde.scaling import check_coordinates, rescale_factor, rescaled

try:  # a declared dependency; without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


#: Accepted spellings of the kernel families.
KERNELS = {"gaussian": "gaussian", "student-t": "student_t", "student_t": "student_t"}


def threads(limit: int | None):
    """A context limiting LAPACK/BLAS to ``limit`` threads (``None``: leave them as they are)."""
    if limit is None or threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit)


def _profile(problem, config, linear, n_iter, f_mid, lsq="auto"):
    """``θ, U_warm ↦ (𝒥(U*(θ), θ), (U*, midpoint residual))`` with ``U*`` behind stop_gradient."""

    def fn(kernels, U_warm):
        factors = all_factors(kernels, problem, config)
        fixed = jax.lax.stop_gradient(factors)
        U = solve_grid(U_warm, fixed, problem, config, n_iter, linear, lsq)
        U = jax.lax.stop_gradient(U)
        value = sum(loss_terms(U, factors, problem, config).values())
        res = midpoint_residual(U, kernels, fixed, problem, config, f_mid)
        return value, (U, jax.lax.stop_gradient(res))

    return fn


def fit(
    problem: Problem,
    config: GPHMConfig | None = None,
    params: GPHMParams | None = None,
    progress: bool = False,
) -> tuple[GPHMParams, FitTrace]:
    """Minimise ``𝒥``: ``U`` solved for, kernels by Adam (then optionally L-BFGS), early stopping.

    The problem is solved at its own scale (:func:`solve` rescales linear problems to O(1),
    :mod:`bayestensor.pde.scaling`).

    Every Adam step is one jitted function — kernel matrices, per-dimension Cholesky factors,
    the ``U``-step (:func:`solve_grid`, under ``stop_gradient``), ``𝒥`` and its gradient with
    respect to the kernels — and ``config.chunk`` steps run as one ``lax.scan``; between chunks
    the loop stops once the midpoint residual has not improved for ``config.patience`` steps.

    Parameters
    ----------
    problem : Problem
    config : GPHMConfig, optional
        Default ``GPHMConfig()``.
    params : GPHMParams, optional
        Starting point; default :func:`init_params`.
    progress : bool, default False
        Show a progress bar over the Adam steps.

    Returns
    -------
    params : GPHMParams
        The iterate with the smallest midpoint residual.
    trace : FitTrace

    Raises
    ------
    ValueError
        For a bad problem (:meth:`Problem.validate`) or setting (:func:`resolve_config`), and
        if the returned ``U`` or its loss is NaN or inf.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a bayestensor.pde.Problem, got {type(problem)}")
    problem = problem.validate()
    config = resolve_config(problem, config)
    if params is not None:
        _check_params(params, problem, config)
    with scope(config.dtype):
        return _fit(problem.astype(config.dtype), config, params, progress)


def _check_params(params: object, problem: Problem, config: GPHMConfig) -> None:
    """A ValueError unless ``params`` has the layout :func:`init_params` gives ``problem``."""
    template = jax.eval_shape(lambda: init_params(problem, config))
    want, want_def = jax.tree.flatten(template)
    got, got_def = jax.tree.flatten(params)
    want_shapes = [tuple(a.shape) for a in want]
    got_shapes = [tuple(np.shape(a)) for a in got]
    if got_def != want_def or got_shapes != want_shapes:
        raise ValueError(
            f"params must be GPHMParams for this problem and config (U of the grid shape "
            f"{problem.shape}, {config.n_components} mixture components per dimension): "
            f"expected array shapes {want_shapes}, got {got_shapes}"
        )


def _check_result(U, trace: FitTrace) -> None:
    """Raise a ValueError naming the likely cause if the returned ``U`` or its loss is NaN/inf."""
    if np.isfinite(trace.losses[0]):
        cause = (
            "the objective was finite at the initial kernels and went non-finite during the "
            "optimisation: try a smaller learning_rate or fewer steps"
        )
    else:
        cause = (
            "the objective was already non-finite at the initial kernels: check the scale of "
            "the source and boundary values, max_freq (at most the grid's Nyquist frequency), "
            "jitter (float32 needs a larger one), and that the operator is finite near u = 0, "
            "where the solver starts"
        )
    try:
        check_finite_result("the solution U", U)
        check_finite_result("the loss", trace.losses[trace.best_step])
    except ValueError as e:
        raise ValueError(f"{e}. Likely cause: {cause}") from None


def _fit(problem, config, params, progress):
    """:func:`fit` on a validated problem."""
    config = resolve_config(problem, config)
    if config.method == "kron_gn" and math.prod(problem.shape) > DENSE_MAX_POINTS:
        return _fit_two_grid(problem, config, params, progress)
    params = init_params(problem, config) if params is None else params
    linear = is_linear(problem)
    if config.method == "kron" and not linear:
        warnings.warn(
            "method='kron' solves the λ → ∞ collocation limit, which drops the GP prior: for a "
            "nonlinear operator its Newton systems can be ill-conditioned and the GP mean between "
            "grid points unreliable (check the midpoint residual); method='kron_gn' (the default "
            f"for nonlinear operators above {DENSE_MAX_POINTS} points) and method='dense' keep "
            "the prior",
            RuntimeWarning,
            stacklevel=2,
        )
    f_mid = midpoint_source(problem)
    first_iters = 1 if linear else config.newton_iters
    # warm-started: one Gauss–Newton step per Adam step tracks U*(θ); the returned iterate is
    # polished with `first_iters` steps at the end
    later_iters = 1

    lsq = "auto"
    if config.method == "dense":
        condition = jax.jit(
            lambda U, k: dense_normal_condition(U, all_factors(k, problem, config), problem, config)
        )
        cond = float(condition(params.U, params.kernels))
        # the kernels move during the fit: QR throughout unless far from the Cholesky limit
        lsq = "auto" if cond < NORMAL_EQ_MAX_COND * 1e-4 else "qr"
    profile_first = _profile(problem, config, linear, first_iters, f_mid, lsq)
    initial = jax.jit(profile_first)
    value, (U, res) = initial(params.kernels, params.U)
    best = (params.kernels, U, res)
    losses, residuals = [float(value)], [float(res)]
    best_step, n_adam = 0, 0

    vg = jax.value_and_grad(
        _profile(problem, config, linear, later_iters, f_mid, lsq), has_aux=True
    )
    optimiser = optax.adam(config.learning_rate)

    def _step(carry, _):
        # one Adam step on the kernels, U re-solved (warm start) inside the profile
        kernels, opt_state, U = carry
        (value, (U, res)), grads = vg(kernels, U)
        updates, opt_state = optimiser.update(grads, opt_state, kernels)
        return (optax.apply_updates(kernels, updates), opt_state, U), (value, res, kernels, U)

    chunk = min(config.chunk, max(config.n_steps, 1))

    @jax.jit
    def run_chunk(carry):
        return lax.scan(_step, carry, None, length=chunk)

    carry = (params.kernels, optimiser.init(params.kernels), U)
    chunk_times = []

    def _chunk(_, carry):
        # `chunk` Adam steps in one compiled scan; then record them and check early stopping
        nonlocal n_adam, best_step, best
        tic = time.perf_counter()
        carry, (vals, ress, ks, Us) = run_chunk(carry)
        vals, ress = np.asarray(vals), np.asarray(ress)
        chunk_times.append((time.perf_counter() - tic) / chunk)
        for i in range(chunk):
            if n_adam >= config.n_steps:
                break
            n_adam += 1
            losses.append(float(vals[i]))
            residuals.append(float(ress[i]))
            if np.isfinite(ress[i]) and ress[i] < residuals[best_step]:
                best_step = len(residuals) - 1
                best = (jax.tree.map(lambda a, i=i: a[i], ks), Us[i], ress[i])
        stop = n_adam >= config.n_steps or (len(residuals) - 1 - best_step) >= config.patience
        return Step(carry, stop, {"residual": residuals[best_step]}, advance=chunk)

    n_chunks = -(-config.n_steps // chunk) if config.patience > 0 else 0
    iterate(_chunk, carry, n_chunks, desc="GP-HM", progress=progress, total=n_chunks * chunk)
    # the U*, θ pairs recorded above are the ones evaluated at each step (losses[k] ↔ residuals[k])

    if config.lbfgs_steps:
        # L-BFGS polish on the profile, U* warm-started from the best Adam iterate
        kernels, U = best[0], best[1]
        profile = _profile(problem, config, linear, later_iters, f_mid, lsq)
        solver = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(LBFGS_LINESEARCH_STEPS))

        def objective(kernels, U_warm):
            return profile(kernels, U_warm)[0]

        @jax.jit
        def lbfgs_step(kernels, state, U):
            (value, (U_new, res)), grad = vg(kernels, U)
            updates, state = solver.update(
                grad, state, kernels, value=value, grad=grad, value_fn=objective, U_warm=U
            )
            return optax.apply_updates(kernels, updates), state, value, U_new, res

        state = solver.init(kernels)
        deadline = time.perf_counter() + config.lbfgs_time
        for _ in range(config.lbfgs_steps):
            new_kernels, state, value, U, res = lbfgs_step(kernels, state, U)
            losses.append(float(value))
            residuals.append(float(res))
            if np.isfinite(res) and res < residuals[best_step]:
                best_step = len(residuals) - 1
                best = (kernels, U, res)
            kernels = new_kernels
            stale = len(residuals) - 1 - best_step >= config.patience
            if stale or time.perf_counter() > deadline or not np.isfinite(value):
                break

    if not linear and best_step > 0:
        # the Adam/L-BFGS iterates took one warm-started Gauss–Newton step each: converge U at
        # the returned kernels (same compiled function as the first solve)
        _, (U, _) = initial(best[0], best[1])
        best = (best[0], U, best[2])

    step_time = float(np.median(chunk_times[1:])) if len(chunk_times) > 1 else float("nan")
    trace = FitTrace(np.asarray(losses), np.asarray(residuals), best_step, n_adam, step_time)
    _check_result(best[1], trace)
    params = GPHMParams(jax.block_until_ready(best[1]), tuple(best[0]))
    # the functions compiled above belong to this problem alone (closures over its grid and
    # operator): release them, or every solve would keep hundreds of MB
    release_compiled()
    return params, trace


def _fit_two_grid(problem, config, params, progress):
    """``method="kron_gn"`` above :data:`DENSE_MAX_POINTS` points: kernels from a fit on a
    coarser grid of at most that many points (the same Gauss–Newton U-steps, whose
    preconditioner's Cholesky factorisation is then small), then ``config.newton_iters``
    Gauss–Newton steps on the full grid (:mod:`bayestensor.pde.kron_gn`) from the coarse GP
    mean.

    The trace is the coarse fit's, with the full grid's loss and midpoint residual appended as
    the returned (last) step.
    """
    if params is None:
        coarse = coarse_problem(problem, DENSE_MAX_POINTS)
        # max_freq: the coarse grid's own default (the fine grid's may exceed its Nyquist)
        coarse_config = resolve_config(coarse, config._replace(max_freq=None))
        coarse_params, coarse_trace = _fit(coarse, coarse_config, None, progress)
        kernels = coarse_params.kernels
        U0 = _interpolate(coarse_params.U, kernels, coarse, problem, coarse_config)
    else:
        kernels, U0 = params.kernels, params.U
        coarse_trace = FitTrace(np.zeros(0), np.zeros(0), 0, 0)
    f_mid = midpoint_source(problem)

    @jax.jit
    def fine(kernels, U0):
        factors = all_factors(kernels, problem, config)
        U, iters = solve_kron_gn(U0, factors, problem, config, config.newton_iters, coefficients)
        value = sum(loss_terms(U, factors, problem, config).values())
        res = midpoint_residual(U, kernels, factors, problem, config, f_mid)
        return U, value, res, iters

    U, value, res, _ = fine(tuple(kernels), U0)
    trace = FitTrace(
        np.append(coarse_trace.losses, float(value)),
        np.append(coarse_trace.residuals, float(res)),
        len(coarse_trace.losses),
        coarse_trace.n_adam,
        coarse_trace.step_time,
    )
    _check_result(U, trace)
    params = GPHMParams(jax.block_until_ready(U), tuple(kernels))
    release_compiled()
    return params, trace


def _interpolate(U, kernels, coarse: Problem, problem: Problem, config: GPHMConfig):
    """The GP mean of the coarse grid values ``U`` on ``problem``'s grid."""
    factors = all_factors(kernels, coarse, config)
    cross = [
        [cross_kernel(k, x, xc, config, 0)]
        for k, x, xc in zip(kernels, problem.grid, coarse.grid, strict=True)
    ]
    return predict_tensor(U, kernels, factors, cross, problem.variables)["u"]


def solve(
    problem: Problem,
    kernel: str = "gaussian",
    n_components: int = 30,
    steps: int = 100,
    *,
    grid: int | Sequence[int] | None = None,
    max_freq: float | Sequence[float] | None = None,
    learning_rate: float = 1e-2,
    precision: float = 1e6,
    lbfgs_steps: int = 0,
    lbfgs_time: float = 30.0,
    patience: int = 30,
    method: str = "auto",
    nu: float = 2.5,
    jitter: float = 1e-10,
    blas_threads: int | None = 1,
    progress: bool = True,
    dtype: str = "float64",
) -> PDESolution:
    """Solve ``L[u] = f`` with Dirichlet data by GP-HM (see :mod:`bayestensor.pde.inference`).

    Parameters
    ----------
    problem : Problem
        E.g. ``bt.pde.problems.benchmark("poisson_1d_sin100")`` or
        ``bt.pde.Problem.manufactured(...)``.
    kernel : {"gaussian", "student-t"}, default "gaussian"
        Spectral mixture family per dimension (Gaussian mixture, or Student-t mixture = Matérn-ν
        envelope × cosine).
    n_components : int, default 30
        Mixture components per dimension, frequencies initialised on an even grid up to
        ``max_freq``.
    steps : int, default 100
        Maximum Adam steps on the kernel parameters (0: keep the initial kernels and just solve).
    grid : int or sequence of int, optional
        Re-discretise a manufactured problem with this many points per dimension.
    max_freq : float or sequence of float, optional
        Highest initial frequency per dimension (cycles per unit); default 0.6 × the grid's
        Nyquist frequency.
    learning_rate : float, default 1e-2
        Adam step size.
    precision : float, default 1e6
        w: residual and boundary are fitted to about 1/w of their RMS (:class:`GPHMConfig`).
    lbfgs_steps : int, default 0
        L-BFGS steps after Adam (ended early by ``patience`` or ``lbfgs_time``).
    lbfgs_time : float, default 30
        Wall-time budget of the L-BFGS steps, in seconds.
    patience : int, default 30
        Early stopping: steps without improvement of the midpoint residual.
    method : {"auto", "dense", "kron", "kron_gn"}, default "auto"
        ``U``-step solver (:mod:`bayestensor.pde.inference`): ``"dense"`` up to 2500 grid
        points; above that ``"kron"`` for linear and ``"kron_gn"`` for nonlinear operators
        (Gauss–Newton keeping the GP prior, by CG with Kronecker products; kernels learned on a
        coarser grid, :mod:`bayestensor.pde.kron_gn`).
    nu : float, default 2.5
        Matérn smoothness of the Student-t mixture.
    jitter : float, default 1e-10
        Relative diagonal jitter of each ``K_d``.
    blas_threads : int or None, default 1
        Threads for LAPACK/BLAS during the solve (``None``: leave as is). One thread is much
        faster on a busy machine: OpenBLAS's spinning threads slow a 400 × 400 Cholesky from
        ~2 ms to ~500 ms when the cores are oversubscribed.
    progress : bool, default True
        Show a progress bar over the Adam steps.
    dtype : {"float64", "float32"}, default "float64"
        What the solver computes in, whatever the global ``jax_enable_x64`` says (it is
        unchanged afterwards). Spectral-mixture kernels with high frequencies need float64:
        ``"float32"`` misses every benchmark's target by one to three orders of magnitude and is
        there to measure that (the reliability check then warns).

    Returns
    -------
    PDESolution
        A linear problem whose solution's scale (estimated by finite differences) is outside
        1e-2 … 1e2 is solved for ``u / c`` at O(1), ``c`` a power of two, and ``U`` scaled
        back (exact; :mod:`bayestensor.pde.scaling`): its kernels and losses are those of the
        rescaled problem. Nonlinear problems are solved as they are; far from O(1) (RMS outside
        1e-3 … 1e3) they lose accuracy, and the warning names the scale.

    Raises
    ------
    ValueError
        Before anything is traced, naming the argument: an unknown kernel, a bad setting (ints
        must be ints, not floats; rates, precision, jitter and ν finite and positive), a bad
        problem (see :meth:`Problem.validate`, :meth:`Problem.manufactured`), or ``grid`` on a
        problem without exact solution. After the fit, if the returned solution or its loss is
        NaN or inf (with the likely cause) instead of returning it.
    """
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a bayestensor.pde.Problem, got {type(problem)}")
    steps = check_int("steps", steps, minimum=0)
    if blas_threads is not None:
        blas_threads = check_int("blas_threads", blas_threads)
    if grid is not None and problem.exact is None:
        raise ValueError("grid= re-discretises manufactured problems only (problem.exact)")
    problem = problem.validate()
    if max_freq is not None and np.ndim(max_freq) > 0:
        max_freq = tuple(max_freq)
    # the settings are checked (and named) by resolve_config
    config = GPHMConfig(
        spectrum=KERNELS[kernel],
        nu=nu,
        n_components=n_components,
        max_freq=max_freq,
        jitter=jitter,
        precision=precision,
        learning_rate=learning_rate,
        n_steps=steps,
        patience=patience,
        lbfgs_steps=lbfgs_steps,
        lbfgs_time=lbfgs_time,
        method=method,
        dtype=dtype,
    )
    if grid is not None:
        sizes = check_grid_sizes(grid, len(problem.shape))
        config = resolve_config(problem._replace(grid=tuple(np.zeros(n) for n in sizes)), config)
    else:
        config = resolve_config(problem, config)
    start = time.perf_counter()
    with scope(config.dtype), threads(blas_threads):
        if grid is not None:
            problem = Problem.manufactured(
                problem.operator, problem.exact, problem.box, grid, problem.variables
            )
        problem = problem.astype(config.dtype)
        check_coordinates(problem, config.dtype)
        # a linear problem is solved for u / c, c its solution's scale (scaling.py): exact
        c = rescale_factor(problem) if is_linear(problem) else 1.0
        params, trace = _fit(rescaled(problem, c) if c != 1.0 else problem, config, None, progress)
        params = params._replace(U=params.U * c)
        jax.block_until_ready(params)
        solution = PDESolution(problem, config, params, trace, time.perf_counter() - start)
        rel = assess(solution)
        # assess compiled a closure over this problem too: release it like the fit's functions
        release_compiled()
    solution = dataclasses.replace(solution, reliability=rel)
    if not rel.error_estimate <= WARN_ERROR:
        warnings.warn(
            f"the solution may be inaccurate: estimated relative error {rel.error_estimate:.2g} "
            f"(PDE residual between grid points {rel.residual:.2g} of the source, boundary "
            f"misfit {rel.boundary:.2g}). Likely cause — {likely_cause(solution, rel)}",
            RuntimeWarning,
            stacklevel=2,
        )
    if not rel.between_points and not all(is_uniform(x) for x in problem.grid):
        warnings.warn(
            "the reliability check could not look between the grid points: the problem has no "
            "source_fn and its grid is not uniform, so the estimated error "
            f"{rel.error_estimate:.2g} sees the collocation points only (round-off, boundary "
            "misfit), not whether the grid resolves the solution. Give source_fn= (f anywhere "
            "in the box) to check it",
            RuntimeWarning,
            stacklevel=2,
        )
    if rel.other_solution < NEAR_SOLUTION:
        where = (
            "the PDE has no solution next to this one once discretised by fourth-order finite "
            "differences: it sits at a fold, where two solutions meet, and a change of the data "
            "as small as that discretisation's error moves it far"
            if rel.other_solution == 0
            else f"another solution of the same PDE with the same boundary data lies "
            f"{rel.other_solution:.0%} away from this one (relative L2; found by Newton's "
            "method with deflation next to it)"
        )
        warnings.warn(
            f"{where}: the data do not single out the solution returned, which may not be the "
            "one you mean. Nonlinear equations such as Allen–Cahn can have several solutions; "
            "check this one against what you know of the problem",
            RuntimeWarning,
            stacklevel=2,
        )
    return solution
