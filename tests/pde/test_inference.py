"""The GP-HM objective and U-steps (pde/inference.py): structured pieces against dense
Kronecker products and autodiff, exact minimisers, Gauss–Newton and collocation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.pde.config import (
    GPHMConfig,
    GPHMParams,
    init_params,
    is_linear,
    precisions,
    resolve_config,
)
from bayestensor.pde.factors import all_factors, derivative_grids
from bayestensor.pde.inference import loss, loss_terms, solve_grid
from bayestensor.pde.kernels import sm_kernel
from bayestensor.pde.problems import (
    allen_cahn,
    boundary_mask,
)

from .cases import problem_2d

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

STRUCT = TOL["pde_structured_vs_dense"]


def _dense_pieces(prob, config, kernels):
    """Dense Gram matrices of a 2-D problem: K (jittered), and derivative maps K^{(i)} K⁻¹."""
    Ks = []
    for k, x in zip(kernels, prob.grid, strict=True):
        G = [np.asarray(sm_kernel(k, x, x, config.spectrum, order=(n, 0))) for n in range(3)]
        G[0] = G[0] + config.jitter * G[0][0, 0] * np.eye(len(x))
        Ks.append(G)
    (Kx, Kx1, Kx2), (Ky, Ky1, Ky2) = Ks
    K = np.kron(Kx, Ky)
    maps = {
        "u": np.eye(K.shape[0]),
        "u_x": np.kron(Kx1, Ky) @ np.linalg.inv(K),
        "u_xx": np.kron(Kx2, Ky) @ np.linalg.inv(K),
        "u_y": np.kron(Kx, Ky1) @ np.linalg.inv(K),
        "u_yy": np.kron(Kx, Ky2) @ np.linalg.inv(K),
    }
    return K, maps


def _random_kernels(prob, config, rng):
    base = init_params(prob, config)
    return tuple(
        k._replace(freq=k.freq + 0.1 * rng.standard_normal(k.freq.shape)) for k in base.kernels
    )


@pytest.mark.parametrize("jit", [False, True])
def test_derivative_grids_and_loss_match_dense(jit, rng):
    config = resolve_config(
        problem_2d(),
        GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-3, precision=30.0),
    )
    prob = problem_2d(operator=lambda g: g["u_xx"] + 0.3 * g["u_y"] + g["u"] ** 3)
    kernels = _random_kernels(prob, config, rng)
    U = rng.standard_normal(prob.shape)
    K, maps = _dense_pieces(prob, config, kernels)
    dense = {k: M @ U.ravel() for k, M in maps.items()}
    lam_r, lam_b = precisions(prob, config)
    residual = dense["u_xx"] + 0.3 * dense["u_y"] + U.ravel() ** 3 - np.asarray(prob.source).ravel()
    boundary = U.ravel()[boundary_mask(prob.shape).ravel()] - np.asarray(prob.boundary_values)
    expected = (
        0.5 * U.ravel() @ np.linalg.solve(K, U.ravel())
        + 0.5 * np.linalg.slogdet(K)[1]
        + 0.5 * lam_b * np.sum(boundary**2)
        + 0.5 * lam_r * np.sum(residual**2)
    )

    def structured(kernels, U):
        factors = all_factors(kernels, prob, config)
        grids = derivative_grids(U, factors, prob.variables)
        value = loss(GPHMParams(U, kernels), prob, config)
        return grids, value

    grids, value = (jax.jit(structured) if jit else structured)(kernels, U)
    for key, ref in dense.items():
        if key in ("u_x", "u_yy"):  # grids the operator does not read are not formed (zeros)
            np.testing.assert_array_equal(grids[key], 0.0)
            continue
        np.testing.assert_allclose(grids[key].ravel(), ref, rtol=STRUCT, atol=STRUCT, err_msg=key)
    np.testing.assert_allclose(value, expected, rtol=STRUCT)


def test_loss_gradient_matches_dense_autodiff(rng):
    # the hand-written reverse mode of K⁻¹U and log|K| against autodiff of dense kron algebra
    prob = problem_2d(operator=lambda g: g["u_xx"] + 0.3 * g["u_y"] + g["u"] ** 3)
    config = resolve_config(
        prob, GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-3, precision=30.0)
    )
    kernels = _random_kernels(prob, config, rng)
    U = jnp.asarray(rng.standard_normal(prob.shape))
    lam_r, lam_b = precisions(prob, config)
    mask = boundary_mask(prob.shape).ravel()

    def dense(kernels, U):
        mats = []
        for k, x in zip(kernels, prob.grid, strict=True):
            G = [sm_kernel(k, x, x, config.spectrum, order=(n, 0)) for n in range(3)]
            G[0] = G[0] + config.jitter * G[0][0, 0] * jnp.eye(len(x))
            mats.append(G)
        (Kx, _, Kx2), (Ky, Ky1, _) = mats
        K = jnp.kron(Kx, Ky)
        a = jnp.linalg.solve(K, U.ravel())
        r = (
            jnp.kron(Kx2, Ky) @ a
            + 0.3 * jnp.kron(Kx, Ky1) @ a
            + U.ravel() ** 3
            - prob.source.ravel()
        )
        b = U.ravel()[mask] - prob.boundary_values
        return (
            0.5 * U.ravel() @ a
            + 0.5 * jnp.linalg.slogdet(K)[1]
            + 0.5 * lam_b * b @ b
            + 0.5 * lam_r * r @ r
        )

    def structured(kernels, U):
        return loss(GPHMParams(U, kernels), prob, config)

    got = jax.grad(structured, argnums=(0, 1))(kernels, U)
    ref = jax.grad(dense, argnums=(0, 1))(kernels, U)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(g, r, rtol=STRUCT, atol=STRUCT * float(jnp.abs(r).max()))


@pytest.mark.parametrize("lsq", ["auto", "qr"])
def test_dense_u_step_is_the_exact_minimiser(rng, lsq):
    # linear operator: U* = (K⁻¹ + λ_r DᵀD + λ_b BᵀB)⁻¹ (λ_r Dᵀf + λ_b Bᵀg), formed densely
    prob = problem_2d(operator=lambda g: g["u_xx"] + g["u_yy"] - 2.0 * g["u_x"])
    config = resolve_config(
        prob, GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-6, precision=1e3)
    )
    kernels = _random_kernels(prob, config, rng)
    K, maps = _dense_pieces(prob, config, kernels)
    A = maps["u_xx"] + maps["u_yy"] - 2.0 * maps["u_x"]
    B = np.eye(K.shape[0])[boundary_mask(prob.shape).ravel()]
    lam_r, lam_b = precisions(prob, config)
    H = np.linalg.inv(K) + lam_r * A.T @ A + lam_b * B.T @ B
    rhs = lam_r * A.T @ np.asarray(prob.source).ravel() + lam_b * B.T @ prob.boundary_values
    U_ref = np.linalg.solve(H, rhs)
    factors = all_factors(kernels, prob, config)
    U = solve_grid(jnp.zeros(prob.shape), factors, prob, config, lsq=lsq)
    np.testing.assert_allclose(
        U.ravel(),
        U_ref,
        rtol=TOL["pde_u_step_vs_dense"],
        atol=TOL["pde_u_step_vs_dense"] * np.abs(U_ref).max(),
    )


def test_gauss_newton_reaches_a_stationary_point(rng):
    prob = problem_2d((6, 6), operator=allen_cahn)
    config = resolve_config(prob, GPHMConfig(n_components=4, max_freq=1.0, precision=1e3))
    kernels = init_params(prob, config).kernels
    factors = all_factors(kernels, prob, config)
    U = solve_grid(jnp.zeros(prob.shape), factors, prob, config, n_iter=15, linear=False)

    def J(U):
        return sum(loss_terms(U, factors, prob, config).values())

    grad = float(jnp.abs(jax.grad(J)(U)).max())
    # ∂𝒥/∂U at the result is 10⁻⁶ of its size at the start, and one GN step is not enough
    start = float(jnp.abs(jax.grad(J)(jnp.zeros(prob.shape))).max())
    one = solve_grid(jnp.zeros(prob.shape), factors, prob, config, n_iter=1, linear=False)
    assert (
        grad < TOL["gauss_newton_grad_reduction"] * start < float(jnp.abs(jax.grad(J)(one)).max())
    )
    assert is_linear(problem_2d()) and not is_linear(prob)


def test_kron_u_step_matches_dense_collocation(rng):
    # λ → ∞ limit: boundary exact and residual 0 at interior points, vs a dense square solve
    prob = problem_2d((7, 8), operator=lambda g: g["u_xx"] + g["u_yy"] + 0.5 * g["u_y"])
    config = resolve_config(
        prob, GPHMConfig(n_components=5, max_freq=1.5, jitter=1e-8, method="kron")
    )
    assert config.method == "kron"
    kernels = init_params(prob, config).kernels
    _, maps = _dense_pieces(prob, config, kernels)
    A = maps["u_xx"] + maps["u_yy"] + 0.5 * maps["u_y"]
    mask = boundary_mask(prob.shape).ravel()
    C = np.where(mask[:, None], np.eye(len(mask)), A)
    b = np.where(mask, 0.0, np.asarray(prob.source).ravel())
    b[mask] = prob.boundary_values
    U_ref = np.linalg.solve(C, b)
    factors = all_factors(kernels, prob, config)
    U = jax.jit(lambda f: solve_grid(jnp.zeros(prob.shape), f, prob, config))(factors)
    np.testing.assert_allclose(
        U.ravel(),
        U_ref,
        rtol=TOL["pde_kron_u_step_vs_dense"],
        atol=TOL["pde_kron_u_step_vs_dense"] * np.abs(U_ref).max(),
    )
