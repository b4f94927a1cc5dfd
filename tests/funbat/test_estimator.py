"""The FunBaT estimator (models/funbat/estimator.py): full fits against dense GP regression and
type-II maximum likelihood, recovery of planted structure, calibration, argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from conftest import TOL

import bayestensor as bt
from bayestensor.data import encode, encode_new
from bayestensor.driver import precision
from bayestensor.kernels import matern_cov
from bayestensor.models.funbat import (
    FunBaT,
    init_state,
)
from bayestensor.models.funbat.options import MAX_JUMP, MAX_JUMP_SIZE, InterceptSteps
from bayestensor.ssm import gaps

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64

# tolerances live in conftest.TOL (one place for the whole suite)
NOISELESS_RMSE = TOL["noiseless_rmse"]
NOISY_RMSE_FACTOR = TOL["noisy_rmse_factor"]
COVERAGE = TOL["coverage95"]
GP_EXACT = TOL["funbat_vs_dense_gp"]
TYPE2_ML = TOL["type2_ml"]
F_COVERAGE = TOL["f_coverage95"]


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


def _split(df, frac=0.8):
    ntr = int(frac * len(df))
    return df.iloc[:ntr], df.iloc[ntr:]


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


def _small_encoded():
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {"a": rng.uniform(size=20), "b": rng.uniform(size=20), "value": rng.normal(size=20)}
    )
    return encode(df, ["a", "b"], "value")


def test_a_fit_keeps_its_unpruned_posterior_only_when_asked():
    """``rank="auto"``: the posterior before pruning (for a local stage's stricter pruning,
    ``ard.pruned_for_local``) is one more posterior per estimator; a plain fit does not keep
    it, ``keep_unpruned=True`` keeps it at the ranks the sweeps ran with."""
    enc = _small_encoded()
    plain = FunBaT(rank="auto", max_rank=2, max_sweeps=3).fit(enc)
    assert plain._unpruned is None
    kept = FunBaT(rank="auto", max_rank=2, max_sweeps=3).fit(enc, keep_unpruned=True)
    state, cfg, index = kept._unpruned
    assert cfg.ranks == kept.max_ranks_ and state.core.mean.shape == kept.max_ranks_
    assert index.shape == (20, 2)


@pytest.mark.x64
def test_single_mode_fit_equals_dense_gp_regression():
    """K = 1, CP rank 1: at convergence q(u) is the exact GP posterior at noise 1/E[τ]."""
    x, y, enc, new, xnew = _gp_regression_data()
    records = []
    fit = FunBaT(
        model="cp",
        rank=1,
        learn_hyper=False,
        lengthscale=0.7,
        variance=1.3,
        tol=1e-12,
        intercept=False,  # the centred model (the intercept's own test is below)
    ).fit(enc, callback=records.append)
    assert fit.converged_ and records == fit.history_
    mean, sd_f, sd_y = fit.predict(new)
    noise = 1.0 / float(fit.state_.noise.mean)
    z = (y - y.mean()) / y.std()
    m_ref, v_ref, _ = _dense_gp(x, z, 0.7, 1.3, noise, xnew)
    np.testing.assert_allclose(mean, m_ref * y.std() + y.mean(), rtol=GP_EXACT, atol=GP_EXACT)
    np.testing.assert_allclose(sd_f, np.sqrt(v_ref) * y.std(), rtol=GP_EXACT, atol=GP_EXACT)
    np.testing.assert_allclose(sd_y, np.sqrt(v_ref + noise) * y.std(), rtol=GP_EXACT)


@pytest.mark.x64
def test_the_intercept_is_the_dense_gp_generalised_least_squares_mean():
    """K = 1, CP rank 1, the intercept learned: at convergence ``b`` is the flat-prior
    (generalised least squares) mean ``1ᵀC⁻¹z / 1ᵀC⁻¹1`` of the dense GP, ``C = K + σ²I`` at
    noise 1/E[τ], and the fit predicts ``b`` plus the GP posterior of ``z − b``."""
    x, y, enc, new, xnew = _gp_regression_data()
    kw = dict(model="cp", rank=1, learn_hyper=False, lengthscale=0.7, variance=1.3, tol=1e-12)
    fit = FunBaT(**kw, max_sweeps=1000, intercept=True).fit(enc)
    assert fit.converged_
    mean, sd_f, _ = fit.predict(new)
    noise = 1.0 / float(fit.state_.noise.mean)
    z = (y - y.mean()) / y.std()
    C = np.asarray(matern_cov("matern32", x, x, 0.7, 1.3)) + noise * np.eye(x.size)
    ones = np.ones(x.size)
    b = ones @ np.linalg.solve(C, z) / (ones @ np.linalg.solve(C, ones))
    assert abs(b) > 0.1  # far from the centring's 0: the test tells the two apart
    np.testing.assert_allclose(fit.y_mean_, y.mean() + b * y.std(), rtol=GP_EXACT)
    m_ref, v_ref, _ = _dense_gp(x, z - b, 0.7, 1.3, noise, xnew)
    np.testing.assert_allclose(mean, (m_ref + b) * y.std() + y.mean(), rtol=GP_EXACT)
    np.testing.assert_allclose(sd_f, np.sqrt(v_ref) * y.std(), rtol=GP_EXACT, atol=GP_EXACT)


def test_with_the_intercept_a_rank_two_tensor_with_a_mean_fits_at_rank_two(tmp_path):
    """u C vᵀ with a nonzero mean: centred at its mean it is rank 3, so ``rank=2`` misses
    structure; with the intercept ``rank=2`` reaches the noise. The intercept survives a save
    and load."""
    rng = np.random.default_rng(0)
    x, t = np.linspace(0, 10, 30), np.linspace(0, 5, 20)
    u = np.stack([np.sin(0.3 * x), np.sin(2 * x)], 1)
    v = np.stack([np.cos(0.5 * t), np.sin(1.5 * t)], 1)
    f = (u @ np.array([[1.0, 0.3], [0.2, 0.6]]) @ v.T).ravel()
    X, T = np.meshgrid(x, t, indexing="ij")
    df = pd.DataFrame({"x": X.ravel(), "t": T.ravel(), "y": f + 0.05 * rng.normal(size=f.size)})
    errors = {}
    for intercept in (False, True):
        res = bt.fit(
            df,
            coords=["x", "t"],
            value="y",
            rank=2,
            local=None,
            intercept=intercept,
            progress=False,
        )
        errors[intercept] = np.sqrt(np.mean((res.predict(df)["mean"].to_numpy() - f) ** 2))
    assert errors[True] < 0.5 * 0.05 and errors[False] > 2 * errors[True], errors
    back = bt.load(res.save(tmp_path / "intercept.bt"))
    assert back.estimator.intercept and back.estimator.y_mean_ == res.estimator.y_mean_
    pd.testing.assert_frame_equal(back.predict(df), res.predict(df))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fit_does_not_stop_on_a_large_intercept_step(seed):
    """A sweep converges only when the intercept's step is below ``tol`` noise sds too. After a
    plain step the training residuals' mean is 0; after a jump (``InterceptSteps``) it is
    ``−ρ`` times the step, so at the stop it is below ``tol`` noise sds. Counting only how far
    the fitted values moved, these fits (rank 1 of a rank-2 tensor with a mean) stop right
    after a jump, 1.06–1.13 ``tol`` noise sds off."""
    rng = np.random.default_rng(seed)
    x, t = np.linspace(0, 10, 30), np.linspace(0, 5, 20)
    u = np.stack([np.sin(0.3 * x), np.sin(2 * x)], 1)
    v = np.stack([np.cos(0.5 * t), np.sin(1.5 * t)], 1)
    f = (u @ np.array([[1.0, 0.3], [0.2, 0.6]]) @ v.T).ravel() + 0.5
    X, T = np.meshgrid(x, t, indexing="ij")
    df = pd.DataFrame({"x": X.ravel(), "t": T.ravel(), "y": f + 0.05 * rng.normal(size=f.size)})
    tol = 0.03
    res = bt.fit(df, coords=["x", "t"], value="y", rank=1, local=None, tol=tol, progress=False)
    est = res.estimator
    assert est.converged_
    noise_sd = est.y_scale_ / np.sqrt(float(est.state_.noise.mean))
    assert abs(np.mean(df["y"] - res.predict(df)["mean"])) < tol * noise_sd


@pytest.mark.x64
def test_learned_hyperparameters_maximise_the_marginal_likelihood():
    """K = 1 with a flat noise prior: the sweeps are EM for the noise and gradient ascent for
    ℓ, σ², so they converge to the type-II maximum likelihood of the dense GP."""
    x, y, enc, _, _ = _gp_regression_data()
    fit = FunBaT(
        model="cp", rank=1, tol=1e-10, max_sweeps=1000, a0=0.0, b0=0.0, intercept=False
    ).fit(enc)
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
    with precision(fit.dtype):  # the state the fit starts from, in the fit's precision
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
        ({"lengthscale": -1.0}, "lengthscale must be a positive number"),
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweeps_stop_only_once_the_hyperparameter_search_rests_or_its_holds_run_out(seed):
    """A sweep that met ``tol`` while the hyperparameter search stepped does not end the fit
    (up to ``MAX_SEARCH_SWEEPS`` such sweeps); one that met it without a step does."""
    from bayestensor.models.funbat.options import MAX_SEARCH_SWEEPS

    df = _tucker_data(np.random.default_rng(seed), n=600, G=40)
    tol = 0.05
    res = bt.fit(df, coords=["a", "b"], value="value", rank=2, tol=tol, progress=False)
    h = res.history
    keys = ("lengthscale", "variance")
    stepped = [False] + [
        any(h[k].iloc[i] != h[k].iloc[i - 1] for k in keys) for i in range(1, len(h))
    ]
    met = list(h["change"] < tol)
    held = [i for i in range(len(h)) if met[i] and stepped[i]]
    for i in range(len(h) - 1):  # no earlier sweep was a stopping one
        assert not met[i] or (stepped[i] and held.index(i) < MAX_SEARCH_SWEEPS)
    if res.converged:
        assert met[-1] and (not stepped[-1] or len(held) == MAX_SEARCH_SWEEPS + 1)


@pytest.mark.parametrize(
    "rate, target, jump",
    [
        (0.5, 0.7, 0.35),  # lands on b* = 0.7 after 0.35
        (0.9, 0.7, 0.63),  # lands on 0.7 after 0.07
        (0.995, 0.7, 100 * 0.005 * (0.7 - 0.0035)),  # 1/(1 − ρ) = 200: the factor cap, 100
        (0.9, 50.0, 0.1 * (50.0 - 5.0)),  # 45 capped at max(MAX_JUMP_SIZE, |δ|) = δ: plain
    ],
)
def test_intercept_steps_sum_a_geometric_approach_within_their_caps(rate, target, jump):
    """On a linear fixed-point map (the residual ``δ = (1 − ρ)(b* − b)``, as for a GP with
    fixed hyperparameters) the second step jumps by ``δ/(1 − ρ)``, landing on ``b*``, its
    factor capped at ``MAX_JUMP`` and its size at ``MAX_JUMP_SIZE`` (or ``|δ|``); the step
    after a jump and steps whose residuals change sign are plain."""
    assert MAX_JUMP == 100.0 and MAX_JUMP_SIZE == 1.0  # (the expected jumps above)
    values = InterceptSteps(np.zeros(3), jnp.zeros(3))
    b, steps = 0.0, []
    for _ in range(3):
        steps.append(values((1 - rate) * (target - b)))
        b += steps[-1]
    np.testing.assert_allclose(values.rows[0], -b)  # the steps are taken off the values
    np.testing.assert_allclose(values.total, b)
    np.testing.assert_allclose(steps[0], (1 - rate) * target, rtol=1e-12)
    np.testing.assert_allclose(steps[1], jump, rtol=1e-12)
    np.testing.assert_allclose(steps[2], (1 - rate) * (target - steps[0] - steps[1]), rtol=1e-12)
    values = InterceptSteps(np.zeros(3), jnp.zeros(3))
    assert [values(d) for d in (0.2, -0.1, 0.05, 0.0, 0.01)] == [0.2, -0.1, 0.05, 0.0, 0.01]
