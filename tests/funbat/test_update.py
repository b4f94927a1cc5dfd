"""Streaming updates, :meth:`FitResult.update`: new rows added to a fit and warm-started sweeps.

References: the fit's own sweep continued on the combined rows (encoded independently, by
:func:`bayestensor.data.encode` of the concatenated frame), the planted noiseless function at
new times and at a new category, and (slow) a fresh fit of the combined rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.data import encode
from bayestensor.driver import precision
from bayestensor.models.funbat import estimator as est_module
from bayestensor.ssm import gaps

COORDS = ["t", "s", "g"]
NOISE = 0.05
T = np.arange(30.0)
S = np.linspace(0.0, 1.0, 8)
G = np.array(["a", "b", "c", "d"])


def _truth(t, s, gi):
    return np.sin(t / 4.0) * np.cos(2.0 * s) + 0.5 * gi


def _rows(rng, times, n, groups=3, first_group=0):
    """``n`` noisy rows at times drawn from ``times``, all of ``S``, groups ``first_group …``."""
    t = rng.choice(times, n)
    s = S[rng.integers(0, S.size, n)]
    gi = rng.integers(first_group, first_group + groups, n)
    f = _truth(t, s, gi)
    frame = pd.DataFrame({"t": t, "s": s, "g": G[gi], "y": f + NOISE * rng.normal(size=n)})
    return frame, f


@pytest.fixture(scope="module")
def new_day():
    """100 rows on day 25 (one beyond the fit) and 200 test rows there with their truth."""
    rng = np.random.default_rng(2)
    return _rows(rng, T[25:26], 100)[0], *_rows(rng, T[25:26], 200)


@pytest.fixture(scope="module")
def base():
    """A Tucker fit with learned ranks on times 0 … 24 and groups a, b, c."""
    rng = np.random.default_rng(0)
    df, _ = _rows(rng, T[:25], 600)
    return bt.fit(df, coords=COORDS, value="y", max_rank=3, local=None), df


def test_update_at_fitted_coordinates_continues_the_sweeps(base):
    res, df = base
    rng = np.random.default_rng(1)
    new, _ = _rows(rng, T[:25], 150)
    up = res.update(new, sweeps=2, scope="all")
    # the reference: the combined frame encoded from scratch, z-scored with the fit's
    # standardisation, two sweeps of the fit's config from the fitted state
    est = res.estimator
    enc = encode(pd.concat([df, new], ignore_index=True), COORDS, "y")
    assert all(
        np.array_equal(a.values, b.values) for a, b in zip(enc.modes, res.modes, strict=True)
    )
    step = est_module._sweep_jit  # the fit's compiled sweep (the same shapes: no recompile)
    with precision(est.dtype):
        y = jnp.asarray((enc.y - est.y_mean_) / est.y_scale_)
        dts = tuple(
            jnp.asarray(gaps(m.values)) if m.kind == "continuous" else None for m in enc.modes
        )
        state = est.state_
        for _ in range(2):
            state, _ = step(state, jnp.asarray(enc.index), y, dts, est.cfg_)
    got, want = jax.tree.leaves(up.estimator.state_), jax.tree.leaves(state)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape
        scale = max(np.max(np.abs(b)), 1.0) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL["update_vs_continued"] * scale)
    # the learned ranks are kept; the history goes on
    assert up.ranks == res.ranks
    assert len(up.history) == len(res.history) + 2


@pytest.mark.slow  # 31 s over both passes; the closed-form update tests stay (nox -s bench runs it)
def test_update_with_a_new_day_improves_it(base, new_day, tmp_path):
    res, _ = base
    new, test, f_test = new_day
    before = np.sqrt(np.mean((res.predict(test)["mean"].to_numpy() - f_test) ** 2))
    up = res.update(new)
    predicted = up.predict(test)
    after = np.sqrt(np.mean((predicted["mean"].to_numpy() - f_test) ** 2))
    # the updated model saves and loads like a fitted one
    pd.testing.assert_frame_equal(bt.load(up.save(tmp_path / "updated")).predict(test), predicted)
    assert after < TOL["update_new_times_gain"] * before
    assert up.modes[0].values[-1] == 25.0 and up.modes[0].size == res.modes[0].size + 1
    # one history record per update sweep, its RMSE over the new rows (the fit's z-scoring)
    assert len(up.history) == len(res.history) + 3
    Ef = up.predict(new)["mean"].to_numpy()
    rmse = np.sqrt(np.mean((Ef - new["y"].to_numpy()) ** 2))
    assert abs(up.history["rmse"].iloc[-1] - rmse) <= TOL["update_history_rmse"] * rmse
    assert up.estimator.cfg_.sizes[0] == res.estimator.cfg_.sizes[0] + 1
    # and the title says whose RMSE it is (it said "training RMSE"), also once loaded
    assert f"RMSE on the update's new rows {up.history['rmse'].iloc[-1]:.4g}" in up.title()
    assert "update's new rows" in bt.load(tmp_path / "updated").title()
    assert "training RMSE" in res.title()
    assert "training RMSE" in res.update(new, scope="all").title()


def test_new_rows_sweep_against_the_closed_form():
    """``scope="new"`` on a CP fit (fixed rank, no weights): a new category's posterior is the
    closed form ``N(0, I)`` × the new rows' messages at the final posteriors of the other modes,
    and coordinates without new rows keep their fitted messages (the old rows' sums, held)."""
    rng = np.random.default_rng(8)
    df, _ = _rows(rng, T[:12], 300, groups=2)
    res = bt.fit(
        df, coords=COORDS, value="y", model="cp", rank=2, max_sweeps=20, progress=False, local=None
    )
    new, _ = _rows(rng, T[3:5], 40, groups=1, first_group=2)  # days 3, 4; new group "c"
    up = res.update(new, sweeps=2)
    est, fitted = up.estimator, res.estimator.state_
    state = est.state_
    assert state.core is None  # CP, fixed rank: a_n is the product of the other modes' rows
    y = (new["y"].to_numpy() - est.y_mean_) / est.y_scale_
    it = np.searchsorted(np.asarray(up.modes[0].values), new["t"].to_numpy())
    js = np.searchsorted(np.asarray(up.modes[1].values), new["s"].to_numpy())
    Ea, Eaa = np.ones((len(new), 2)), np.ones((len(new), 2, 2))
    for k, idx in ((0, it), (1, js)):
        m = np.asarray(state.factors[k].mean, dtype=np.float64)[idx]
        P = np.asarray(state.factors[k].cov, dtype=np.float64)[idx]
        Ea, Eaa = Ea * m, Eaa * (m[:, :, None] * m[:, None, :] + P)
    tau = float(state.noise.mean)
    prec = np.eye(2) + tau * Eaa.sum(0)
    mean = np.linalg.solve(prec, tau * (y[:, None] * Ea).sum(0))
    g, tol = state.factors[2], TOL["update_new_rows_closed_form"]
    for got, want in ((g.mean[2], mean), (g.cov[2], np.linalg.inv(prec))):
        got = np.asarray(got, dtype=np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.max(np.abs(want)))
    # held: the old groups and the days without new rows keep the fit's messages exactly
    for k, keep in ((2, [0, 1]), (0, [t for t in range(12) if t not in (3, 4)])):
        for a, b in zip(state.messages[k], fitted.messages[k], strict=True):
            np.testing.assert_array_equal(np.asarray(a)[keep], np.asarray(b)[keep])
    # core, noise and hyperparameters stay the fit's
    assert float(state.noise.rate) == float(fitted.noise.rate)
    for a, b in zip(state.log_hyper, fitted.log_hyper, strict=True):
        assert a is None or np.array_equal(a, b)


def test_update_with_a_new_category(base):
    res, _ = base
    rng = np.random.default_rng(3)
    new, _ = _rows(rng, T[:25], 150, groups=1, first_group=3)  # all in the new group "d"
    test, f_test = _rows(rng, T[:25], 200, groups=1, first_group=3)
    with pytest.raises(ValueError, match="not seen in training"):
        res.predict(test)
    up = res.update(new)
    assert list(up.modes[2].values) == ["a", "b", "c", "d"]
    rmse = np.sqrt(np.mean((up.predict(test)["mean"].to_numpy() - f_test) ** 2))
    assert rmse < TOL["update_new_category_rmse"] * NOISE


def test_update_leaves_its_inputs_alone(base, new_day):
    res, _ = base
    rng = np.random.default_rng(4)
    new = new_day[0]
    new_copy = new.copy()
    grid, _ = _rows(rng, T[:25], 40)
    before = res.predict(grid)
    state, n_history, modes = res.estimator.state_, len(res.history), res.modes
    res.update(new, sweeps=1)
    pd.testing.assert_frame_equal(new, new_copy)
    pd.testing.assert_frame_equal(res.predict(grid), before)
    assert res.estimator.state_ is state and len(res.history) == n_history
    assert res.modes == modes


def test_update_rejects_bad_input(base, tmp_path):
    res, _ = base
    rng = np.random.default_rng(5)
    new, _ = _rows(rng, T[25:26], 20)
    with pytest.raises(ValueError, match="'s'"):
        res.update(new.drop(columns="s"))
    with pytest.raises(ValueError, match="'s'"):
        res.update(new.assign(s=new["s"].astype(str)))
    with pytest.raises(ValueError, match="'y'"):
        res.update(new.drop(columns="y"))
    with pytest.raises(ValueError, match="'y'"):
        res.update(new.assign(y=new["y"].astype(str)))
    with pytest.raises(ValueError, match=r"'y'.*dropna\(subset=\['y'\]\)"):
        res.update(new.assign(y=np.where(np.arange(len(new)) == 3, np.nan, new["y"])))
    with pytest.raises(ValueError, match="'t'"):
        res.update(new.assign(t=np.inf))
    with pytest.raises(ValueError, match="df"):
        res.update(new.iloc[:0])
    with pytest.raises(ValueError, match="sweeps"):
        res.update(new, sweeps=0)
    loaded = bt.load(res.save(tmp_path / "model"))
    with pytest.raises(ValueError, match="training rows"):
        loaded.update(new)


@pytest.mark.slow
def test_update_run_long_matches_a_refit():
    """A fixed-rank fit updated with a new day until convergence vs a fresh fit of all rows."""
    rng = np.random.default_rng(6)
    df, _ = _rows(rng, T[:25], 500)
    new, _ = _rows(rng, T[25:27], 100)
    options = dict(coords=COORDS, value="y", rank=2, tol=1e-4, max_sweeps=300)
    fit = bt.fit(df, **options)
    refit = bt.fit(pd.concat([df, new], ignore_index=True), **options)
    grid, _ = _rows(rng, T[:27], 300)
    scale = float(np.std(pd.concat([df, new])["y"]))
    for scope in ("all", "new"):  # new: old rows' messages, core, noise and hypers held
        up = fit.update(new, sweeps=100, scope=scope)
        gap = up.predict(grid)["mean"] - refit.predict(grid)["mean"]
        assert np.max(np.abs(gap)) < TOL[f"update_vs_refit_{scope}"] * scale


@pytest.mark.slow
def test_update_in_float32():
    rng = np.random.default_rng(7)
    df, _ = _rows(rng, T[:10], 200, groups=2)
    res = bt.fit(df, coords=COORDS, value="y", rank=2, dtype="float32", max_sweeps=5, local=None)
    new, _ = _rows(rng, T[10:11], 40, groups=2)
    up = res.update(new, sweeps=1)
    assert up.estimator.state_.noise.rate.dtype == jnp.float32
    assert np.isfinite(up.predict(new)["mean"]).all()
