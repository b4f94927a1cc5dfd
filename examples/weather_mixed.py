# %% [markdown]
# # Hourly temperature at three airports: a categorical × continuous tensor
#
# Hourly weather at New York's three airports (EWR, JFK, LGA) in 2013, bundled as
# `bayestensor.datasets.load("weather")`. Temperature is a function of a *categorical* mode
# (the station) and a *continuous* one (time in days): FunBaT gives the station mode ordinary
# N(0, I) factor rows and the time mode Matérn-3/2 GP functions, in one Tucker model
#
#     temp(station, t) = Σ_{r,s} W[r, s] · v_r(station) · u_s(t) + ε.
#
# Two held-out sets:
#
# - **random hours:** 20 % of all (station, hour) cells at random;
# - **a gap:** three whole days missing at JFK while EWR and LGA keep reporting. Interpolating
#   JFK alone in time cannot see the weather of those days; the tensor model borrows it from the
#   other stations through the shared time functions.
#
# Baselines: linear interpolation in time per station, and additive station + hour means
# (`bayestensor.demo.additive_baseline`).
#
# Run as a script: `python examples/weather_mixed.py --out figures` (`--tiny`: the first 30
# days). `check_results` states what a tiny run must show (the example test calls it).

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

COORDS = {"origin": "categorical", "time": "continuous"}
GAP_STATION = "JFK"


# %%
def interpolate_per_station(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Linear interpolation of temperature in time, each station on its own."""
    mean = np.empty(len(test))
    for station, rows in test.groupby("origin").indices.items():
        s = train[train["origin"] == station].sort_values("time")
        mean[rows] = np.interp(test["time"].to_numpy()[rows], s["time"], s["temp"])
    return mean


def _metrics(y, mean, sd) -> dict[str, float]:
    return heldout_metrics(y, mean, np.broadcast_to(sd, np.shape(y)))


# %%
def main(args: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Fit, evaluate on random hours and on the gap, write figures; return the metrics."""
    p = argparse.ArgumentParser(description="FunBaT on station (categorical) x time")
    p.add_argument("--out", default="figures", help="folder for the figures")
    p.add_argument("--tiny", action="store_true", help="the first 30 days only")
    opts = p.parse_args(args)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    df = bt.datasets.load("weather")[["origin", "time", "temp"]]
    if opts.tiny:
        df = df[df["time"] < 30.0].reset_index(drop=True)
    gap_start = 10.0 if opts.tiny else 190.0  # mid-January / early July (days since 1 Jan)
    in_gap = (df["origin"] == GAP_STATION) & df["time"].between(gap_start, gap_start + 3.0)
    held = split(df, 0.2, seed=0) & ~in_gap.to_numpy()
    train = df[~held & ~in_gap.to_numpy()]
    sets = {"random hours": df[held], f"{GAP_STATION} 3-day gap": df[in_gap]}

    t0 = time.perf_counter()
    res = bt.fit(
        train, coords=COORDS, value="temp", rank=(3, 3 if opts.tiny else 8),
        max_sweeps=30 if opts.tiny else 60, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0

    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, test in sets.items():
        y = test["temp"].to_numpy(np.float64)
        pred = res.predict(test)
        lin = interpolate_per_station(train, test)
        lin_sd = np.std(np.diff(train.sort_values(["origin", "time"])["temp"]))
        add_mean, add_sd = additive_baseline(
            train, test, value="temp", location=("origin",), time="time"
        )
        results[name] = {
            "FunBaT-Tucker": heldout_metrics(y, pred["mean"], pred["sd"], nu=pred.get("nu")),
            "linear interpolation per station": _metrics(y, lin, lin_sd),
            "station + hour means": _metrics(y, add_mean, add_sd),
        }
    print(f"{len(train)} training cells; fit {seconds:.1f} s; ranks {res.ranks}")
    print("| held-out set | method | RMSE (°F) | NLL | 95 % coverage |")
    print("|---|---|---|---|---|")
    for set_name, per_method in results.items():
        for name, m in per_method.items():
            print(
                f"| {set_name} | {name} | {m['rmse']:.3f} | {m['nll']:.3f} | {m['coverage']:.3f} |"
            )

    # %% figures: the gap with bands and the other stations; the learned factors
    grid = pd.DataFrame(
        {"origin": GAP_STATION, "time": np.linspace(gap_start - 2.0, gap_start + 5.0, 400)}
    )
    band = res.predict(grid)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(grid["time"], band["lower"], band["upper"], alpha=0.25, color="C0")
    ax.plot(grid["time"], band["mean"], color="C0", lw=1.2, label=f"{GAP_STATION}: FunBaT")
    seen = train[train["time"].between(gap_start - 2.0, gap_start + 5.0)]
    for colour, (station, rows) in zip(("C1", "C2", "k"), seen.groupby("origin"), strict=False):
        ax.plot(rows["time"], rows["temp"], ".", ms=2.5, color=colour, label=f"{station} (train)")
    gap = df[in_gap]
    ax.plot(
        gap["time"], gap["temp"], "x", ms=3.5, color="C3", label=f"{GAP_STATION} gap (held out)"
    )
    ax.axvspan(gap_start, gap_start + 3.0, color="0.9", zorder=0)
    ax.set(xlabel="days since 2013-01-01", ylabel="temperature (°F)")
    ax.legend(fontsize="small", ncol=3)
    figs = {
        "weather_gap.png": fig,
        "weather_factors.png": res.plot_factors(units={"time": "days since 2013-01-01"}),
    }
    for name, f in figs.items():
        f.savefig(out / name, dpi=110)
    print(f"figures: {', '.join(str(out / n) for n in figs)}")
    return results


# %%
def check_results(results: dict) -> None:
    """What a tiny run must show (called by ``tests/test_examples.py``)."""
    rand, gap = results["random hours"], results[f"{GAP_STATION} 3-day gap"]
    fb = rand["FunBaT-Tucker"]
    # random hours: as accurate as interpolating each station (a strong baseline for isolated
    # missing hours), far better than additive station + hour means, calibrated intervals
    assert fb["rmse"] <= 1.1 * rand["linear interpolation per station"]["rmse"]
    assert fb["rmse"] < 0.5 * rand["station + hour means"]["rmse"]
    assert 0.9 <= fb["coverage"] <= 1.0
    # the gap: borrowing the weather from the other stations beats interpolating JFK alone
    fb_gap = gap["FunBaT-Tucker"]
    assert fb_gap["rmse"] < 0.7 * gap["linear interpolation per station"]["rmse"]
    assert fb_gap["nll"] < gap["linear interpolation per station"]["nll"]
    assert fb_gap["coverage"] >= 0.75


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
