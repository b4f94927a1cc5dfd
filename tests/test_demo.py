"""``bayestensor demo``: the baseline against least squares, and the tiny run end to end."""

import re

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.cli import main
from bayestensor.demo import additive_baseline, split


def test_additive_baseline_is_the_least_squares_fit(rng):
    """Backfitting equals the dummy-variable least-squares fit on an incomplete table."""
    locs, times = 5, 7
    a, b = rng.normal(size=locs), rng.normal(size=times)
    grid = pd.DataFrame(
        [(i, j, a[i] + b[j] + 0.3 * rng.normal()) for i in range(locs) for j in range(times)],
        columns=["loc", "t", "y"],
    )
    keep = rng.uniform(size=len(grid)) < 0.7
    train, test = grid[keep], grid[~keep]
    mean, sd = additive_baseline(train, test, value="y", location=("loc",), time="t", n_iter=500)
    X = np.hstack([np.eye(locs)[train["loc"]], np.eye(times)[train["t"]]])
    coef, *_ = np.linalg.lstsq(X, train["y"].to_numpy(), rcond=None)
    X_test = np.hstack([np.eye(locs)[test["loc"]], np.eye(times)[test["t"]]])
    np.testing.assert_allclose(mean, X_test @ coef, atol=TOL["backfitting_vs_lstsq"])
    resid = train["y"].to_numpy() - X @ coef
    np.testing.assert_allclose(sd, resid.std(), rtol=TOL["backfitting_vs_lstsq"])


def test_split_holds_out_about_a_fifth():
    mask = split(pd.DataFrame({"a": np.arange(10_000)}), 0.2, seed=3)
    assert abs(mask.mean() - 0.2) < TOL["split_fraction_abs"]
    np.testing.assert_array_equal(mask, split(pd.DataFrame({"a": np.arange(10_000)}), 0.2, 3))


@pytest.mark.once  # as users run it, x64 off, in both passes: the float32 pass leaves it out
def test_demo_tiny_beats_the_baseline_and_writes_plots(tmp_path, capsys):
    out = tmp_path / "figs"
    with jax.enable_x64(False):
        assert main(["demo", "--tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out.resolve()) in text
    assert sorted(p.name for p in out.glob("*.png")) == [
        "ozone_factors.png",
        "ozone_heldout.png",
        "ozone_map.png",
        "ozone_observed.png",
    ]
    rows = {}
    for name in ("FunBaT-Tucker", "location + month means"):
        line = re.search(rf"^{re.escape(name)}\s+(.*)$", text, flags=re.M).group(1)
        values = map(float, line.split())
        rows[name] = dict(zip(["rmse", "mae", "nll", "coverage"], values, strict=True))
    fb, base = rows["FunBaT-Tucker"], rows["location + month means"]
    assert fb["rmse"] < TOL["demo_rmse_vs_baseline"] * base["rmse"]
    assert fb["nll"] < base["nll"]
    low, high = TOL["demo_coverage95"]
    assert low <= fb["coverage"] <= high
    # the fair baseline is printed too: a random forest fitted on the same split, independently
    sklearn = pytest.importorskip("sklearn.ensemble")
    line = re.search(r"^random forest\s+(\S+)\s+(\S+)\s+–\s+–$", text, flags=re.M)
    df = bt.datasets.load("ozone")
    lats, lons = np.unique(df["lat"])[::3], np.unique(df["lon"])[::3]
    df = df[df["lat"].isin(lats) & df["lon"].isin(lons) & (df["month"] <= 24)]
    df = df.reset_index(drop=True)
    held = split(df, 0.2, 0)
    cols = ["lat", "lon", "month"]
    forest = sklearn.RandomForestRegressor(200, min_samples_leaf=2, random_state=0)
    forest.fit(df.loc[~held, cols], df.loc[~held, "ozone"])
    rmse = np.sqrt(np.mean((df.loc[held, "ozone"] - forest.predict(df.loc[held, cols])) ** 2))
    assert float(line.group(1)) == pytest.approx(rmse, abs=TOL["printed_3_decimals"])


def test_demo_into_a_file_says_so_before_fitting(tmp_path, capsys):
    """``--out`` naming a file, not a folder: one error line saying so (it printed the bare
    OS error "[Errno 17] File exists"), and nothing is fitted."""
    target = tmp_path / "figs"
    target.write_text("not a folder")
    assert main(["demo", "--tiny", "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "is a file; give a folder for the figures" in err and "Errno" not in err
    assert target.read_text() == "not a folder"
