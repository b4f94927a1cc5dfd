"""FunBaT conditional-EP inference: moment contractions, closed-form updates and full fits."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from conftest import TOL

from bayestensor.data import encode, encode_new
from bayestensor.kernels import matern_cov
from bayestensor.models.funbat import (
    CorePosterior,
    FunBaT,
    core_update,
    expected_contraction,
    expected_f,
    funbat_model,
    init_state,
    noise_update,
    spectral_init,
)
from bayestensor.ssm import gaps

# tolerances live in conftest.TOL (one place for the whole suite)
CLOSED_FORM = TOL["funbat_closed_form"]
MC_SIGMAS = TOL["mc_sigmas"]
NOISELESS_RMSE = TOL["noiseless_rmse"]
NOISY_RMSE_FACTOR = TOL["noisy_rmse_factor"]
COVERAGE = TOL["coverage95"]
GP_EXACT = TOL["funbat_vs_dense_gp"]
TYPE2_ML = TOL["type2_ml"]
VS_NUTS = TOL["vs_nuts"]
F_COVERAGE = TOL["f_coverage95"]


# --------------------------------------------------------------------------------------------
# tiny random moment problems
# --------------------------------------------------------------------------------------------


def _spd(rng, d, scale=0.3):
    B = rng.normal(size=(d, d)) * scale
    return B @ B.T + 0.05 * np.eye(d)


def _moments(rng, ranks, n):
    """Random factor-row means and covariances (per mode, per observation) and a core."""
    means = [rng.normal(size=(n, R)) for R in ranks]
    covs = [np.stack([_spd(rng, R) for _ in range(n)]) for R in ranks]
    P = int(np.prod(ranks))
    core = CorePosterior(rng.normal(size=ranks), _spd(rng, P, scale=0.2))
    return means, covs, core


def _superdiag(ranks):
    W = np.zeros(ranks)
    for r in range(ranks[0]):
        W[(r,) * len(ranks)] = 1.0
    return W


def _reference_contraction(k, means, covs, Wmean, Wcov):
    """E[a], E[a aᵀ] by explicit Kronecker products: a = W_(k) z, z = ⊗_{j≠k} u_j."""
    K = len(means)
    ranks = Wmean.shape
    n = means[0].shape[0]
    others = [j for j in range(K) if j != k]
    # permutation of vec W (C order) into the rows of the mode-k unfolding W_(k) (C order)
    perm = np.moveaxis(np.arange(Wmean.size).reshape(ranks), k, 0).reshape(-1)
    m = Wmean.reshape(-1)[perm]
    S = (Wcov + np.outer(Wmean.reshape(-1), Wmean.reshape(-1)))[np.ix_(perm, perm)]
    Rk, Q = ranks[k], Wmean.size // ranks[k]
    S4 = S.reshape(Rk, Q, Rk, Q)
    Ea = np.zeros((n, Rk))
    Eaa = np.zeros((n, Rk, Rk))
    for i in range(n):
        z = np.ones(1)
        Ezz = np.ones((1, 1))
        for j in others:
            z = np.kron(z, means[j][i])
            Ezz = np.kron(Ezz, covs[j][i] + np.outer(means[j][i], means[j][i]))
        Ea[i] = m.reshape(Rk, Q) @ z
        for r in range(Rk):
            for s in range(Rk):
                Eaa[i, r, s] = np.sum(S4[r, :, s, :] * Ezz)
    return Ea, Eaa


def _second(means, covs):
    return [c + m[:, :, None] * m[:, None, :] for m, c in zip(means, covs, strict=True)]


@pytest.mark.parametrize("model", ["tucker", "cp"])
@pytest.mark.parametrize("jit", [False, True])
def test_expected_contraction_matches_kronecker_reference(model, jit, rng):
    ranks = (2, 3, 2) if model == "tucker" else (3, 3, 3)
    means, covs, core = _moments(rng, ranks, n=4)
    if model == "cp":
        Wmean, Wcov, core = _superdiag(ranks), np.zeros((27, 27)), None
    else:
        Wmean, Wcov = np.asarray(core.mean), np.asarray(core.cov)
    seconds = _second(means, covs)
    fn = jax.jit(expected_contraction, static_argnums=0) if jit else expected_contraction
    for k in range(3):
        Ea, Eaa = fn(k, means, seconds, core)
        Ea_ref, Eaa_ref = _reference_contraction(k, means, covs, Wmean, Wcov)
        np.testing.assert_allclose(Ea, Ea_ref, rtol=CLOSED_FORM, atol=CLOSED_FORM)
        np.testing.assert_allclose(Eaa, Eaa_ref, rtol=CLOSED_FORM, atol=CLOSED_FORM)
        # E[f] and E[f²] follow from mode k: f = a_kᵀ u_k
        Ef, Ef2 = expected_f(means, seconds, core)
        np.testing.assert_allclose(Ef, np.sum(Ea_ref * means[k], -1), rtol=CLOSED_FORM)
        np.testing.assert_allclose(
            Ef2, np.einsum("nrs,nrs->n", Eaa_ref, seconds[k]), rtol=CLOSED_FORM
        )


def test_blocked_contractions_equal_unblocked(rng):
    """Observation blocks (11 = 4 + 4 + 3, the last one zero-padded) change nothing."""
    ranks = (2, 3, 2)
    n = 11
    means, covs, core = _moments(rng, ranks, n)
    seconds = _second(means, covs)
    y = rng.normal(size=n)

    def everything(chunk):
        return (
            [expected_contraction(k, means, seconds, core, chunk) for k in range(3)],
            expected_f(means, seconds, core, chunk),
            core_update(y, 2.0, means, seconds, chunk),
        )

    blocked = jax.tree.leaves(jax.jit(lambda: everything(4))())
    whole = jax.tree.leaves(jax.jit(lambda: everything(None))())
    for a, b in zip(blocked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)


def test_expected_contraction_matches_monte_carlo(key):
    """Sample W and every factor row; the empirical moments of a and f agree."""
    ranks = (2, 3, 2)
    rng = np.random.default_rng(1)
    means, covs, core = _moments(rng, ranks, n=1)
    S = 200_000

    @jax.jit
    def sample(key):
        keys = jax.random.split(key, 4)
        W = jax.random.multivariate_normal(keys[0], core.mean.reshape(-1), core.cov, (S,))
        W = W.reshape((S,) + ranks)
        u = [
            jax.random.multivariate_normal(keys[j + 1], means[j][0], covs[j][0], (S,))
            for j in range(3)
        ]
        a = jnp.einsum("sabc,sa,sc->sb", W, u[0], u[2])  # mode k = 1
        f = jnp.einsum("sb,sb->s", a, u[1])
        return a, a[:, :, None] * a[:, None, :], f, f**2

    seconds = _second(means, covs)
    Ea, Eaa = expected_contraction(1, means, seconds, core)
    Ef, Ef2 = expected_f(means, seconds, core)
    for samples, exact in zip(sample(key), (Ea[0], Eaa[0], Ef[0], Ef2[0]), strict=True):
        se = np.std(samples, axis=0) / np.sqrt(S)
        assert np.all(
            np.abs(np.mean(samples, axis=0) - exact) < MC_SIGMAS * se + TOL["mc_abs_slack"]
        )


@pytest.mark.parametrize("jit", [False, True])
def test_core_update_matches_dense_gaussian_posterior(jit, rng):
    ranks = (2, 3, 2)
    n, tau = 30, 4.0
    means, covs, _ = _moments(rng, ranks, n)
    y = rng.normal(size=n)
    fn = jax.jit(core_update) if jit else core_update
    # fixed factors (zero covariance): W | y is the Bayesian linear regression y = Φ w + ε
    zero = [np.zeros_like(c) for c in covs]
    post = fn(y, tau, means, _second(means, zero))
    Phi = np.stack([np.kron(np.kron(means[0][i], means[1][i]), means[2][i]) for i in range(n)])
    prec = np.eye(12) + tau * Phi.T @ Phi
    cov = np.linalg.inv(prec)
    mean = cov @ (tau * Phi.T @ y)
    np.testing.assert_allclose(post.cov, cov, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    np.testing.assert_allclose(post.mean.reshape(-1), mean, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    # uncertain factors: precision I + τ Σ_n ⊗_k E[u uᵀ]_n
    post = fn(y, tau, means, _second(means, covs))
    M = _second(means, covs)
    G = sum(np.kron(np.kron(M[0][i], M[1][i]), M[2][i]) for i in range(n))
    cov = np.linalg.inv(np.eye(12) + tau * G)
    np.testing.assert_allclose(post.cov, cov, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    np.testing.assert_allclose(
        post.mean.reshape(-1), cov @ (tau * Phi.T @ y), rtol=CLOSED_FORM, atol=CLOSED_FORM
    )


def test_noise_update_uses_exact_second_moment(rng):
    y = rng.normal(size=7)
    Ef = rng.normal(size=7)
    Ef2 = Ef**2 + rng.uniform(0.1, 1.0, size=7)
    q = noise_update(jnp.asarray(y), Ef, Ef2, 1e-3, 2e-3)
    np.testing.assert_allclose(q.shape, 1e-3 + 3.5)
    expected = 2e-3 + 0.5 * np.sum((y - Ef) ** 2 + (Ef2 - Ef**2))
    np.testing.assert_allclose(q.rate, expected, rtol=CLOSED_FORM)


def test_spectral_init_spans_the_unfolding_subspaces(rng):
    """Fully observed rank-(2, 2) data: the start spans the true column spaces of both modes."""
    A, B = rng.normal(size=(12, 2)), rng.normal(size=(9, 2))
    i, j = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    index = np.stack([i.ravel(), j.ravel()], axis=1)
    y = np.einsum("nr,nr->n", A[index[:, 0]], B[index[:, 1]] @ np.array([[1.0, 0.3], [0.0, 0.5]]))
    means = spectral_init(index, y, (12, 9), (2, 3), seed=0)
    assert means[0].shape == (12, 2) and means[1].shape == (9, 3)
    for U, truth in ((means[0], A), (means[1][:, :2], B)):
        # the residual of projecting the truth onto span(U) vanishes
        Q = np.linalg.qr(U)[0]
        assert np.linalg.norm(truth - Q @ (Q.T @ truth)) < CLOSED_FORM * np.linalg.norm(truth)
    np.testing.assert_allclose(np.sum(means[0] ** 2, axis=0), [12.0, 12.0], rtol=CLOSED_FORM)


# --------------------------------------------------------------------------------------------
# full fits
# --------------------------------------------------------------------------------------------


def _gp_regression_data():
    """One continuous mode with repeated coordinates: rank-1 CP is then plain GP regression."""
    rng = np.random.default_rng(6)
    x = np.round(np.sort(rng.uniform(0.0, 5.0, 60)), 1)
    y = np.sin(2 * x) + 0.3 * x + 0.2 * rng.normal(size=x.size)
    enc = encode(pd.DataFrame({"x": x, "value": y}), ["x"], "value")
    xnew = np.array([-0.5, 0.05, 1.234, 2.5, 4.96, 5.7])  # outside, between and at known x
    return x, y, enc, encode_new(pd.DataFrame({"x": xnew}), enc.modes), xnew


def _dense_gp(x, z, ell, var, noise, xnew):
    """Dense Matérn-3/2 GP regression: predictive mean, variance and log marginal likelihood."""
    K = np.asarray(matern_cov("matern32", x, x, ell, var)) + noise * np.eye(x.size)
    Ks = np.asarray(matern_cov("matern32", xnew, x, ell, var))
    L = np.linalg.cholesky(K)
    alpha = np.linalg.solve(K, z)
    mean = Ks @ alpha
    v = var - np.sum(Ks * np.linalg.solve(K, Ks.T).T, axis=1)
    loglik = -0.5 * z @ alpha - np.sum(np.log(np.diag(L))) - 0.5 * x.size * np.log(2 * np.pi)
    return mean, v, loglik


def test_single_mode_fit_equals_dense_gp_regression():
    """K = 1, CP rank 1: at convergence q(u) is the exact GP posterior at noise 1/E[τ]."""
    x, y, enc, new, xnew = _gp_regression_data()
    records = []
    fit = FunBaT(
        model="cp", rank=1, learn_hyper=False, lengthscale=0.7, variance=1.3, tol=1e-12
    ).fit(enc, callback=records.append)
    assert fit.converged_ and records == fit.history_
    mean, sd_f, sd_y = fit.predict(new)
    noise = 1.0 / float(fit.state_.noise.mean)
    z = (y - y.mean()) / y.std()
    m_ref, v_ref, _ = _dense_gp(x, z, 0.7, 1.3, noise, xnew)
    np.testing.assert_allclose(mean, m_ref * y.std() + y.mean(), rtol=GP_EXACT, atol=GP_EXACT)
    np.testing.assert_allclose(sd_f, np.sqrt(v_ref) * y.std(), rtol=GP_EXACT, atol=GP_EXACT)
    np.testing.assert_allclose(sd_y, np.sqrt(v_ref + noise) * y.std(), rtol=GP_EXACT)


def test_learned_hyperparameters_maximise_the_marginal_likelihood():
    """K = 1 with a flat noise prior: the sweeps are EM for the noise and gradient ascent for
    ℓ, σ², so they converge to the type-II maximum likelihood of the dense GP."""
    x, y, enc, _, _ = _gp_regression_data()
    fit = FunBaT(model="cp", rank=1, tol=1e-10, max_sweeps=1000, a0=0.0, b0=0.0).fit(enc)
    h = fit.history_[-1]
    ours = np.array([h["lengthscale"][0], h["variance"][0], 1.0 / h["tau"]])
    z = (y - y.mean()) / y.std()

    def neg_loglik(log_theta):
        return -_dense_gp(x, z, *np.exp(log_theta), x)[2]

    best = scipy.optimize.minimize(
        neg_loglik, np.log(ours * 1.5), method="Nelder-Mead", options={"xatol": 1e-9}
    )
    np.testing.assert_allclose(ours, np.exp(best.x), rtol=TYPE2_ML)
    # well away from its initial value
    assert ours[0] > TOL["hyper_learned_factor"] * 0.1 * (x[-1] - x[0])


def _split(df, frac=0.8):
    ntr = int(frac * len(df))
    return df.iloc[:ntr], df.iloc[ntr:]


def test_noiseless_rank_one_pattern_is_recovered():
    """synthetic_r1: u1(x)·u2(y) on a 90 × 90 grid, 1350 random cells, 20 % held out."""
    rng = np.random.default_rng(0)
    g = np.linspace(0.0, 1.0, 90)
    cells = rng.choice(90 * 90, 1350, replace=False)
    x, z = g[cells // 90], g[cells % 90]
    u1 = np.sin(2 * np.pi * x) ** 2 * np.cos(2 * np.pi * x)
    u2 = np.exp(-2 * z) * np.sin(1.5 * np.pi * z)
    train, test = _split(pd.DataFrame({"x": x, "y": z, "value": u1 * u2}))
    enc = encode(train, ["x", "y"], "value")
    fit = FunBaT(model="cp", rank=1, kernel="matern32").fit(enc)
    mean, sd_f, sd_y = fit.predict(encode_new(test, enc.modes))
    rmse = np.sqrt(np.mean((mean - test["value"].to_numpy()) ** 2))
    assert fit.converged_
    assert rmse < NOISELESS_RMSE
    assert np.all(np.isfinite(sd_f)) and np.all(sd_y >= sd_f)
    # the history is recorded per sweep and the training error went down
    assert len(fit.history_) == fit.n_sweeps_
    assert fit.history_[-1]["rmse"] < TOL["train_rmse_decrease"] * fit.history_[0]["rmse"]


def _tucker_data(rng, n=1500, G=60, noise=0.1):
    g = np.linspace(0.0, 1.0, G)
    U1 = np.stack([np.sin(2 * np.pi * g), np.cos(3 * g)], 1)
    U2 = np.stack([np.exp(-g) * np.cos(2 * np.pi * g), 1 + g**2], 1)
    W = np.array([[1.0, 0.5], [-0.7, 0.8]])
    cells = rng.choice(G * G, n, replace=False)
    i, j = cells // G, cells % G
    f = np.einsum("ab,na,nb->n", W, U1[i], U2[j])
    y = f + noise * rng.normal(size=n)
    return pd.DataFrame({"a": g[i], "b": g[j], "value": y, "f": f})


def test_noisy_tucker_intervals_are_calibrated():
    noise = 0.1
    train, test = _split(_tucker_data(np.random.default_rng(1), noise=noise))
    enc = encode(train, ["a", "b"], "value")
    fit = FunBaT(model="tucker", rank=2).fit(enc)
    mean, sd_f, sd_y = fit.predict(encode_new(test, enc.modes))
    y = test["value"].to_numpy()
    rmse = np.sqrt(np.mean((mean - y) ** 2))
    coverage = np.mean(np.abs(y - mean) < 1.96 * sd_y)
    assert fit.converged_
    assert rmse < NOISY_RMSE_FACTOR * noise
    assert COVERAGE[0] <= coverage <= COVERAGE[1]
    # the learned noise level is close to the truth
    assert abs(fit.history_[-1]["noise_sd"] - noise) < TOL["noise_sd_rel"] * noise
    # the latent-function bands are informative: they cover the noiseless truth
    f_coverage = np.mean(np.abs(test["f"].to_numpy() - mean) < 1.96 * sd_f)
    assert F_COVERAGE[0] <= f_coverage <= F_COVERAGE[1]
    assert np.median(sd_f) < TOL["f_sd_vs_noise"] * noise


def test_mixed_continuous_categorical_recovers_planted_effects():
    rng = np.random.default_rng(2)
    cats = np.array(["a", "b", "c", "d", "e"])
    C = np.array([[1.0, 0.5], [-0.8, 1.0], [0.3, -1.2], [1.5, 0.2], [-0.2, -0.4]])
    tg = np.linspace(0.0, 1.0, 50)

    def truth(t, c):
        return C[c, 0] * np.sin(2 * np.pi * t) + C[c, 1] * (2 * t - 1)

    n, noise = 800, 0.1
    ti, ci = rng.integers(0, 50, n), rng.integers(0, 5, n)
    y = truth(tg[ti], ci) + noise * rng.normal(size=n)
    train, test = _split(pd.DataFrame({"t": tg[ti], "group": cats[ci], "value": y}))
    unseen = tg[2::5]  # 10 of the 50 times never appear in training: the bridge interpolates
    train = train[~train["t"].isin(unseen)]
    enc = encode(train, ["t", "group"], "value")
    assert enc.modes[1].kind == "categorical" and enc.modes[0].size == 40
    fit = FunBaT(model="tucker", rank=2).fit(enc)
    mean, _, _ = fit.predict(encode_new(test, enc.modes))
    rmse = np.sqrt(np.mean((mean - test["value"].to_numpy()) ** 2))
    assert rmse < NOISY_RMSE_FACTOR * noise
    # the compiled sweep returns the state with the structure, shapes, dtypes and weak types it
    # was given, so it compiled once for all sweeps; the hyperparameters were learned
    dts = (jnp.asarray(gaps(enc.modes[0].values)), None)
    init = init_state(fit.cfg_, dts, [0.1, None], [1.0, None], jax.random.key(0))
    assert jax.tree.map(jax.typeof, fit.state_) == jax.tree.map(jax.typeof, init)
    assert abs(fit.history_[-1]["lengthscale"][0] - 0.1) > TOL["hyper_learned_abs"]
    # each category's predicted curve over the whole grid (seen and unseen times) matches its
    # planted curve
    grid = pd.DataFrame({"t": np.tile(tg, 5), "group": np.repeat(cats, 50)})
    pred, _, _ = fit.predict(encode_new(grid, enc.modes))
    for c in range(5):
        p = pred[c * 50 : (c + 1) * 50]
        assert np.corrcoef(p, truth(tg, c))[0, 1] > TOL["curve_corr"]
        assert np.sqrt(np.mean((p - truth(tg, c)) ** 2)) < TOL["curve_rmse_factor"] * noise


# --------------------------------------------------------------------------------------------
# the NumPyro model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tucker", "cp"])
def test_numpyro_model_prior_draw_is_consistent(model, key):
    import numpyro

    rng = np.random.default_rng(5)
    coords = [np.sort(rng.uniform(size=6)), 4]  # continuous mode, categorical mode (4 levels)
    index = np.stack([rng.integers(0, 6, 25), rng.integers(0, 4, 25)], axis=1)

    @jax.jit  # one compilation instead of ~100 op-by-op ones
    def draw(key):
        with numpyro.handlers.trace() as tr, numpyro.handlers.seed(rng_seed=key):
            funbat_model(index, coords, model=model, rank=2, lengthscales=[0.3, None])
        return {name: site["value"] for name, site in tr.items()}

    v = draw(key)
    U0, U1 = v["U0"].T, v["U1"]
    assert U0.shape == (6, 2) and U1.shape == (4, 2)
    W = v["W"] if model == "tucker" else np.eye(2)
    f = np.einsum("ab,na,nb->n", W, U0[index[:, 0]], U1[index[:, 1]])
    np.testing.assert_allclose(v["f"], f, rtol=CLOSED_FORM)
    assert v["y"].shape == (25,) and v["tau"].shape == ()


@pytest.mark.slow
def test_posterior_mean_matches_nuts(key):
    """Rank-1 CP on 100 points with fixed hyperparameters: our E[f] vs NUTS (≈ 20 s)."""
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(4)
    G = 15
    g = np.linspace(0.0, 1.0, G)
    cells = rng.choice(G * G, 100, replace=False)
    i, j = cells // G, cells % G
    y = np.sin(2 * np.pi * g[i]) * (1 + g[j]) + 0.05 * rng.normal(size=100)
    y = (y - y.mean()) / y.std()  # z-scored, so both see the same prior scale
    df = pd.DataFrame({"a": g[i], "b": g[j], "value": y})
    enc = encode(df, ["a", "b"], "value")
    ell, var = [0.3, 0.5], [1.0, 1.0]
    fit = FunBaT(
        model="cp", rank=1, learn_hyper=False, lengthscale=ell, variance=var, tol=1e-6
    ).fit(enc)
    ours, _, _ = fit.predict(encode_new(df, enc.modes))
    mcmc = MCMC(NUTS(funbat_model), num_warmup=200, num_samples=200, progress_bar=False)
    coords = [m.values for m in enc.modes]
    mcmc.run(
        key,
        enc.index,
        coords,
        jnp.asarray(enc.y),
        model="cp",
        rank=1,
        lengthscales=ell,
        variances=var,
    )
    nuts = np.asarray(mcmc.get_samples()["f"].mean(0))
    assert np.max(np.abs(ours - nuts)) < VS_NUTS * np.ptp(nuts)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _small_encoded():
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {"a": rng.uniform(size=20), "b": rng.uniform(size=20), "value": rng.normal(size=20)}
    )
    return encode(df, ["a", "b"], "value")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "parafac"}, "model must be one of"),
        ({"kernel": "rbf"}, "kernel must be one of"),
        ({"damping": 0.0}, "damping must be in"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FunBaT(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "cp", "rank": (2, 3)}, "equal ranks"),
        ({"rank": (2, 2, 2)}, "3 entries but the data have 2 modes"),
        ({"rank": 0}, "ranks must be positive"),
        ({"rank": 1.5}, "positive int"),
        ({"lengthscale": -1.0}, "lengthscale must be positive"),
        ({"variance": (1.0,)}, "variance has 1 entries but the data have 2 modes"),
    ],
)
def test_bad_ranks_raise_on_fit(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FunBaT(**kwargs).fit(_small_encoded())


def test_predict_before_fit_raises():
    enc = _small_encoded()
    with pytest.raises(ValueError, match="call fit before predict"):
        FunBaT().predict(encode_new(pd.DataFrame({"a": [0.5], "b": [0.5]}), enc.modes))


def test_hyper_search_climbs_to_the_evidence_maximum():
    """The pattern search on fixed messages never lowers log Z and stops at its maximiser."""
    from bayestensor.models.funbat import FunBaTConfig, Messages, _hyper_search
    from bayestensor.ssm import log_marginal, smooth, stacked_matern

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 10, 80))
    dt = jnp.asarray(gaps(x))
    R = 2
    B = rng.normal(size=(80, R, R))
    prec = np.einsum("nij,nkj->nik", B, B)
    f = np.sin(x)[:, None] * np.array([1.0, 0.5])  # messages carrying a smooth signal
    msg = Messages(jnp.asarray(prec), jnp.asarray(np.einsum("nij,nj->ni", prec, f)))
    cfg = FunBaTConfig("cp", (R,), (80,), (True,), "matern32", hyper_steps=1)

    def _sde(th):
        return stacked_matern("matern32", jnp.exp(th[0]), jnp.exp(th[1]), R)

    evidence = jax.jit(lambda th: log_marginal(_sde(th), dt, msg.prec, msg.shift))
    search = jax.jit(lambda th, st: _hyper_search(cfg, R, dt, msg, th, st))
    theta, step = jnp.array([np.log(3.0), 0.0]), jnp.array([1.0, 1.0])
    values = [float(evidence(theta))]
    for _ in range(60):
        post, theta, step = search(theta, step)
        values.append(float(evidence(theta)))
    assert np.all(np.diff(values) >= 0.0)
    best = scipy.optimize.minimize(
        lambda th: -float(evidence(jnp.asarray(th))),
        np.asarray(theta) + 0.3,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    np.testing.assert_allclose(np.asarray(theta), best.x, atol=TYPE2_ML)
    # the returned posterior is the smoother's at the chosen hyperparameters
    ref = smooth(_sde(theta), dt, msg.prec, msg.shift)
    np.testing.assert_allclose(post.mean, ref.mean, rtol=CLOSED_FORM, atol=CLOSED_FORM)


@pytest.mark.parametrize("ranks", [(2, 3, 2), (3, 2), (2, 2, 3, 2)])
@pytest.mark.parametrize("chunk", [None, 4])
def test_grouped_contractions_equal_per_observation(ranks, chunk, rng):
    """Contracting through one mode's unique coordinates gives the same moments."""
    from bayestensor.models.funbat import CategoricalPosterior, Grouping, _gather, _grouping

    K, n = len(ranks), 13
    sizes = [3, 4, 2, 3][:K]
    index = jnp.asarray(np.stack([rng.integers(0, N, n) for N in sizes], axis=1))
    factors = []
    for N, R in zip(sizes, ranks, strict=True):
        L = rng.normal(size=(N, R, R)) * 0.3
        factors.append(
            CategoricalPosterior(
                jnp.asarray(rng.normal(size=(N, R))), jnp.asarray(L @ np.swapaxes(L, 1, 2))
            )
        )
    P = int(np.prod(ranks))
    Lw = rng.normal(size=(P, P)) * 0.2
    core = CorePosterior(jnp.asarray(rng.normal(size=ranks)), jnp.asarray(Lw @ Lw.T))
    means, seconds = _gather(tuple(factors), index)
    group = _grouping(tuple(factors), index)
    assert isinstance(group, Grouping)
    y = jnp.asarray(rng.normal(size=n))
    for k in range(K):
        plain = expected_contraction(k, means, seconds, core, chunk)
        grouped = expected_contraction(k, means, seconds, core, chunk, group)
        for a, b in zip(plain, grouped, strict=True):
            np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    for a, b in zip(
        expected_f(means, seconds, core, chunk),
        expected_f(means, seconds, core, chunk, group),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    for a, b in zip(
        core_update(y, 2.0, means, seconds, chunk),
        core_update(y, 2.0, means, seconds, chunk, group),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)
