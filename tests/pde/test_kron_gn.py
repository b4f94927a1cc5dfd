"""The Kronecker Gauss–Newton U-step (pde/kron_gn.py) against the dense Gauss–Newton solver,
its routing, and the coarse grid of its kernel fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.pde.config import GPHMConfig, init_params, resolve_config
from bayestensor.pde.factors import all_factors
from bayestensor.pde.inference import solve_grid
from bayestensor.pde.kron_gn import coarse_problem, coarse_sizes
from bayestensor.pde.problems import Problem, allen_cahn, laplacian

from .cases import exact_2d, problem_2d

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64


def _setup(grid=(12, 14)):
    prob = problem_2d(grid, operator=allen_cahn)
    base = GPHMConfig(n_components=4, max_freq=2.0, precision=1e3, cg_tol=1e-13)
    dense = resolve_config(prob, base._replace(method="dense"))
    kron = resolve_config(prob, base._replace(method="kron_gn"))
    factors = all_factors(init_params(prob, dense).kernels, prob, dense)
    return prob, dense, kron, factors


@pytest.mark.parametrize("n_iter", [1, pytest.param(12, marks=pytest.mark.slow)])
def test_kron_gn_matches_dense_gauss_newton(rng, n_iter):
    # one step from a random start (the linearised least squares itself), and the converged U
    prob, dense, kron, factors = _setup()
    assert kron.method == "kron_gn"
    U0 = jnp.asarray(rng.standard_normal(prob.shape))

    def run(config):
        return jax.jit(
            lambda U: solve_grid(U, factors, prob, config, n_iter, linear=False, lsq="qr")
        )(U0)

    ref, got = run(dense), run(kron)
    tol = TOL["pde_kron_gn_vs_dense"]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * float(jnp.abs(ref).max()))
    if n_iter > 1:  # converged: another dense step does not move it
        again = solve_grid(ref, factors, prob, dense, 1, linear=False, lsq="qr")
        np.testing.assert_allclose(again, ref, rtol=tol, atol=tol * float(jnp.abs(ref).max()))


def test_auto_routes_large_nonlinear_2d_to_kron_gn():
    # only the grid's shape and the operator matter here
    small = Problem.manufactured(allen_cahn, exact_2d, [(0, 1), (0, 1)], (5, 6))
    big = small._replace(grid=(jnp.linspace(0, 1, 60), jnp.linspace(0, 1, 50)))
    linear = big._replace(operator=laplacian)
    assert resolve_config(big).method == "kron_gn"
    assert resolve_config(small).method == "dense"
    assert resolve_config(small, GPHMConfig(method="kron_gn")).method == "kron_gn"
    assert resolve_config(linear).method == "kron"
    with pytest.raises(ValueError, match="method must be"):
        resolve_config(big, GPHMConfig(method="cg"))
    with pytest.raises(ValueError, match="cg_tol"):
        resolve_config(big, GPHMConfig(cg_tol=0.0))


def test_auto_routes_alike_with_x64_off_and_refuses_a_grid_too_large_for_kron_gn():
    # the linearity check runs in float64: in JAX's default float32 its round-off made every
    # linear operator look nonlinear and sent a 400 × 400 Poisson benchmark to kron_gn, whose
    # dense preconditioner then asked for 410 GB
    with jax.enable_x64(False):
        small = Problem.manufactured(laplacian, exact_2d, [(0, 1), (0, 1)], (5, 6))
        big = small._replace(grid=(jnp.linspace(0, 1, 60), jnp.linspace(0, 1, 50)))
        assert big.grid[0].dtype == jnp.float32
        assert resolve_config(big).method == "kron"
        assert resolve_config(big._replace(operator=allen_cahn)).method == "kron_gn"
        huge = big._replace(grid=(jnp.linspace(0, 1, 150), jnp.linspace(0, 1, 150)))
        assert resolve_config(huge).method == "kron"
        with pytest.raises(ValueError, match="kron_gn.*22500 points.*dense"):
            resolve_config(huge._replace(operator=allen_cahn))


@pytest.mark.slow
def test_coarse_problem_keeps_box_and_boundary_data():
    fine = Problem.manufactured(allen_cahn, exact_2d, [(0, 1), (-0.5, 0.7)], (41, 23))
    sizes = coarse_sizes(fine.shape, 300)
    assert np.prod(sizes) <= 300 and sizes[0] > sizes[1]
    # without an exact solution: subsampled, boundary data taken from the fine grid's
    sub = coarse_problem(fine._replace(exact=None), 300)
    assert sub.shape == sizes
    mesh = np.meshgrid(*(np.asarray(x) for x in sub.grid), indexing="ij")
    u = np.asarray(jax.vmap(jax.vmap(exact_2d))(jnp.asarray(mesh[0]), jnp.asarray(mesh[1])))
    np.testing.assert_allclose(
        sub.boundary_values, u[sub.boundary_mask], rtol=TOL["pde_grid"], atol=TOL["pde_grid"]
    )
    for x, xf in zip(sub.grid, fine.grid, strict=True):
        assert float(x[0]) == float(xf[0]) and float(x[-1]) == float(xf[-1])
    # with one: rebuilt on an equally spaced grid of the same box
    again = coarse_problem(fine, 300)
    assert again.shape == sizes and again.box == fine.box
