"""The exact GP on the values of small data (funbat.local_anova): its likelihood and posterior
against a dense GP built here, its leave-one-out errors against refits without the row, and the
local stage that blends it in on panels whose units differ by an offset (save, load, update)."""

import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from scipy.stats import multivariate_normal

import bayestensor as bt
from bayestensor.models.funbat import local_anova
from bayestensor.models.funbat.local_anova import AnovaGP, _anova_vg
from bayestensor.models.funbat.local_cavity import SMALL_MAX_WEIGHT
from bayestensor.models.funbat.local_tails import loo_errors


def _pad(a, n):
    """``a`` padded along its first axis to ``n`` rows of zeros."""
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), a.dtype)])


def _rows(rng, n):
    """Rows with one continuous coordinate ``x`` and two categorical ones (codes)."""
    return pd.DataFrame(
        {
            "x": rng.uniform(0.0, 4.0, n),
            "u": rng.integers(0, 5, n).astype(float),
            "v": rng.integers(0, 3, n).astype(float),
        }
    )


def _dense(theta, A, B):
    """The kernel of the module docstring, written out entry by entry."""
    ell, s_x, s_u, s_v, s_prod, const, _ = np.exp(theta)
    K = np.empty((len(A), len(B)))
    for i, a in enumerate(A.itertuples(index=False)):
        for j, b in enumerate(B.itertuples(index=False)):
            z = np.sqrt(3.0) * abs(a.x - b.x) / ell
            k_x = (1.0 + z) * np.exp(-z)
            k_u, k_v = float(a.u == b.u), float(a.v == b.v)
            K[i, j] = const + s_x * k_x + s_u * k_u + s_v * k_v + s_prod * k_x * k_u * k_v
    return K


def _gp(theta, train, r):
    gp = AnovaGP(continuous=["x"], categorical=["u", "v"])
    gp.theta = np.asarray(theta, np.float64)
    return gp._restore(train, r)


THETA = np.log([0.7, 1.3, 0.8, 0.4, 0.5, 0.2, 0.05])


def test_likelihood_and_posterior_are_the_dense_gp(monkeypatch):
    """At given hyperparameters: the negative log likelihood (padded rows or not) and the
    posterior mean and variance of ``f`` at new rows, against the dense GP."""
    rng = np.random.default_rng(0)
    train, new = _rows(rng, 37), _rows(rng, 11)
    r = rng.normal(size=37)
    Ky = _dense(THETA, train, train) + np.exp(THETA[-1]) * np.eye(37)
    expected = -multivariate_normal(np.zeros(37), Ky).logpdf(r)
    X, g = train[["x"]].to_numpy(), train[["u", "v"]].to_numpy()
    for n in (37, 64, 100):  # (37 rows: no padding)
        mask = _pad(np.ones(37), n)
        args = (_pad(X, n), _pad(g, n), _pad(r, n), mask)
        nll, grad = _anova_vg(THETA, *args, n_cont=1)
        assert float(nll) == pytest.approx(expected, rel=TOL["local_dense"])
        # the gradient in closed form against central differences of the likelihood
        h, eye = 1e-5, np.eye(len(THETA))
        fd = [
            (_anova_vg(THETA + h * e, *args, 1)[0] - _anova_vg(THETA - h * e, *args, 1)[0])
            / (2 * h)
            for e in eye
        ]
        np.testing.assert_allclose(
            grad, fd, rtol=TOL["grad_vs_finite_diff"], atol=TOL["grad_vs_finite_diff"]
        )
    gp = _gp(THETA, train, r)
    mean, var = gp.posterior(new)
    Kq = _dense(THETA, new, train)
    np.testing.assert_allclose(mean, Kq @ np.linalg.solve(Ky, r), rtol=TOL["local_dense"])
    prior = np.diag(_dense(THETA, new, new))
    dense_var = prior - np.einsum("ij,ji->i", Kq, np.linalg.solve(Ky, Kq.T))
    np.testing.assert_allclose(var, dense_var, rtol=TOL["local_dense"])
    at_new = var
    # at the training rows (their own route: the inverse's diagonal, no cross-covariance)
    K = _dense(THETA, train, train)
    mean, var = gp.posterior(None)
    np.testing.assert_allclose(mean, K @ np.linalg.solve(Ky, r), rtol=TOL["local_dense"])
    dense_var = np.diag(K) - np.einsum("ij,ji->i", K, np.linalg.solve(Ky, K))
    np.testing.assert_allclose(var, dense_var, rtol=TOL["local_dense"])
    first, mean[:] = mean.copy(), 0.0  # (asked again: the same; the caller's copy its own)
    np.testing.assert_array_equal(gp.posterior(None)[0], first)
    # the kernels assembled in blocks of rows (here two rows of 37 columns, the last block one)
    monkeypatch.setattr(local_anova, "GRAM_BLOCK", 80)
    fresh = _gp(THETA, train, r)
    np.testing.assert_allclose(fresh.posterior(None)[0], first, rtol=1e-12)
    np.testing.assert_allclose(fresh.posterior(new)[1], at_new, rtol=1e-12)


def test_leave_one_out_errors_are_those_of_refits_without_the_row():
    """The local stage's closed form ``(r − m) / (1 − v/σ²)`` is exact for this GP: the error
    of the posterior conditioned on every other row (the same hyperparameters)."""
    rng = np.random.default_rng(1)
    train = _rows(rng, 30)
    r = np.sin(train["x"].to_numpy()) + train["u"].to_numpy() / 3 + 0.2 * rng.normal(size=30)
    gp = _gp(THETA, train, r)
    m, v = gp.posterior(None)
    closed = loo_errors(r, m, v, gp.hyperparameters["noise"])
    for i in (0, 7, 29):
        keep = np.arange(30) != i
        without = _gp(THETA, train[keep].reset_index(drop=True), r[keep])
        m_i, _ = without.posterior(train.iloc[[i]])
        assert closed[i] == pytest.approx(r[i] - m_i[0], rel=TOL["local_dense"])


def test_larger_data_fit_a_subset_and_condition_on_every_row(monkeypatch):
    """Past ``FIT_ROWS`` rows the hyperparameters are those of a fit to a random subset (seed
    0), and so is the likelihood; the posterior is the dense GP's on every row with them, in
    chunks of ``QUERY_ROWS`` query rows as in one pass; ``rescaled`` adds ``FIT_ROWS · log c``
    to the likelihood; past ``MAX_ROWS`` rows a fit is refused."""
    import bayestensor.models.funbat.local_anova as la
    from bayestensor.models.funbat.local_cavity import rescaled

    rng = np.random.default_rng(3)
    train, new = _rows(rng, 70), _rows(rng, 23)
    r = np.sin(train["x"].to_numpy()) + train["u"].to_numpy() / 4 + 0.2 * rng.normal(size=70)
    kinds = {"x": "continuous", "u": "categorical", "v": "categorical"}
    monkeypatch.setattr(la, "FIT_ROWS", 40)
    gp = AnovaGP(maxiter=20).fit(train, ["x", "u", "v"], r, 0.1, kinds)
    sub = np.sort(np.random.default_rng(0).choice(70, 40, replace=False))
    on_subset = AnovaGP(maxiter=20).fit(train.iloc[sub], ["x", "u", "v"], r[sub], 0.1, kinds)
    np.testing.assert_allclose(gp.theta, on_subset.theta, rtol=1e-10)
    assert gp.nll == pytest.approx(on_subset.nll, rel=1e-10)
    Ky = _dense(gp.theta, train, train) + np.exp(gp.theta[-1]) * np.eye(70)
    Kq = _dense(gp.theta, new, train)
    mean, var = gp.posterior(new)
    np.testing.assert_allclose(mean, Kq @ np.linalg.solve(Ky, r), rtol=TOL["local_dense"])
    dense_var = np.diag(_dense(gp.theta, new, new)) - np.einsum(
        "ij,ji->i", Kq, np.linalg.solve(Ky, Kq.T)
    )
    np.testing.assert_allclose(var, dense_var, rtol=TOL["local_dense"])
    monkeypatch.setattr(la, "QUERY_ROWS", 6)  # 23 rows: four chunks, the last of 5
    chunked = gp.posterior(new)
    np.testing.assert_allclose(chunked[0], mean, rtol=1e-12)
    np.testing.assert_allclose(chunked[1], var, rtol=1e-12)
    c = 3.0
    X, g = train[["x"]].to_numpy()[sub], train[["u", "v"]].to_numpy()[sub]
    out = rescaled(gp, c, train, r * c)
    nll, _ = _anova_vg(out.theta, X, g, r[sub] * c, np.ones(40), n_cont=1)
    assert out.nll == pytest.approx(float(nll), rel=TOL["local_dense"])
    monkeypatch.setattr(la, "MAX_ROWS", 69)
    with pytest.raises(ValueError, match="at most 69 rows"):
        AnovaGP(maxiter=1).fit(train, ["x", "u", "v"], r, 0.1, kinds)


def _panel(seed, units=14, n_x=8, keep=0.55, noise=0.1):
    """Units that differ by an offset around one shared curve (no low rank short of 2 carries
    an offset beside a curve; the data are too few for 2 to be found), about 55 % of the cells
    kept: ``(train, test, noise-free values at the test rows)``."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 3.0, n_x)
    offset = rng.normal(size=units)
    df = pd.DataFrame([(f"u{u:02d}", xi) for u in range(units) for xi in x], columns=["unit", "x"])
    truth = df["unit"].map({f"u{u:02d}": offset[u] for u in range(units)}) + np.sin(2 * df["x"])
    df["y"] = truth + noise * rng.normal(size=len(df))
    test = rng.random(len(df)) > keep
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True), truth[test].to_numpy()


@pytest.mark.parametrize("seed", [1, 3])
def test_local_stage_blends_it_in_on_offsets_around_a_shared_curve(seed, tmp_path):
    """Defaults on a small panel of offsets around a curve: the local stage blends the exact GP
    on the values in at the small-data cap, and the held-out error to the noise-free values
    falls by more than a quarter (measured 0.140 → 0.081 and 0.194 → 0.125). The hyperparameters
    come in the value's units; the result saves and loads to the same predictions (a changed
    ``gp`` or ``theta`` refused), and an update conditions the GP on the new rows."""
    from test_io import _refused

    train, test, truth = _panel(seed)
    res = bt.fit(train, coords=["unit", "x"], value="y", progress=False)
    loc = res.local
    assert loc.label == f"none + anova:values ({SMALL_MAX_WEIGHT:.2f})"
    assert isinstance(loc.values, AnovaGP) and loc.weight == SMALL_MAX_WEIGHT
    err = lambda p: float(np.sqrt(np.mean((p["mean"] - truth) ** 2)))  # noqa: E731
    pred = res.predict(test)
    assert err(pred) < 0.75 * err(res.predict(test, local=False))
    cover = np.mean((test["y"] >= pred["lower"]) & (test["y"] <= pred["upper"]))
    assert cover >= 0.85
    hp = loc.hyperparameters
    raw = loc.values.hyperparameters
    assert set(hp) == {"lengthscale[x]", "variance[unit]", "variance[x]", "variance"} | {
        "constant",
        "noise",
    }
    for k in hp:
        factor = 1.0 if k.startswith("lengthscale") else loc.scale**2
        assert hp[k] == pytest.approx(raw[k] * factor, rel=1e-12), k
    # the units' offsets are the main effect: their variance near that of N(0, 1) offsets
    assert 0.2 < hp["variance[unit]"] < 5.0
    back = bt.load(res.save(tmp_path / "anova.bt"))
    assert back.local.label == loc.label and isinstance(back.local.values, AnovaGP)
    pd.testing.assert_frame_equal(back.predict(test), pred)
    _refused(res, tmp_path, "gp must be 'anova'", header=_edit_values("gp", "neighbours"))
    short = lambda a: a.update({"local/values/theta": a["local/values/theta"][:-1]})  # noqa: E731
    _refused(res, tmp_path, "theta", arrays=short)
    # new rows: the GP on the values conditions on them (with held hyperparameters)
    up = res.update(test, sweeps=1)
    assert isinstance(up.local.values, AnovaGP) and len(up.local.values._r) == len(train) + len(
        test
    )
    np.testing.assert_array_equal(up.local.values.theta, loc.values.theta)
    assert err(up.predict(test)) < err(pred)


def _edit_values(key, value):
    return lambda h: h["local"]["values"].update({key: value})


def test_small_data_between_the_two_gps_get_no_comparison(monkeypatch):
    """Between the exact GP's bound and the neighbour GP's the local stage compares nothing (the
    low-rank part stays), as on all small data before the exact GP."""
    import bayestensor.models.funbat.local_cavity as cavity
    from bayestensor.models.funbat.local import fit_local

    train, _, _ = _panel(1)
    res = bt.fit(train, coords=["unit", "x"], value="y", local=None, progress=False)
    monkeypatch.setattr(cavity, "ANOVA_MAX_ROWS", len(train) - 1)
    loc = fit_local(res, train)
    assert loc.values is None and loc.offset is None and "neighbours:values" not in loc.loo
    monkeypatch.undo()
    assert fit_local(res, train).values is not None


def test_a_later_stage_on_the_same_rows_rescales_the_compared_gp(monkeypatch):
    """``bt.fit`` passes the exact GP that one local stage compared (``LocalFit.compared``,
    kept or not) to a later stage on the same rows: that stage fits no GP of its own and makes
    the same comparison (the same leave-one-out errors and blend)."""
    from bayestensor.api import _exact_compared
    from bayestensor.models.funbat.local import fit_local

    train, _, _ = _panel(3)
    res = bt.fit(train, coords=["unit", "x"], value="y", local=None, progress=False)
    first = fit_local(res, train)
    assert isinstance(first.compared, AnovaGP) and first.compared is first.values
    assert _exact_compared(None) is None
    assert _exact_compared(first) == (first.compared, first.scale)

    def refused(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(AnovaGP, "fit", refused)
    again = fit_local(res, train, values=_exact_compared(first))
    assert again.loo == pytest.approx(first.loo, rel=1e-10)
    assert again.weight == first.weight and again.label == first.label
    np.testing.assert_allclose(again.values.theta, first.values.theta, rtol=1e-12)
    with pytest.raises(AssertionError, match="fitted again"):  # (without it: a fit of its own)
        fit_local(res, train)


def test_rescaled_is_the_same_gp_in_other_units():
    """``local_cavity.rescaled`` (the second local stage of ``bt.fit`` reuses the first's GP on
    the values): every variance times ``c²``, the likelihood ``n log c`` higher — both exactly
    what the rescaled hyperparameters give on the rescaled values — and the posterior mean
    times ``c``."""
    from bayestensor.models.funbat.local_cavity import rescaled

    rng = np.random.default_rng(2)
    train = _rows(rng, 40)
    r = np.cos(train["x"].to_numpy()) + 0.3 * rng.normal(size=40)
    kinds = {"x": "continuous", "u": "categorical", "v": "categorical"}
    gp = AnovaGP(maxiter=20).fit(train, ["x", "u", "v"], r, 0.1, kinds)
    c = 7.0
    out = rescaled(gp, 1.0 / c, train, r / c)  # (fitted to r; now to r / c)
    n = 64  # (40 rows, padded)
    X, g = train[["x"]].to_numpy(), train[["u", "v"]].to_numpy()
    nll, _ = _anova_vg(
        out.theta, _pad(X, n), _pad(g, n), _pad(r / c, n), _pad(np.ones(40), n), n_cont=1
    )
    assert out.nll == pytest.approx(float(nll), rel=TOL["local_dense"])
    for k, v in out.hyperparameters.items():
        factor = 1.0 if k.startswith("lengthscale") else c**-2
        assert v == pytest.approx(gp.hyperparameters[k] * factor, rel=1e-12), k
    np.testing.assert_allclose(
        out.posterior(train)[0] * c, gp.posterior(train)[0], rtol=TOL["local_dense"]
    )
    # the posterior at the training rows, asked before the rescaling, comes with it in the new
    # units (the O(n³) part of a later comparison on the same rows): as computed afresh
    at_rows = gp.posterior(None)
    out = rescaled(gp, 1.0 / c, train, r / c)
    assert out._at_rows is not None
    fresh = _gp(out.theta, train, r / c).posterior(None)
    for a, b in zip(out.posterior(None), fresh, strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL["local_dense"])
    np.testing.assert_allclose(out.posterior(None)[0] * c, at_rows[0], rtol=1e-12)
    # ... but not to other rows, nor to other values
    others = train.assign(x=train["x"] + 0.5)
    assert rescaled(gp, 1.0 / c, others, r / c)._at_rows is None
    assert rescaled(gp, 1.0 / c, train, r[::-1] / c)._at_rows is None
    # the neighbour GP (the GP on the values of large data) likewise: its kriging in the units
    from bayestensor.models.funbat.local_neighbours import NeighbourGP

    nn = NeighbourGP(m=8, m_fit=4, rounds=1, maxiter=10).fit(train, ["x"], r, 0.1)
    out = rescaled(nn, 1.0 / c, train, r / c)
    for a, b, power in zip(out.posterior(train), nn.posterior(train), (1, 2), strict=True):
        np.testing.assert_allclose(a * c**power, b, rtol=TOL["local_dense"])


def test_an_update_past_the_exact_gps_bound_fits_the_local_stage_again(monkeypatch):
    """``update(scope="new")`` would condition the exact GP on the values on every row (an
    n × n covariance); past ``ANOVA_UPDATE_MAX_ROWS`` rows the local stage is fitted again on
    all rows instead, with a warning (here the bound lowered to the training rows, and the
    exact GP's own bound too, so the refitted stage makes no comparison at that size)."""
    import bayestensor.models.funbat.local as local
    import bayestensor.models.funbat.local_cavity as cavity

    train, test, _ = _panel(1)
    res = bt.fit(train, coords=["unit", "x"], value="y", progress=False)
    assert isinstance(res.local.values, AnovaGP)
    monkeypatch.setattr(local, "ANOVA_UPDATE_MAX_ROWS", len(train))
    monkeypatch.setattr(cavity, "ANOVA_MAX_ROWS", len(train))
    with pytest.warns(UserWarning, match="fitted again on all rows"):
        up = res.update(test, sweeps=1)
    assert up.local.values is None and up.local.offset is None
    assert np.all(np.isfinite(up.predict(test)["mean"]))
