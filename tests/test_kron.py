"""Kronecker algebra against the explicit ``jnp.kron`` product on tiny grids."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.kron import (
    KronEig,
    kron_cho_logdet,
    kron_cho_solve,
    kron_dense,
    kron_eig,
    kron_eigvals,
    kron_logdet,
    kron_mv,
    kron_predict,
    kron_quad,
    kron_solve,
    kron_sum_solve,
    kron_tri_solve,
    mode_cho_solve,
    sum_eig,
)

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

#: Structured vs dense results (relative); factors are well conditioned (eigenvalues ≥ 0.5).
KRON_VS_DENSE = TOL["kron_vs_dense"]

#: Gradients through eigh vs gradients of the dense slogdet + solve (relative).
GRAD_VS_DENSE = TOL["kron_grad_vs_dense"]

GRIDS = [(3, 4), (3, 6), (3, 4, 5), (5, 3, 4)]
SHIFTS = [0.0, 0.3]


def _spd_factors(rng, shape):
    """Random SPD factors ``G Gᵀ / n + I/2`` (eigenvalues bounded away from 0)."""
    factors = []
    for n in shape:
        G = rng.standard_normal((n, n))
        factors.append(G @ G.T / n + 0.5 * np.eye(n))
    return factors


def _dense(factors):
    K = factors[0]
    for F in factors[1:]:
        K = jnp.kron(K, F)
    return K


@pytest.mark.parametrize("shape", GRIDS)
@pytest.mark.parametrize("jit", [False, True])
def test_kron_mv_matches_dense(shape, jit, rng):
    factors = _spd_factors(rng, shape)
    V = rng.standard_normal(shape)
    f = jax.jit(kron_mv) if jit else kron_mv
    expected = _dense(factors) @ V.ravel()
    out = f(factors, V)
    assert out.shape == shape
    np.testing.assert_allclose(out.ravel(), expected, rtol=KRON_VS_DENSE)
    np.testing.assert_allclose(f(factors, V.ravel()), expected, rtol=KRON_VS_DENSE)


def test_kron_mv_rectangular_factors(rng):
    factors = [rng.standard_normal((m, n)) for m, n in [(2, 3), (5, 4)]]
    V = rng.standard_normal((3, 4))
    out = kron_mv(factors, V)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.ravel(), _dense(factors) @ V.ravel(), rtol=KRON_VS_DENSE)


@pytest.mark.parametrize("shape", GRIDS)
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("jit", [False, True])
def test_kron_solve_logdet_quad_match_dense(shape, shift, jit, rng):
    factors = _spd_factors(rng, shape)
    V = rng.standard_normal(shape)
    N = V.size
    K = np.asarray(_dense(factors)) + shift * np.eye(N)
    x_ref = np.linalg.solve(K, V.ravel())
    sign, logdet_ref = np.linalg.slogdet(K)
    assert sign > 0

    def structured(factors, V):
        eig = kron_eig(factors)
        return (
            kron_solve(eig, V, shift),
            kron_solve(eig, V.ravel(), shift),
            kron_logdet(eig, shift),
            kron_quad(eig, V, shift),
        )

    f = jax.jit(structured) if jit else structured
    x, x_flat, logdet, quad = f(factors, V)
    assert x.shape == shape and x_flat.shape == (N,)
    np.testing.assert_allclose(x.ravel(), x_ref, rtol=KRON_VS_DENSE)
    np.testing.assert_allclose(x_flat, x_ref, rtol=KRON_VS_DENSE)
    np.testing.assert_allclose(logdet, logdet_ref, rtol=KRON_VS_DENSE)
    np.testing.assert_allclose(quad, V.ravel() @ x_ref, rtol=KRON_VS_DENSE)


def test_kron_eig_reconstructs_factors_and_eigvals(rng):
    factors = _spd_factors(rng, (3, 4))
    eig = kron_eig(factors)
    assert isinstance(eig, KronEig) and eig.shape == (3, 4)
    for K, lam, Q in zip(factors, eig.eigvals, eig.eigvecs, strict=True):
        np.testing.assert_allclose(Q @ np.diag(lam) @ Q.T, K, atol=KRON_VS_DENSE)
    dense_eigs = np.linalg.eigvalsh(np.asarray(_dense(factors)))
    np.testing.assert_allclose(np.sort(kron_eigvals(eig).ravel()), dense_eigs, rtol=KRON_VS_DENSE)


def test_wrong_vector_size_raises(rng):
    eig = kron_eig(_spd_factors(rng, (3, 4)))
    with pytest.raises(ValueError, match=r"grid shape \(3, 4\)"):
        kron_solve(eig, np.ones(11))


def _se_gram(x, lengthscale):
    """Squared-exponential Gram matrix plus a jitter (distinct eigenvalues)."""
    d = x[:, None] - x[None, :]
    return jnp.exp(-0.5 * (d / lengthscale) ** 2) + 0.1 * jnp.eye(x.shape[0])


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 5)])
def test_gradient_matches_dense(shape, rng):
    # jitted only: eager differentiation through eigh costs seconds of per-primitive compilation
    xs = [jnp.asarray(np.sort(rng.uniform(0, 2, n))) for n in shape]
    V = jnp.asarray(rng.standard_normal(shape))
    shift = 0.05

    def factors(theta):
        return [_se_gram(xs[0], theta[0]), _se_gram(xs[1], theta[1])] + [
            _se_gram(x, 0.7) for x in xs[2:]
        ]

    def structured(theta):
        eig = kron_eig(factors(theta))
        return kron_logdet(eig, shift) + kron_quad(eig, V, shift)

    def dense(theta):
        K = _dense(factors(theta)) + shift * jnp.eye(V.size)
        return jnp.linalg.slogdet(K)[1] + V.ravel() @ jnp.linalg.solve(K, V.ravel())

    theta = jnp.array([0.4, 0.9])
    value, grad = jax.jit(jax.value_and_grad(structured))(theta)
    value_ref, grad_ref = jax.jit(jax.value_and_grad(dense))(theta)
    np.testing.assert_allclose(value, value_ref, rtol=KRON_VS_DENSE)
    np.testing.assert_allclose(grad, grad_ref, rtol=GRAD_VS_DENSE)


def _deriv_gram(x, lengthscale, order):
    """∂^order/∂x^order of the squared-exponential kernel exp(−(x − x')²/2ℓ²) (closed form)."""
    d = (x[:, None] - x[None, :]) / lengthscale
    k = np.exp(-0.5 * d**2)
    return {0: k, 1: -d / lengthscale * k, 2: (d**2 - 1) / lengthscale**2 * k}[order]


@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 5)])
@pytest.mark.parametrize("jit", [False, True])
def test_kron_predict_modewise_derivatives_match_dense(shape, jit, rng):
    # U_xx = K₁'' K₁⁻¹ U along one mode (other modes: K_d K_d⁻¹ = I) vs the dense Kronecker
    xs = [np.sort(rng.uniform(0, 2, n)) for n in shape]
    ells = [0.5, 0.8, 0.6][: len(shape)]
    shift = 1e-2
    K = [_deriv_gram(x, ell, 0) for x, ell in zip(xs, ells, strict=True)]
    V = rng.standard_normal(shape)
    f = jax.jit(kron_predict) if jit else kron_predict
    for mode in range(len(shape)):
        for order in (0, 1, 2):
            cross = list(K)
            cross[mode] = _deriv_gram(xs[mode], ells[mode], order)
            expected = _dense(cross) @ np.linalg.solve(
                np.asarray(_dense(K)) + shift * np.eye(V.size), V.ravel()
            )
            out = f(kron_eig(K), cross, V, shift)
            assert out.shape == shape
            np.testing.assert_allclose(
                out.ravel(), expected, rtol=KRON_VS_DENSE, atol=TOL["kron_vs_dense_abs"]
            )
    # new points (rectangular cross-covariances) along every mode at once
    new = [np.linspace(0, 2, 2 + d) for d in range(len(shape))]
    cross = [
        np.exp(-0.5 * ((xn[:, None] - x[None, :]) / ell) ** 2)
        for xn, x, ell in zip(new, xs, ells, strict=True)
    ]
    out = kron_predict(kron_eig(K), cross, V.ravel(), shift)
    expected = _dense(cross) @ np.linalg.solve(
        np.asarray(_dense(K)) + shift * np.eye(V.size), V.ravel()
    )
    np.testing.assert_allclose(out, expected, rtol=KRON_VS_DENSE, atol=TOL["kron_vs_dense_abs"])
    with pytest.raises(ValueError, match=r"cross\[0\] must have shape"):
        kron_predict(kron_eig(K), [c.T for c in cross], V, shift)


# ------------------------------------------------ Cholesky-factor and Kronecker-sum algebra


@pytest.mark.parametrize("shape", GRIDS)
@pytest.mark.parametrize("jit", [False, True])
def test_cholesky_solves_and_logdet_match_dense(shape, jit, rng):
    factors = _spd_factors(rng, shape)
    Ls = [jnp.asarray(np.linalg.cholesky(K)) for K in factors]
    U = jnp.asarray(rng.standard_normal(shape))
    K = _dense(factors)
    L = np.linalg.cholesky(K)  # the Cholesky factor of a Kronecker product is their product
    wrap = jax.jit if jit else (lambda f: f)
    np.testing.assert_allclose(
        np.asarray(kron_dense(Ls)), L, rtol=KRON_VS_DENSE, atol=TOL["kron_vs_dense_abs"]
    )
    Z = wrap(kron_tri_solve)(U, Ls)
    np.testing.assert_allclose(
        np.asarray(Z).ravel(), np.linalg.solve(L, np.asarray(U).ravel()), rtol=KRON_VS_DENSE
    )
    A = wrap(kron_cho_solve)(U, Ls)
    np.testing.assert_allclose(
        np.asarray(A).ravel(), np.linalg.solve(K, np.asarray(U).ravel()), rtol=KRON_VS_DENSE
    )
    np.testing.assert_allclose(
        float(wrap(kron_cho_logdet)(Ls)), np.linalg.slogdet(K)[1], rtol=KRON_VS_DENSE
    )
    for d, Ld in enumerate(Ls):  # one mode at a time: U ×_d (L_d L_dᵀ)⁻¹
        mats = [np.eye(n) for n in shape]
        mats[d] = np.linalg.inv(np.asarray(Ld) @ np.asarray(Ld).T)
        np.testing.assert_allclose(
            np.asarray(mode_cho_solve(U, Ld, d)).ravel(),
            _dense(mats) @ np.asarray(U).ravel(),
            rtol=KRON_VS_DENSE,
            atol=TOL["kron_vs_dense_abs"],
        )


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 5)])
@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_kronecker_sum_solve_matches_dense(shape, shift, rng):
    # nonsymmetric terms with real, well separated eigenvalues (a shifted triangular part)
    Ms = [np.triu(rng.standard_normal((n, n))) + np.diag(np.arange(1.0, n + 1)) for n in shape]
    R = rng.standard_normal(shape)
    total = shift * np.eye(int(np.prod(shape)))
    for d, M in enumerate(Ms):
        mats = [np.eye(n) for n in shape]
        mats[d] = M
        total += _dense(mats)
    V = kron_sum_solve([sum_eig(jnp.asarray(M)) for M in Ms], jnp.asarray(R), shift)
    np.testing.assert_allclose(
        np.asarray(V).ravel(), np.linalg.solve(total, R.ravel()), rtol=TOL["kron_sum_vs_dense"]
    )
