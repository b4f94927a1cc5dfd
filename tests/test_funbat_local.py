"""The local residual process (bayestensor.models.funbat.local) against dense GPs by Cholesky."""

import copy

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from scipy.optimize import minimize

from bayestensor.driver import precision
from bayestensor.kernels import matern_cov
from bayestensor.models.funbat import local_fibre_dense
from bayestensor.models.funbat.local import (
    FibreGP,
    NeighbourGP,
    _fibre_vg,
    choose,
    fit_local,
    rms,
    vecchia_neighbours,
)
from bayestensor.models.funbat.local_cavity import VALUES_MARGIN
from bayestensor.models.funbat.local_fibre import _fibre_arrays
from bayestensor.models.funbat.local_fibre_dense import dense_nll_grad
from bayestensor.models.funbat.local_neighbours import _nll_vg
from bayestensor.models.funbat.options import LOCAL_AUTO_MAX_ROWS, LOCAL_AUTO_MIN_ROWS, auto_local
from bayestensor.models.funbat.stream import bucket

pytestmark = pytest.mark.x64


def _dense_nll(K, r, noise):
    C = K + noise * np.eye(len(r))
    L = np.linalg.cholesky(C)
    a = np.linalg.solve(L, r)
    return 0.5 * a @ a + np.log(np.diag(L)).sum() + 0.5 * len(r) * np.log(2 * np.pi)


def _dense_krige(K, Ks, kss, r, noise):
    C = K + noise * np.eye(len(r))
    return Ks @ np.linalg.solve(C, r), kss - np.einsum("ij,ji->i", Ks, np.linalg.solve(C, Ks.T))


def _fibre_data(rng):
    sites = np.array(["a", "b", "c"])
    rows = []
    for s, n in zip(sites, (9, 5, 12), strict=True):
        t = np.round(rng.uniform(0, 4, n), 1)  # repeats: two rows at one coordinate
        rows += [(s, ti, d) for ti, d in zip(t, rng.integers(0, 2, n), strict=True)]
    df = pd.DataFrame(rows, columns=["site", "t", "depth"]).astype({"depth": float})
    r = rng.normal(size=len(df))
    return df, r


def _fibre_kernel(a, b, ell, var):
    same = (a["site"].to_numpy()[:, None] == b["site"].to_numpy()[None, :]) & (
        a["depth"].to_numpy()[:, None] == b["depth"].to_numpy()[None, :]
    )
    k = np.asarray(matern_cov("matern32", a["t"].to_numpy(), b["t"].to_numpy(), ell, var))
    return k * same


@pytest.mark.parametrize("dense", [False, True], ids=["kalman", "dense"])
def test_fibre_gp_matches_dense_gp(dense, monkeypatch):
    """The fibre GP's fit and posterior against a dense GP on the rows, through the Kalman
    filter and smoother and through the small layouts' dense algebra
    (:mod:`~bayestensor.models.funbat.local_fibre_dense`, on cells)."""
    if not dense:  # the state-space path, which larger layouts take
        monkeypatch.setattr(local_fibre_dense, "DENSE_MAX_WORK", 0)
    rng = np.random.default_rng(0)
    df, r = _fibre_data(rng)
    coords = ["site", "t", "depth"]
    fit = FibreGP("t").fit(df, coords, r, noise0=0.5)
    ell, var, noise = np.exp(fit.theta)
    # log marginal likelihood at the fitted and at another point, against the dense Cholesky
    lay = fit._layout(None)
    args = tuple(jnp.asarray(lay[k]) for k in ("dt", "cnt", "sum"))
    # as the fit runs it: padded with fibres and steps that carry nothing (to 64 fibres here)
    padded = _fibre_arrays(lay)
    assert args[0].shape == (5, 6) and padded[0].shape == (64, 6)
    for theta in (fit.theta, np.log([0.7, 1.3, 0.2])):
        e, v, s2 = np.exp(theta)
        dense_nll = _dense_nll(_fibre_kernel(df, df, e, v), r, s2)
        for arrays in (args, padded):
            with precision("float64"):
                value = _fibre_vg(jnp.asarray(theta), "matern32", *arrays, float(r @ r), len(r))
            assert float(value[0]) == pytest.approx(dense_nll, rel=1e-10)
        # the cells' dense algebra: the same value, and the gradient autodiff gives above
        nll, grad = dense_nll_grad(theta, "matern32", lay, float(r @ r), len(r))
        assert nll == pytest.approx(dense_nll, rel=1e-10)
        np.testing.assert_allclose(grad, np.asarray(value[1]), rtol=1e-8, atol=1e-10)
    # the fitted hyperparameters maximise the dense marginal likelihood

    def dense(th):
        return _dense_nll(_fibre_kernel(df, df, *np.exp(th[:2])), r, np.exp(th[2]))

    best = minimize(dense, fit.theta, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
    assert fit.nll <= best.fun + 1e-6
    # posterior at new rows: inside, between and outside the coordinates, a new fibre
    new = pd.DataFrame(
        {
            "site": ["a", "a", "b", "c", "c", "a"],
            "t": [0.05, 2.0, 5.5, -1.0, 1.234, 2.0],
            "depth": [0.0, 1.0, 0.0, 1.0, 0.0, 7.0],
        }
    )
    mean, var_g = fit.posterior(new)
    Ks = _fibre_kernel(new, df, ell, var)
    ref_mean, ref_var = _dense_krige(
        _fibre_kernel(df, df, ell, var), Ks, np.full(len(new), var), r, noise
    )
    np.testing.assert_allclose(mean, ref_mean, atol=1e-9)
    np.testing.assert_allclose(var_g, ref_var, atol=1e-9)
    assert var_g[-1] == pytest.approx(var)  # unseen fibre: the prior
    # at the training rows
    m_tr, v_tr = fit.posterior()
    K = _fibre_kernel(df, df, ell, var)
    ref_mean, ref_var = _dense_krige(K, K, np.diag(K), r, noise)
    np.testing.assert_allclose(m_tr, ref_mean, atol=1e-9)
    np.testing.assert_allclose(v_tr, ref_var, atol=1e-9)


def _product_kernel(X1, g1, X2, g2, ell, var):
    z = np.sqrt(3) * np.abs(X1[:, None, :] - X2[None, :, :]) / ell
    return var * np.prod((1 + z) * np.exp(-z), axis=-1) * (g1[:, None] == g2[None, :])


def test_vecchia_sets_of_a_subset_are_those_of_all_rows():
    """Searching the conditioning sets of some rows only gives those rows the same sets (the
    likelihood of a subset of conditionals needs no others) and leaves the rest unsearched."""
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(700, 3))
    full = vecchia_neighbours(Z, 8)
    rows = np.sort(rng.choice(700, 90, replace=False))
    part = vecchia_neighbours(Z, 8, rows)
    np.testing.assert_array_equal(part[rows], full[rows])
    rest = np.setdiff1d(np.arange(9, 700), rows)  # rows past the first m + 1, not asked for
    assert np.all(part[rest] == -1) and np.all(full[rest] >= 0)
    # each later row's set: its nearest among the rows before its block (checked by brute force)
    i = rows[-1]
    start = 9 * 2 ** int(np.log2(i / 9))
    d = np.linalg.norm(Z[:start] - Z[i], axis=1)
    assert set(part[i]) == set(np.argsort(d)[:8])


def test_neighbour_gp_learns_on_a_subset_of_the_exact_conditionals():
    """``max_fit`` < n: the likelihood of the chosen rows, each given every earlier row of the
    whole set (the pool), equals the sum of their dense conditional densities; the fit then
    reports the likelihood of every row at its hyperparameters."""
    rng = np.random.default_rng(2)
    n = 24
    df = pd.DataFrame({"x": rng.uniform(0, 3, n), "y": rng.uniform(-1, 1, n)})
    r = rng.normal(size=n)
    theta = np.log([0.8, 0.5, 1.2, 0.1])
    X, g = df[["x", "y"]].to_numpy(), np.zeros(n, np.int64)
    nb = vecchia_neighbours(X, n - 1)
    rows = np.array([0, 3, 10, 17, 23])
    K = _product_kernel(X, g, X, g, np.exp(theta[:2]), np.exp(theta[2]))
    noise = np.exp(theta[3])
    ref = 0.0
    for i in rows:  # -log N(r_i | r_0 … r_{i-1}) from the dense covariance
        A = K[:i, :i] + noise * np.eye(i)
        k = K[i, :i]
        mu = k @ np.linalg.solve(A, r[:i]) if i else 0.0
        s2 = K[i, i] + noise - (k @ np.linalg.solve(A, k) if i else 0.0)
        ref += 0.5 * (np.log(2 * np.pi * s2) + (r[i] - mu) ** 2 / s2)
    nll = _nll_vg(theta, X, g, r, nb, rows, grad=False)
    assert nll == pytest.approx(ref, rel=1e-10)

    fit = NeighbourGP(m=n, m_fit=n - 1, rounds=1, maxiter=40, max_fit=8)
    fit = fit.fit(df, ["x", "y"], r, 0.1)
    kern = _product_kernel(X, g, X, g, np.exp(fit.theta[:2]), np.exp(fit.theta[2]))
    assert fit.nll == pytest.approx(_dense_nll(kern, r, np.exp(fit.theta[3])), rel=1e-10)


def test_vecchia_gradient_is_that_of_central_differences():
    """The closed-form gradient of the Vecchia likelihood (lengthscales, variance, noise) on
    sets that are approximate (``m`` < n: padded early rows, neighbours in other categories),
    for all rows and for a subset of the conditionals, blocked in pieces smaller than the rows,
    against central differences of its value."""
    from bayestensor.models.funbat import local_neighbours

    rng = np.random.default_rng(8)
    n = 60
    X = np.column_stack([rng.uniform(0, 3, n), rng.uniform(-1, 1, n)])
    g = rng.integers(0, 2, n)
    r = np.sin(2 * X[:, 0]) + X[:, 1] + 0.3 * rng.normal(size=n)
    nb = vecchia_neighbours(X, 5)
    h = 1e-5
    for theta in (np.log([0.8, 0.5, 1.2, 0.1]), np.log([0.1, 3.0, 0.3, 0.5])):
        for rows in (None, np.array([2, 9, 20, 33, 59])):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(local_neighbours, "BLOCK_ROWS", 7)
                value, grad = _nll_vg(theta, X, g, r, nb, rows)
            assert value == pytest.approx(_nll_vg(theta, X, g, r, nb, rows, grad=False))
            fd = [
                (
                    _nll_vg(theta + e, X, g, r, nb, rows, grad=False)
                    - _nll_vg(theta - e, X, g, r, nb, rows, grad=False)
                )
                / (2 * h)
                for e in h * np.eye(4)
            ]
            np.testing.assert_allclose(
                grad, fd, rtol=TOL["grad_vs_finite_diff"], atol=TOL["grad_vs_finite_diff"]
            )
    # rows repeated at one coordinate, without noise: singular sets, an infinite likelihood
    twice = np.repeat(X[:10], 2, axis=0)
    nb = vecchia_neighbours(twice, 4)
    for noise in (-np.inf, -800.0):
        value, grad = _nll_vg(np.array([0.0, 0.0, 0.0, noise]), twice, g[:20], r[:20], nb)
        assert value == np.inf and np.all(grad == 0)


def test_neighbour_gp_on_a_grid_does_not_turn_on_the_last_digits():
    """On a grid many neighbours are equally far; which ones a search returns must not turn on
    the last digits of the lengthscales (once it did: residuals changed by 1e-15 moved the
    hyperparameters through the second round's neighbours, and the predictions by percents)."""
    rng = np.random.default_rng(4)
    x, y = np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 2, 30), indexing="ij")
    df = pd.DataFrame({"x": x.ravel(), "y": y.ravel()})
    r = np.sin(4 * df.x) * np.cos(3 * df.y) + 0.01 * rng.normal(size=len(df))
    r = r.to_numpy()
    new = pd.DataFrame({"x": rng.uniform(0, 1, 200), "y": rng.uniform(0, 2, 200)})
    fits = []
    for rr in (r, r * (1 + 1e-15 * rng.normal(size=len(r)))):
        gp = NeighbourGP(max_fit=400).fit(df, ["x", "y"], rr, 1e-4)
        fits.append((gp.theta, np.concatenate([gp.posterior(new)[0], gp.posterior()[0]])))
    (ta, ma), (tb, mb) = fits
    np.testing.assert_allclose(tb, ta, rtol=0, atol=TOL["neighbour_perturbed"])
    np.testing.assert_allclose(mb, ma, rtol=0, atol=TOL["neighbour_perturbed"] * np.std(r))


def test_neighbour_gp_is_exact_with_all_neighbours():
    rng = np.random.default_rng(1)
    n = 20
    df = pd.DataFrame(
        {"x": rng.uniform(0, 3, n), "y": rng.uniform(-1, 1, n), "kind": rng.choice(["p", "q"], n)}
    )
    r = rng.normal(size=n)
    theta = np.log([0.8, 0.5, 1.2, 0.1])
    X = df[["x", "y"]].to_numpy()
    g = (df["kind"] == "q").to_numpy().astype(np.int64)
    nb = vecchia_neighbours(X, n - 1)  # every earlier row: the exact likelihood
    nll = _nll_vg(theta, X, g, r, nb, grad=False)
    K = _product_kernel(X, g, X, g, np.exp(theta[:2]), np.exp(theta[2]))
    assert nll == pytest.approx(_dense_nll(K, r, np.exp(theta[3])), rel=1e-10)

    fit = NeighbourGP(m=n, m_fit=n - 1, rounds=1, maxiter=40).fit(df, ["x", "y", "kind"], r, 0.1)
    ell, var, noise = np.exp(fit.theta[:2]), np.exp(fit.theta[2]), np.exp(fit.theta[3])

    def dense(th):
        kern = _product_kernel(X, g, X, g, np.exp(th[:2]), np.exp(th[2]))
        return _dense_nll(kern, r, np.exp(th[3]))

    assert fit.nll == pytest.approx(dense(fit.theta), rel=1e-10)
    new = pd.DataFrame({"x": [0.5, 2.9, 4.0], "y": [0.0, -0.9, 0.3], "kind": ["p", "q", "q"]})
    Xs, gs = new[["x", "y"]].to_numpy(), (new["kind"] == "q").to_numpy().astype(np.int64)
    mean, var_g = fit.posterior(new)
    ref_mean, ref_var = _dense_krige(
        _product_kernel(X, g, X, g, ell, var),
        _product_kernel(Xs, gs, X, g, ell, var),
        np.full(3, var),
        r,
        noise,
    )
    np.testing.assert_allclose(mean, ref_mean, atol=1e-9)
    np.testing.assert_allclose(var_g, ref_var, atol=1e-9)


def _planted(rng, local_sd):
    """Rank-1 (site, time) tensor plus a per-site Ornstein-Uhlenbeck wiggle along time."""
    s = np.linspace(0, 1, 12)
    t = np.arange(40.0)
    S, T = np.meshgrid(s, t, indexing="ij")
    f = (1 + S) * np.sin(T / 8)
    wiggle = np.zeros_like(f)
    for i in range(len(s)):
        for j in range(1, len(t)):
            wiggle[i, j] = 0.6 * wiggle[i, j - 1] + np.sqrt(1 - 0.36) * rng.normal()
    y = f + local_sd * wiggle + 0.05 * rng.normal(size=f.shape)
    df = pd.DataFrame({"site": S.ravel(), "time": T.ravel(), "y": y.ravel()})
    test = rng.random(len(df)) < 0.2
    return df[~test], df[test]


#: The planted problems' fit: site categorical (its fibres), time continuous; one compiled sweep
#: for every fit in this file.
FIT = dict(
    coords={"site": "categorical", "time": "continuous"},
    value="y",
    rank=2,
    max_sweeps=40,
    progress=False,
)


def test_auto_keeps_no_local_process_when_none_is_needed():
    """The default (local="auto") on data without a local wiggle keeps none."""
    import bayestensor as bt

    train, test = _planted(np.random.default_rng(2), 0.0)
    res = bt.fit(train, **FIT)
    assert res.local is not None and res.local.kind is None and res.local.asked == "auto"
    assert res.local.gains and max(res.local.gains.values()) < 0.05
    assert res.predict(test).equals(res.predict(test, local=False))
    assert "no local process kept" in res.title()


def test_bucket_pads_little_and_shares_shapes():
    sizes = np.arange(1, 5000)
    b = np.array([bucket(int(k), 64) for k in sizes])
    assert np.all(b >= sizes) and np.all(b[sizes > 64] <= 1.125 * sizes[sizes > 64])
    assert np.all(b[sizes <= 64] == 64) and len(np.unique(b)) < 60


def test_rms_has_no_overflow():
    for scale in (1e-200, 1.0, 1e200):
        r = scale * np.array([3.0, -4.0])
        assert rms(r) == pytest.approx(scale * np.sqrt(12.5), rel=1e-14)
    assert rms(np.zeros(3)) == 0.0


# --------------------------------------------------------------------------------------------
# bt.fit(..., local=...): the public option, saving and loading
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_fits():
    """The planted problem with a local wiggle, fitted with ``local=None`` and the default
    (``"auto"``)."""
    import bayestensor as bt

    train, test = _planted(np.random.default_rng(2), 0.3)
    return train, test, bt.fit(train, local=None, **FIT), bt.fit(train, **FIT)


def _rmse(pred, test):
    return float(np.sqrt(np.mean((pred["mean"] - test["y"]) ** 2)))


def test_fit_local_auto_improves_held_out_rmse(planted_fits, monkeypatch):
    train, test, plain, res = planted_fits
    assert plain.local is None
    assert "local" not in plain.summary().columns  # no change for local=None
    assert res.local.label == "fibre:time"
    assert set(res.summary()["local"]) == {"fibre:time"}
    assert "local process fibre:time" in res.title()
    # measured: 0.277 -> 0.206 (ratio 0.74; the neighbour GP alone 0.210)
    assert _rmse(res.predict(test), test) < 0.8 * _rmse(plain.predict(test), test)
    # both candidates qualify; their leave-one-out errors tie (0.79506 against 0.79496, paired
    # standard error 0.005), so the likelier is kept
    loo = res.local.loo
    assert {"fibre:time", "neighbours"} <= set(loo) and 0 < loo["fibre:time"] < 1
    # the exact GP on the values alone (380 rows) is compared and left out: its leave-one-out
    # error is not 10 % below the low-rank part's (measured 0.964 against 0.975)
    assert res.local.values is None and res.local.weight == 0.0
    assert loo["neighbours:values"] > (1 - VALUES_MARGIN) * loo["low-rank"]
    assert abs(loo["fibre:time"] - loo["neighbours"]) < 0.01
    # left out, the exact GP is still held for a later stage on these rows to rescale; the
    # neighbour GP compared in its place and left out is not (memory held for nothing)
    import bayestensor.models.funbat.local_cavity as cavity
    from bayestensor.models.funbat.local import fit_local
    from bayestensor.models.funbat.local_anova import AnovaGP

    assert isinstance(res.local.compared, AnovaGP)
    monkeypatch.setattr(cavity, "VALUES_MIN_ROWS", 100)
    monkeypatch.setattr(cavity, "ANOVA_MAX_ROWS", 0)
    nearest = fit_local(res.local.base, train)
    assert "neighbours:values" in nearest.loo and nearest.values is None
    assert nearest.compared is None
    monkeypatch.undo()
    # the low-rank part alone is the plain fit
    base = res.predict(test, local=False)
    np.testing.assert_allclose(base.to_numpy(), plain.predict(test).to_numpy(), rtol=1e-10)
    pred = res.predict(test)
    assert np.all(pred["sd"] >= pred["sd_f"]) and np.all(pred["sd_f"] >= base["sd_f"])


def _fibre_dense_mean(train, new, ell, var, noise, r):
    """Dense GP mean of the fibre process (fibres: sites; Matérn-3/2 along time)."""

    def kern(a, b):
        same = a["site"].to_numpy()[:, None] == b["site"].to_numpy()[None, :]
        k = matern_cov("matern32", a["time"].to_numpy(), b["time"].to_numpy(), ell, var)
        return np.asarray(k) * same

    return _dense_krige(kern(train, train), kern(new, train), np.full(len(new), var), r, noise)[0]


@pytest.mark.parametrize("factor", [1e-200, 1e200])
def test_local_process_fits_far_from_unit_scale_as_well(planted_fits, factor):
    """The process is fitted in units of the residuals' RMS: values × 1e±200 give the same
    fit, scaled (no overflow or underflow)."""
    import bayestensor as bt

    train, test, plain, _ = planted_fits
    moved = bt.fit(train.assign(y=train["y"] * factor), local=None, **FIT)
    moved.local = fit_local(moved, train.assign(y=train["y"] * factor), "fibre:time")
    ref = copy.copy(plain)
    ref.local = fit_local(plain, train, "fibre:time")
    got, want = moved.predict(test), ref.predict(test)
    for col in ("mean", "sd", "sd_f"):
        np.testing.assert_allclose(got[col] / factor, want[col], rtol=TOL["rescaled_fit_vs_unit"])


@pytest.mark.slow  # 15 s (CI time; nox -s bench runs it)
def test_update_keeps_the_local_process_on_all_rows(planted_fits):
    """update(scope="new"): the process and its hyperparameters held, its posterior conditioned
    on every row's residual under the updated low-rank part — against a dense GP."""
    train, test, _, res = planted_fits
    new, query = test.iloc[::2], test.iloc[1::2]
    up = res.update(new, scope="new")
    loc = up.local
    assert loc.label == res.local.label and loc.base is up
    np.testing.assert_array_equal(loc.process.theta, res.local.process.theta)
    assert len(loc.rows) == len(train) + len(new) and len(res.local.rows) == len(train)
    rows = pd.concat([train, new], ignore_index=True)
    r = (rows["y"] - up.predict(rows, local=False)["mean"]).to_numpy() / loc.scale
    ell, var, noise = np.exp(loc.process.theta)
    # site is categorical (encoded as codes): compare fibres by the raw site values
    ref = _fibre_dense_mean(rows, query, ell, var, noise, r)
    got = up.predict(query)["mean"] - up.predict(query, local=False)["mean"]
    np.testing.assert_allclose(got.to_numpy(), loc.scale * ref, atol=TOL["local_dense"])
    # held-out rows of the update are predicted better than before it (they are now data)
    assert _rmse(up.predict(new), new) < _rmse(res.predict(new), new)
    # scope="all" fits the local stage again on every row
    again = res.update(new, scope="all").local
    assert again.label == "fibre:time" and len(again.rows) == len(rows)
    assert not np.array_equal(again.process.theta, res.local.process.theta)


def test_fit_local_round_trip(planted_fits, tmp_path):
    import bayestensor as bt

    _, test, plain, res = planted_fits
    back = bt.load(res.save(tmp_path / "local.bt"))
    assert back.local.label == res.local.label
    assert back.local.gains == res.local.gains and back.local.loo == res.local.loo
    for col in ("mean", "sd", "sd_f"):
        np.testing.assert_array_equal(back.predict(test)[col], res.predict(test)[col])
    # a file without the local part (written before it existed, or with local=None)
    old = bt.load(plain.save(tmp_path / "plain.bt"))
    assert old.local is None
    np.testing.assert_array_equal(old.predict(test)["mean"], plain.predict(test)["mean"])


def test_fit_local_neighbours_categorical_round_trip(planted_fits, tmp_path):
    """The neighbour GP with a categorical mode (groups kept apart) saves and loads exactly."""
    import copy

    import bayestensor as bt

    train, test, plain, _ = planted_fits
    res = copy.copy(plain)
    res.local = fit_local(res, train, "neighbours")
    assert res.local.kind == "neighbours" and res.local.process.categorical == ["site"]
    assert _rmse(res.predict(test), test) < 0.9 * _rmse(plain.predict(test), test)
    back = bt.load(res.save(tmp_path / "nb.bt"))
    assert back.local.label == "neighbours"
    for col in ("mean", "sd", "sd_f"):
        np.testing.assert_array_equal(back.predict(test)[col], res.predict(test)[col])


@pytest.mark.parametrize(
    "local", ["yes", "Auto", "fibre:", "fibre:nope", "fibre:kind", 3, True, ["fibre"]]
)
def test_bad_local_values_raise(local):
    import bayestensor as bt

    df = pd.DataFrame({"t": [0.0, 1.0, 2.0, 3.0], "kind": list("abab"), "y": [1.0, 2, 3, 4]})
    with pytest.raises(ValueError, match="local"):
        bt.fit(df, coords=["t", "kind"], value="y", local=local, progress=False)


def test_local_refused_where_unsupported(tmp_path):
    import bayestensor as bt

    df = pd.DataFrame({"t": [0.0, 1.0, 2.0, 3.0], "kind": list("abab"), "y": [1.0, 2, 3, 4]})
    cats = {"t": "categorical", "kind": "categorical"}
    with pytest.raises(ValueError, match="continuous"):  # nothing for g to vary along
        bt.fit(df, coords=cats, value="y", local="fibre")
    with pytest.raises(ValueError, match="local"):
        bt.fit(df, coords=["t", "kind"], value="y", model="poisson-tucker", local="neighbours")
    with pytest.raises(ValueError, match="local"):
        bt.fit([df, df], coords=["t", "kind"], value="y", local="fibre")


def test_auto_local_is_skipped_where_unsupported():
    """The default "auto" is skipped (no error) where no process applies."""
    import bayestensor as bt

    kinds = {"t": "continuous", "kind": "categorical"}
    assert auto_local("auto", kinds, LOCAL_AUTO_MIN_ROWS) == "auto"
    assert auto_local("auto", {"kind": "categorical"}, 1000) is None
    assert auto_local("auto", kinds, 1000, multiprocess=True) is None
    assert auto_local("auto", kinds, LOCAL_AUTO_MAX_ROWS + 1) is None
    assert auto_local("auto", kinds, LOCAL_AUTO_MIN_ROWS - 1) is None
    assert auto_local("fibre", kinds, LOCAL_AUTO_MAX_ROWS + 1) == "fibre"
    assert auto_local("neighbours", kinds, 10) == "neighbours"
    df = pd.DataFrame({"t": [0.0, 1.0, 2.0, 3.0], "kind": list("abab"), "y": [1.0, 2, 3, 4]})
    cats = {"t": "categorical", "kind": "categorical"}
    assert bt.fit(df, coords=cats, value="y", rank=1, progress=False).local is None
    counts = df.assign(y=[1, 2, 0, 3])
    pt = bt.fit(counts, coords=["t", "kind"], value="y", model="poisson-tucker", method="vi")
    assert not hasattr(pt, "local") or pt.local is None


def test_small_data_get_the_local_stage_by_default():
    """96 training rows (8 subjects × 15 times, a fifth held out): a shared curve scaled per
    subject (rank 1) plus each subject's own smooth wiggle, a GP draw no low rank carries. With
    the default ``local="auto"`` the fit keeps a residual process along time and predicts the
    held-out rows far better than the low-rank fit alone (seeds 0-5: 0.19-0.29 against
    0.33-0.48); below 200 rows the stage used to be skipped."""
    import bayestensor as bt

    rng = np.random.default_rng(0)
    S, T = 8, 15
    t = np.sort(rng.uniform(0, 1, (S, T)), axis=1)
    amp = rng.uniform(0.5, 1.5, S)
    wiggle = np.empty((S, T))
    for s in range(S):  # squared-exponential GP draws, lengthscale 0.1
        K = np.exp(-0.5 * (t[s][:, None] - t[s][None, :]) ** 2 / 0.1**2) + 1e-8 * np.eye(T)
        wiggle[s] = np.linalg.cholesky(K) @ rng.standard_normal(T)
    y = 3 * amp[:, None] * np.sqrt(t) + 0.5 * wiggle + 0.02 * rng.standard_normal((S, T))
    df = pd.DataFrame(
        {"subject": np.repeat([f"s{i}" for i in range(S)], T), "t": t.ravel(), "y": y.ravel()}
    )
    test = np.zeros(len(df), dtype=bool)
    test[rng.choice(len(df), len(df) // 5, replace=False)] = True
    train, held = df[~test], df[test]
    assert len(train) < 200

    def rmse(res):
        return np.sqrt(np.mean((held["y"].to_numpy() - res.predict(held)["mean"].to_numpy()) ** 2))

    res = bt.fit(train, coords=["subject", "t"], value="y", progress=False)
    alone = bt.fit(train, coords=["subject", "t"], value="y", progress=False, local=None)
    assert res.local is not None and res.local.kept_any
    assert rmse(res) < 0.75 * rmse(alone)


def test_a_non_finite_local_prediction_is_an_error(planted_fits, monkeypatch):
    _, test, _, res = planted_fits
    process = res.local.process

    def nan_posterior(X):
        mean, var = type(process).posterior(process, X)
        return np.where(np.arange(mean.shape[0]) == 0, np.nan, mean), var

    monkeypatch.setattr(process, "posterior", nan_posterior)
    with pytest.raises(ValueError, match="local process came out non-finite"):
        res.predict(test)


# --------------------------------------------------------------------------------------------
# heavy tails: the predictive Student-t fitted to leave-one-out errors (local_tails)
# --------------------------------------------------------------------------------------------


def _left_out(process, df, coords, r, i):
    """Mean and variance of ``g`` at row ``i`` with the process conditioned on the other rows
    (same hyperparameters)."""
    rest = np.arange(len(r)) != i
    other = copy.copy(process)
    other._restore(df[coords].iloc[rest].reset_index(drop=True), r[rest])
    return other.posterior(df.iloc[[i]])


@pytest.mark.parametrize("kind", ["fibre", "neighbours"])
def test_loo_scores_are_the_left_out_predictive(kind):
    """The closed-form leave-one-out errors equal conditioning on the other rows (the neighbour
    GP with every row as a neighbour, so its kriging is exact)."""
    from bayestensor.models.funbat.local_tails import loo_errors, loo_scores

    rng = np.random.default_rng(3)
    df, r = _fibre_data(rng)
    coords = ["site", "t", "depth"]
    if kind == "fibre":
        process = FibreGP("t").fit(df, coords, r, noise0=0.5)
    else:
        n = len(r)
        process = NeighbourGP(m=n, m_fit=8, rounds=1, maxiter=20).fit(df, coords, r, 0.5)
    noise = process.hyperparameters["noise"]
    m, v = process.posterior(None)
    base_var = rng.uniform(0.0, 0.3, len(r))
    z = loo_scores(r, m, v, noise, 1.0, base_var)
    e = loo_errors(r, m, v, noise)
    for i in (0, 7, len(r) - 1):
        mi, vi = _left_out(process, df, coords, r, i)
        assert e[i] == pytest.approx(r[i] - mi[0], rel=1e-8)
        expected = (r[i] - mi[0]) / np.sqrt(base_var[i] + vi[0] + noise)
        assert z[i] == pytest.approx(expected, rel=1e-8)
    # the calibration scales the errors by its root and the noise in the sd by itself
    z2 = loo_scores(r, m, v, noise, 2.0, np.zeros(len(r)))
    h = v / noise
    np.testing.assert_allclose(
        z2, np.sqrt(2.0) * (r - m) / (1 - h) / np.sqrt(noise * h / (1 - h) + 2.0 * noise)
    )


def test_fit_student_t_recovers_the_tails():
    from scipy import stats

    from bayestensor.metrics import student_t_quantile
    from bayestensor.models.funbat.local_tails import GAUSSIAN, fit_student_t

    rng = np.random.default_rng(4)
    nu, c = fit_student_t(0.3 * rng.standard_t(2.5, 20000))
    assert nu == pytest.approx(2.5, rel=0.1) and c == pytest.approx(0.3, rel=0.05)
    # Gaussian scores: tails as light as the Gaussian's, its 95 % half-width within 2 %
    nu, c = fit_student_t(2.0 * rng.normal(size=20000))
    assert nu > 30 and c * student_t_quantile(0.95, nu) == pytest.approx(2 * 1.959964, rel=0.02)
    assert fit_student_t(rng.normal(size=10)) == GAUSSIAN  # too few to say
    assert student_t_quantile(0.9, np.inf) == pytest.approx(stats.norm.ppf(0.95), rel=1e-12)
    assert student_t_quantile(0.9, 3.0) == pytest.approx(stats.t.ppf(0.95, 3.0), rel=1e-12)


@pytest.fixture(scope="module")
def heavy_fit():
    """The planted problem with a local wiggle and Student-t (ν = 2) noise instead of Gaussian."""
    import bayestensor as bt

    rng = np.random.default_rng(5)
    train, test = _planted(rng, 0.3)
    train, test = train.copy(), test.copy()
    for part in (train, test):
        part["y"] += 0.1 * rng.standard_t(2.0, len(part))
    return train, test, bt.fit(train, local="fibre:time", **FIT)


def test_heavy_tailed_residuals_give_student_t_intervals(heavy_fit, tmp_path):
    from scipy import stats

    import bayestensor as bt
    from bayestensor.metrics import heldout_metrics

    train, test, res = heavy_fit
    loc = res.local
    assert loc.process is not None and 1 < loc.nu < 10 and loc.t_scale < 1
    assert f"Student-t predictive (nu {loc.nu:.3g})" in res.title()
    pred = res.predict(test, level=0.9)
    assert np.all(pred["nu"] == loc.nu)
    t = stats.t(loc.nu, loc=pred["mean"], scale=pred["sd"])
    np.testing.assert_allclose(pred["lower"], t.ppf(0.05), rtol=1e-10)
    np.testing.assert_allclose(pred["upper"], t.ppf(0.95), rtol=1e-10)
    tf = stats.t(loc.nu, loc=pred["mean"], scale=pred["sd_f"])
    np.testing.assert_allclose(pred["upper_f"], tf.ppf(0.95), rtol=1e-10)
    # on held-out cells the Student-t predicts better than the Gaussian it replaces
    gauss = copy.copy(loc)
    gauss.nu, gauss.t_scale = np.inf, 1.0
    g = gauss.combine(test, res.predict(test, local=False), 0.95)
    p = res.predict(test)
    y = test["y"]
    nll_t = heldout_metrics(y, p["mean"], p["sd"], nu=p["nu"])["nll"]
    assert nll_t < heldout_metrics(y, g["mean"], g["sd"])["nll"]  # measured 0.492 < 0.538
    # saved and loaded with the tails
    back = bt.load(res.save(tmp_path / "heavy.bt"))
    assert (back.local.nu, back.local.t_scale) == (loc.nu, loc.t_scale)
    pd.testing.assert_frame_equal(back.predict(test), p)


def test_choose_keeps_the_likeliest_unless_another_predicts_clearly_better():
    rng = np.random.default_rng(6)
    base = rng.exponential(size=500)
    gains = {"a": 0.2, "b": 0.1, "c": 0.05}
    # a tie in leave-one-out error (noise only): the likeliest
    tie = {"a": base, "b": base + 0.01 * rng.normal(size=500), "c": base * 1.3}
    assert choose(gains, tie) == "a"
    # b better by many standard errors, c better still: the best of those that are better
    clear = {"a": base, "b": 0.8 * base, "c": 0.6 * base}
    assert choose(gains, clear) == "c"
    # a better by less than one standard error of the paired difference: not enough
    d = rng.normal(size=500)
    d = d - d.mean() + 0.5 * d.std(ddof=1) / np.sqrt(500)
    assert choose(gains, {"a": base + d, "b": base}) == "a"
    d = d - d.mean() + 1.5 * d.std(ddof=1) / np.sqrt(500)
    assert choose(gains, {"a": base + d, "b": base}) == "b"
    # a candidate with non-finite errors is never kept
    assert choose(gains, {"a": np.full(500, np.nan), "b": base}) == "b"
    assert choose(gains, {"a": np.full(500, np.inf)}) is None
    assert choose(gains, {}) is None


def test_shrinkage_is_the_leverage_of_a_least_squares_fit():
    """The residuals of a flat-prior linear fit of ``p`` regressors to ``n`` rows are shrunk by
    ``n / (n − p)`` in variance (``trace H = p``); ``shrinkage`` gives that whatever noise
    variance the fit assumes, and ``σ² / mean r²`` where ``σ²`` is the noise update's fixed
    point."""
    from bayestensor.models.funbat.local_tails import shrinkage

    rng = np.random.default_rng(5)
    n, p = 200, 12
    X = rng.normal(size=(n, p))
    H = X @ np.linalg.solve(X.T @ X, X.T)
    leverage = np.diag(H)
    for eps in (1e-6, 0.3):  # nearly noise-free, and noisy
        y = X @ rng.normal(size=p) + eps * rng.normal(size=n)
        r = y - H @ y
        ms = float(np.mean(r**2))
        # a fit that believes the noise far larger than it is: Var f = σ² h
        sigma2 = 1e4 * ms
        assert shrinkage(sigma2, ms, sigma2 * leverage) == pytest.approx(n / (n - p), rel=1e-10)
        # σ² at the fixed point n σ² = Σ r² + Σ Var f = Σ r² + σ² p: both forms agree
        sigma2 = float(np.sum(r**2)) / (n - p)
        assert shrinkage(sigma2, ms, sigma2 * leverage) == pytest.approx(sigma2 / ms, rel=1e-10)
        assert sigma2 / ms == pytest.approx(n / (n - p), rel=1e-10)
    # residuals larger than the noise (a fit pruned after its sweeps): not shrunk
    assert shrinkage(0.5, 1.0, np.full(n, 0.1)) == 1.0
    assert shrinkage(1.0, 0.0, np.full(n, 0.1)) == 1.0  # an interpolating fit


@pytest.mark.slow  # 25 s; the shrinkage factor itself is tested above (nox -s bench runs it)
def test_noise_free_data_get_calibrated_intervals():
    """A smooth field without noise: the noise prior's floor leaves FunBaT's noise sd hundreds of
    times the residuals (the intervals covered every held-out cell, with the local stage's
    calibration at 409 here); scaled by the leverage instead, about 95 % of them."""
    import bayestensor as bt

    rng = np.random.default_rng(1)
    x, y = np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 2, 25), indexing="ij")
    f = np.sin(3 * x + 0.5) * np.cos(2 * y) + 0.5 * np.exp(-x) * y
    df = pd.DataFrame({"x": x.ravel(), "y": y.ravel(), "v": f.ravel()})
    test = rng.random(len(df)) < 0.4
    res = bt.fit(df[~test], coords=["x", "y"], value="v", progress=False)
    assert res.local.process is not None and res.local.calibration < 2.0
    pred = res.predict(df[test])
    truth = df["v"][test].to_numpy()
    inside = (truth >= pred["lower"].to_numpy()) & (truth <= pred["upper"].to_numpy())
    assert 0.88 <= inside.mean() <= 0.985, inside.mean()


def test_still_needed_asks_what_auto_asks_of_a_candidate(planted_fits):
    """The residual process kept on one fit is still needed on another fit of rows whose
    residuals hold the same wiggle, and not on a fit of the rows without it (iid residuals)."""
    import bayestensor as bt
    from bayestensor.models.funbat.local import still_needed

    train, _, base, res = planted_fits
    kept = res.local
    assert kept.process is not None and kept.offset is None
    assert still_needed(base, train, kept)
    smooth = _planted(np.random.default_rng(2), 0.0)[0]  # the same rows, no wiggle
    assert np.array_equal(smooth.index, train.index)
    assert not still_needed(bt.fit(smooth, local=None, **FIT), smooth, kept)


def test_mostly_structure_reads_the_residual_processes_leave_one_out(planted_fits):
    """The lenient fit is checked against a kept GP on the values only where a residual
    process predicted most of the residuals; the low-rank and values entries do not count."""
    from bayestensor.models.funbat.local_cavity import STRUCTURED_LOO, VALUES, mostly_structure

    loc = planted_fits[3].local
    assert 0.5 < min(loc.loo.values()) < 1 and not mostly_structure(loc)  # the wiggle: ~20 %
    low = copy.copy(loc)
    low.loo = {**loc.loo, "fibre:time": 0.9 * STRUCTURED_LOO}
    assert mostly_structure(low)
    alone = copy.copy(loc)
    alone.loo = {"low-rank": 0.01, VALUES: 0.01}  # no residual process gained enough
    assert not mostly_structure(alone)
    broken = copy.copy(loc)  # a non-finite error is no evidence either way
    broken.loo = {"fibre:time": float("nan"), "neighbours": 0.9 * STRUCTURED_LOO}
    assert mostly_structure(broken)
    broken.loo = {"neighbours": 0.9 * STRUCTURED_LOO, "fibre:time": float("nan")}
    assert mostly_structure(broken)
    broken.loo = {"fibre:time": float("nan")}
    assert not mostly_structure(broken)
