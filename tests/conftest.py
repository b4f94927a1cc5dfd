"""Shared test configuration: float64, fixed seeds, and every tolerance in one place."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: Tolerances used across the test suite (float64 unless named otherwise).
TOL = {
    # state-space posterior vs dense Cholesky GP (relative)
    "ssm_vs_dense": 1e-8,
    # gradients of the log marginal likelihood vs dense (relative)
    "grad_vs_dense": 1e-6,
    # closed-form kernel pieces vs scipy (expm, Lyapunov) and k(tau)
    "closed_form": 1e-10,
    # float32 filter vs float64 filter, as a fraction of max |mean|
    "float32_vs_float64": 1e-3,
}


@pytest.fixture
def tol():
    """Tolerances dictionary (see ``TOL``)."""
    return TOL


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    """A JAX PRNG key with a fixed seed."""
    return jax.random.key(0)
