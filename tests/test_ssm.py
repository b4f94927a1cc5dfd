"""The Kalman/RTS posterior with natural-parameter messages equals a dense GP (Cholesky)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.kernels import MATERN_NU, PERIODIC_HARMONICS, matern_cov
from bayestensor.periodic import periodic_coefficients
from bayestensor.ssm import (
    SMALL_CHOLESKY,
    _cholesky_lower_solve,
    gaps,
    interpolate,
    locate,
    log_marginal,
    smooth,
    stacked_matern,
    stacked_sde,
)

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

KERNELS = sorted(MATERN_NU)
ALL_KERNELS = [*KERNELS, "periodic", "quasiperiodic"]
N_COORDS = 30
#: period of the (quasi-)periodic kernels (the coordinates span about 2.4 periods) and the
#: envelope lengthscales of the quasi-periodic ones
PERIOD = 2.5
ENVELOPE = np.array([3.0, 1.5, 5.0])


def _problem(rng, R, n=N_COORDS):
    """Uneven coordinates, random SPD messages at ~2/3 of them, none at the rest."""
    x = np.sort(rng.uniform(0.0, 6.0, n))
    x[5] = x[4] + 1e-4  # a very small gap
    has_msg = rng.uniform(size=n) < 0.67
    has_msg[[0, 1, -1]] = [False, True, True]
    prec = np.zeros((n, R, R))
    shift = np.zeros((n, R))
    for t in np.flatnonzero(has_msg):
        B = rng.normal(size=(R, R))
        prec[t] = B @ B.T + 0.5 * np.eye(R)
        shift[t] = rng.normal(size=R) * 2.0
    return x, prec, shift, has_msg


def _hyper(R, kernel="matern32"):
    ell = np.array([0.7, 1.3, 0.4] if kernel in MATERN_NU else [0.7, 1.3, 0.9])[:R]
    var = np.array([1.2, 0.5, 2.0][:R])
    return ell, var


def _cov_fn(kernel, ell, var):
    """``cov(xa, xb, r)``: the dense covariance of function r (the truncated Fourier series for
    the (quasi-)periodic kernels; its coefficients, differentiable in ℓ, are checked against
    scipy's Bessel functions in test_kernels.py)."""
    if kernel in MATERN_NU:
        return lambda xa, xb, r: matern_cov(kernel, xa, xb, ell[r], var[r])

    def cov(xa, xb, r):
        tau = jnp.asarray(xa)[:, None] - jnp.asarray(xb)[None, :]
        j = np.arange(PERIODIC_HARMONICS + 1)
        q2 = periodic_coefficients(ell[r])
        k = var[r] * jnp.einsum("abj,j->ab", jnp.cos(2 * jnp.pi * tau[..., None] * j / PERIOD), q2)
        if kernel == "quasiperiodic":
            k = k * matern_cov("matern32", xa, xb, ENVELOPE[r], 1.0)
        return k

    return cov


def _dense(kernel, x, prec, shift, has_msg, ell, var, xnew):
    """Dense GP posterior by Cholesky on pseudo-observations ỹ = Λ⁻¹η with noise Λ⁻¹."""
    R = prec.shape[-1]
    cov = _cov_fn(kernel, ell, var)
    obs = np.flatnonzero(has_msg)
    xa = jnp.concatenate([jnp.asarray(x), jnp.asarray(xnew)])
    n_all = xa.shape[0]
    # prior covariance over (coordinate, function) pairs, function-major blocks
    K = jax.scipy.linalg.block_diag(*[cov(xa, xa, r) for r in range(R)])
    idx = lambda rows: (np.arange(R)[:, None] * n_all + np.asarray(rows)[None, :]).T  # noqa: E731
    io = idx(obs).ravel()  # (obs, R) order
    Sig = jax.scipy.linalg.block_diag(*[jnp.linalg.inv(prec[t]) for t in obs])
    ytil = jnp.concatenate([jnp.linalg.solve(prec[t], shift[t]) for t in obs])
    Kyy = K[np.ix_(io, io)] + Sig
    Lc = jnp.linalg.cholesky(Kyy)
    alpha = jax.scipy.linalg.cho_solve((Lc, True), ytil)
    logz = (
        -0.5 * ytil @ alpha
        - jnp.sum(jnp.log(jnp.diag(Lc)))
        - 0.5 * len(io) * jnp.log(2 * jnp.pi)
        + sum(
            0.5 * shift[t] @ np.linalg.solve(prec[t], shift[t])
            - 0.5 * np.linalg.slogdet(prec[t] / (2 * np.pi))[1]
            for t in obs
        )
    )
    means = []
    for rows in (np.arange(len(x)), len(x) + np.arange(len(xnew))):
        Kao = K[np.ix_(idx(rows).ravel(), io)]
        means.append((Kao @ alpha).reshape(len(rows), R))
    return means, logz


def _dense_full(kernel, x, prec, shift, has_msg, ell, var, xnew):
    means, logz = _dense(kernel, x, prec, shift, has_msg, ell, var, xnew)
    # posterior covariance blocks of (f_1 … f_R)(x_i), one Cholesky solve per point
    R = prec.shape[-1]
    cov = _cov_fn(kernel, ell, var)
    obs = np.flatnonzero(has_msg)
    covs = []
    for pts in (x, xnew):
        blocks = np.zeros((len(pts), R, R))
        for i, xi in enumerate(pts):
            xa = np.concatenate([[xi], x[obs]])
            Kr = [np.asarray(cov(xa, xa, r)) for r in range(R)]
            # joint over (f_r(xi))_r and (f_r(x_obs))_r, obs-major for the observed block
            k_star = np.zeros((R, len(obs) * R))
            K_oo = np.zeros((len(obs) * R, len(obs) * R))
            for r in range(R):
                k_star[r, r::R] = Kr[r][0, 1:]
                K_oo[r::R, r::R] = Kr[r][1:, 1:]
            Sig = np.zeros_like(K_oo)
            for j, t in enumerate(obs):
                Sig[j * R : (j + 1) * R, j * R : (j + 1) * R] = np.linalg.inv(prec[t])
            L = np.linalg.cholesky(K_oo + Sig)
            W = np.linalg.solve(L, k_star.T)
            blocks[i] = np.diag([Kr[r][0, 0] for r in range(R)]) - W.T @ W
        covs.append(blocks)
    return means, covs, logz


def _new_points(rng, x):
    inside = rng.uniform(x[0], x[-1], 14)
    left = x[0] - np.array([0.05, 0.6, 2.5])
    right = x[-1] + np.array([0.02, 0.9, 3.0])
    return np.concatenate([inside, left, right])  # 20 points


def _stack(kernel, ell, var, R):
    if kernel in MATERN_NU:
        return stacked_matern(kernel, ell, var, R)
    hyper = (ell, var, PERIOD) + ((ENVELOPE[:R],) if kernel == "quasiperiodic" else ())
    return stacked_sde(kernel, hyper, R)


@pytest.mark.parametrize("R", [1, 2, 5, SMALL_CHOLESKY, SMALL_CHOLESKY + 1])
def test_filter_cholesky_and_solve_equal_numpy(R, rng, tol):
    """The filter's ``M = L Lᵀ`` factor and ``L⁻¹ B``: written out entry by entry up to
    SMALL_CHOLESKY rows, LAPACK beyond; both against NumPy, also under vmap (the search)."""
    A = rng.normal(size=(3, R, R))
    M = np.eye(R) + np.einsum("bij,bkj->bik", A, A)  # eigenvalues ≥ 1, as in the filter
    B = rng.normal(size=(3, R, 4))
    diag, X = jax.jit(jax.vmap(_cholesky_lower_solve))(jnp.asarray(M), jnp.asarray(B))
    L = np.linalg.cholesky(M)
    np.testing.assert_allclose(
        diag, np.diagonal(L, axis1=1, axis2=2), rtol=tol["triangular_vs_numpy"]
    )
    np.testing.assert_allclose(
        X, np.linalg.solve(L, B), rtol=tol["triangular_vs_numpy"], atol=tol["triangular_vs_numpy"]
    )


def _slow_smoother_case(jit: bool, kernel: str, R: int) -> bool:
    """Slow marker (CI time): three stacked periodic / quasi-periodic functions (15–30 s each)
    and every op-by-op run (jit=False: 8–12 s each) but Matérn-3/2 at R = 1; the compiled runs
    check every kernel at R = 1 and the stacking of the Matérn ones."""
    periodic_stack = R == 3 and kernel in ("periodic", "quasiperiodic")
    return periodic_stack or (not jit and (kernel, R) != ("matern32", 1))


@pytest.mark.parametrize(
    ("jit", "kernel", "R"),
    [
        pytest.param(jit, k, R, marks=pytest.mark.slow)
        if _slow_smoother_case(jit, k, R)
        else (jit, k, R)
        for jit in (False, True)
        for k in ALL_KERNELS
        for R in (1, 3)
    ],
)
def test_smoother_and_interpolation_equal_dense_gp(jit, kernel, R, rng, tol):
    x, prec, shift, has_msg = _problem(rng, R)
    ell, var = _hyper(R, kernel)
    xnew = _new_points(rng, x)
    (m_ref, m_new_ref), (P_ref, P_new_ref), logz_ref = _dense_full(
        kernel, x, prec, shift, has_msg, ell, var, xnew
    )

    def run(ell, var, dt, prec, shift, loc):
        sde = _stack(kernel, ell, var, R)
        post = smooth(sde, dt, prec, shift)
        return post, interpolate(sde, post, loc)

    run = jax.jit(run) if jit else run
    post, (m_new, P_new) = run(ell, var, gaps(x), prec, shift, locate(x, xnew))
    rel = tol["ssm_vs_dense"]
    scale_m = np.max(np.abs(m_ref))
    np.testing.assert_allclose(post.mean, m_ref, rtol=rel, atol=rel * scale_m)
    np.testing.assert_allclose(post.cov, P_ref, rtol=rel, atol=rel * var.max())
    np.testing.assert_allclose(post.log_marginal, logz_ref, rtol=rel)
    const = sum(
        0.5 * shift[t] @ np.linalg.solve(prec[t], shift[t]) for t in range(len(x)) if has_msg[t]
    )
    np.testing.assert_allclose(post.log_lik, logz_ref - const, rtol=rel)
    np.testing.assert_allclose(m_new, m_new_ref, rtol=rel, atol=rel * scale_m)
    np.testing.assert_allclose(P_new, P_new_ref, rtol=rel, atol=rel * var.max())


@pytest.mark.parametrize(
    ("kernel", "R"),
    [
        # slow marker (CI time, 5-6 s each): three stacked kernels of five; every kernel at R = 1
        pytest.param(k, R, marks=pytest.mark.slow)
        if R == 3 and k in ("matern12", "matern52", "periodic")
        else (k, R)
        for R in (1, 3)
        for k in ALL_KERNELS
    ],
)
def test_log_marginal_gradient_equals_dense(kernel, R, rng, tol):
    x, prec, shift, has_msg = _problem(rng, R)
    dt = gaps(x)

    def ours(ell, var):
        return log_marginal(_stack(kernel, ell, var, R), dt, prec, shift)

    def dense(ell, var):
        e = jnp.broadcast_to(ell, (R,))
        v = jnp.broadcast_to(var, (R,))
        return _dense(kernel, x, prec, shift, has_msg, e, v, x[:1])[1]

    # shared scalar hyperparameters and one per function
    for ell, var in [(0.9, 1.4), tuple(jnp.array(h) for h in _hyper(R, kernel))]:
        g = jax.jit(jax.grad(ours, argnums=(0, 1)))(ell, var)
        g_ref = jax.grad(dense, argnums=(0, 1))(ell, var)
        for a, b in zip(g, g_ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=tol["grad_vs_dense"])


def test_no_messages_gives_the_prior(rng):
    R, n = 2, 12
    x = np.sort(rng.uniform(0, 3, n))
    sde = stacked_matern("matern32", 0.5, 1.3, R)
    post = smooth(sde, gaps(x), np.zeros((n, R, R)), np.zeros((n, R)))
    np.testing.assert_allclose(post.mean, 0.0, atol=TOL["ssm_prior_abs"])
    np.testing.assert_allclose(
        post.cov, np.broadcast_to(1.3 * np.eye(R), (n, R, R)), rtol=TOL["ssm_prior_cov"]
    )
    np.testing.assert_allclose(post.log_marginal, 0.0, atol=TOL["ssm_prior_abs"])


def test_singular_message_precision_is_handled(rng):
    # A rank-1 Λ (e.g. a single observation of a·f) must not need Λ⁻¹.
    R, n = 3, 10
    x = np.sort(rng.uniform(0, 3, n))
    a = rng.normal(size=(n, R))
    prec = 4.0 * a[:, :, None] * a[:, None, :]
    y = rng.normal(size=n)
    shift = 4.0 * y[:, None] * a
    sde = stacked_matern("matern52", 0.8, 1.0, R)
    post = smooth(sde, gaps(x), prec, shift)
    # dense reference: y_t = a_tᵀ f(x_t) + ε, ε ~ N(0, 1/4)
    Kx = np.asarray(matern_cov("matern52", x, x, 0.8, 1.0))
    Kf = np.einsum("ts,ti,si->ts", Kx, a, a) + 0.25 * np.eye(n)  # Cov(y)
    alpha = np.linalg.solve(Kf, y)
    mean_ref = np.einsum("ts,si,s->ti", Kx, a, alpha)
    np.testing.assert_allclose(
        post.mean, mean_ref, rtol=TOL["ssm_vs_dense"], atol=TOL["ssm_vs_dense_abs"]
    )
    logz_ref = (
        -0.5 * y @ alpha
        - 0.5 * np.linalg.slogdet(2 * np.pi * Kf)[1]
        + np.sum(-0.5 * np.log(4.0 / (2 * np.pi)) + 0.5 * 4.0 * y**2)
    )
    np.testing.assert_allclose(post.log_marginal, logz_ref, rtol=TOL["ssm_vs_dense"])


def test_locate_offsets(rng):
    x = np.array([0.0, 1.0, 3.0])
    loc = locate(x, np.array([-2.0, 0.0, 0.5, 1.0, 2.5, 3.0, 4.0]))
    np.testing.assert_array_equal(loc.index, [-1, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(loc.d_left, [0.0, 0.0, 0.5, 0.0, 1.5, 0.0, 1.0])
    np.testing.assert_allclose(loc.d_right, [2.0, 1.0, 0.5, 2.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(loc.gap, [0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0])
    loc_j = locate(jnp.asarray(x), jnp.asarray([-2.0, 0.5, 4.0]))
    np.testing.assert_allclose(loc_j.d_left, [0.0, 0.5, 1.0])


def test_float32_long_sequence_extreme_gaps():
    """1e5 coordinates with gaps 1e-6 … 1e3: float32 is finite and matches float64."""
    rng = np.random.default_rng(1)
    n, R = 100_000, 3
    dt64 = np.exp(rng.uniform(np.log(1e-6), np.log(1e3), n))
    dt64[0] = 0.0
    has = rng.uniform(size=n) < 0.7
    B = rng.normal(size=(n, R, R)) * 0.5
    prec = (B @ np.swapaxes(B, 1, 2) + 0.1 * np.eye(R)) * has[:, None, None]
    shift = rng.normal(size=(n, R)) * has[:, None]

    @jax.jit
    def run(dt, prec, shift):
        sde = stacked_matern("matern32", jnp.asarray(1.0, dt.dtype), jnp.asarray(1.0, dt.dtype), R)
        return smooth(sde, dt, prec, shift)

    post64 = run(dt64, prec, shift)
    post32 = run(*(a.astype(np.float32) for a in (dt64, prec, shift)))
    assert post32.mean.dtype == jnp.float32
    assert np.all(np.isfinite(post32.mean)) and np.all(np.isfinite(post32.cov))
    scale = np.max(np.abs(post64.mean))
    assert (
        np.max(np.abs(np.asarray(post32.mean, float) - post64.mean))
        <= TOL["float32_vs_float64"] * scale
    )


@pytest.mark.parametrize("kernel", ["periodic", "quasiperiodic"])
def test_periodic_smoother_float32_matches_float64(kernel, rng):
    R = 2
    x, prec, shift, _ = _problem(rng, R)
    ell, var = _hyper(R, kernel)
    xnew = _new_points(rng, x)

    @jax.jit
    def run(ell, var, dt, prec, shift, loc):
        sde = _stack(kernel, ell, var, R)
        post = smooth(sde, dt, prec, shift)
        return post, interpolate(sde, post, loc)

    loc = locate(x, xnew)
    post64, new64 = run(ell, var, gaps(x), prec, shift, loc)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    loc32 = loc._replace(**{k: f32(getattr(loc, k)) for k in ("d_left", "d_right", "gap")})
    post32, new32 = run(*(f32(a) for a in (ell, var, gaps(x), prec, shift)), loc32)
    assert post32.mean.dtype == jnp.float32
    for a32, a64 in ((post32.mean, post64.mean), (post32.cov, post64.cov), (new32, new64)):
        for b32, b64 in zip(jax.tree.leaves(a32), jax.tree.leaves(a64), strict=True):
            assert np.all(np.isfinite(b32))
            scale = np.max(np.abs(b64))
            assert np.max(np.abs(np.asarray(b32, float) - b64)) <= TOL["float32_vs_float64"] * scale
