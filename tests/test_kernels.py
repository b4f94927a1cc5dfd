"""Closed forms of each Matérn state-space kernel against independent references."""

import gpjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from bayestensor.kernels import MATERN_NU, check_kernel_name, matern_cov, matern_sde

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

KERNELS = sorted(MATERN_NU)
GAPS = [0.0, 1e-6, 1e-3, 0.37, 1.9, 12.0]
ELL, VAR = 0.8, 1.7


def _matern_bessel(nu, tau, ell, var):
    """General Matérn covariance through the modified Bessel function (scipy)."""
    tau = np.asarray(tau, float)
    z = np.sqrt(2 * nu) * tau / ell
    with np.errstate(invalid="ignore"):
        k = var * 2 ** (1 - nu) / scipy.special.gamma(nu) * z**nu * scipy.special.kv(nu, z)
    return np.where(tau == 0, var, k)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("jit", [False, True])
def test_transition_matches_expm(kernel, jit, tol):
    sde = matern_sde(kernel, ELL, VAR)
    trans = jax.jit(sde.transition) if jit else sde.transition
    F = np.asarray(sde.F)
    Pinf = np.asarray(sde.Pinf)
    for dt in GAPS:
        A, Q = trans(jnp.asarray(dt))
        A_ref = scipy.linalg.expm(F * dt)
        Q_ref = Pinf - A_ref @ Pinf @ A_ref.T
        np.testing.assert_allclose(A, A_ref, rtol=tol["closed_form"], atol=tol["closed_form"])
        np.testing.assert_allclose(
            Q, Q_ref, rtol=tol["process_noise_vs_expm"], atol=tol["closed_form"]
        )


@pytest.mark.parametrize("kernel", KERNELS)
def test_small_gap_process_noise_is_accurate(kernel, tol):
    # Q(Δ) for tiny Δ equals Δ L Qc Lᵀ to first order; the expm1 form keeps it accurate.
    sde = matern_sde(kernel, ELL, VAR)
    dt = 1e-9
    _, Q = sde.transition(jnp.asarray(dt))
    LQL = np.asarray(sde.L @ sde.Qc @ sde.L.T)
    np.testing.assert_allclose(
        Q, dt * LQL, rtol=tol["small_gap_first_order"], atol=tol["small_gap_abs_per_var"] * VAR
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_pinf_solves_lyapunov(kernel, tol):
    sde = matern_sde(kernel, ELL, VAR)
    F, L, Qc = (np.asarray(a) for a in (sde.F, sde.L, sde.Qc))
    P_ref = scipy.linalg.solve_continuous_lyapunov(F, -L @ Qc @ L.T)
    np.testing.assert_allclose(
        sde.Pinf, P_ref, rtol=tol["closed_form_rel"], atol=tol["closed_form"]
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_state_space_autocovariance_is_kernel(kernel, tol):
    sde = matern_sde(kernel, ELL, VAR)
    taus = np.array([0.0, 0.05, 0.4, 1.0, 2.5, 7.0])
    k_ss = np.array(
        [(sde.H @ sde.transition(jnp.asarray(t))[0] @ sde.Pinf @ sde.H.T)[0, 0] for t in taus]
    )
    k_bessel = _matern_bessel(MATERN_NU[kernel], taus, ELL, VAR)
    k_ours = np.asarray(matern_cov(kernel, taus, np.zeros(1), ELL, VAR))[:, 0]
    gp_kernel = {
        "matern12": gpjax.kernels.Matern12,
        "matern32": gpjax.kernels.Matern32,
        "matern52": gpjax.kernels.Matern52,
    }[kernel](lengthscale=ELL, variance=VAR)
    k_gpjax = np.array([gp_kernel(jnp.array([t]), jnp.array([0.0])) for t in taus])
    np.testing.assert_allclose(k_ss, k_bessel, rtol=tol["closed_form_rel"], atol=tol["closed_form"])
    np.testing.assert_allclose(
        k_ours, k_bessel, rtol=tol["closed_form_rel"], atol=tol["closed_form"]
    )
    np.testing.assert_allclose(
        k_gpjax, k_bessel, rtol=tol["closed_form_rel"], atol=tol["closed_form"]
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_transition_gradients_match_finite_differences(kernel, tol):
    def q_sum(ell, var):
        A, Q = matern_sde(kernel, ell, var).transition(jnp.asarray(0.6))
        return jnp.sum(A * Q) + jnp.sum(A)

    g = jax.grad(q_sum, argnums=(0, 1))(ELL, VAR)
    h = 1e-6
    fd = (
        (q_sum(ELL + h, VAR) - q_sum(ELL - h, VAR)) / (2 * h),
        (q_sum(ELL, VAR + h) - q_sum(ELL, VAR - h)) / (2 * h),
    )
    np.testing.assert_allclose(g, fd, rtol=tol["grad_vs_finite_diff"])


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(ValueError, match="kernel must be one of"):
        check_kernel_name("rbf")
    with pytest.raises(ValueError, match="matern72"):
        matern_sde("matern72", 1.0, 1.0)
