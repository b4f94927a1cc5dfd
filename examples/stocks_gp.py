# %% [markdown]
# # State-space GPs on ten real price series
#
# Monthly closing prices (1990-2021) ship inside matplotlib's wheel. Each log-price series is a
# 1-D function of time; `bayestensor.gp.fit_gp` fits a Matérn GP in O(n) with the Kalman
# smoother and learns the lengthscale, signal and noise variances from the evidence. We compare
# the three Matérn smoothnesses by evidence and by held-out error, per series.
#
# Run as a script: `python examples/stocks_gp.py --out figures` (add `--tiny` for a quick run).
# `check_results` states what a tiny run must show (the example test calls it).

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import cbook  # noqa: E402

from bayestensor.gp import fit_gp  # noqa: E402
from bayestensor.kernels import MATERN_NU  # noqa: E402
from bayestensor.metrics import heldout_metrics  # noqa: E402

KERNELS = tuple(sorted(MATERN_NU))


# %% [markdown]
# The data: `Stocks.csv` ships in matplotlib's wheel (source Yahoo Finance). We reshape it to
# long format (one row per month and ticker) and measure time in decimal years.


# %%
def load_stock_prices() -> pd.DataFrame:
    """Monthly closing prices in long format: columns ``date``, ``ticker``, ``price``."""
    with cbook.get_sample_data("Stocks.csv") as fh:
        wide = pd.read_csv(fh, comment="#", parse_dates=["Date"])
    long = wide.melt(id_vars="Date", var_name="ticker", value_name="price").dropna()
    long = long.rename(columns={"Date": "date"}).sort_values(["ticker", "date"])
    return long.reset_index(drop=True)


def decimal_year(dates: pd.Series) -> np.ndarray:
    """Dates as decimal years (e.g. 1990-07-02 -> 1990.5)."""
    d = pd.to_datetime(dates)
    return (d.dt.year + (d.dt.day_of_year - 1) / 365.25).to_numpy(dtype=np.float64)


# %%
def main(args: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Fit every series with every kernel; print a table and write `stocks_gp_panels.png`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="figures")
    p.add_argument("--tiny", action="store_true", help="one series, few optimiser steps")
    opts = p.parse_args(args)

    df = load_stock_prices()
    tickers = sorted(df["ticker"].unique())[: 1 if opts.tiny else None]
    steps = 150 if opts.tiny else 400
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, dict[str, float]]] = {}
    fig, axes = plt.subplots(len(tickers), 1, figsize=(8, 1.8 * len(tickers)), squeeze=False)
    print(f"{'ticker':<7}{'kernel':<10}{'log evid':>10}{'RMSE':>8}{'NLL':>8}{'cover95':>9}")
    for ax, ticker in zip(axes[:, 0], tickers, strict=True):
        s = df[df["ticker"] == ticker]
        x, y = decimal_year(s["date"]), np.log(s["price"].to_numpy())
        test = rng.uniform(size=x.size) < 0.2
        fits = {k: fit_gp(x[~test], y[~test], kernel=k, steps=steps) for k in KERNELS}
        results[ticker] = {}
        for k, fit in fits.items():
            mean, _, sd = fit.predict(x[test])
            m = heldout_metrics(y[test], mean, sd) | {"log_evidence": fit.log_evidence}
            results[ticker][k] = m
            print(
                f"{ticker:<7}{k:<10}{fit.log_evidence:10.1f}{m['rmse']:8.4f}{m['nll']:8.3f}"
                f"{m['coverage']:9.3f}"
            )
        lin = np.interp(x[test], x[~test], y[~test])
        results[ticker]["linear"] = {"rmse": float(np.sqrt(np.mean((lin - y[test]) ** 2)))}
        print(f"{ticker:<7}{'linear':<10}{'':>10}{results[ticker]['linear']['rmse']:8.4f}")
        best = max(fits, key=lambda k: fits[k].log_evidence)
        results[ticker]["best"] = results[ticker][best]
        grid = np.linspace(x.min(), x.max(), 1500)
        gm, _, gs = fits[best].predict(grid)
        ax.fill_between(grid, gm - 1.96 * gs, gm + 1.96 * gs, color="C0", alpha=0.3)
        ax.plot(grid, gm, lw=0.8, color="C0")
        ax.plot(x[test], y[test], "x", ms=3, color="C3")
        ax.set_ylabel(ticker, rotation=0, ha="right")
    axes[-1, 0].set_xlabel("year (blue: GP with the best evidence, red: held-out months)")
    fig.tight_layout()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "stocks_gp_panels.png", dpi=110)
    plt.close(fig)
    return results


# %%
def check_results(results: dict) -> None:
    """What a tiny run must show (called by ``tests/test_examples.py``)."""
    assert results
    for per_kernel in results.values():
        best, linear = per_kernel["best"], per_kernel["linear"]
        # the kernel chosen by evidence predicts held-out months about as well as linear
        # interpolation (a strong baseline for random-walk-like prices), with calibrated bands
        assert best["rmse"] <= 1.25 * linear["rmse"]
        assert 0.85 <= best["coverage"] <= 1.0


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
