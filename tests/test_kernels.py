"""Closed forms of each state-space kernel (Matérn, periodic, quasi-periodic) against
independent references."""

import gpjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from bayestensor.kernels import (
    MATERN_NU,
    PERIODIC_HARMONICS,
    check_kernel,
    check_kernel_name,
    kernel_cov,
    kernel_sde,
    matern_cov,
    matern_sde,
)
from bayestensor.periodic import periodic_coefficients, periodic_sde

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


# --------------------------------------------------------------------------------------------
# periodic and quasi-periodic kernels
# --------------------------------------------------------------------------------------------

PERIOD, ENV = 2.5, 3.0
PERIODIC = ["periodic", "quasiperiodic"]


def _q2_scipy(ell, J=PERIODIC_HARMONICS):
    """Fourier coefficients of the unit periodic kernel from scipy's scaled Bessel function."""
    x = ell**-2.0
    return np.concatenate(
        [[scipy.special.ive(0, x)], 2.0 * scipy.special.ive(np.arange(1, J + 1), x)]
    )


def _truncated_series(tau, ell, var, period, J=PERIODIC_HARMONICS):
    """σ² Σ_{j≤J} q_j² cos(2π j τ / p), coefficients from scipy."""
    j = np.arange(J + 1)
    return var * np.cos(2 * np.pi * np.outer(tau, j) / period) @ _q2_scipy(ell, J)


def _sde(kernel, ell=ELL, var=VAR):
    hyper = (ell, var, PERIOD) if kernel == "periodic" else (ell, var, PERIOD, ENV)
    return kernel_sde(kernel, *hyper)


@pytest.mark.parametrize("ell", [0.2, 0.5, 0.8, 1.0, 3.0, 10.0])
def test_periodic_coefficients_match_scipy(ell, tol):
    np.testing.assert_allclose(
        periodic_coefficients(ell), _q2_scipy(ell), rtol=tol["closed_form_rel"], atol=1e-300
    )


@pytest.mark.parametrize("kernel", PERIODIC)
@pytest.mark.parametrize("jit", [False, True])
def test_periodic_transition_matches_expm(kernel, jit, tol):
    sde = _sde(kernel)
    trans = jax.jit(sde.transition) if jit else sde.transition
    F, Pinf = np.asarray(sde.F), np.asarray(sde.Pinf)
    assert F.shape == (sde.state_dim, sde.state_dim)
    for dt in GAPS:
        A, Q = trans(jnp.asarray(dt))
        A_ref = scipy.linalg.expm(F * dt)
        Q_ref = Pinf - A_ref @ Pinf @ A_ref.T
        np.testing.assert_allclose(A, A_ref, rtol=tol["closed_form"], atol=tol["closed_form"])
        np.testing.assert_allclose(
            Q, Q_ref, rtol=tol["process_noise_vs_expm"], atol=tol["closed_form"]
        )


def test_periodic_state_is_noiseless_with_the_stated_pinf(tol):
    sde = _sde("periodic")
    assert sde.noiseless and sde.state_dim == 2 * PERIODIC_HARMONICS + 1
    q2 = VAR * _q2_scipy(ELL)
    np.testing.assert_allclose(
        np.diag(sde.Pinf), np.concatenate([q2[:1], np.repeat(q2[1:], 2)]), rtol=tol["closed_form"]
    )
    # F P∞ + P∞ Fᵀ + L Qc Lᵀ = 0 (with L Qc Lᵀ = 0 the Lyapunov solution is not unique, so the
    # residual is checked; P∞ = q_j² I per harmonic is the one the series gives)
    F, L, Qc, P = (np.asarray(a) for a in (sde.F, sde.L, sde.Qc, sde.Pinf))
    np.testing.assert_allclose(F @ P + P @ F.T + L @ Qc @ L.T, 0.0, atol=tol["closed_form"])


def test_quasiperiodic_pinf_solves_lyapunov(tol):
    sde = _sde("quasiperiodic")
    F, L, Qc = (np.asarray(a) for a in (sde.F, sde.L, sde.Qc))
    P_ref = scipy.linalg.solve_continuous_lyapunov(F, -L @ Qc @ L.T)
    np.testing.assert_allclose(
        sde.Pinf, P_ref, rtol=tol["closed_form_rel"], atol=tol["closed_form"]
    )


@pytest.mark.parametrize("kernel", PERIODIC)
def test_periodic_autocovariance_is_the_truncated_series(kernel, tol):
    sde = _sde(kernel)
    taus = np.array([0.0, 0.05, 0.4, 1.0, 2.5, 3.7, 9.0])
    k_ss = np.array(
        [(sde.H @ sde.transition(jnp.asarray(t))[0] @ sde.Pinf @ sde.H.T)[0, 0] for t in taus]
    )
    k_ref = _truncated_series(taus, ELL, VAR, PERIOD)
    if kernel == "quasiperiodic":
        k_ref = k_ref * _matern_bessel(1.5, taus, ENV, 1.0)
    np.testing.assert_allclose(k_ss, k_ref, rtol=tol["closed_form_rel"], atol=tol["closed_form"])


@pytest.mark.parametrize("ell", [0.5, 0.7, 1.0, 2.0])
def test_truncated_series_approximates_the_periodic_kernel(ell, tol):
    # max_τ |k − k_J| ≤ σ² (1 − Σ q_j²), and that tail is as small as documented
    taus = np.linspace(0.0, 2 * PERIOD, 401)
    exact = VAR * np.exp(-2 * np.sin(np.pi * taus / PERIOD) ** 2 / ell**2)
    ours = np.asarray(kernel_cov("periodic", taus, np.zeros(1), ell, VAR, PERIOD))[:, 0]
    np.testing.assert_allclose(ours, exact, rtol=tol["closed_form_rel"], atol=tol["closed_form"])
    err = np.max(np.abs(_truncated_series(taus, ell, VAR, PERIOD) - exact))
    tail = 1.0 - _q2_scipy(ell).sum()
    assert err <= VAR * tail * (1 + 1e-9)
    bound = tol["periodic_truncation_ell05"] if ell < 0.7 else tol["periodic_truncation_ell07"]
    assert err <= bound * VAR


@pytest.mark.parametrize("kernel", PERIODIC)
def test_periodic_transition_gradients_match_finite_differences(kernel, tol):
    def q_sum(ell, var, period):
        hyper = (ell, var, period) if kernel == "periodic" else (ell, var, period, ENV)
        sde = kernel_sde(kernel, *hyper)
        A, Q = sde.transition(jnp.asarray(0.6))
        return jnp.sum(A * (sde.Pinf + Q)) + jnp.sum(A)

    g = jax.grad(q_sum, argnums=(0, 1, 2))(ELL, VAR, PERIOD)
    h = 1e-6
    fd = [
        (
            q_sum(*(v + h * (i == j) for j, v in enumerate((ELL, VAR, PERIOD))))
            - q_sum(*(v - h * (i == j) for j, v in enumerate((ELL, VAR, PERIOD))))
        )
        / (2 * h)
        for i in range(3)
    ]
    np.testing.assert_allclose(g, fd, rtol=tol["grad_vs_finite_diff"])


@pytest.mark.parametrize("kernel", PERIODIC)
def test_periodic_kernels_in_float32(kernel, tol):
    sde64 = _sde(kernel)
    sde32 = _sde(kernel, jnp.float32(ELL), jnp.float32(VAR))
    A32, Q32 = sde32.transition(jnp.float32(0.37))
    assert A32.dtype == jnp.float32 and sde32.Pinf.dtype == jnp.float32
    A64, Q64 = sde64.transition(jnp.asarray(0.37))
    for a, b in ((A32, A64), (Q32, Q64), (sde32.Pinf, sde64.Pinf)):
        np.testing.assert_allclose(a, b, atol=tol["float32_vs_float64"] * np.abs(b).max())


def test_kernel_names_and_hyperparameter_counts():
    assert check_kernel("periodic") == "periodic"
    with pytest.raises(ValueError, match="kernel must be one of"):
        check_kernel("cosine")
    with pytest.raises(ValueError, match="period"):
        kernel_sde("periodic", 1.0, 1.0)
    with pytest.raises(ValueError, match="harmonics"):
        periodic_sde(1.0, 1.0, 1.0, harmonics=0)
