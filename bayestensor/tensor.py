"""Multilinear algebra on dense tensors: unfoldings, mode products, Tucker and Khatri–Rao.

Notation follows Kolda & Bader [1]_ and tensorly [2]_: a tensor ``X`` of shape
``(I_1, …, I_D)``, its mode-``n`` unfolding ``X_(n)`` of shape ``(I_n, Π_{k≠n} I_k)``, and the
mode-``n`` product ``Y = X ×_n M`` with ``Y_(n) = M X_(n)``.

The unfolding orders the remaining modes in row-major (C) order, as tensorly does (Kolda & Bader
use column-major order). Every identity that does not depend on that choice — ``fold`` inverting
``unfold``, ``(X ×_n M)_(n) = M X_(n)`` — holds as written. With row-major vectorisation
``vec(X) = X.ravel()``,

.. math:: \\mathrm{vec}(X \\times_1 A_1 \\cdots \\times_D A_D) = (A_1 \\otimes \\cdots \\otimes A_D)
    \\, \\mathrm{vec}(X),

which is what :mod:`bayestensor.kron` relies on.

All functions are pure ``jax.numpy`` code, jit-compatible (modes and shapes are static Python
integers) and differentiable.

References
----------
.. [1] T. G. Kolda and B. W. Bader, "Tensor Decompositions and Applications", SIAM Review 51(3),
   2009.
.. [2] J. Kossaifi et al., "TensorLy: Tensor Learning in Python", JMLR 20(26), 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float


def _check_mode(ndim: int, mode: int) -> int:
    """Return ``mode`` if ``0 ≤ mode < ndim``, else raise ``ValueError``."""
    if not 0 <= mode < ndim:
        raise ValueError(f"mode must be in [0, {ndim}) for a tensor of order {ndim}, got {mode}")
    return mode


def unfold(X: Float[Array, "*shape"], mode: int) -> Float[Array, "i_n rest"]:
    """Mode-``n`` unfolding (matricisation) ``X_(n)``.

    .. math:: X_{(n)}[i_n, j] = X[i_1, …, i_D], \\qquad
        j = \\text{row-major index of } (i_1, …, i_{n-1}, i_{n+1}, …, i_D).

    Parameters
    ----------
    X : Float[Array, "*shape"]
        Tensor of order D ≥ 1.
    mode : int
        The mode n, ``0 ≤ n < D``.

    Returns
    -------
    Float[Array, "i_n rest"]
        ``X_(n)`` of shape ``(I_n, Π_{k≠n} I_k)``.
    """
    X = jnp.asarray(X)
    _check_mode(X.ndim, mode)
    return jnp.reshape(jnp.moveaxis(X, mode, 0), (X.shape[mode], -1))


def fold(M: Float[Array, "i_n rest"], mode: int, shape: Sequence[int]) -> Float[Array, "*shape"]:
    """Inverse of :func:`unfold`: ``fold(unfold(X, n), n, X.shape) == X``.

    Parameters
    ----------
    M : Float[Array, "i_n rest"]
        A mode-``n`` unfolding.
    mode : int
        The mode n.
    shape : sequence of int
        Shape ``(I_1, …, I_D)`` of the folded tensor.

    Returns
    -------
    Float[Array, "*shape"]
        The tensor of shape ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    _check_mode(len(shape), mode)
    moved = (shape[mode],) + shape[:mode] + shape[mode + 1 :]
    return jnp.moveaxis(jnp.reshape(M, moved), 0, mode)


def mode_dot(
    X: Float[Array, "*shape"], M: Float[Array, "j i_n"] | Float[Array, " i_n"], mode: int
) -> Float[Array, "*shape"]:
    """Mode-``n`` product ``X ×_n M``.

    For a matrix ``M`` of shape ``(J, I_n)``,

    .. math:: (X \\times_n M)[i_1, …, j, …, i_D] = \\sum_{i_n} X[i_1, …, i_n, …, i_D] M[j, i_n],

    equivalently ``fold(M @ unfold(X, n), n, shape)`` with ``I_n`` replaced by ``J``. For a vector
    ``M`` of length ``I_n`` the mode is contracted away (the result has order D − 1). Computed with
    one ``tensordot``; no unfolding is materialised.

    Parameters
    ----------
    X : Float[Array, "*shape"]
        Tensor of order D.
    M : Float[Array, "j i_n"] or Float[Array, "i_n"]
        Matrix or vector acting on mode n.
    mode : int
        The mode n.

    Returns
    -------
    Float[Array, "*shape"]
        The product.

    Raises
    ------
    ValueError
        If ``M`` is not 1-D or 2-D, or its last dimension differs from ``X.shape[mode]``.
    """
    X = jnp.asarray(X)
    M = jnp.asarray(M)
    _check_mode(X.ndim, mode)
    if M.ndim not in (1, 2):
        raise ValueError(f"mode_dot needs a matrix or a vector, got an array of shape {M.shape}")
    if M.shape[-1] != X.shape[mode]:
        raise ValueError(
            f"shape mismatch in mode_dot along mode {mode}: the tensor has size {X.shape[mode]} "
            f"in mode {mode} but the {'matrix' if M.ndim == 2 else 'vector'} has size "
            f"{M.shape[-1]} (shape {M.shape})"
        )
    if M.ndim == 1:
        return jnp.tensordot(X, M, axes=(mode, 0))
    return jnp.moveaxis(jnp.tensordot(X, M, axes=(mode, 1)), -1, mode)


def multi_mode_dot(
    X: Float[Array, "*shape"],
    mats: Sequence[Float[Array, "*shape"]],
    modes: Sequence[int] | None = None,
    transpose: bool = False,
) -> Float[Array, "*shape"]:
    """Chain of mode products ``X ×_{m_1} M_1 ×_{m_2} M_2 ⋯``.

    .. math:: Y = X \\times_{m_1} M_1 \\times_{m_2} M_2 \\cdots \\times_{m_K} M_K ,

    with ``M_k`` replaced by ``M_kᵀ`` when ``transpose`` is true. Products along distinct modes
    commute; vectors contract their mode away (modes refer to ``X``'s original axes).

    Parameters
    ----------
    X : Float[Array, "*shape"]
        Tensor of order D.
    mats : sequence of arrays
        Matrices (or vectors) ``M_k``.
    modes : sequence of int, optional
        Distinct modes ``m_k``; default ``0, 1, …, len(mats) − 1``.
    transpose : bool, default False
        Multiply by ``M_kᵀ`` instead of ``M_k`` (matrices only).

    Returns
    -------
    Float[Array, "*shape"]
        The product.

    Raises
    ------
    ValueError
        If ``mats`` and ``modes`` differ in length, modes repeat, or a shape mismatches.
    """
    mats = list(mats)
    modes = list(range(len(mats))) if modes is None else [int(m) for m in modes]
    if len(modes) != len(mats):
        raise ValueError(f"got {len(mats)} matrices but {len(modes)} modes")
    if len(set(modes)) != len(modes):
        raise ValueError(f"modes must be distinct, got {modes}")
    # Highest mode first, so that a vector contracting its mode away leaves lower modes in place.
    for mode, M in sorted(zip(modes, mats, strict=True), key=lambda mm: -mm[0]):
        M = jnp.asarray(M)
        X = mode_dot(X, M.T if transpose else M, mode)
    return X


def tucker_to_tensor(
    core: Float[Array, "*shape"], factors: Sequence[Float[Array, "i r"]]
) -> Float[Array, "*shape"]:
    """Full tensor of a Tucker decomposition ``[[W; U_1, …, U_D]]``.

    .. math:: X = W \\times_1 U_1 \\times_2 U_2 \\cdots \\times_D U_D, \\qquad
        X[i_1, …, i_D] = \\sum_{r_1, …, r_D} W[r_1, …, r_D] \\prod_d U_d[i_d, r_d].

    Parameters
    ----------
    core : Float[Array, "*shape"]
        Core tensor ``W`` of shape ``(R_1, …, R_D)``.
    factors : sequence of Float[Array, "i r"]
        Factor matrices ``U_d`` of shape ``(I_d, R_d)``, one per mode of ``core``.

    Returns
    -------
    Float[Array, "*shape"]
        The tensor of shape ``(I_1, …, I_D)``.
    """
    core = jnp.asarray(core)
    if len(factors) != core.ndim:
        raise ValueError(
            f"need one factor per core mode: core has order {core.ndim}, got {len(factors)} factors"
        )
    return multi_mode_dot(core, factors)


def khatri_rao(mats: Sequence[Float[Array, "i r"]]) -> Float[Array, "prod_i r"]:
    """Khatri–Rao (column-wise Kronecker) product ``A_1 ⊙ ⋯ ⊙ A_K``.

    .. math:: (A_1 \\odot \\cdots \\odot A_K)[:, r] = A_1[:, r] \\otimes \\cdots \\otimes A_K[:, r].

    Rows are ordered row-major in ``(i_1, …, i_K)`` (the last factor varies fastest), matching
    ``jnp.kron``.

    Parameters
    ----------
    mats : sequence of Float[Array, "i r"]
        K ≥ 1 matrices with the same number R of columns.

    Returns
    -------
    Float[Array, "prod_i r"]
        Matrix of shape ``(Π_k I_k, R)``.

    Raises
    ------
    ValueError
        If ``mats`` is empty, a matrix is not 2-D, or the column counts differ.
    """
    mats = [jnp.asarray(A) for A in mats]
    if not mats:
        raise ValueError("khatri_rao needs at least one matrix")
    if any(A.ndim != 2 for A in mats):
        raise ValueError(f"khatri_rao needs matrices, got shapes {[A.shape for A in mats]}")
    ranks = {A.shape[1] for A in mats}
    if len(ranks) != 1:
        raise ValueError(
            f"all matrices need the same number of columns, got shapes {[A.shape for A in mats]}"
        )
    out = mats[0]
    for A in mats[1:]:
        out = jnp.einsum("ir,jr->ijr", out, A).reshape(-1, A.shape[1])
    return out
