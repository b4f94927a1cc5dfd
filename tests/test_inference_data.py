"""``to_inference_data``: arviz InferenceData named after the user's columns and levels, whose
draws agree with the fitted posterior (FunBaT) or are the kept draws (Poisson Tucker)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import count_frame

import bayestensor as bt
from bayestensor.inference_data import require_arviz

az = pytest.importorskip("arviz")


@pytest.fixture(scope="module")
def funbat():
    rng = np.random.default_rng(0)
    t, s = np.meshgrid(np.arange(12), np.arange(4), indexing="ij")
    day = pd.Timestamp("2022-03-01") + pd.to_timedelta(2 * t.ravel(), unit="D")
    df = pd.DataFrame({"day": day, "site": np.array(["a", "b", "c", "d"])[s.ravel()]})
    df["y"] = np.sin(t.ravel() / 3) * (1 + s.ravel()) + 0.1 * rng.standard_normal(len(df))
    df.index = [f"row{i}" for i in range(len(df))]
    # the low-rank part alone: its posterior is what the conversion draws from
    res = bt.fit(df, coords=["day", "site"], value="y", rank=2, max_sweeps=40, local=None,
                 progress=False)  # fmt: skip
    return df, res


def test_funbat_dims_and_coords_are_the_columns(funbat):
    df, res = funbat
    idata = res.to_inference_data(df, draws=50, chains=2, seed=1)
    post = idata.posterior
    assert dict(post.sizes) == {
        "chain": 2,
        "draw": 50,
        "day": 12,
        "day_component": 2,
        "site": 4,
        "site_component": 2,
        "obs": len(df),
    }
    assert post["u_day"].dims == ("chain", "draw", "day", "day_component")
    assert post["W"].dims == ("chain", "draw", "day_component", "site_component")
    np.testing.assert_array_equal(post["day"].values, np.sort(df["day"].unique()))
    assert list(post["site"].values) == ["a", "b", "c", "d"]
    assert list(post["obs"].values) == list(df.index)
    np.testing.assert_array_equal(idata.observed_data["y"].values, df["y"].to_numpy())
    # the same seed gives the same draws; another seed others
    again = res.to_inference_data(df, draws=50, chains=2, seed=1).posterior
    np.testing.assert_array_equal(again["f"].values, post["f"].values)
    other = res.to_inference_data(df, draws=50, chains=2, seed=2).posterior
    assert not np.array_equal(other["f"].values, post["f"].values)


def test_funbat_draws_match_the_fitted_posterior(funbat):
    df, res = funbat
    S = 4000
    post = res.to_inference_data(df, draws=S // 4, seed=0).posterior
    f = post["f"].values.reshape(S, -1)
    pred = res.predict(df)
    sd_f = pred["sd_f"].to_numpy()
    # f from factor and core draws: moments are predict's (the same q), up to Monte Carlo error
    assert np.max(np.abs(f.mean(0) - pred["mean"].to_numpy()) / sd_f) < 5 / np.sqrt(S)
    ratio = f.std(0) / sd_f
    assert 0.9 < ratio.min() and ratio.max() < 1.1
    W = post["W"].values.reshape(S, *res.ranks)
    sd_W = np.sqrt(np.diag(np.asarray(res.estimator.state_.core.cov))).reshape(res.ranks)
    assert np.max(np.abs(W.mean(0) - res.core) / sd_W) < 5 / np.sqrt(S)
    mean_u, sd_u = res.estimator.factor_moments(1)
    u = post["u_site"].values.reshape(S, *mean_u.shape)
    assert np.max(np.abs(u.mean(0) - mean_u) / sd_u) < 5 / np.sqrt(S)
    np.testing.assert_allclose(u.std(0), sd_u, rtol=0.1)
    # E[τ]^{-1/2} vs the draws of τ^{-1/2}: equal to O(1/shape)
    shape = float(res.estimator.state_.noise.shape)
    assert np.median(post["noise_sd"].values) == pytest.approx(res.noise_sd, rel=2 / shape + 0.02)


def test_funbat_summary_runs_and_mixes(funbat):
    _, res = funbat
    summary = az.summary(res.to_inference_data(draws=200), var_names=["W", "noise_sd"])
    assert len(summary) == 5
    assert np.all(np.abs(summary["r_hat"] - 1) < 0.05)


def test_funbat_f_only_at_training_coordinates(funbat):
    df, res = funbat
    off = df.head(2).assign(day=pd.Timestamp("2022-03-02 12:00"))
    with pytest.raises(ValueError, match=r"\['day'\] that are not training coordinates"):
        res.to_inference_data(off)
    with pytest.raises(ValueError, match="draws must be a positive int"):
        res.to_inference_data(draws=0)


def test_draws_beyond_memory_are_refused_with_the_most_that_fit(funbat, monkeypatch):
    """draws=10**9 ran into a MemoryError halfway through drawing."""
    import re

    from bayestensor import inference_data

    df, res = funbat
    with pytest.raises(ValueError, match=r"draws=1000000000 with chains=4 would need about"):
        res.to_inference_data(draws=10**9)
    monkeypatch.setattr(inference_data, "_memory_bytes", lambda: 2e6)
    with pytest.raises(ValueError, match=r"ask for at most draws=\d+ per chain") as err:
        res.to_inference_data(df, draws=1000)
    most = int(re.search(r"at most draws=(\d+)", str(err.value)).group(1))
    assert res.to_inference_data(df, draws=most).posterior.sizes["draw"] == most
    with pytest.raises(ValueError, match="would need about"):
        res.to_inference_data(df, draws=most + 1)


def test_funbat_cp_has_no_core_variable(funbat):
    df, _ = funbat
    res = bt.fit(df, coords=["day", "site"], value="y", model="cp", rank=2, max_sweeps=3,
                 local=None, progress=False)  # fmt: skip
    post = res.to_inference_data(df, draws=300, chains=1).posterior
    assert "W" not in post
    pred = res.predict(df)
    f = post["f"].values[0]
    assert np.max(np.abs(f.mean(0) - pred["mean"]) / pred["sd_f"]) < 5 / np.sqrt(300)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(1)
    return count_frame(rng.poisson(2.0, size=(5, 4, 3)), ["a", "b", "c"], "n")


@pytest.mark.parametrize("method", ["gibbs", "vi"])
def test_poisson_draws_are_the_kept_ones(counts, method):
    kw = {"num_warmup": 5, "num_samples": 20} if method == "gibbs" else {"max_iter": 10}
    res = bt.fit(counts, coords=["a", "b", "c"], value="n", model="poisson-tucker", rank=2,
                 method=method, progress=False, **kw)  # fmt: skip
    idata = res.to_inference_data()
    post = idata.posterior
    S = len(res.draws["core"])
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == S
    assert post["theta_a"].dims == ("chain", "draw", "a", "a_component")
    assert post["core"].dims == ("chain", "draw", "a_component", "b_component", "c_component")
    for c in "abc":
        assert list(post[c].values) == list(res.levels[c])
        theta = res.draws[f"theta{res.spec.group_of[list(res.coords).index(c)]}"]
        np.testing.assert_array_equal(post[f"theta_{c}"].values[0], theta)
    np.testing.assert_array_equal(post["core"].values[0], res.draws["core"])
    if method == "vi":  # only the factors and the core are drawn from q
        assert set(post.data_vars) == {"theta_a", "theta_b", "theta_c", "core"}
    obs = idata.observed_data
    y = obs["y"].values
    assert y.sum() == counts["n"].sum() and obs.sizes["cell"] == len(counts)
    # every cell's levels come along as coordinates
    got = pd.DataFrame({c: obs[c].values for c in "abc"}).assign(n=y)
    merged = got.merge(counts.astype({"c": object}), on=["a", "b", "c"], suffixes=("", "_df"))
    assert len(merged) == len(counts) and (merged["n"] == merged["n_df"]).all()
    summary = az.summary(idata, var_names=["core"], kind="stats")
    assert len(summary) == 8
    thin = res.to_inference_data(draws=5).posterior
    assert thin.sizes["draw"] == 5
    np.testing.assert_array_equal(thin["core"].values[0, -1], res.draws["core"][-1])
    with pytest.raises(ValueError, match=f"draws=500 but the result keeps {S} draws"):
        res.to_inference_data(draws=500)


def test_missing_arviz_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ImportError, match=r"pip install 'bayestensor\[arviz\]'"):
        require_arviz()
