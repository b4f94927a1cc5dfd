# %% [markdown]
# # Gridded data with gaps and real timestamps: xarray in, xarray out
#
# Two walkthroughs of the xarray and datetime path of `bayestensor.fit`:
#
# 1. **A gridded field with gaps.** NASA's monthly ozone (bundled: `bt.datasets.load("ozone")`)
#    as an `xarray.DataArray` on `(date, lat, lon)`, the month index turned into real dates
#    (the first of each month, 1995-2000). 20 % of the cells are set to NaN; `bt.fit(da)` fits
#    the others (NaN cells are the missing entries), `result.predict_grid()` fills the whole
#    grid back as an `xarray.Dataset`, and the held-out cells give the error of the fill.
# 2. **A series with timestamps.** Hourly temperature at New York's three airports (bundled:
#    `bt.datasets.load("weather")`) with tz-aware timestamps: the time mode is continuous (in
#    days since the first timestamp), the fit predicts at new timestamps (every half hour,
#    and past the end), and the model is saved and loaded.
#
# Run as a script: `python examples/ozone_xarray.py --out figures` (`--tiny`: a subset and
# fewer sweeps). `check_results` states what a tiny run must show (the example test calls it).

# %%
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

import bayestensor as bt
from bayestensor.metrics import heldout_metrics

UNITS = {"lat": "°N", "lon": "°E", "ozone": "DU"}


# %% [markdown]
# ## Ozone as a DataArray with real dates
#
# The bundled frame has an integer `month` (1 = January 1995); the first of each month makes it
# a `datetime64` coordinate. `to_xarray()` of the indexed column is the gridded array.


# %%
def ozone_dataarray(tiny: bool) -> xr.DataArray:
    """Ozone on (date, lat, lon): dates are the first of each month from January 1995."""
    df = bt.datasets.load("ozone")
    if tiny:  # every fourth grid line, the first year
        lats, lons = np.unique(df["lat"])[::4], np.unique(df["lon"])[::4]
        df = df[df["lat"].isin(lats) & df["lon"].isin(lons) & (df["month"] <= 12)]
    dates = pd.date_range("1995-01-01", periods=int(df["month"].max()), freq="MS")
    df = df.assign(date=dates[df["month"].to_numpy() - 1])
    return df.set_index(["date", "lat", "lon"])["ozone"].to_xarray()


def fill_gaps(da: xr.DataArray, tiny: bool, seed: int = 0) -> dict:
    """Hide 20 % of the cells, fit the rest, predict the full grid; the held-out error."""
    rng = np.random.default_rng(seed)
    held = xr.DataArray(rng.random(da.shape) < 0.2, coords=da.coords, dims=da.dims)
    gappy = da.where(~held)  # NaN on the held-out cells
    t0 = time.perf_counter()
    res = bt.fit(
        gappy, rank=(3, 3, 3) if tiny else (12, 6, 6), max_sweeps=15 if tiny else 60,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    grid = res.predict_grid()  # an xarray.Dataset on the fitted (here: the full) grid
    truth, cells = da.values[held.values], held.values
    nu = grid["nu"].values[cells] if "nu" in grid else None  # a Student-t predictive
    metrics = heldout_metrics(truth, grid["mean"].values[cells], grid["sd"].values[cells], nu=nu)
    metrics.update(seconds=seconds, n_missing=res.n_missing, n_held=int(cells.sum()))
    return {"result": res, "grid": grid, "gappy": gappy, "held": held, "metrics": metrics}


# %% [markdown]
# ## The filled field
#
# One month: the data with its gaps, the posterior mean on the full grid, the error on the
# held-out cells (the others are blank), and the posterior sd of the latent field.


# %%
def field_figure(da, out: dict, date) -> Figure:
    """Four maps of one date: gappy data, filled mean, held-out error, sd of f."""
    grid, gappy, held = out["grid"], out["gappy"], out["held"]
    at = {"date": date}
    error = (grid["mean"] - da).where(held).sel(at)
    panels = [
        ("data with 20 % of cells removed", gappy.sel(at), "ozone (DU)", "viridis", None),
        ("posterior mean, full grid", grid["mean"].sel(at), "ozone (DU)", "viridis", None),
        ("error on the held-out cells", error, "mean − truth (DU)", "RdBu_r", "centred"),
        ("posterior sd of the latent f", grid["sd_f"].sel(at), "sd of f (DU)", "magma", None),
    ]
    values = np.concatenate([gappy.sel(at).values.ravel(), grid["mean"].sel(at).values.ravel()])
    lo, hi = np.nanmin(values), np.nanmax(values)
    fig = Figure(figsize=(14, 3.6), layout="constrained")
    for ax, (title, field, label, cmap, centred) in zip(fig.subplots(1, 4), panels, strict=True):
        a = field.transpose("lat", "lon")
        if centred:
            m = float(np.nanmax(np.abs(a.values)))
            vmin, vmax = -m, m
        else:
            vmin, vmax = (lo, hi) if label == "ozone (DU)" else (None, None)
        mesh = ax.pcolormesh(
            a["lon"], a["lat"], a.values, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax
        )
        fig.colorbar(mesh, ax=ax, label=label)
        ax.set(title=title, xlabel="lon (°E)", ylabel="lat (°N)")
    fig.suptitle(f"ozone, {pd.Timestamp(date):%B %Y}")
    return fig


# %% [markdown]
# ## A timestamped series: fit, predict at new times, save, load
#
# The weather data's `time` (days since 2013-01-01, local time) becomes tz-aware timestamps.
# A `datetime64` column in `coords` is a continuous mode by default: its times are floats
# `(t − t_min) / unit` with `unit` days (`time_unit=` to change), kept with the model.


# %%
def weather_series(tiny: bool, out_dir: Path, seed: int = 0) -> dict:
    """Fit temperature on (station, timestamp); predict at new timestamps; save and load."""
    df = bt.datasets.load("weather")[["origin", "time", "temp"]]
    if tiny:
        df = df[df["time"] < 7.0]
    start = pd.Timestamp("2013-01-01", tz="America/New_York")
    df = df.assign(when=start + pd.to_timedelta(df["time"], "D")).drop(columns="time")
    held = np.random.default_rng(seed).random(len(df)) < 0.2
    train, test = df[~held], df[held]
    res = bt.fit(
        train, coords=["origin", "when"], value="temp", rank=(3, 3 if tiny else 8),
        max_sweeps=15 if tiny else 60, progress=False,
    )  # fmt: skip
    pred = res.predict(test)
    y = test["temp"].to_numpy(float)
    metrics = heldout_metrics(y, pred["mean"], pred["sd"], nu=pred.get("nu"))
    # new timestamps: every half hour over the last two days and twelve hours past the end
    last = df["when"].max()
    new = pd.DataFrame(
        {"when": pd.date_range(last - pd.Timedelta("2D"), last + pd.Timedelta("12h"), freq="30min")}
    )
    new = new.assign(origin="JFK")[["origin", "when"]]
    band = res.predict(new)
    path = res.save(out_dir / "weather_when.bt")
    back = bt.load(path)
    metrics["loaded_equal"] = np.array_equal(back.predict(new).to_numpy(), band.to_numpy())
    metrics["new_finite"] = bool(np.isfinite(band.to_numpy()).all())
    return {"result": res, "train": train, "new": new, "band": band, "metrics": metrics}


def series_figure(out: dict) -> Figure:
    """JFK's predictions at the new timestamps with the training hours around them."""
    import matplotlib.dates as mdates

    new, band, train = out["new"], out["band"], out["train"]
    tz = str(new["when"].dt.tz)
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    when = new["when"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    ax.fill_between(
        when, band["lower"], band["upper"], alpha=0.25, color="C0", label="95 % interval"
    )
    ax.plot(when, band["mean"], color="C0", lw=1.2, label="JFK: predicted every 30 min")
    seen = train[(train["origin"] == "JFK") & (train["when"] >= new["when"].min())]
    ax.plot(
        seen["when"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), seen["temp"], ".",
        ms=4, color="k", label="JFK hourly (training)",
    )  # fmt: skip
    locator = mdates.AutoDateLocator(tz=tz)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    ax.set(xlabel=f"time ({tz})", ylabel="temperature (°F)")
    ax.legend(fontsize="small")
    return fig


# %%
def main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Both walkthroughs; print their numbers, write the figures; return the metrics."""
    p = argparse.ArgumentParser(description="xarray + datetime walkthrough (ozone, weather)")
    p.add_argument("--out", default="figures", help="folder for the figures")
    p.add_argument("--tiny", action="store_true", help="a subset and fewer sweeps")
    opts = p.parse_args(args)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    da = ozone_dataarray(opts.tiny)
    ozone = fill_gaps(da, opts.tiny)
    m = ozone["metrics"]
    grid = ozone["grid"]
    full = grid.sizes == da.sizes and bool(np.isfinite(grid["mean"].values).all())
    m["full_grid"] = float(full)
    print(ozone["result"].title())
    print(
        f"ozone DataArray {dict(da.sizes)}: {m['n_missing']} NaN cells left out; held-out "
        f"RMSE {m['rmse']:.3f} DU, 95 % coverage {m['coverage']:.3f}; fit {m['seconds']:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        weather = weather_series(opts.tiny, Path(tmp))
    w = weather["metrics"]
    print(weather["result"].title())
    print(
        f"weather with timestamps: held-out RMSE {w['rmse']:.3f} °F, 95 % coverage "
        f"{w['coverage']:.3f}; loaded model predicts the same: {w['loaded_equal']}"
    )

    date = da["date"].values[len(da["date"]) // 2]
    figs = {
        "ozone_xarray_field.png": field_figure(da, ozone, date),
        "ozone_xarray_factors.png": ozone["result"].plot_factors(units=UNITS),
        "weather_timestamps.png": series_figure(weather),
    }
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
    print(f"figures: {', '.join(str(out / n) for n in figs)}")
    return {"ozone": m, "weather": w}


# %%
def check_results(results: dict) -> None:
    """What a tiny run must show (called by ``tests/test_examples.py``)."""
    oz, w = results["ozone"], results["weather"]
    # the NaN cells were left out and counted, the whole grid came back, and the fill is
    # accurate (the held-out ozone varies with an sd of ~10 DU) and calibrated
    assert oz["n_missing"] == oz["n_held"] > 0
    assert oz["full_grid"] == 1.0
    assert oz["rmse"] < 6.0 and 0.85 <= oz["coverage"] <= 1.0
    # the timestamped series: accurate at held-out hours, a saved model predicts the same
    assert w["rmse"] < 2.5 and 0.85 <= w["coverage"] <= 1.0
    assert w["loaded_equal"] and w["new_finite"]


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
