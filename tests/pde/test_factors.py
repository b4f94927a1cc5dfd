"""GP-HM per-dimension kernel algebra (pde/factors.py): Toeplitz Gram matrices and the blocked
triangular solve and inverse against dense references."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.pde.config import GPHMConfig
from bayestensor.pde.factors import kernel_matrix, triangular_inverse, triangular_solve
from bayestensor.pde.inference import midpoint_kernel
from bayestensor.pde.kernels import init_spectral_mixture, sm_kernel

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

STRUCT = TOL["pde_structured_vs_dense"]


@pytest.mark.parametrize("spectrum", ["gaussian", "student_t"])
def test_kernel_matrices_toeplitz_match_dense(spectrum):
    config = GPHMConfig(spectrum=spectrum)
    params = init_spectral_mixture(5, 3.0)
    uniform = jnp.linspace(-1.0, 2.0, 9)
    uneven = jnp.asarray(np.sort(np.random.default_rng(0).uniform(-1, 2, 7)))
    for x in (uniform, uneven):
        for n in range(3):
            ref = sm_kernel(params, x, x, spectrum, order=(n, 0))
            got = kernel_matrix(params, x, config, n)
            np.testing.assert_allclose(got, ref, rtol=STRUCT, atol=STRUCT)
            mid = 0.5 * (x[1:] + x[:-1])
            ref_mid = sm_kernel(params, mid, x, spectrum, order=(n, 0))
            got_mid = midpoint_kernel(params, x, config, n)
            np.testing.assert_allclose(got_mid, ref_mid, rtol=STRUCT, atol=STRUCT)


@pytest.mark.parametrize("n", [7, 64, 150])
def test_blocked_triangular_solve_and_inverse(n, rng):
    L = np.tril(rng.standard_normal((n, n))) + n * np.eye(n)
    B = rng.standard_normal((n, 5))
    np.testing.assert_allclose(
        triangular_solve(L, B), np.linalg.solve(L, B), rtol=TOL["triangular_vs_numpy"]
    )
    np.testing.assert_allclose(
        triangular_solve(L, B, trans=True),
        np.linalg.solve(L.T, B),
        rtol=TOL["triangular_vs_numpy"],
    )
    W = np.asarray(triangular_inverse(L))
    np.testing.assert_allclose(
        W, np.linalg.inv(L), rtol=TOL["triangular_vs_numpy"], atol=TOL["triangular_inverse_abs"]
    )
    assert np.all(np.triu(W, 1) == 0.0)
