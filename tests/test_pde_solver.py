"""GP-HM problems and solver: manufactured data, Kronecker pieces vs dense, 1-D Poisson."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.pde.kernels import init_spectral_mixture, sm_kernel
from bayestensor.pde.problems import Problem, boundary_mask, derivative_keys, poisson_1d
from bayestensor.pde.solver import (
    GPHMConfig,
    GPHMParams,
    derivative_grids,
    fit,
    init_params,
    kernel_matrix,
    loss,
    solution,
)

#: Structured (Kronecker, Toeplitz) vs dense computations (relative).
STRUCTURED_VS_DENSE = 1e-9
#: Relative L2 error of the solved 1-D Poisson problem (the brief's target).
POISSON_REL_L2 = 1e-2


def _laplace_2d(g):
    return g["u_xx"] + g["u_yy"]


def _exact_2d(x, y):
    return jnp.sin(x) * jnp.cos(2 * y)


def _problem_2d(grid=(5, 6)):
    return Problem.manufactured(_laplace_2d, _exact_2d, [(0.0, 1.0), (-0.5, 0.7)], grid)


def test_manufactured_poisson_1d():
    prob = poisson_1d(grid=50)
    x = np.linspace(0, 2 * np.pi, 50)
    np.testing.assert_allclose(prob.grid[0], x, rtol=1e-14)
    np.testing.assert_allclose(prob.source, -36 * np.sin(6 * x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(prob.boundary_values, np.sin(6 * x[[0, -1]]), atol=1e-14)
    np.testing.assert_allclose(prob.exact_on_grid(), np.sin(6 * x), atol=1e-14)


def test_manufactured_2d_source_boundary_and_keys():
    prob = _problem_2d()
    X, Y = np.meshgrid(*(np.asarray(g) for g in prob.grid), indexing="ij")
    u = np.sin(X) * np.cos(2 * Y)
    np.testing.assert_allclose(prob.source, -5 * u, rtol=1e-10, atol=1e-12)
    mask = boundary_mask(prob.shape)
    assert mask.sum() == 2 * 5 + 2 * 6 - 4
    assert not mask[1:-1, 1:-1].any()
    np.testing.assert_allclose(prob.boundary_values, u[mask], atol=1e-14)
    assert derivative_keys(prob.variables) == ("u", "u_x", "u_xx", "u_y", "u_yy")
    with pytest.raises(ValueError, match="3 points"):
        Problem.manufactured(_laplace_2d, _exact_2d, [(0, 1), (0, 1)], (2, 5))


@pytest.mark.parametrize("spectrum", ["gaussian", "student_t"])
def test_kernel_matrix_toeplitz_matches_dense(spectrum):
    config = GPHMConfig(spectrum=spectrum)
    params = init_spectral_mixture(5, 3.0)
    uniform = jnp.linspace(-1.0, 2.0, 9)
    uneven = jnp.asarray(np.sort(np.random.default_rng(0).uniform(-1, 2, 7)))
    for x in (uniform, uneven):
        for n in range(3):
            np.testing.assert_allclose(
                kernel_matrix(params, x, config, n),
                sm_kernel(params, x, x, spectrum, order=(n, 0)),
                rtol=STRUCTURED_VS_DENSE,
                atol=STRUCTURED_VS_DENSE,
            )


def _random_params(problem, config, rng):
    base = init_params(problem, config)
    kernels = tuple(
        k._replace(freq=k.freq + 0.1 * rng.standard_normal(k.freq.shape)) for k in base.kernels
    )
    return GPHMParams(jnp.asarray(rng.standard_normal(problem.shape)), kernels)


def test_derivatives_and_loss_match_dense_kronecker(rng):
    config = GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-3)
    prob = _problem_2d()
    params = _random_params(prob, config, rng)
    (x, y), (kx, ky) = prob.grid, params.kernels

    @jax.jit
    def gram_matrices(kx, ky):
        return [[sm_kernel(k, z, z, order=(n, 0)) for n in range(3)] for k, z in [(kx, x), (ky, y)]]

    (Kx, Kx1, Kx2), (Ky, Ky1, Ky2) = ([np.asarray(M) for M in Ms] for Ms in gram_matrices(kx, ky))
    Kx, Ky = Kx + config.jitter * np.eye(len(x)), Ky + config.jitter * np.eye(len(y))
    K = np.kron(Kx, Ky)
    # U = (L_x ⊗ L_y) vec Z
    U = np.kron(np.linalg.cholesky(Kx), np.linalg.cholesky(Ky)) @ np.asarray(params.Z).ravel()
    alpha = np.linalg.solve(K, U)
    dense = {
        "u": U,
        "u_x": np.kron(Kx1, Ky) @ alpha,
        "u_xx": np.kron(Kx2, Ky) @ alpha,
        "u_y": np.kron(Kx, Ky1) @ alpha,
        "u_yy": np.kron(Kx, Ky2) @ alpha,
    }
    residual = dense["u_xx"] + dense["u_yy"] - np.asarray(prob.source).ravel()
    boundary = U[boundary_mask(prob.shape).ravel()] - np.asarray(prob.boundary_values)
    expected = (
        0.5 * U @ alpha
        + 0.5 * np.linalg.slogdet(K)[1]
        + 0.5 * config.boundary_weight * np.sum(boundary**2)
        + 0.5 * config.residual_weight * np.sum(residual**2)
    )

    grids, value = jax.jit(lambda p: (derivative_grids(p, prob, config), loss(p, prob, config)))(
        params
    )
    tol = {"rtol": STRUCTURED_VS_DENSE, "atol": STRUCTURED_VS_DENSE}
    for key, ref in dense.items():
        np.testing.assert_allclose(grids[key].ravel(), ref, err_msg=key, **tol)
    np.testing.assert_allclose(value, expected, rtol=STRUCTURED_VS_DENSE)
    np.testing.assert_allclose(solution(params, prob, config).ravel(), U, rtol=1e-12)


def test_fit_decreases_loss_quickly():
    prob = poisson_1d(grid=30)
    config = GPHMConfig(n_components=5, max_freq=2.0, n_steps=60)
    params, losses = fit(prob, config)
    assert losses.shape == (60,)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 1e-2 * losses[0]
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))


@pytest.mark.slow
def test_fit_poisson_1d_sin6x():
    # u = sin(6x) on [0, 2π], 100 collocation points (≈ 30–60 s on 2 shared CPU cores)
    prob = poisson_1d(grid=100)
    config = GPHMConfig(n_components=10, max_freq=3.0, n_steps=3000)
    params, losses = fit(prob, config)
    U = solution(params, prob, config)
    exact = prob.exact_on_grid()
    rel_l2 = float(jnp.linalg.norm(U - exact) / jnp.linalg.norm(exact))
    assert np.all(np.isfinite(losses))
    assert rel_l2 < POISSON_REL_L2
