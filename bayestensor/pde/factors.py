"""Per-dimension kernel algebra of GP-HM: Gram and derivative matrices, their Cholesky factors,
the derivative grids an operator reads, and ``K⁻¹U`` with ``½ log|K|`` (hand-written reverse
mode). Kronecker products over the dimensions go through :mod:`bayestensor.kron`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from bayestensor.kron import (
    kron_cho_logdet,
    kron_cho_solve,
    kron_tri_solve,
    mode_cho_solve,
)
from bayestensor.pde.config import GPHMConfig, relative_jitter
from bayestensor.pde.kernels import (
    SpectralMixture,
    sm_kernel_lag,
)
from bayestensor.pde.problems import Problem
from bayestensor.tensor import multi_mode_dot


class DimensionFactors(NamedTuple):
    """Per-dimension matrices of the GP-HM model.

    With ``K + εk(0)I = LLᵀ`` the derivative matrices are ``D_i = K^{(i,0)} (K + εk(0)I)⁻¹ =
    G_i L⁻¹`` with ``G_i = K^{(i,0)} L^{-T}`` (one triangular solve): the ``U``-step works with
    whitened values ``Z = U ×_1 L_1⁻¹ ⋯``, for which ``D_i U = G_i Z`` along a mode. The loss
    uses ``K^{(i,0)}`` and the weights ``K⁻¹U`` instead (vector solves only, cheap to
    differentiate). Matrices of derivative orders the operator does not use are ``None``.

    Attributes
    ----------
    L : Float[Array, "n n"]
        Lower Cholesky factor of ``K_d + ε_d I``.
    K : Float[Array, "n n"]
        ``K_d + ε_d I``.
    K1, K2 : Float[Array, "n n"] or None
        ``K_d^{(1,0)}``, ``K_d^{(2,0)}``.
    G1, G2 : Float[Array, "n n"] or None
        ``K_d^{(1,0)} L_d^{-T}``, ``K_d^{(2,0)} L_d^{-T}``.
    """

    L: Float[Array, "n n"]
    K: Float[Array, "n n"]
    K1: Float[Array, "n n"] | None
    K2: Float[Array, "n n"] | None
    G1: Float[Array, "n n"] | None
    G2: Float[Array, "n n"] | None

    def derivative_matrix(self, order: int) -> Float[Array, "n n"]:
        """``D_order = G_order L⁻¹`` (``order`` 1 or 2), the grid-values-to-derivative matrix."""
        G = self.G1 if order == 1 else self.G2
        if G is None:
            return jnp.zeros_like(self.L)
        return triangular_solve(self.L, G.T, trans=True).T

    def whitened(self, order: int) -> Float[Array, "n n"]:
        """``L`` (order 0), ``G1`` or ``G2``; zeros for an order the operator does not use."""
        M = (self.L, self.G1, self.G2)[order]
        return jnp.zeros_like(self.L) if M is None else M

    def gram(self, order: int) -> Float[Array, "n n"]:
        """``K + εk(0)I`` (order 0), ``K1`` or ``K2``; zeros for an unused order."""
        M = (self.K, self.K1, self.K2)[order]
        return jnp.zeros_like(self.K) if M is None else M


def kernel_matrix(
    params: SpectralMixture, x: Float[Array, " n"], config: GPHMConfig, n: int = 0
) -> Float[Array, "n n"]:
    """``K^{(n,0)}[i, j] = k^{(n)}(x_i − x_j)`` on one dimension's grid coordinates.

    On an equally spaced grid (checked on the concrete coordinates) the matrix is Toeplitz: the
    kernel is evaluated at the ``2m − 1`` distinct lags ``(i − j) h`` and gathered, which costs
    ``O(mQ)`` instead of ``O(m²Q)``; otherwise :func:`~bayestensor.pde.kernels.sm_kernel_lag` is
    evaluated on all pairs.

    Parameters
    ----------
    params : SpectralMixture
    x : Float[Array, "n"]
        Sorted grid coordinates (concrete, not traced).
    config : GPHMConfig
    n : int, default 0
        Derivative order in the first argument.

    Returns
    -------
    Float[Array, "n n"]
    """
    xs = np.asarray(x)
    m = xs.shape[0]
    h = (xs[-1] - xs[0]) / (m - 1)
    if np.allclose(np.diff(xs), h, rtol=1e-10, atol=0.0):
        lags = jnp.asarray(h * np.arange(-(m - 1), m), dtype=x.dtype)
        values = sm_kernel_lag(params, lags, config.spectrum, config.nu, n)
        return values[np.arange(m)[:, None] - np.arange(m)[None, :] + m - 1]
    return sm_kernel_lag(params, x[:, None] - x[None, :], config.spectrum, config.nu, n)


def dimension_factors(
    params: SpectralMixture, x: Float[Array, " n"], config: GPHMConfig, orders=(1, 2)
) -> DimensionFactors:
    """Gram, Cholesky and derivative matrices of one dimension.

    .. math:: K + εk(0)I = L L^\\top, \\qquad G_i = K^{(i,0)} L^{-\\top}
        \\quad (i ∈ \\text{orders}).

    Parameters
    ----------
    params : SpectralMixture
        The dimension's kernel.
    x : Float[Array, "n"]
        Its grid coordinates.
    config : GPHMConfig
    orders : tuple of int, default (1, 2)
        Derivative orders the operator uses along this dimension.

    Returns
    -------
    DimensionFactors
    """
    K = kernel_matrix(params, x, config)
    n = x.shape[0]
    K = K + relative_jitter(config, K.dtype) * K[0, 0] * jnp.eye(n, dtype=K.dtype)
    L = jnp.linalg.cholesky(K)
    Ks = {o: kernel_matrix(params, x, config, o) for o in (1, 2) if o in orders}
    Gs = {o: triangular_solve(L, M.T).T for o, M in Ks.items()}  # G = K^{(i,0)} L^{-T}
    return DimensionFactors(L, K, Ks.get(1), Ks.get(2), Gs.get(1), Gs.get(2))


#: Blocks at most this size are inverted by a triangular solve in :func:`triangular_inverse`.
TRI_INV_BLOCK = 32

#: Blocks at most this size are solved directly in :func:`triangular_solve`.
TRI_SOLVE_BLOCK = 64


def triangular_solve(L: Float[Array, "n n"], B: Float[Array, "n m"], trans: bool = False):
    """``L⁻¹B`` (or ``L⁻ᵀB``) for lower-triangular ``L``, recursively blocked.

    Splitting ``L`` in 2 × 2 blocks, ``X₁ = L₁₁⁻¹B₁`` and ``X₂ = L₂₂⁻¹(B₂ − L₂₁X₁)`` (the
    transposed system runs bottom-up): the same operations as forward substitution, grouped into
    matrix products, which XLA runs about 1.5× faster on CPU than its triangular solve with many
    right-hand sides. Blocks of at most :data:`TRI_SOLVE_BLOCK` rows use
    :func:`jax.scipy.linalg.solve_triangular`.
    """
    n = L.shape[0]
    if n <= TRI_SOLVE_BLOCK:
        return jsl.solve_triangular(L, B, lower=True, trans=1 if trans else 0)
    m = n // 2
    L11, L21, L22 = L[:m, :m], L[m:, :m], L[m:, m:]
    if trans:
        X2 = triangular_solve(L22, B[m:], trans=True)
        X1 = triangular_solve(L11, B[:m] - L21.T @ X2, trans=True)
    else:
        X1 = triangular_solve(L11, B[:m])
        X2 = triangular_solve(L22, B[m:] - L21 @ X1)
    return jnp.concatenate([X1, X2])


def triangular_inverse(L: Float[Array, "n n"]) -> Float[Array, "n n"]:
    r"""``L⁻¹`` of a lower-triangular matrix by recursive 2 × 2 blocking.

    .. math:: \begin{pmatrix} L_{11} & 0 \\ L_{21} & L_{22} \end{pmatrix}^{-1} =
        \begin{pmatrix} L_{11}^{-1} & 0 \\ -L_{22}^{-1} L_{21} L_{11}^{-1} & L_{22}^{-1}
        \end{pmatrix};

    blocks of at most :data:`TRI_INV_BLOCK` rows use a triangular solve against the identity.
    The work is ``n³/3`` flops in matrix products, about 3× faster on CPU than a triangular
    solve with ``n`` right-hand sides (``n³`` flops).
    """
    n = L.shape[0]
    if n <= TRI_INV_BLOCK:
        return jsl.solve_triangular(L, jnp.eye(n, dtype=L.dtype), lower=True)
    m = n // 2
    W11 = triangular_inverse(L[:m, :m])
    W22 = triangular_inverse(L[m:, m:])
    W21 = -W22 @ (L[m:, :m] @ W11)
    top = jnp.concatenate([W11, jnp.zeros((m, n - m), L.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([W21, W22], axis=1)], axis=0)


def used_orders(problem: Problem) -> tuple[tuple[int, ...], ...]:
    """Derivative orders (1, 2) the operator reads along each dimension (probed numerically)."""
    rng = np.random.default_rng(1)
    keys = [k for k, _, _ in grid_keys(problem.variables)]
    with jax.ensure_compile_time_eval():
        base = {k: jnp.asarray(rng.standard_normal(problem.shape)) for k in keys}
        ref = np.asarray(problem.operator(base))
        out = []
        for v in problem.variables:
            orders = []
            for o, key in ((1, f"u_{v}"), (2, f"u_{v}{v}")):
                bumped = dict(base)
                bumped[key] = base[key] + 1.0
                if not np.array_equal(np.asarray(problem.operator(bumped)), ref):
                    orders.append(o)
            out.append(tuple(orders))
    return tuple(out)


def all_factors(kernels: Sequence[SpectralMixture], problem: Problem, config: GPHMConfig):
    """:func:`dimension_factors` of every dimension (only the orders the operator uses)."""
    orders = used_orders(problem)
    return [
        dimension_factors(k, x, config, o)
        for k, x, o in zip(kernels, problem.grid, orders, strict=True)
    ]


def grid_keys(variables: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(key, dimension, order)`` of every derivative grid (``("u", -1, 0)`` first)."""
    out = [("u", -1, 0)]
    for d, v in enumerate(variables):
        out += [(f"u_{v}", d, 1), (f"u_{v}{v}", d, 2)]
    return out


def derivative_grids(
    U: Float[Array, "*shape"], factors: Sequence[DimensionFactors], variables: Sequence[str]
) -> dict[str, Float[Array, "*shape"]]:
    """The dict ``{"u": U, "u_x": …, "u_xx": …, …}`` the problem's operator reads.

    .. math:: U_v = U \\times_d D_{1,d} = Z \\times_d G_{1,d} \\times_{e≠d} L_e, \\qquad
        U_{vv} = Z \\times_d G_{2,d} \\times_{e≠d} L_e,

    with ``Z = U ×_1 L_1⁻¹ ⋯ ×_D L_D⁻¹`` (:func:`whiten`) and v the name of dimension d.

    Parameters
    ----------
    U : Float[Array, "*shape"]
        Grid values.
    factors : list of DimensionFactors
        :func:`dimension_factors` of every dimension.
    variables : sequence of str
        Names of the dimensions.

    Returns
    -------
    dict of str to Float[Array, "*shape"]
    """
    Z = whiten(U, factors)
    grids = {"u": U}
    for key, d, order in grid_keys(variables)[1:]:
        mats = [f.L for f in factors]
        mats[d] = factors[d].whitened(order)
        grids[key] = multi_mode_dot(Z, mats)
    return grids


def whiten(U: Float[Array, "*shape"], factors: Sequence[DimensionFactors]):
    """``Z = U ×_1 L_1⁻¹ ⋯ ×_D L_D⁻¹``, so that ``vec(U)ᵀ K⁻¹ vec(U) = ‖Z‖²``."""
    return kron_tri_solve(U, [f.L for f in factors])


def solution_weights(U: Float[Array, "*shape"], factors: Sequence[DimensionFactors]):
    """``A = U ×_1 (K_1 + ε_1I)⁻¹ ⋯``, i.e. ``vec(A) = K⁻¹ vec(U)`` (weights of the GP mean)."""
    return kron_cho_solve(U, [f.L for f in factors])


def _weights_logdet_impl(Ks, Ls, U):
    return kron_cho_solve(U, Ls), 0.5 * kron_cho_logdet(Ls)


@jax.custom_vjp
def weights_logdet(Ks, Ls, U):
    r"""``(A, ½ log|K|)`` with ``vec(A) = K⁻¹ vec(U)``, ``K = ⊗_d K_d``, given ``K_d = L_d L_dᵀ``.

    ``½ log|K| = Σ_d (N / n_d) Σ_i log (L_d)_{ii}``. The reverse-mode derivative is written out
    instead of differentiating through the Cholesky factorisation (whose derivative costs several
    ``n³`` triangular solves): with ``A = U ×_1 K_1⁻¹ ⋯ ×_D K_D⁻¹``,

    .. math:: \bar U = \bar A \times_1 K_1^{-1} \cdots \times_D K_D^{-1}, \qquad
        \bar K_d = -(\bar A \times_d K_d^{-1})_{(d)} A_{(d)}^\top
        + \bar h \, \frac{N}{2 n_d} K_d^{-1},

    (``X_(d)`` the mode-d unfolding, ``h̄`` the cotangent of ``½ log|K|``); one explicit inverse
    ``K_d⁻¹ = W_dᵀ W_d`` per dimension, ``W_d = L_d⁻¹`` from :func:`triangular_inverse`. ``Ls``
    holds the Cholesky factors ``L_d`` of the ``K_d`` and gets no cotangent.
    """
    return _weights_logdet_impl(Ks, Ls, U)


def _weights_logdet_fwd(Ks, Ls, U):
    A, half_logdet = _weights_logdet_impl(Ks, Ls, U)
    return (A, half_logdet), (Ls, A)


def _weights_logdet_bwd(res, cotangents):
    Ls, A = res
    A_bar, h_bar = cotangents
    N = A.size
    U_bar = A_bar
    K_bars = []
    for d, L in enumerate(Ls):
        n = L.shape[0]
        W = triangular_inverse(L)
        U_bar = mode_cho_solve(U_bar, L, d)
        Y = jnp.moveaxis(mode_cho_solve(A_bar, L, d), d, 0).reshape(n, -1)
        Ad = jnp.moveaxis(A, d, 0).reshape(n, -1)
        K_bars.append(-Y @ Ad.T + (0.5 * (N // n)) * h_bar * (W.T @ W))
    return tuple(K_bars), tuple(jnp.zeros_like(L) for L in Ls), U_bar


weights_logdet.defvjp(_weights_logdet_fwd, _weights_logdet_bwd)
