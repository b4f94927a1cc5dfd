"""``bayestensor demo``: a state-space GP fitted to real monthly stock prices, offline.

The data are the monthly closing prices that ship inside matplotlib's wheel
(``mpl-data/sample_data/Stocks.csv``, source Yahoo Finance, 1990-2021). The demo fits Matérn
1/2, 3/2 and 5/2 GPs to one log-price series with hyperparameters learned from the Kalman
evidence, keeps the kernel with the highest evidence, holds out 20 % of the months, prints
held-out metrics beside linear interpolation, and writes a plot.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import cbook

from bayestensor.gp import fit_gp
from bayestensor.kernels import MATERN_NU
from bayestensor.metrics import heldout_metrics

KERNELS = tuple(sorted(MATERN_NU))


def load_stock_prices() -> pd.DataFrame:
    """Monthly closing prices in long format: columns ``date``, ``ticker``, ``price``.

    Returns
    -------
    pandas.DataFrame
        One row per (date, ticker) with a recorded price; rows without a price are dropped.
    """
    with cbook.get_sample_data("Stocks.csv") as fh:
        wide = pd.read_csv(fh, comment="#", parse_dates=["Date"])
    long = wide.melt(id_vars="Date", var_name="ticker", value_name="price").dropna()
    long = long.rename(columns={"Date": "date"}).sort_values(["ticker", "date"])
    return long.reset_index(drop=True)


def decimal_year(dates: pd.Series) -> np.ndarray:
    """Dates as decimal years (e.g. 1990-07-02 -> 1990.5)."""
    d = pd.to_datetime(dates)
    return (d.dt.year + (d.dt.day_of_year - 1) / 365.25).to_numpy(dtype=np.float64)


def run(
    out: str | Path = "bayestensor-demo",
    *,
    tiny: bool = False,
    ticker: str = "^GSPC",
    seed: int = 0,
    show: bool = True,
) -> dict[str, dict[str, float]]:
    """Fit, evaluate and plot; return the held-out metrics of the GP and the baseline.

    Parameters
    ----------
    out : str or Path
        Folder for the figure (created if needed).
    tiny : bool
        Fewer optimisation steps (for tests).
    ticker : str
        Which series of ``Stocks.csv`` to model.
    seed : int
        Seed of the 80/20 split.
    show : bool
        Print the results table.

    Returns
    -------
    dict
        ``{"gp (<kernel>)": metrics, "linear interpolation": metrics}`` (``heldout_metrics``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # fail before fitting if it cannot be written
    df = load_stock_prices()
    if ticker not in set(df["ticker"]):
        raise ValueError(
            f"ticker {ticker!r} not in the data; choose from {sorted(set(df['ticker']))}"
        )
    s = df[df["ticker"] == ticker]
    x, y = decimal_year(s["date"]), np.log(s["price"].to_numpy())
    test = np.random.default_rng(seed).uniform(size=x.size) < 0.2
    t0 = time.perf_counter()
    fits = {k: fit_gp(x[~test], y[~test], kernel=k, steps=60 if tiny else 400) for k in KERNELS}
    elapsed = time.perf_counter() - t0
    best = max(fits, key=lambda k: fits[k].log_evidence)  # model choice by evidence, not test data
    fit = fits[best]
    mean, _, sd_y = fit.predict(x[test])
    lin = np.interp(x[test], x[~test], y[~test])
    resid_sd = np.std(np.diff(y[~test]))
    results = {
        f"gp ({best})": heldout_metrics(y[test], mean, sd_y),
        "linear interpolation": heldout_metrics(y[test], lin, np.full(lin.shape, resid_sd)),
    }
    grid = np.linspace(x.min() - 1, x.max() + 1, 2000)
    gm, _, gs = fit.predict(grid)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.fill_between(grid, gm - 1.96 * gs, gm + 1.96 * gs, color="C0", alpha=0.25, label="95 % band")
    ax.plot(grid, gm, color="C0", lw=1, label="GP mean")
    ax.plot(x[~test], y[~test], ".", ms=3, color="k", label="train")
    ax.plot(x[test], y[test], "x", ms=4, color="C3", label="held out")
    ax.set(xlabel="year", ylabel=f"log price ({ticker})", title=f"State-space GP, {best}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "stocks_gp.png", dpi=120)
    plt.close(fig)
    if show:
        n_train, n_test = int((~test).sum()), int(test.sum())
        print(f"{ticker}: {n_train} train / {n_test} held-out months; fits took {elapsed:.1f} s")
        for k, f in fits.items():
            print(
                f"  {k}: log evidence {f.log_evidence:8.1f}  lengthscale {f.lengthscale:7.3g} y  "
                f"signal sd {f.variance**0.5:.3g}  noise sd {f.noise**0.5:.3g}"
            )
        print(f"kernel chosen by evidence: {best}")
        print(f"{'method':<22}{'RMSE':>8}{'MAE':>8}{'NLL':>8}{'cover95':>9}")
        for name, m in results.items():
            print(f"{name:<22}{m['rmse']:8.4f}{m['mae']:8.4f}{m['nll']:8.3f}{m['coverage']:9.3f}")
        print(f"figure: {out / 'stocks_gp.png'}")
    return results
