"""Spectral-mixture kernels: covariance properties, derivative kernels vs autodiff, spectra."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from conftest import TOL

from bayestensor.pde.kernels import (
    SPECTRA,
    SpectralMixture,
    init_spectral_mixture,
    sm_kernel,
    sm_kernel_dx,
    sm_kernel_dxx,
    sm_kernel_dxx_dyy,
    spectral_density,
)

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

#: Closed-form derivative kernels vs nested autodiff of the base kernel (relative to max |k|).
DERIV_VS_AUTODIFF = TOL["pde_deriv_vs_autodiff"]
#: Kernel (and its spectral moments) vs numerical quadrature of the spectrum (relative).
QUAD = TOL["pde_kernel_vs_quadrature"]
#: Gram matrices: min eigenvalue ≥ −PSD_SLACK · trace.
PSD_SLACK = TOL["pde_gram_psd_slack"]

PARAMS = SpectralMixture(
    log_weight=jnp.log(jnp.array([0.7, 1.3, 0.4])),
    freq=jnp.array([0.0, 0.9, 2.3]),
    log_scale=jnp.log(jnp.array([0.25, 0.4, 0.15])),
)
#: (spectrum, ν) cases; ν only matters for the Student-t / Matérn envelope.
CASES = [("gaussian", 2.5), ("student_t", 1.5), ("student_t", 2.5), ("student_t", 3.5)]
#: Point pairs with x ≠ x' (nested autodiff through |x − x'| is wrong at 0).
PAIRS = [(0.3, -0.45), (-1.2, 0.7), (0.05, 0.0), (2.0, 1.1), (-0.6, -0.61), (1.4, 3.3)]


def _matern(z, nu):
    """Matérn-ν correlation in z = √(2ν)|d|/ℓ, written out for the half-integers used here."""
    poly = {1.5: 1 + z, 2.5: 1 + z + z**2 / 3, 3.5: 1 + z + 2 * z**2 / 5 + z**3 / 15}[nu]
    return poly * jnp.exp(-z)


def _k_scalar(x, y, params, spectrum, nu):
    """Reference kernel for one pair of scalars, written directly from its definition."""
    d = x - y
    w, mu, sigma = jnp.exp(params.log_weight), params.freq, jnp.exp(params.log_scale)
    if spectrum == "gaussian":
        env = jnp.exp(-2 * jnp.pi**2 * d**2 * sigma**2)
    else:
        ell = 1 / (2 * jnp.pi * sigma)
        env = _matern(jnp.sqrt(2 * nu) * jnp.abs(d) / ell, nu)
    return jnp.sum(w * env * jnp.cos(2 * jnp.pi * mu * d))


def _autodiff(i, j):
    """∂^{i+j} k / ∂x^i ∂x'^j by nested jax.grad."""
    f = _k_scalar
    for _ in range(i):
        f = jax.grad(f, argnums=0)
    for _ in range(j):
        f = jax.grad(f, argnums=1)
    return f


def _orders(nu, spectrum):
    """Derivative orders (i, j) with i, j ≤ 2 that the kernel supports."""
    max_total = 4 if spectrum == "gaussian" else int(2 * nu - 1)
    return [(i, j) for i in range(3) for j in range(3) if i + j <= max_total]


def _spectrum_ref(params, spectrum, nu):
    """Two-sided mixture density S(s), written with the math module (fast for quadrature)."""
    comps = [
        (math.exp(float(lw)), float(mu), math.exp(float(ls)))
        for lw, mu, ls in zip(params.log_weight, params.freq, params.log_scale, strict=True)
    ]
    dof = 2 * nu
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def phi(t):
        if spectrum == "gaussian":
            return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        return math.exp(log_c - (dof + 1) / 2 * math.log1p(t * t / dof))

    def S(s):
        return sum(
            0.5 * w / sigma * (phi((s - mu) / sigma) + phi((s + mu) / sigma))
            for w, mu, sigma in comps
        )

    return S


def _spectrum_scipy(s, params, spectrum, nu):
    """Two-sided mixture density from scipy.stats (vectorised reference)."""
    out = np.zeros_like(s)
    for lw, mu, ls in zip(params.log_weight, params.freq, params.log_scale, strict=True):
        w, mu, sigma = math.exp(float(lw)), float(mu), math.exp(float(ls))
        if spectrum == "gaussian":
            pdf = scipy.stats.norm(scale=sigma).pdf
        else:
            pdf = scipy.stats.t(df=2 * nu, scale=sigma).pdf
        out += 0.5 * w * (pdf(s - mu) + pdf(s + mu))
    return out


@pytest.mark.parametrize(("spectrum", "nu"), CASES)
def test_k0_is_sum_of_weights_and_symmetric(spectrum, nu, rng):
    x = jnp.asarray(rng.uniform(-2, 2, 7))
    y = jnp.asarray(rng.uniform(-2, 2, 5))
    K = sm_kernel(PARAMS, x, x, spectrum, nu)
    np.testing.assert_allclose(
        jnp.diag(K), jnp.exp(PARAMS.log_weight).sum(), rtol=TOL["pde_kernel_symmetry"]
    )
    np.testing.assert_allclose(
        K, K.T, rtol=TOL["pde_kernel_symmetry"], atol=TOL["pde_kernel_symmetry_abs"]
    )
    Kxy = sm_kernel(PARAMS, x, y, spectrum, nu)
    np.testing.assert_allclose(
        Kxy, sm_kernel(PARAMS, y, x, spectrum, nu).T, rtol=TOL["pde_kernel_symmetry"]
    )
    # k^{(i,j)}(x, y) = k^{(j,i)}(y, x)
    for i, j in _orders(nu, spectrum):
        np.testing.assert_allclose(
            sm_kernel(PARAMS, x, y, spectrum, nu, order=(i, j)),
            sm_kernel(PARAMS, y, x, spectrum, nu, order=(j, i)).T,
            rtol=TOL["pde_deriv_symmetry"],
            atol=TOL["pde_deriv_symmetry"],
        )


@pytest.mark.parametrize(("spectrum", "nu"), CASES)
def test_gram_matrices_are_psd(spectrum, nu, rng):
    x = jnp.asarray(rng.uniform(-3, 3, 40))
    K = sm_kernel(PARAMS, x, x, spectrum, nu)
    blocks = [K]
    if _orders(nu, spectrum)[-1] == (2, 2):
        # joint covariance of (u, u_xx) at the same points
        K02 = sm_kernel(PARAMS, x, x, spectrum, nu, order=(0, 2))
        K22 = sm_kernel_dxx_dyy(PARAMS, x, x, spectrum, nu)
        blocks.append(jnp.block([[K, K02], [K02.T, K22]]))
    for G in blocks:
        eigs = np.linalg.eigvalsh(np.asarray(G))
        assert eigs.min() >= -PSD_SLACK * np.trace(G)


@pytest.mark.parametrize(("spectrum", "nu"), CASES)
@pytest.mark.parametrize("jit", [False, True])
def test_derivative_kernels_match_nested_autodiff(spectrum, nu, jit):
    x = jnp.array([p[0] for p in PAIRS])
    y = jnp.array([p[1] for p in PAIRS])
    orders = _orders(nu, spectrum)

    def closed_all(params, x, y):
        return jnp.stack([jnp.diag(sm_kernel(params, x, y, spectrum, nu, o)) for o in orders])

    def autodiff_all(params, x, y):
        refs = []
        for o in orders:
            f = _autodiff(*o)
            refs.append(jax.vmap(lambda a, b, f=f: f(a, b, params, spectrum, nu))(x, y))
        return jnp.stack(refs)

    closed = (jax.jit(closed_all) if jit else closed_all)(PARAMS, x, y)
    # the reference is always jitted: eager nested grads cost seconds
    ref = jax.jit(autodiff_all)(PARAMS, x, y)
    for order, c, r in zip(orders, closed, ref, strict=True):
        atol = DERIV_VS_AUTODIFF * float(jnp.max(jnp.abs(r)))
        np.testing.assert_allclose(c, r, rtol=DERIV_VS_AUTODIFF, atol=atol, err_msg=str(order))


def test_named_derivative_kernels(rng):
    x = jnp.asarray(rng.uniform(-1, 1, 4))
    y = jnp.asarray(rng.uniform(-1, 1, 3))
    for fn, order in [(sm_kernel_dx, (1, 0)), (sm_kernel_dxx, (2, 0)), (sm_kernel_dxx_dyy, (2, 2))]:
        for spectrum in SPECTRA:
            np.testing.assert_array_equal(
                fn(PARAMS, x, y, spectrum), sm_kernel(PARAMS, x, y, spectrum, order=order)
            )


@pytest.mark.parametrize(("spectrum", "nu"), CASES)
def test_variances_at_zero_are_spectral_moments(spectrum, nu):
    # Var u^{(n)}(x) = k^{(n,n)}(x, x) = ∫ (2πs)^{2n} S(s) ds  (the d = 0 values autodiff misses)
    x = jnp.array([0.37])
    for n in range(3):
        if (n, n) not in _orders(nu, spectrum):
            continue
        closed = float(sm_kernel(PARAMS, x, x, spectrum, nu, order=(n, n))[0, 0])
        S = _spectrum_ref(PARAMS, spectrum, nu)
        moment = scipy.integrate.quad(
            lambda s, n=n, S=S: (2 * np.pi * s) ** (2 * n) * S(s),
            -np.inf,
            np.inf,
            epsabs=0,
            epsrel=1e-12,
            limit=500,
        )[0]
        np.testing.assert_allclose(closed, moment, rtol=QUAD)


@pytest.mark.parametrize("spectrum", SPECTRA)
def test_spectral_density_matches_scipy(spectrum):
    s = np.linspace(-5, 5, 41)
    ref = _spectrum_scipy(s, PARAMS, spectrum, 2.5)
    np.testing.assert_allclose(
        spectral_density(PARAMS, s, spectrum), ref, rtol=TOL["pde_spectrum_vs_scipy"]
    )
    fast = _spectrum_ref(PARAMS, spectrum, 2.5)
    np.testing.assert_allclose([fast(si) for si in s], ref, rtol=TOL["pde_spectrum_vs_scipy"])


@pytest.mark.parametrize(("spectrum", "nu"), [("gaussian", 2.5), ("student_t", 2.5)])
def test_kernel_is_inverse_fourier_transform_of_spectrum(spectrum, nu):
    # one component: k(d) = ∫ S(s) e^{2πisd} ds = 2 ∫_0^∞ S(s) cos(2πsd) ds
    params = SpectralMixture(jnp.log(jnp.array([1.7])), jnp.array([1.3]), jnp.log(jnp.array([0.3])))
    d = np.array([0.0, 0.2, 0.55, 1.1, 2.4])
    k = np.asarray(sm_kernel(params, jnp.asarray(d), jnp.zeros(1), spectrum, nu))[:, 0]
    S = _spectrum_ref(params, spectrum, nu)
    for dj, kj in zip(d, k, strict=True):
        if dj == 0:
            integral = scipy.integrate.quad(S, 0, np.inf, epsabs=1e-13)[0]
        else:
            integral = scipy.integrate.quad(
                S,
                0,
                np.inf,
                weight="cos",
                wvar=2 * np.pi * dj,
                epsabs=1e-13,
            )[0]
        np.testing.assert_allclose(kj, 2 * integral, rtol=QUAD, atol=QUAD * k[0])


def test_parameter_gradients_match_autodiff_reference():
    x, y = 0.3, -0.45

    def closed(params, spectrum):
        return sm_kernel_dxx(params, jnp.array([x]), jnp.array([y]), spectrum)[0, 0]

    for spectrum in SPECTRA:
        g = jax.jit(jax.grad(closed), static_argnums=1)(PARAMS, spectrum)
        g_ref = jax.jit(jax.grad(_autodiff(2, 0), argnums=2), static_argnums=(3, 4))(
            x, y, PARAMS, spectrum, 2.5
        )
        for a, b in zip(g, g_ref, strict=True):
            np.testing.assert_allclose(
                a, b, rtol=DERIV_VS_AUTODIFF, atol=TOL["pde_deriv_vs_autodiff_abs"]
            )


def test_init_spectral_mixture():
    params = init_spectral_mixture(n_components=30, max_freq=12.0)
    assert all(a.shape == (30,) for a in params)
    np.testing.assert_allclose(params.freq, np.linspace(0, 12, 30), rtol=TOL["pde_init_params"])
    np.testing.assert_allclose(jnp.exp(params.log_scale), 12 / 29, rtol=TOL["pde_init_params"])
    # k(0) = Σ w
    np.testing.assert_allclose(jnp.exp(params.log_weight).sum(), 1.0, rtol=TOL["pde_init_params"])
    custom = init_spectral_mixture(4, 2.0, scale=0.1, weight=0.5)
    np.testing.assert_allclose(jnp.exp(custom.log_weight), 0.5)
    np.testing.assert_allclose(jnp.exp(custom.log_scale), 0.1)
    with pytest.raises(ValueError, match="max_freq"):
        init_spectral_mixture(3, 0.0)
    with pytest.raises(ValueError, match="n_components"):
        init_spectral_mixture(0, 1.0)


def test_invalid_arguments_raise():
    x = jnp.zeros(2)
    with pytest.raises(ValueError, match="spectrum must be one of"):
        sm_kernel(PARAMS, x, x, "cauchy")
    with pytest.raises(ValueError, match="half-integer"):
        sm_kernel(PARAMS, x, x, "student_t", nu=2.0)
    with pytest.raises(ValueError, match="derivatives up to order 2"):
        sm_kernel_dxx_dyy(PARAMS, x, x, "student_t", nu=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        sm_kernel(PARAMS, x, x, order=(-1, 0))
