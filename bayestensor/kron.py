"""Kronecker-structured linear algebra through per-dimension eigendecompositions.

On a grid of ``N = n_1 ⋯ n_D`` points a product kernel has covariance
``K = K_1 ⊗ ⋯ ⊗ K_D`` with symmetric positive (semi-)definite ``K_d`` (``n_d × n_d``). With
``K_d = Q_d diag(λ_d) Q_dᵀ``,

.. math::

    K + sI = \\mathcal Q\\,(Λ + sI)\\,\\mathcal Q^\\top, \\qquad
    \\mathcal Q = Q_1 \\otimes \\cdots \\otimes Q_D, \\qquad
    Λ = \\mathrm{diag}(λ_1 \\otimes \\cdots \\otimes λ_D),

so a matrix–vector product, a solve, the log-determinant and the quadratic form cost
``O(N Σ_d n_d)`` after ``O(Σ_d n_d³)`` for the eigendecompositions, and the dense ``N × N`` matrix
is never formed. Products with ``Q_1 ⊗ ⋯ ⊗ Q_D`` are mode products
(:func:`bayestensor.tensor.multi_mode_dot`).

Vectors are tensors ``V`` of shape ``(n_1, …, n_D)``; every function also accepts the flat
vector ``v = V.ravel()`` (row-major / C order, the last dimension varying fastest) and returns
the same layout it was given. That ordering is the one for which
``jnp.kron(K_1, K_2) @ V.ravel() == (K_1 V K_2ᵀ).ravel()``.

Gradients flow through ``jnp.linalg.eigh``. Its derivative contains ``1 / (λ_i − λ_j)``, so it is
exact for distinct eigenvalues but unstable (``inf``/``nan``) when a factor has repeated or
numerically coincident eigenvalues — e.g. a Gram matrix of a very smooth kernel on a fine grid,
whose trailing eigenvalues cluster at round-off (or jitter) level; the symmetric Toeplitz Gram
matrices of an equally spaced grid can even have exactly tied eigenvalues. Values and solves stay
exact there; for gradients in that regime use per-factor Cholesky factors instead: the second
part of this module (:func:`kron_tri_solve`, :func:`kron_cho_solve`, :func:`kron_cho_logdet`),
which the GP-HM solver (:mod:`bayestensor.pde`) uses, with the fast-diagonalisation solve of a
Kronecker *sum* (:func:`kron_sum_solve`).

References
----------
.. [1] Y. Saatçi, *Scalable Inference for Structured Gaussian Process Models*, PhD thesis,
   University of Cambridge, 2012, ch. 5.
.. [2] S. Fang et al., "Solving High Frequency and Multi-Scale PDEs with Gaussian Processes",
   ICLR 2024.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from bayestensor.tensor import multi_mode_dot


class KronEig(NamedTuple):
    """Eigendecompositions ``K_d = Q_d diag(λ_d) Q_dᵀ`` of the factors of ``K_1 ⊗ ⋯ ⊗ K_D``.

    Attributes
    ----------
    eigvals : tuple of Float[Array, "n_d"]
        Eigenvalues ``λ_d`` of each factor, ascending.
    eigvecs : tuple of Float[Array, "n_d n_d"]
        Orthonormal eigenvectors ``Q_d`` (columns) of each factor.
    """

    eigvals: tuple[Float[Array, " n_d"], ...]
    eigvecs: tuple[Float[Array, "n_d n_d"], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(n_1, …, n_D)``."""
        return tuple(int(lam.shape[0]) for lam in self.eigvals)


def _as_tensor(v: Float[Array, "*shape"], shape: tuple[int, ...]) -> Float[Array, "*shape"]:
    """Reshape a flat (row-major) or tensor-shaped ``v`` to ``shape``, checking its size."""
    v = jnp.asarray(v)
    if v.shape != shape and v.shape != (math.prod(shape),):
        raise ValueError(
            f"vector of shape {v.shape} matches neither the grid shape {shape} nor its flat "
            f"size ({math.prod(shape)},)"
        )
    return jnp.reshape(v, shape)


def kron_eig(factors: Sequence[Float[Array, "n_d n_d"]]) -> KronEig:
    """Eigendecompose each symmetric factor ``K_d = Q_d diag(λ_d) Q_dᵀ``.

    Each factor is symmetrised, ``(K_d + K_dᵀ)/2``, before ``jnp.linalg.eigh``.

    Parameters
    ----------
    factors : sequence of Float[Array, "n_d n_d"]
        The D symmetric positive (semi-)definite factors.

    Returns
    -------
    KronEig
    """
    vals, vecs = [], []
    for K in factors:
        K = jnp.asarray(K)
        lam, Q = jnp.linalg.eigh(0.5 * (K + K.T))
        vals.append(lam)
        vecs.append(Q)
    return KronEig(tuple(vals), tuple(vecs))


def kron_eigvals(eig: KronEig) -> Float[Array, "*shape"]:
    """Eigenvalues of ``K_1 ⊗ ⋯ ⊗ K_D`` as a grid-shaped tensor.

    .. math:: Λ[i_1, …, i_D] = \\prod_d λ_d[i_d].

    Parameters
    ----------
    eig : KronEig

    Returns
    -------
    Float[Array, "*shape"]
        Tensor of shape ``(n_1, …, n_D)``.
    """
    out = eig.eigvals[0]
    for lam in eig.eigvals[1:]:
        out = jnp.multiply.outer(out, lam)
    return out


def kron_mv(
    factors: Sequence[Float[Array, "n_d n_d"]], v: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """Kronecker matrix–vector product ``(K_1 ⊗ ⋯ ⊗ K_D) vec(V)``.

    .. math:: (K_1 \\otimes \\cdots \\otimes K_D)\\,\\mathrm{vec}(V)
        = \\mathrm{vec}(V \\times_1 K_1 \\times_2 \\cdots \\times_D K_D).

    The factors need not be square or symmetric: ``K_d`` of shape ``(m_d, n_d)`` maps a grid of
    shape ``(n_1, …, n_D)`` to ``(m_1, …, m_D)`` (useful for cross-covariances and derivative
    kernels).

    Parameters
    ----------
    factors : sequence of Float[Array, "m_d n_d"]
        The D factors.
    v : Float[Array, "*shape"]
        Tensor of shape ``(n_1, …, n_D)`` or its row-major flattening.

    Returns
    -------
    Float[Array, "*shape"]
        The product, tensor-shaped ``(m_1, …, m_D)`` if ``v`` was, else flat.
    """
    shape = tuple(int(jnp.shape(K)[1]) for K in factors)
    V = _as_tensor(v, shape)
    out = multi_mode_dot(V, factors)
    return out if jnp.ndim(v) == len(shape) else out.ravel()


def kron_solve(
    eig: KronEig, v: Float[Array, "*shape"], shift: float = 0.0
) -> Float[Array, "*shape"]:
    """Solve ``(K_1 ⊗ ⋯ ⊗ K_D + sI) x = v``.

    .. math:: x = \\mathrm{vec}\\Big(\\big[(V \\times_1 Q_1^\\top \\cdots \\times_D Q_D^\\top)
        \\oslash (Λ + s)\\big] \\times_1 Q_1 \\cdots \\times_D Q_D\\Big),

    with ⊘ elementwise division and ``Λ`` from :func:`kron_eigvals`.

    Parameters
    ----------
    eig : KronEig
        Eigendecompositions of the factors (:func:`kron_eig`).
    v : Float[Array, "*shape"]
        Right-hand side, tensor of shape ``(n_1, …, n_D)`` or its row-major flattening.
    shift : float or Float[Array, ""], default 0
        Diagonal shift s (noise variance or jitter); ``Λ + s`` must be positive.

    Returns
    -------
    Float[Array, "*shape"]
        The solution, in the layout of ``v``.
    """
    V = _as_tensor(v, eig.shape)
    rotated = multi_mode_dot(V, eig.eigvecs, transpose=True)
    x = multi_mode_dot(rotated / (kron_eigvals(eig) + shift), eig.eigvecs)
    return x if jnp.ndim(v) == len(eig.shape) else x.ravel()


def kron_logdet(eig: KronEig, shift: float = 0.0) -> Float[Array, ""]:
    """Log-determinant ``log|K_1 ⊗ ⋯ ⊗ K_D + sI|``.

    .. math:: \\log|K + sI| = \\sum_{i_1, …, i_D} \\log\\Big(s + \\prod_d λ_d[i_d]\\Big),

    which for ``s = 0`` equals ``Σ_d (N / n_d) Σ_i log λ_d[i]``.

    Parameters
    ----------
    eig : KronEig
        Eigendecompositions of the factors.
    shift : float or Float[Array, ""], default 0
        Diagonal shift s.

    Returns
    -------
    Float[Array, ""]
        The log-determinant (``nan`` if some ``Λ + s ≤ 0``).
    """
    return jnp.sum(jnp.log(kron_eigvals(eig) + shift))


def kron_quad(eig: KronEig, v: Float[Array, "*shape"], shift: float = 0.0) -> Float[Array, ""]:
    """Quadratic form ``vᵀ (K_1 ⊗ ⋯ ⊗ K_D + sI)⁻¹ v``.

    .. math:: v^\\top (K + sI)^{-1} v = \\sum_{i_1, …, i_D}
        \\frac{\\tilde V[i_1, …, i_D]^2}{s + Λ[i_1, …, i_D]}, \\qquad
        \\tilde V = V \\times_1 Q_1^\\top \\cdots \\times_D Q_D^\\top .

    Parameters
    ----------
    eig : KronEig
        Eigendecompositions of the factors.
    v : Float[Array, "*shape"]
        Tensor of shape ``(n_1, …, n_D)`` or its row-major flattening.
    shift : float or Float[Array, ""], default 0
        Diagonal shift s.

    Returns
    -------
    Float[Array, ""]
        The quadratic form.
    """
    V = _as_tensor(v, eig.shape)
    rotated = multi_mode_dot(V, eig.eigvecs, transpose=True)
    return jnp.sum(rotated**2 / (kron_eigvals(eig) + shift))


def kron_predict(
    eig: KronEig,
    cross: Sequence[Float[Array, "m_d n_d"]],
    v: Float[Array, "*shape"],
    shift: float = 0.0,
) -> Float[Array, "*mshape"]:
    """Kronecker GP prediction ``(C_1 ⊗ ⋯ ⊗ C_D) (K_1 ⊗ ⋯ ⊗ K_D + sI)⁻¹ vec(V)``.

    With ``C_d`` the cross-covariances between new coordinates and the grid along dimension d
    this is the GP conditional mean on the new tensor grid; replacing ``C_d`` in one mode by a
    derivative kernel ``∂^i k_d(x*, x)/∂x*^i`` gives the mean of a derivative, mode by mode —
    e.g. ``U_xx = K₁'' K₁⁻¹ U`` along mode 1 is ``cross = [K₁'', K₂, …, K_D]`` with
    ``K_d`` the factors themselves in the other modes:

    .. math:: \\mathrm{vec}(\\bar U^{(i)}) = (C_1 \\otimes \\cdots \\otimes C_D)
        (K + sI)^{-1} \\mathrm{vec}(V)
        = \\mathrm{vec}\\big(A \\times_1 C_1 \\cdots \\times_D C_D\\big),

    with ``A`` from :func:`kron_solve`.

    Parameters
    ----------
    eig : KronEig
        Eigendecompositions of the factors.
    cross : sequence of Float[Array, "m_d n_d"]
        One cross-covariance (or derivative-kernel) matrix per dimension.
    v : Float[Array, "*shape"]
        Grid values, tensor of shape ``(n_1, …, n_D)`` or its row-major flattening.
    shift : float or Float[Array, ""], default 0
        Diagonal shift s.

    Returns
    -------
    Float[Array, "*mshape"]
        The prediction, tensor-shaped ``(m_1, …, m_D)`` if ``v`` was, else flat.
    """
    if len(cross) != len(eig.shape):
        raise ValueError(f"need {len(eig.shape)} cross-covariance matrices, got {len(cross)}")
    for d, (C, n) in enumerate(zip(cross, eig.shape, strict=True)):
        if jnp.ndim(C) != 2 or jnp.shape(C)[1] != n:
            raise ValueError(
                f"cross[{d}] must have shape (m, {n}) to match grid dimension {d}, "
                f"got {jnp.shape(C)}"
            )
    A = kron_solve(eig, _as_tensor(v, eig.shape), shift)
    out = multi_mode_dot(A, cross)
    return out if jnp.ndim(v) == len(eig.shape) else out.ravel()


# ------------------------------------------------------- Cholesky factors and Kronecker sums
# The GP-HM solver (bayestensor.pde) works with per-dimension Cholesky factors K_d = L_d L_dᵀ
# (stable gradients) and, for its λ → ∞ U-step, with Kronecker *sums* of nonsymmetric matrices.


def kron_dense(mats: Sequence[Float[Array, "n_d m_d"]]) -> Float[Array, "N M"]:
    """The explicit product ``A_1 ⊗ ⋯ ⊗ A_D`` (dense; small grids and references only)."""
    return functools.reduce(jnp.kron, mats)


def mode_tri_solve(
    U: Float[Array, "*shape"], L: Float[Array, "n n"], mode: int, trans: bool = False
) -> Float[Array, "*shape"]:
    """``U ×_mode L⁻¹`` (or ``L⁻ᵀ``) for lower-triangular ``L``: one triangular solve."""
    X = jnp.moveaxis(U, mode, 0)
    shape = X.shape
    Y = jsl.solve_triangular(L, X.reshape(shape[0], -1), lower=True, trans=1 if trans else 0)
    return jnp.moveaxis(Y.reshape(shape), 0, mode)


def mode_cho_solve(U: Float[Array, "*shape"], L: Float[Array, "n n"], mode: int):
    """``U ×_mode (LLᵀ)⁻¹``: two triangular solves along one mode."""
    return mode_tri_solve(mode_tri_solve(U, L, mode), L, mode, trans=True)


def kron_tri_solve(
    U: Float[Array, "*shape"], Ls: Sequence[Float[Array, "n_d n_d"]]
) -> Float[Array, "*shape"]:
    """``(L_1 ⊗ ⋯ ⊗ L_D)⁻¹ vec(U)`` as a tensor: ``U ×_1 L_1⁻¹ ⋯ ×_D L_D⁻¹``.

    With ``K_d = L_d L_dᵀ`` the result ``Z`` whitens ``U``: ``vec(U)ᵀ K⁻¹ vec(U) = ‖Z‖²``.
    """
    for d, L in enumerate(Ls):
        U = mode_tri_solve(U, L, d)
    return U


def kron_cho_solve(
    U: Float[Array, "*shape"], Ls: Sequence[Float[Array, "n_d n_d"]]
) -> Float[Array, "*shape"]:
    """``(K_1 ⊗ ⋯ ⊗ K_D)⁻¹ vec(U)`` as a tensor, from the Cholesky factors ``K_d = L_d L_dᵀ``."""
    for d, L in enumerate(Ls):
        U = mode_cho_solve(U, L, d)
    return U


def kron_cho_logdet(Ls: Sequence[Float[Array, "n_d n_d"]]) -> Float[Array, ""]:
    """``log|K_1 ⊗ ⋯ ⊗ K_D| = Σ_d (N / n_d) log|K_d|`` from the Cholesky factors."""
    N = math.prod(L.shape[0] for L in Ls)
    return 2.0 * sum((N // L.shape[0]) * jnp.sum(jnp.log(jnp.diag(L))) for L in Ls)


class SumEig(NamedTuple):
    """Eigendecomposition ``M = V diag(λ) V⁻¹`` of a (nonsymmetric) square matrix.

    Attributes
    ----------
    vecs : Array
        Eigenvectors (columns, complex).
    inv : Array
        ``V⁻¹``.
    vals : Array
        Eigenvalues (complex).
    """

    vecs: Array
    inv: Array
    vals: Array


def sum_eig(M: Float[Array, "n n"]) -> SumEig:
    """:class:`SumEig` of one term of a Kronecker sum (``jnp.linalg.eig``, complex)."""
    vals, vecs = jnp.linalg.eig(M)
    return SumEig(vecs, jnp.linalg.inv(vecs), vals)


def kron_sum_solve(
    eigs: Sequence[SumEig], R: Float[Array, "*shape"], shift: float | Array = 0.0
) -> Float[Array, "*shape"]:
    """Solve ``(M_1 ⊕ ⋯ ⊕ M_D + sI) vec(V) = vec(R)`` by fast diagonalisation.

    The Kronecker sum ``⊕_d M_d = Σ_d I ⊗ ⋯ ⊗ M_d ⊗ ⋯ ⊗ I`` applied to ``V`` is
    ``Σ_d V ×_d M_d``; with ``M_d = V_d diag(λ_d) V_d⁻¹`` its eigenvalues are the sums
    ``λ_1[i_1] + ⋯ + λ_D[i_D]``, so
    ``V = ((R ×_d V_d⁻¹) / (Σ_d λ_d + s)) ×_d V_d`` in ``O(N Σ_d n_d)``. The real part is
    returned (the system is real).
    """
    W = multi_mode_dot(R.astype(eigs[0].vecs.dtype), [e.inv for e in eigs])
    lam = shift + sum(
        e.vals.reshape((-1,) + (1,) * (len(eigs) - d - 1)) for d, e in enumerate(eigs)
    )
    return multi_mode_dot(W / lam, [e.vecs for e in eigs]).real
