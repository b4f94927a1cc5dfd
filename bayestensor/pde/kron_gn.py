"""Gauss–Newton on large tensor grids that keeps the GP prior (``method="kron_gn"``).

Each step solves the same whitened least-squares problem as the dense solver
(:func:`bayestensor.pde.inference.solve_grid` with ``method="dense"``),

.. math:: \\min_z \\|z\\|^2 + λ_r \\|J L z - y\\|^2 + λ_b \\|B L z - g\\|^2, \\qquad
    \\mathrm{vec}(U) = L z, \\quad L = ⊗_d L_d,

(``J`` the Jacobian of the residual at the current ``U``, ``y = J L z_0 - r``), through its
normal equations ``H z = λ_r (JL)ᵀ y + λ_b (BL)ᵀ g``, ``H = I + λ_r (JL)ᵀ(JL) + λ_b (BL)ᵀ(BL)``,
by preconditioned conjugate gradients started from the current ``z``. ``H`` is applied without
being formed: ``JL`` applied to ``Z`` is ``Σ_k c_k ⊙ (Z ×_1 W_{k,1} ⋯ ×_D W_{k,D})`` — mode
products with the per-dimension matrices of the derivative grids (``c_k`` the operator's
pointwise partial derivatives: the nonlinear term, e.g. ``u³ − u``, enters as a diagonal) — and
its transpose is the same with transposed matrices, ``O(N Σ_d n_d)`` per product.

Preconditioner: ``H̄``, the same matrix with every coefficient ``c_k`` replaced by its mean
(:func:`normal_matrix`). It is assembled from Kronecker identities (``(⊗_d A_d)ᵀ(⊗_d B_d) =
⊗_d A_dᵀB_d``: products of ``n_d × n_d`` matrices only) and factorised once per solve, from the
coefficients at the starting point. For a constant-coefficient operator it is ``H`` itself; for
2-D Allen–Cahn the CG takes 5–30 iterations per Gauss–Newton step on 24² to 100² grids.
Separable preconditioners (fast diagonalisation of the linear part, with the prior and the
boundary rows approximated by their diagonals in the operator's eigenbasis) were tried first and
left CG at thousands of iterations: in that basis the prior ``K⁻¹`` (eigenvalues up to
``1/ε``) is far from diagonal, and the residual rows at boundary points matter. ``H̄`` is
``N × N`` (0.8 GB at 100 × 100 in float64, a Cholesky factorisation of ``N³/3`` flops), so this
path is meant for grids up to about 120 × 120.

Kernels for a large grid are learned on a coarser one (:func:`coarse_problem`, at most
``DENSE_MAX_POINTS`` points, by the dense solver) — the spectral-mixture parameters are in
physical units, so they carry over — and ``U`` on the full grid is then found by these
Gauss–Newton steps from the coarse GP mean (:func:`bayestensor.pde.estimator.fit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from bayestensor.kron import kron_dense
from bayestensor.pde.config import GPHMConfig, precisions
from bayestensor.pde.factors import (
    DimensionFactors,
    derivative_grids,
    grid_keys,
    whiten,
)
from bayestensor.pde.problems import Problem, boundary_mask
from bayestensor.tensor import multi_mode_dot

#: Relative diagonal jitter of the preconditioner's (diagonally scaled) Cholesky factorisation.
PRECOND_JITTER = 1e-13


def _active_maps(factors: Sequence[DimensionFactors], variables) -> dict[str, list]:
    """Per-dimension matrices mapping whitened ``Z`` to every derivative grid the operator reads.

    ``"u"``: ``[L_1, …, L_D]``; ``"u_v"`` / ``"u_vv"``: ``L`` with ``G_{1,d}`` / ``G_{2,d}`` in
    dimension d. Orders the operator does not use along a dimension are left out.
    """
    out = {}
    for key, d, order in grid_keys(variables):
        mats = [f.L for f in factors]
        if order:
            G = (factors[d].G1, factors[d].G2)[order - 1]
            if G is None:
                continue
            mats[d] = G
        out[key] = mats
    return out


def normal_matrix(factors, coef_mean, maps, mask, lam_r: float, lam_b: float):
    """The whitened normal matrix ``H̄ = I + λ_r (J̄L)ᵀ(J̄L) + λ_b (BL)ᵀ(BL)`` with the
    operator's coefficients replaced by their means (``N × N``, from Kronecker identities).

    ``J̄L = Σ_k c̄_k ⊗_d W_{k,d}``, so ``(J̄L)ᵀ(J̄L) = Σ_{k,l} c̄_k c̄_l ⊗_d W_{k,d}ᵀW_{l,d}``
    (products of ``n_d × n_d`` matrices only), and the boundary rows give
    ``⊗_d L_dᵀL_d − ⊗_d L_dᵀE_dL_d`` (``E_d`` the interior indicator of dimension d).
    """
    keys = list(maps)
    N = math.prod(f.L.shape[0] for f in factors)
    H = jnp.eye(N, dtype=factors[0].L.dtype)
    for i, k in enumerate(keys):
        for j, l in enumerate(keys[i:], start=i):
            term = kron_dense([a.T @ b for a, b in zip(maps[k], maps[l], strict=True)])
            w = lam_r * coef_mean[k] * coef_mean[l]
            H = H + (w * term if i == j else w * (term + term.T))
    Ls = [f.L for f in factors]
    inner = [L.T @ (L * jnp.asarray(m, L.dtype)[:, None]) for L, m in zip(Ls, mask, strict=True)]
    H = H + lam_b * (kron_dense([L.T @ L for L in Ls]) - kron_dense(inner))
    return H


def preconditioner(factors, coef, maps, lam_r: float, lam_b: float):
    """``Z ↦ H̄⁻¹ Z`` (:func:`normal_matrix`, one Cholesky factorisation) for the CG."""
    shape = tuple(f.L.shape[0] for f in factors)
    interior = [np.r_[0.0, np.ones(n - 2), 0.0] for n in shape]
    mean = {k: jnp.mean(c) for k, c in coef.items()}
    H = normal_matrix(factors, mean, maps, interior, lam_r, lam_b)
    # symmetric diagonal scaling, and a jitter of PRECOND_JITTER, keep the Cholesky
    # factorisation finite when H̄'s condition number passes 1/eps (a preconditioner only)
    s = 1.0 / jnp.sqrt(jnp.diag(H))
    scaled = s[:, None] * H * s[None, :]
    C = jnp.linalg.cholesky(scaled + PRECOND_JITTER * jnp.eye(H.shape[0], dtype=H.dtype))

    def apply(Z):
        return (s * jsl.cho_solve((C, True), s * Z.ravel())).reshape(shape)

    return apply


def gauss_newton_step(
    U, factors, problem: Problem, config: GPHMConfig, coefficients, maps=None, precond=None
):
    """One Gauss–Newton step from ``U`` by preconditioned CG (module docstring).

    Returns ``(U_new, iterations)``; ``coefficients`` is
    :func:`bayestensor.pde.inference.coefficients` (passed in to avoid a circular import).
    """
    lam_r, lam_b = precisions(problem, config)
    maps = _active_maps(factors, problem.variables) if maps is None else maps
    mask = jnp.asarray(problem.boundary_mask, U.dtype)
    g = jnp.zeros(problem.shape, U.dtype).at[problem.boundary_mask].set(problem.boundary_values)
    Ls = [f.L for f in factors]
    grids = derivative_grids(U, factors, problem.variables)
    coef = {k: c for k, c in coefficients(problem, grids).items() if k in maps}
    r = problem.operator(grids) - problem.source

    def JL(Z):
        return sum(coef[k] * multi_mode_dot(Z, mats) for k, mats in maps.items())

    def JLt(R):
        return sum(multi_mode_dot(coef[k] * R, mats, transpose=True) for k, mats in maps.items())

    def H(Z):
        return (
            Z
            + lam_r * JLt(JL(Z))
            + lam_b * multi_mode_dot(mask * multi_mode_dot(Z, Ls), Ls, transpose=True)
        )

    Z0 = whiten(U, factors)
    y = JL(Z0) - r
    rhs = lam_r * JLt(y) + lam_b * multi_mode_dot(g, Ls, transpose=True)
    precond = preconditioner(factors, coef, maps, lam_r, lam_b) if precond is None else precond
    Z, iters = pcg(H, rhs, Z0, precond, config.cg_tol, config.cg_maxiter)
    return multi_mode_dot(Z, Ls), iters


def pcg(A, b, x0, M, tol: float, maxiter: int):
    """Preconditioned conjugate gradients for SPD ``A``; stops at ``‖r‖ ≤ tol ‖b‖``.

    Returns ``(x, iterations)``.
    """

    def dot(u, v):
        return jnp.sum(u * v)

    r0 = b - A(x0)
    z0 = M(r0)
    bound = (tol * jnp.linalg.norm(b)) ** 2

    def cond(state):
        _, r, _, _, _, k = state
        return (dot(r, r) > bound) & (k < maxiter)

    def body(state):
        x, r, z, p, rz, k = state
        Ap = A(p)
        a = rz / dot(p, Ap)
        x = x + a * p
        r = r - a * Ap
        z = M(r)
        rz_new = dot(r, z)
        p = z + (rz_new / rz) * p
        return x, r, z, p, rz_new, k + 1

    state = (x0, r0, z0, z0, dot(r0, z0), jnp.asarray(0))
    x, *_, k = jax.lax.while_loop(cond, body, state)
    # a breakdown (non-finite preconditioner or step) keeps the starting point
    return jnp.where(jnp.all(jnp.isfinite(x)), x, x0), k


def solve_kron_gn(U0, factors, problem: Problem, config: GPHMConfig, n_iter: int, coefficients):
    """``n_iter`` Gauss–Newton steps by :func:`gauss_newton_step` (a ``lax.scan``).

    The preconditioner is factorised once, from the mean coefficients at ``U0``, and reused by
    every step. Returns ``(U, iterations)`` with the CG iterations of each step.
    """
    lam_r, lam_b = precisions(problem, config)
    maps = _active_maps(factors, problem.variables)
    grids = derivative_grids(U0, factors, problem.variables)
    coef = {k: c for k, c in coefficients(problem, grids).items() if k in maps}
    precond = preconditioner(factors, coef, maps, lam_r, lam_b)

    def _step(U, _):
        return gauss_newton_step(U, factors, problem, config, coefficients, maps, precond)

    return jax.lax.scan(_step, U0, None, length=n_iter)


def coarse_sizes(shape: Sequence[int], max_points: int) -> tuple[int, ...]:
    """Grid sizes with the proportions of ``shape`` and at most ``max_points`` points."""
    s = (max_points / math.prod(shape)) ** (1.0 / len(shape))
    sizes = [max(3, min(n, int(n * s))) for n in shape]
    while math.prod(sizes) > max_points and max(sizes) > 3:
        sizes[int(np.argmax(sizes))] -= 1
    return tuple(sizes)


def coarse_problem(problem: Problem, max_points: int) -> Problem:
    """The problem on a coarser grid of at most ``max_points`` points (same box and operator).

    A manufactured problem (``problem.exact``) is rebuilt on an equally spaced coarse grid;
    any other problem is subsampled (grid points, source and boundary values at about evenly
    spaced indices, ends kept, so the coarse boundary points are boundary points of the fine
    grid).
    """
    sizes = coarse_sizes(problem.shape, max_points)
    if problem.exact is not None:
        return Problem.manufactured(
            problem.operator, problem.exact, problem.box, sizes, problem.variables
        )
    idx = [
        np.unique(np.round(np.linspace(0, n - 1, m)).astype(int))
        for n, m in zip(problem.shape, sizes, strict=True)
    ]
    G = np.zeros(problem.shape)
    G[problem.boundary_mask] = np.asarray(problem.boundary_values)
    sub = np.ix_(*idx)
    mask = boundary_mask(tuple(len(i) for i in idx))
    dtype = problem.source.dtype
    return problem._replace(
        grid=tuple(x[i] for x, i in zip(problem.grid, idx, strict=True)),
        source=problem.source[sub],
        boundary_values=jnp.asarray(G[sub][mask], dtype),
    )
