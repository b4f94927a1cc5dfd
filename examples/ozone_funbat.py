# %% [markdown]
# # Ozone over Central America: functional Tucker vs discretised Tucker vs a random forest
#
# NASA's monthly ozone on a 24 × 24 grid over Central America, 1995-2000 (bundled:
# `bayestensor.datasets.load("ozone")`, columns `lat`, `lon`, `month`, `ozone`). All three modes
# are continuous, so FunBaT models the data as a Tucker decomposition whose factors are smooth
# functions of latitude, longitude and time (Matérn-3/2 GPs in state-space form).
#
# We hold out 20 % of the cells at random and compare, on those cells:
#
# - **FunBaT-Tucker** (`bayestensor.fit`), with predictive intervals;
# - a **discretised Tucker** decomposition of the same ranks (tensorly's masked HOOI: the held-out
#   cells are missing entries, imputed from the current fit at every iteration) — the same
#   multilinear model without smoothness or uncertainty;
# - a **random forest** on the coordinates (scikit-learn);
# - **additive location + month means** (a simple reference).
#
# Run as a script: `python examples/ozone_funbat.py --out figures` (`--tiny` for a quick run on
# a subset). `check_results` states what a tiny run must show (the example test calls it).

# %%
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayestensor as bt
from bayestensor.demo import additive_baseline, split
from bayestensor.metrics import heldout_metrics

COORDS = ["lat", "lon", "month"]
UNITS = {"lat": "°N", "lon": "°E", "month": "1 = Jan 1995", "ozone": "DU"}


# %% [markdown]
# ## The competitors
#
# The discretised Tucker model works on the 24 × 24 × 72 array: missing cells are masked and
# the values are centred on the training mean. Neither it nor the forest gives a predictive
# distribution; for the NLL and coverage columns we give them a Gaussian with the sd of their
# training residuals (the forest: out-of-bag residuals), which is generous to them.


# %%
def masked_tucker(train: pd.DataFrame, test: pd.DataFrame, rank, seed: int = 0):
    """Tucker decomposition of the grid with the held-out cells masked (tensorly).

    Returns the predicted values at the ``test`` rows and the training residual sd.
    """
    import tensorly as tl
    from tensorly.decomposition import tucker

    axes = [np.unique(np.concatenate([train[c], test[c]])) for c in COORDS]
    shape = tuple(a.size for a in axes)

    def cells(df):
        return tuple(
            np.searchsorted(a, df[c].to_numpy()) for a, c in zip(axes, COORDS, strict=True)
        )

    mu = train["ozone"].mean()
    tensor = np.zeros(shape)
    mask = np.zeros(shape)
    tensor[cells(train)] = train["ozone"].to_numpy() - mu
    mask[cells(train)] = 1.0
    core, factors = tucker(
        tl.tensor(tensor), rank=list(rank), mask=tl.tensor(mask), n_iter_max=200,
        random_state=seed,
    )  # fmt: skip
    full = tl.to_numpy(tl.tucker_to_tensor((core, factors))) + mu
    resid = train["ozone"].to_numpy() - full[cells(train)]
    return full[cells(test)], float(resid.std())


def random_forest(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0, n_trees: int = 200):
    """Random forest on (lat, lon, month); returns test predictions and the OOB residual sd."""
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=n_trees, oob_score=True, random_state=seed, n_jobs=2)
    rf.fit(train[COORDS].to_numpy(), train["ozone"].to_numpy())
    resid = train["ozone"].to_numpy() - rf.oob_prediction_
    return rf.predict(test[COORDS].to_numpy()), float(resid.std())


# %% [markdown]
# ## Fit, compare, plot


# %%
def main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Fit every method, print the table, write three figures; return the metrics."""
    p = argparse.ArgumentParser(description="FunBaT vs discretised Tucker vs random forest")
    p.add_argument("--out", default="figures", help="folder for the figures")
    p.add_argument("--tiny", action="store_true", help="a subset and fewer sweeps")
    p.add_argument(
        "--rank", type=int, nargs="+", default=None, help="one rank or one per mode (6 6 12)"
    )
    opts = p.parse_args(args)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    df = bt.datasets.load("ozone")
    if opts.tiny:  # every third grid line, first two years
        lats, lons = np.unique(df["lat"])[::3], np.unique(df["lon"])[::3]
        df = df[df["lat"].isin(lats) & df["lon"].isin(lons) & (df["month"] <= 24)]
        df = df.reset_index(drop=True)
    R = tuple(opts.rank or ((3,) if opts.tiny else (6, 6, 12)))
    R = R * 3 if len(R) == 1 else R
    held = split(df, 0.2, seed=0)
    train, test = df[~held], df[held]
    y = test["ozone"].to_numpy(np.float64)

    results: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    res = bt.fit(
        train, coords=COORDS, value="ozone", rank=R, max_sweeps=25 if opts.tiny else 60,
        progress=False,
    )  # fmt: skip
    pred = res.predict(test)
    results["FunBaT-Tucker"] = heldout_metrics(y, pred["mean"], pred["sd"], nu=pred.get("nu"))
    results["FunBaT-Tucker"]["seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tk_mean, tk_sd = masked_tucker(train, test, R)
    results["Tucker (tensorly, masked)"] = heldout_metrics(y, tk_mean, np.full(y.shape, tk_sd))
    results["Tucker (tensorly, masked)"]["seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rf_mean, rf_sd = random_forest(train, test, n_trees=100 if opts.tiny else 300)
    results["random forest"] = heldout_metrics(y, rf_mean, np.full(y.shape, rf_sd))
    results["random forest"]["seconds"] = time.perf_counter() - t0

    base_mean, base_sd = additive_baseline(
        train, test, value="ozone", location=("lat", "lon"), time="month"
    )
    results["location + month means"] = heldout_metrics(y, base_mean, base_sd)
    results["location + month means"]["seconds"] = float("nan")

    print(f"{len(train)} training / {len(test)} held-out cells, ranks {R}")
    print("| method | RMSE | MAE | NLL | 95 % coverage | time (s) |")
    print("|---|---|---|---|---|---|")
    for name, m in results.items():
        print(
            f"| {name} | {m['rmse']:.3f} | {m['mae']:.3f} | {m['nll']:.3f} | "
            f"{m['coverage']:.3f} | {m['seconds']:.1f} |"
        )

    # %% figures: learned trajectories, held-out fit, one month's map
    figs = {
        "ozone_funbat_factors.png": res.plot_factors(units=UNITS),
        "ozone_funbat_heldout.png": bt.plotting.plot_observed_vs_predicted(
            y, pred["mean"], pred["lower"], pred["upper"], label="ozone (DU)"
        ),
    }
    month = int(np.median(df["month"]))
    figs["ozone_funbat_map.png"] = bt.plotting.plot_prediction_map(
        res, x="lon", y="lat", fixed={"month": month}, observed=train[train["month"] == month],
        units=UNITS,
    )  # fmt: skip
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
    print(f"figures: {', '.join(str(out / n) for n in figs)}")
    return results


# %%
def check_results(results: dict) -> None:
    """What a tiny run must show (called by ``tests/test_examples.py``)."""
    fb = results["FunBaT-Tucker"]
    # far better than the additive reference, as accurate as the discrete Tucker model of the
    # same ranks (which has no intervals), and its 95 % intervals are calibrated
    assert fb["rmse"] < 0.8 * results["location + month means"]["rmse"]
    assert fb["rmse"] <= 1.05 * results["Tucker (tensorly, masked)"]["rmse"]
    assert 0.88 <= fb["coverage"] <= 0.99
    assert np.isfinite(results["random forest"]["rmse"])


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
