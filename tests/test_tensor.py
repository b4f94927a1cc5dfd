"""Tensor operations against explicit NumPy definitions on tiny shapes."""

import itertools

import jax
import numpy as np
import pytest
from conftest import TOL

from bayestensor.tensor import fold, khatri_rao, mode_dot, multi_mode_dot, tucker_to_tensor, unfold

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

#: Agreement of the jnp operations with their NumPy definitions (float64 round-off only).
EXACT = TOL["tensor_vs_numpy"]

SHAPES = [(4,), (3, 5), (2, 3, 4), (2, 3, 2, 3)]


def _unfold_by_loops(X, mode):
    """X_(n)[i_n, j] with j the row-major index of the other modes, by explicit loops."""
    other = [k for k in range(X.ndim) if k != mode]
    cols = list(itertools.product(*(range(X.shape[k]) for k in other)))
    out = np.zeros((X.shape[mode], len(cols)))
    for i in range(X.shape[mode]):
        for j, rest in enumerate(cols):
            idx = list(rest)
            idx.insert(mode, i)
            out[i, j] = X[tuple(idx)]
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_unfold_matches_loops_and_fold_inverts(shape, rng):
    X = rng.standard_normal(shape)
    for mode in range(len(shape)):
        M = unfold(X, mode)
        np.testing.assert_array_equal(M, _unfold_by_loops(X, mode))
        np.testing.assert_array_equal(fold(M, mode, shape), X)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jit", [False, True])
def test_mode_dot_matches_definition_and_einsum(shape, jit, rng):
    X = rng.standard_normal(shape)
    letters = "abcd"[: len(shape)]
    for mode in range(len(shape)):
        M = rng.standard_normal((3, shape[mode]))
        f = jax.jit(mode_dot, static_argnums=2) if jit else mode_dot
        Y = f(X, M, mode)
        new_shape = shape[:mode] + (3,) + shape[mode + 1 :]
        by_unfold = fold(M @ _unfold_by_loops(X, mode), mode, new_shape)
        out_letters = letters[:mode] + "z" + letters[mode + 1 :]
        by_einsum = np.einsum(f"{letters},z{letters[mode]}->{out_letters}", X, M)
        assert Y.shape == new_shape
        np.testing.assert_allclose(Y, by_unfold, rtol=EXACT, atol=EXACT)
        np.testing.assert_allclose(Y, by_einsum, rtol=EXACT, atol=EXACT)


def test_mode_dot_with_vector_contracts_mode(rng):
    X = rng.standard_normal((2, 3, 4))
    v = rng.standard_normal(3)
    np.testing.assert_allclose(
        mode_dot(X, v, 1), np.einsum("abc,b->ac", X, v), rtol=EXACT, atol=EXACT
    )


def test_mode_dot_shape_error_names_mode_and_sizes(rng):
    X = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"mode 1.*size 3.*size 5"):
        mode_dot(X, rng.standard_normal((2, 5)), 1)
    with pytest.raises(ValueError, match="mode must be in"):
        mode_dot(X, rng.standard_normal((2, 4)), 3)


@pytest.mark.parametrize("jit", [False, True])
def test_multi_mode_dot_matches_einsum(jit, rng):
    X = rng.standard_normal((2, 3, 4))
    A, B, C = (rng.standard_normal((k, n)) for k, n in [(5, 2), (2, 3), (3, 4)])
    f = jax.jit(multi_mode_dot, static_argnames=("modes", "transpose")) if jit else multi_mode_dot
    np.testing.assert_allclose(
        f(X, [A, B, C]), np.einsum("abc,ia,jb,kc->ijk", X, A, B, C), rtol=EXACT, atol=EXACT
    )
    # a subset of modes, given out of order, and the transposed products
    np.testing.assert_allclose(
        f(X, (C, A), modes=(2, 0)), np.einsum("abc,ia,kc->ibk", X, A, C), rtol=EXACT, atol=EXACT
    )
    np.testing.assert_allclose(
        f(X, [A.T, B.T, C.T], transpose=True),
        np.einsum("abc,ia,jb,kc->ijk", X, A, B, C),
        rtol=EXACT,
        atol=EXACT,
    )
    # vectors contract their (original) modes away
    u, w = rng.standard_normal(2), rng.standard_normal(4)
    np.testing.assert_allclose(
        f(X, (u, w), modes=(0, 2)), np.einsum("abc,a,c->b", X, u, w), rtol=EXACT, atol=EXACT
    )


def test_multi_mode_dot_rejects_bad_modes(rng):
    X = rng.standard_normal((2, 3))
    A = rng.standard_normal((2, 2))
    with pytest.raises(ValueError, match="distinct"):
        multi_mode_dot(X, [A, A], modes=[0, 0])
    with pytest.raises(ValueError, match="2 matrices but 1 modes"):
        multi_mode_dot(X, [A, A], modes=[0])


@pytest.mark.parametrize("jit", [False, True])
def test_tucker_to_tensor_matches_einsum(jit, rng):
    W = rng.standard_normal((2, 3, 2))
    U = [rng.standard_normal((n, r)) for n, r in [(4, 2), (3, 3), (5, 2)]]
    f = jax.jit(tucker_to_tensor) if jit else tucker_to_tensor
    np.testing.assert_allclose(
        f(W, U), np.einsum("pqr,ip,jq,kr->ijk", W, *U), rtol=EXACT, atol=EXACT
    )
    with pytest.raises(ValueError, match="one factor per core mode"):
        tucker_to_tensor(W, U[:2])


@pytest.mark.parametrize("jit", [False, True])
def test_khatri_rao_is_columnwise_kron(jit, rng):
    mats = [rng.standard_normal((n, 3)) for n in (2, 4, 3)]
    f = jax.jit(khatri_rao) if jit else khatri_rao
    out = f(mats)
    expected = np.stack(
        [np.kron(np.kron(mats[0][:, r], mats[1][:, r]), mats[2][:, r]) for r in range(3)], axis=1
    )
    assert out.shape == (24, 3)
    np.testing.assert_allclose(out, expected, rtol=EXACT, atol=EXACT)
    with pytest.raises(ValueError, match="same number of columns"):
        khatri_rao([mats[0], rng.standard_normal((2, 4))])
