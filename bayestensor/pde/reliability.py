"""How far a GP-HM solution can be trusted, without the exact solution.

The solver fits the PDE at the collocation points; between them nothing is fitted. The check
below evaluates the GP mean ``ū`` on a grid twice as fine (every collocation point and every
cell midpoint, in every dimension), where the residual

.. math:: ρ = \\mathcal L[\\bar u] - f

is a measure of what the collocation missed, and turns it into an estimate of the error itself:
the error ``e = u - ū`` solves the linearised problem

.. math:: \\mathcal L'[\\bar u]\\, e = -ρ \\ \\text{inside}, \\qquad e = g - \\bar u
    \\ \\text{on the boundary},

which is solved once by second-order finite differences on the fine grid (a sparse solve,
SciPy). Its relative size ``‖e‖ / ‖ū‖`` is :attr:`Reliability.error_estimate`. Where ``ρ``
flips sign from cell to cell its effect on ``e`` is small, and the finite-difference solve says
so; where it is smooth (an under-resolved frequency, a drifting phase, float32 round-off) the
error it causes is as large as the solve says.

A source with fewer than about one grid point per period aliases at the midpoints as it does
at the grid points (an aliased, smooth residual of 1e-4 for a true error of 100); at random
offsets it cannot. So the residual is also evaluated with one seeded random point inside each
cell instead of the midpoint, and where it is :data:`ALIASING_RATIO` times larger there, the
error solve runs on those points (the midpoints otherwise: on a merely coarse grid they
estimate the error better, 6.6 against a true 0.85 on the jittered points). For naming the
cause, :attr:`Reliability.high_frequency` samples ``f`` eight and nine times finer than the
grid along a few lines per dimension, so that energy beyond the grid's Nyquist frequency is
seen rather than aliased.

Needs ``problem.source_fn`` for ``f`` between the grid points (every manufactured problem has
it); without it only the collocation points are used, the estimate sees round-off and
boundary misfit, not resolution, and :attr:`Reliability.between_points` is False (``solve``
warns when the grid is not uniform either, where the estimate was measured 3,000 times below
the true error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from bayestensor.driver import precision
from bayestensor.kron import kron_sum_solve, sum_eig
from bayestensor.pde.branches import along, nearby_solution
from bayestensor.pde.config import GPHMConfig, is_linear
from bayestensor.pde.factors import dimension_factors, grid_keys
from bayestensor.pde.inference import coefficients, cross_kernel, predict_tensor
from bayestensor.pde.problems import Problem, boundary_mask, derivative_keys

#: ``solve`` warns when :attr:`Reliability.error_estimate` exceeds this.
WARN_ERROR = 3e-3

#: Fine grids with more points than this get the separable (mean-coefficient) error solve.
SPARSE_MAX_POINTS = 200_000

#: Above this many fine-grid points the search for another solution runs on the collocation
#: grid: each Newton step is a sparse LU of the grid's size (on a 199 × 199 fine grid the
#: search took 14-44 s, on the 100 × 100 collocation grid 6.5 s).
BRANCH_MAX_POINTS = 5_000

#: The likely cause is named "resolution" when the source puts more than this share of its
#: energy in the top third of the grid's frequencies.
HIGH_FREQUENCY_SHARE = 1e-2

#: Seed of the points between the grid points (a fixed seed: the same solution gets the same
#: estimate every time).
JITTER_SEED = 20_240_613

#: Each point between two grid points lies this far into its cell, uniformly at random.
JITTER_RANGE = (0.25, 0.75)

#: The error solve runs on the jittered points instead of the midpoints when the residual there
#: is this many times larger (aliasing: 1e4 times at 0.55 points per period; resolved and
#: merely coarse grids, where the midpoints give the better estimate, stay within a few).
ALIASING_RATIO = 10.0

#: :attr:`Reliability.high_frequency` samples the source this many times finer than the grid
#: (two rates: a frequency that aliases to a low one at both lies beyond 70 times the grid's
#: Nyquist frequency).
OVERSAMPLING = (8, 9)

#: Lines per dimension and rate along which the source is sampled for the frequency share.
SPECTRUM_LINES = 3

#: A grid whose spacings differ from their mean by more than this fraction is non-uniform: its
#: Fourier share means nothing and, without ``source_fn``, the check cannot judge resolution.
UNIFORM_SPACING = 0.05

#: The likely cause is named "too few grid points" below this many points in a dimension: the
#: default kernels failed on smooth solutions at 3-10 points (true error ~1) and work from 12.
TINY_GRID = 12

#: Solutions whose RMS lies outside this range are far from the O(1) scale the priors and the
#: initial kernels assume (accurate from 1e-3 to 1e3, 0.1-0.4 error at 1e-6 and 1e6).
SCALE_RANGE = (1e-3, 1e3)


class Reliability(NamedTuple):
    """What :func:`assess` measures (all relative, dimensionless).

    Attributes
    ----------
    error_estimate : float
        Estimated ``‖u − ū‖ / ‖ū‖`` on the fine grid (module docstring).
    residual : float
        ``‖ρ‖`` on the fine grid's interior over the larger of ``‖f‖`` and the largest term
        ``‖c_k ∂_k ū‖`` of the linearised operator (the scale of a homogeneous equation).
    boundary : float
        RMS of ``g − ū`` at the boundary points over ``max(RMS of g, RMS of ū)``.
    high_frequency : float
        Share of the source's energy in the top third of the grid's frequencies and beyond
        (per dimension, the largest; sampled 8-9 times finer than the grid when the problem
        has ``source_fn``, else on the grid): large values mean the grid is too coarse.
    between_points : bool
        Whether the residual was checked between the grid points (the problem has
        ``source_fn``). When False the estimate sees the collocation points only: it cannot
        tell whether the grid resolves the solution, and is a lower bound.
    other_solution : float
        Nonlinear problems: relative distance ``‖w − ū‖ / ‖ū‖`` to the nearest other solution
        ``w`` of the same PDE and data found next to ``ū``
        (:func:`~bayestensor.pde.branches.nearby_solution`); ``inf`` when none was found.
        Small values mean the data do not single out the solution returned. ``nan`` for linear
        problems and where the check could not run.
    """

    error_estimate: float
    residual: float
    boundary: float
    high_frequency: float
    other_solution: float = math.nan
    between_points: bool = True


def fine_grid(x: np.ndarray) -> np.ndarray:
    """Every point of ``x`` and every midpoint between neighbours, sorted."""
    out = np.empty(2 * x.shape[0] - 1)
    out[0::2] = x
    out[1::2] = 0.5 * (x[1:] + x[:-1])
    return out


def jittered_grid(x: np.ndarray, seed: int = JITTER_SEED) -> np.ndarray:
    """Every point of ``x`` and one seeded random point inside each cell (a fraction
    :data:`JITTER_RANGE` of the way across), sorted."""
    rng = np.random.default_rng([seed, x.shape[0]])
    out = np.empty(2 * x.shape[0] - 1)
    out[0::2] = x
    out[1::2] = x[:-1] + rng.uniform(*JITTER_RANGE, x.shape[0] - 1) * np.diff(x)
    return out


def is_uniform(x: np.ndarray) -> bool:
    """Whether the spacings of ``x`` are all within :data:`UNIFORM_SPACING` of their mean."""
    h = np.diff(np.asarray(x, np.float64))
    return bool(np.all(np.abs(h - h.mean()) <= UNIFORM_SPACING * h.mean()))


def _stencil(n: int, offsets: Sequence[int], values: Sequence[np.ndarray]) -> sp.csr_matrix:
    """An ``n × n`` matrix whose interior rows ``i`` hold ``values[k][i − 1]`` at column
    ``i + offsets[k]``; the two end rows are zero (boundary rows of the solve)."""
    i = np.arange(1, n - 1)
    rows = np.repeat(i, len(offsets))
    cols = (i[:, None] + np.asarray(offsets)).ravel()
    return sp.csr_matrix((np.stack(values, 1).ravel(), (rows, cols)), shape=(n, n))


def _fd_matrices(x: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Three-point first and second derivative matrices on a (non-uniform) grid.

    Rows of the two end points are zero (they are boundary rows of the solve).
    """
    hl, hr = x[1:-1] - x[:-2], x[2:] - x[1:-1]
    d1 = [-hr / (hl * (hl + hr)), (hr - hl) / (hl * hr), hl / (hr * (hl + hr))]
    d2 = [2 / (hl * (hl + hr)), -2 / (hl * hr), 2 / (hr * (hl + hr))]
    n = x.shape[0]
    return _stencil(n, (-1, 0, 1), d1), _stencil(n, (-1, 0, 1), d2)


def _one_sided(x: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two-point backward and forward first-derivative matrices (end rows zero)."""
    hl, hr = x[1:-1] - x[:-2], x[2:] - x[1:-1]
    n = x.shape[0]
    return _stencil(n, (-1, 0), [-1 / hl, 1 / hl]), _stencil(n, (0, 1), [-1 / hr, 1 / hr])


def _cell_spacing(x: np.ndarray, d: int, shape: Sequence[int]) -> np.ndarray:
    """The local grid spacing along dimension ``d`` at every point (mean of the two sides)."""
    h = np.gradient(x)
    return np.broadcast_to(h.reshape([-1 if e == d else 1 for e in range(len(shape))]), shape)


def high_frequency_share(values: np.ndarray) -> float:
    """Largest share, over dimensions, of ``values``' energy above 2/3 of the grid's Nyquist
    frequency (Hann-windowed, so that the jump between the two ends does not leak)."""
    share = 0.0
    for d in range(values.ndim):
        n = values.shape[d]
        window = np.hanning(n).reshape([-1 if e == d else 1 for e in range(values.ndim)])
        spec = np.abs(np.fft.rfft(values * window, axis=d)) ** 2
        spec = np.moveaxis(spec, d, 0).reshape(spec.shape[d], -1).sum(1)
        total = spec.sum()
        if total > 0:
            share = max(share, float(spec[int(2 * spec.shape[0] / 3) :].sum() / total))
    return share


def _share_above(values: np.ndarray, cut: float) -> float:
    """Share of the energy of the rows of ``values`` (Hann-windowed) in the rfft bins at or
    above the fraction ``cut`` of the Nyquist bin."""
    spec = (np.abs(np.fft.rfft(values * np.hanning(values.shape[-1]), axis=-1)) ** 2).sum(0)
    total = spec.sum()
    return float(spec[int(np.ceil(cut * (spec.shape[0] - 1))) :].sum() / total) if total else 0.0


def source_high_frequency(problem: Problem, seed: int = JITTER_SEED) -> float:
    """:func:`high_frequency_share` of ``problem.source_fn`` sampled finer than the grid.

    Per dimension ``d``, ``f`` is sampled along :data:`SPECTRUM_LINES` lines parallel to axis
    ``d`` (the other coordinates seeded, uniform in the box), at ``K (n_d − 1) + 1`` equally
    spaced points for each ``K`` of :data:`OVERSAMPLING`; the share is the energy above 2/3 of
    the grid's Nyquist frequency ``1 / (2 h_max)`` (its largest spacing), the largest over
    dimensions and rates. Aliasing hides no frequency below ``K`` times the Nyquist frequency.
    """
    rng = np.random.default_rng([seed, len(problem.shape)])
    share, sampled = 0.0, False
    for d, ((a, b), x) in enumerate(zip(problem.box, problem.grid, strict=True)):
        h_max = float(np.max(np.diff(np.asarray(x, np.float64))))
        for K in OVERSAMPLING:
            m = K * (problem.shape[d] - 1) + 1
            t = np.linspace(a, b, m)
            # the grid's top third of frequencies, as a fraction of this sampling's Nyquist
            cut = (2.0 / 3.0) * ((b - a) / (m - 1)) / h_max
            coords = [
                np.broadcast_to(t, (SPECTRUM_LINES, m))
                if e == d
                else np.broadcast_to(rng.uniform(lo, hi, (SPECTRUM_LINES, 1)), (SPECTRUM_LINES, m))
                for e, (lo, hi) in enumerate(problem.box)
            ]
            try:  # checked on the midpoint mesh only: a function that fails here is skipped
                f = problem.source_fn(*(jnp.asarray(c) for c in coords))
                f = np.broadcast_to(np.asarray(f, np.float64), (SPECTRUM_LINES, m))
            except Exception:  # noqa: BLE001
                continue
            if np.all(np.isfinite(f)):
                sampled = True
                share = max(share, _share_above(f - f.mean(-1, keepdims=True), cut))
    # nothing sampled between the points: the share on the grid, not a silent 0
    return share if sampled else high_frequency_share(np.asarray(problem.source, np.float64))


def _fine_fields(U, kernels, problem: Problem, config: GPHMConfig, coords):
    """Derivative grids of the GP mean, the residual and the operator's linearisation on the
    tensor grid ``coords`` (jitted)."""
    factors = [
        dimension_factors(k, x, config, orders=())
        for k, x in zip(kernels, problem.grid, strict=True)
    ]
    cross = [
        [cross_kernel(k, c, x, config, o) for o in range(3)]
        for k, c, x in zip(kernels, coords, problem.grid, strict=True)
    ]
    keys = [k for k, _, _ in grid_keys(problem.variables)]
    grids = predict_tensor(U, kernels, factors, cross, problem.variables, keys)
    mesh = jnp.meshgrid(*coords, indexing="ij")
    f = jnp.asarray(problem.source_fn(*mesh), U.dtype)
    return grids, problem.operator(grids) - f, f, coefficients(problem, grids)


def assess(solution) -> Reliability:
    """The :class:`Reliability` of a :class:`~bayestensor.pde.PDESolution` (module docstring).

    Runs in the solution's precision; a few fine-grid predictions and one sparse solve.
    """
    problem, config, (U, kernels) = solution.problem, solution.config, solution.params
    grid = [np.asarray(x, np.float64) for x in problem.grid]
    source = np.asarray(problem.source, np.float64)
    between = problem.source_fn is not None and problem.operator is not None
    hf = source_high_frequency(problem) if between else high_frequency_share(source)
    mask = boundary_mask(problem.shape)
    g = np.asarray(problem.boundary_values, np.float64)
    Ub = np.asarray(U, np.float64)[mask]
    scale_g = max(np.sqrt(np.mean(g**2)), np.sqrt(np.mean(np.asarray(U, np.float64) ** 2)), 1e-300)
    boundary = float(np.sqrt(np.mean((g - Ub) ** 2)) / scale_g)
    if problem.operator is None:  # a loaded solution: no operator to check
        return Reliability(float("nan"), float("nan"), boundary, hf, between_points=False)
    if problem.source_fn is None:
        problem = problem._replace(source_fn=_on_grid_source(problem))
    fields_on = jax.jit(
        lambda U, kernels, coords: _fine_fields(U, kernels, problem, config, coords)
    )

    def fields_at(coords):
        out = fields_on(U, kernels, tuple(jnp.asarray(c, U.dtype) for c in coords))
        return jax.tree.map(lambda a: np.asarray(a, np.float64), out)

    coords = [fine_grid(x) for x in grid] if between else grid
    grids, rho, f, coef = fields_at(coords)
    fine_mask = boundary_mask(rho.shape)
    if between:
        # the residual at seeded random points inside the cells (their tensor grid alone, a
        # quarter of the fine grid in 2-D) against the midpoints': far larger there, the source
        # aliases at the midpoints (module docstring), and the error solve runs on the
        # jittered fine grid
        jittered = [jittered_grid(x) for x in grid]
        rho_inside = fields_at([c[1::2] for c in jittered])[1]
        rho_mid = rho[tuple(slice(1, None, 2) for _ in grid)]
        if np.sqrt(np.mean(rho_inside**2)) > ALIASING_RATIO * np.sqrt(np.mean(rho_mid**2)):
            coords = jittered
            grids, rho, f, coef = fields_at(coords)
            fine_mask = boundary_mask(rho.shape)
    shape = rho.shape
    u = grids["u"]
    # the source's scale, or for a (nearly) homogeneous equation the largest term of the
    # linearised operator (e.g. ‖200 ū_x‖ for 200 u_x + u_y = 0), so that round-off in a zero
    # source does not make a tiny residual look huge
    terms = [np.linalg.norm((c * grids[k])[~fine_mask]) for k, c in coef.items()]
    norm_f = max(np.linalg.norm(f), *terms, 0.0)
    norm_f = norm_f if norm_f > 0 else math.sqrt(rho.size)
    residual = float(np.linalg.norm(rho[~fine_mask]) / norm_f)
    # the error's boundary values: g − ū at the collocation boundary points, linear in between
    e_b = _boundary_error(g - Ub, mask, shape, coords, grid)
    if rho.size <= SPARSE_MAX_POINTS:
        e = _sparse_error(coef, rho, e_b, coords, problem.variables, fine_mask)
    else:
        e = _separable_error(coef, rho, e_b, coords, problem.variables, fine_mask)
    norm_u = max(np.linalg.norm(u), np.finfo(float).tiny)
    other = math.nan
    if not is_linear(problem):
        if rho.size <= BRANCH_MAX_POINTS:
            other = nearby_solution(problem.operator, problem.variables, coords, u, f, norm_f)
        else:
            u_grid, f_grid = np.asarray(U, np.float64), np.asarray(problem.source, np.float64)
            other = nearby_solution(
                problem.operator, problem.variables, grid, u_grid, f_grid, norm_f
            )
    estimate = float(np.linalg.norm(e) / norm_u)
    return Reliability(estimate, residual, boundary, hf, other, between_points=between)


def _sparse_error(coef, rho, e_b, coords, variables, fine_mask) -> np.ndarray:
    """The error solve with the linearised operator as it is (sparse LU)."""
    shape = rho.shape
    J = sp.csr_matrix((rho.size, rho.size))
    for key, d, order in grid_keys(variables):
        c = coef[key].ravel()
        if not np.any(c):
            continue
        if order == 0:
            J = J + sp.diags(c)
        elif order == 2:
            J = J + sp.diags(c) @ along(_fd_matrices(coords[d])[1], d, shape)
        else:
            J = J + _first_order(c, coef.get(f"u_{variables[d]}{variables[d]}"), coords, d, shape)
    inside = ~fine_mask.ravel()
    rhs = np.where(inside, -rho.ravel(), e_b.ravel())
    J = sp.diags(inside.astype(float)) @ J + sp.diags((~inside).astype(float))
    with np.errstate(all="ignore"):
        try:
            e = spla.spsolve(J.tocsc(), rhs)
        except RuntimeError:  # exactly singular (e.g. pure advection with data on every edge)
            e = spla.lsqr(J, rhs, atol=1e-12, btol=1e-12)[0]
        if not np.all(np.isfinite(e)):
            e = spla.lsqr(J, rhs, atol=1e-12, btol=1e-12)[0]
    return e.reshape(shape)


def _first_order(c, c2, coords, d: int, shape) -> sp.csr_matrix:
    """``diag(c) ∂_d`` by hybrid differencing: central where the second-order coefficient
    ``c2`` dominates on the cell scale (cell Péclet number ``|c| h / |c2| ≤ 2``), upwind where
    transport does (backward for ``c > 0``, forward for ``c < 0``). Central differences of a
    transport-dominated operator with data on every edge have near-null checkerboard modes:
    on ``200 u_x + u_y = 0`` they made the estimate 3e11 for a true error of 2e-3."""
    c2 = np.zeros_like(c) if c2 is None else np.abs(c2.ravel())
    h = _cell_spacing(coords[d], d, shape).ravel()
    central = np.abs(c) * h <= 2.0 * c2
    D1 = along(_fd_matrices(coords[d])[0], d, shape)
    back, fwd = (along(m, d, shape) for m in _one_sided(coords[d]))
    return (
        sp.diags(np.where(central, c, 0.0)) @ D1
        + sp.diags(np.where(~central & (c > 0), c, 0.0)) @ back
        + sp.diags(np.where(~central & (c < 0), c, 0.0)) @ fwd
    )


def _separable_error(coef, rho, e_b, coords, variables, fine_mask) -> np.ndarray:
    """The error solve on large grids: each coefficient replaced by its mean over the interior,
    so that the operator is a Kronecker sum solved by fast diagonalisation (O(N Σ_d n_d)).

    First-order terms stay central here (an upwind matrix is a Jordan block, which an
    eigendecomposition cannot take): on transport-dominated problems above
    :data:`SPARSE_MAX_POINTS` fine points the estimate is not to be trusted (see
    :func:`_first_order`)."""
    interior = tuple(slice(1, -1) for _ in rho.shape)
    mean = {k: float(np.mean(c[interior])) for k, c in coef.items()}
    mats = []
    for d, v in enumerate(variables):
        D1, D2 = _fd_matrices(coords[d])
        mats.append((mean[f"u_{v}"] * D1 + mean[f"u_{v}{v}"] * D2).toarray())
    # lift the boundary values: interior rows of the operator applied to e_b
    lift = mean["u"] * e_b
    for d, M in enumerate(mats):
        lift = lift + np.moveaxis(np.tensordot(M, e_b, axes=(1, d)), 0, d)
    rhs = (-rho - lift)[interior]
    with jax.enable_x64(True):
        eigs = [sum_eig(jnp.asarray(M[1:-1, 1:-1])) for M in mats]
        inner = np.asarray(kron_sum_solve(eigs, jnp.asarray(rhs), mean["u"]))
    e = np.array(e_b, dtype=float)
    e[interior] = inner
    return e


def _on_grid_source(problem: Problem):
    """``f`` on the collocation grid as a function of the mesh (for problems without source_fn)."""
    source = problem.source

    def fn(*mesh):
        return source

    return fn


def _boundary_error(eb, mask, shape, coords, grid) -> np.ndarray:
    """``g − ū`` on the fine grid's boundary: the collocation values, linear in between."""
    full = np.zeros(mask.shape)
    full[mask] = eb
    out = full
    for d, (c, x) in enumerate(zip(coords, grid, strict=True)):
        if c.shape[0] == x.shape[0]:
            continue
        out = np.apply_along_axis(lambda v, c=c, x=x: np.interp(c, x, v), d, out)
    return np.where(boundary_mask(shape), out, 0.0)


def solution_scale(problem: Problem) -> float:
    """RMS of the second-order finite-difference solution of a linear ``problem`` on its grid.

    The operator's coefficients at ``u = 0`` (:func:`~bayestensor.pde.inference.coefficients`)
    in a sparse solve (upwind where transport dominates) on grids up to
    :data:`~bayestensor.pde.reliability.SPARSE_MAX_POINTS` points, with mean coefficients
    by fast diagonalisation above; ``nan`` if the solve fails. A scale, not a solution: a
    factor 100 off still puts the solver in its accurate range.
    """
    shape = problem.shape
    with jax.ensure_compile_time_eval():
        zeros = {
            k: jnp.zeros(shape, problem.source.dtype) for k in derivative_keys(problem.variables)
        }
        L0 = np.asarray(problem.operator(zeros), np.float64)
        coef = {
            k: np.broadcast_to(np.asarray(c, np.float64), shape)
            for k, c in coefficients(problem, zeros).items()
        }
    mask = boundary_mask(shape)
    g = np.zeros(shape)
    g[mask] = np.asarray(problem.boundary_values, np.float64)
    rho = L0 - np.asarray(problem.source, np.float64)  # the solve takes J u = −ρ inside
    coords = [np.asarray(x, np.float64) for x in problem.grid]
    # constant coefficients without transport: the fast separable solve is exact
    constant = all(np.ptp(c) == 0 for c in coef.values())
    transport = any(np.any(coef[k]) for k, _, order in grid_keys(problem.variables) if order == 1)
    with np.errstate(all="ignore"):
        if rho.size <= SPARSE_MAX_POINTS and not (constant and not transport):
            u = _sparse_error(coef, rho, g, coords, problem.variables, mask)
        else:
            u = _separable_error(coef, rho, g, coords, problem.variables, mask)
    rms = float(np.sqrt(np.mean(u**2)))
    return rms if math.isfinite(rms) else math.nan


def likely_cause(solution, rel: Reliability) -> str:
    """The likely reason a solution is not to be trusted, in words."""
    if solution.config.dtype == "float32":
        return (
            "precision: it was computed in float32; GP-HM's high-frequency kernels need "
            'float64 (dtype="float64", the default)'
        )
    if rel.high_frequency > HIGH_FREQUENCY_SHARE and (
        rel.between_points or min(solution.problem.shape) >= TINY_GRID
    ):
        return (
            f"resolution: {rel.high_frequency:.0%} of the source's energy is in the top third of "
            "the grid's frequencies or beyond; use a finer grid (at least 6 points per period)"
        )
    shape, box = solution.problem.shape, solution.problem.box
    d = int(np.argmin(shape))
    if shape[d] < TINY_GRID:
        return (
            f"too few grid points: {shape[d]} in dimension {solution.problem.variables[d]!r}; "
            f"the default kernels (frequencies up to max_freq = 0.6 × the grid's Nyquist "
            f"frequency) need about {TINY_GRID} or more points per dimension: use a finer grid, "
            f"or for a smooth solution a small max_freq (e.g. "
            f"max_freq={0.5 / (box[d][1] - box[d][0]):.3g}, half a cycle across the box)"
        )
    # the solution's scale: its RMS, and (a failed solve may be near 0) the finite-difference
    # solution of the operator linearised at u = 0
    rms = float(np.sqrt(np.mean(np.asarray(solution.params.U, np.float64) ** 2)))
    with precision("float64"):
        fd = solution_scale(solution.problem.astype("float64"))
    scale = max(rms, fd if math.isfinite(fd) else 0.0)
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return (
            f"scale: the solution is of order {scale:.2g}, far from the O(1) values the solver's "
            "priors and initial kernels assume; a nonlinear problem cannot be rescaled "
            "exactly by the solver (linear ones are): write it in units where u is of order 1"
        )
    t = solution.trace
    if t.n_adam >= solution.config.n_steps and t.best_step >= len(t.residuals) - 10:
        return "too few steps: the residual was still falling when the steps ran out (steps=)"
    if rel.boundary > 1e-3:
        return "the boundary values are not matched (precision= too small?)"
    return (
        "the PDE residual between the collocation points is large: try more steps, a finer grid "
        "or more mixture components"
    )
