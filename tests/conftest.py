"""Shared test configuration: float64, fixed seeds, and every tolerance in one place."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: Tolerances used across the test suite (float64 unless named otherwise).
TOL = {
    # fixed-seed outputs through the public API vs tests/fixtures/behaviour.npz (relative)
    "behaviour_rel": 1e-6,
    # GP-HM: closed-form derivative kernels vs nested jax.grad (relative to max |k|)
    "pde_deriv_vs_autodiff": 1e-10,
    # Kronecker solve / logdet / quad / mode-wise prediction vs the dense product (relative)
    "kron_vs_dense": 1e-10,
    # GP-HM PDE solver: structured (Kronecker / Toeplitz / whitened) pieces vs dense (relative)
    "pde_structured_vs_dense": 1e-9,
    # GP-HM: relative L2 of the low-frequency 1-D and 2-D Poisson solves (issue 5)
    "pde_low_freq_rel_l2": 1e-4,
    # GP-HM: the same 2-D solve with the Kronecker (λ → ∞ collocation) U-step
    "pde_kron_low_freq_rel_l2": 2e-3,
    # GP-HM: the low-frequency 1-D solve in float32
    "pde_float32_rel_l2": 2e-2,
    # GP-HM: relative L2 of every 1-D benchmark problem (slow test, issue 5)
    "pde_benchmark_1d_rel_l2": 1e-3,
    # issue 5: every 2-D benchmark problem reaches relative L2 ≤ 1e-2
    "pde_benchmark_2d_rel_l2": 1e-2,
    # state-space posterior vs dense Cholesky GP (relative)
    "ssm_vs_dense": 1e-8,
    # gradients of the log marginal likelihood vs dense (relative)
    "grad_vs_dense": 1e-6,
    # closed-form kernel pieces vs scipy (expm, Lyapunov) and k(tau)
    "closed_form": 1e-10,
    # float32 filter vs float64 filter, as a fraction of max |mean|
    "float32_vs_float64": 1e-3,
    # FunBaT: closed-form contractions / core update vs explicit Kronecker references
    "funbat_closed_form": 1e-10,
    # FunBaT: Monte Carlo check, allowed deviation in Monte Carlo standard errors
    "mc_sigmas": 5.0,
    # FunBaT: noiseless rank-1 pattern, held-out RMSE bound
    "noiseless_rmse": 1e-2,
    # FunBaT: noisy fits, held-out RMSE of y within this factor of the noise sd
    "noisy_rmse_factor": 1.1,
    # 95 % predictive intervals of y must cover this fraction of held-out points
    "coverage95": (0.90, 0.98),
    # 95 % bands of the latent f (mean-field posteriors are slightly overconfident)
    "f_coverage95": (0.80, 1.0),
    # FunBaT single-mode fit vs dense GP regression (converged sweeps, absolute, O(1) values)
    "funbat_vs_dense_gp": 1e-8,
    # learned hyperparameters vs the dense GP's type-II maximum likelihood (relative)
    "type2_ml": 1e-4,
    # posterior mean of f vs NUTS, as a fraction of the range of f
    "vs_nuts": 0.02,
    # Poisson Tucker: closed forms (total rate, exposures, sequential shared rows) vs dense
    "poisson_closed_form": 1e-10,
    # Poisson Tucker: Gibbs vs NUTS posterior mean rates, max |difference| in Monte Carlo sds
    "poisson_vs_nuts_max_z": 5.0,
    # CAVI: allowed decrease of the ELBO between iterations, relative (rounding only)
    "poisson_elbo_slack": 1e-10,
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
