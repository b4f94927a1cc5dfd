"""``bayestensor demo``: FunBaT-Tucker on the bundled NASA ozone data, offline.

The ozone data (:func:`bayestensor.datasets.load`, 24 latitudes × 24 longitudes × 72 months,
all three modes continuous) are split at random into 80 % training and 20 % held-out cells. A
functional Tucker model with Matérn-3/2 GP factors is fitted through :func:`bayestensor.fit`;
held-out RMSE, negative log predictive density and 95 % interval coverage are printed beside a
simple baseline (additive location + month means) and, when scikit-learn is installed, the
strongest baseline a user would try first — a random forest on the coordinates (200 trees,
minimum leaf size 2) — and four figures are written: the learned
factor trajectories, observed vs predicted held-out values, and the predicted ozone map of one
month next to the observed one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayestensor import datasets, plotting
from bayestensor.metrics import heldout_metrics

COORDS = ["lat", "lon", "month"]
VALUE = "ozone"


def additive_baseline(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    value: str,
    location: tuple[str, ...],
    time: str,
    n_iter: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive location + time means ``y ≈ a[location] + b[time]``, a reference predictor.

    ``a`` and ``b`` are least-squares fits on the training rows by backfitting (alternate group
    means of the partial residuals, which converges for any pattern of missing cells); the
    predictive sd is the training residual sd. A held-out location (time) with no training row
    gets the average ``a`` (zero ``b``).

    Parameters
    ----------
    train, test : pandas.DataFrame
        Rows with the ``location`` columns, the ``time`` column and (train) the value.
    value : str
        The value column.
    location : tuple of str
        Columns that together name a location (a station, or latitude and longitude).
    time : str
        Column of the time effect.
    n_iter : int
        Backfitting iterations.

    Returns
    -------
    mean, sd : numpy.ndarray of shape (len(test),)
    """
    y = train[value].to_numpy(np.float64)
    loc, loc_values = pd.factorize(pd.MultiIndex.from_frame(train[list(location)]))
    t, t_values = pd.factorize(train[time])
    a, b = np.zeros(len(loc_values)), np.zeros(len(t_values))
    for _ in range(n_iter):
        a = np.bincount(loc, y - b[t]) / np.bincount(loc)
        b = np.bincount(t, y - a[loc]) / np.bincount(t)
    resid_sd = np.std(y - a[loc] - b[t])
    new_loc = loc_values.get_indexer(pd.MultiIndex.from_frame(test[list(location)]))
    new_t = pd.Index(t_values).get_indexer(test[time])
    mean = np.where(new_loc >= 0, a[new_loc], a.mean()) + np.where(new_t >= 0, b[new_t], 0.0)
    return mean, np.full(mean.shape, resid_sd)


def forest_baseline(
    train: pd.DataFrame, test: pd.DataFrame, *, value: str, coords: list[str], seed: int = 0
) -> np.ndarray | None:
    """Held-out means of ``RandomForestRegressor(200, min_samples_leaf=2)`` on the coordinates.

    The fair baseline users reach for first. Returns ``None`` when scikit-learn is not installed
    (it is optional: ``pip install scikit-learn``).
    """
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        return None
    forest = RandomForestRegressor(200, min_samples_leaf=2, n_jobs=-1, random_state=seed)
    forest.fit(train[coords].to_numpy(np.float64), train[value].to_numpy(np.float64))
    return forest.predict(test[coords].to_numpy(np.float64))


def split(df: pd.DataFrame, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask of the held-out rows: each row independently with probability ``fraction``."""
    return np.random.default_rng(seed).uniform(size=len(df)) < fraction


def run(
    out: str | Path = "bayestensor-demo",
    *,
    tiny: bool = False,
    rank: int = 3,
    max_sweeps: int | None = None,
    seed: int = 0,
    show: bool = True,
) -> dict[str, dict[str, float]]:
    """Fit, evaluate and plot; return the held-out metrics of FunBaT and the baseline.

    Parameters
    ----------
    out : str or Path
        Folder for the figures (created if needed, before anything is fitted; a ValueError
        if it is a file).
    tiny : bool
        A quick run on a subset (every third latitude and longitude, the first 24 months).
    rank : int
        Rank of every mode of the Tucker core.
    max_sweeps : int, optional
        Cap on the sweeps (default 40, or 25 with ``tiny``).
    seed : int
        Seed of the 80/20 split and of the initialisation.
    show : bool
        Print the results table, the fit summary and the figure folder.

    Returns
    -------
    dict
        ``{"FunBaT-Tucker": metrics, "location + month means": metrics}`` and, when
        scikit-learn is installed, ``"random forest": metrics``
        (:func:`bayestensor.metrics.heldout_metrics`: ``rmse``, ``mae``, ``nll``, ``coverage``;
        the forest gives no predictive distribution, so its ``nll`` and ``coverage`` are NaN).
    """
    from bayestensor.api import fit

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file; give a folder for the figures")
    out.mkdir(parents=True, exist_ok=True)  # fail before fitting if it cannot be written
    df = datasets.load("ozone")
    if tiny:
        lats, lons = np.unique(df["lat"])[::3], np.unique(df["lon"])[::3]
        df = df[df["lat"].isin(lats) & df["lon"].isin(lons) & (df["month"] <= 24)]
        df = df.reset_index(drop=True)
    sweeps = max_sweeps if max_sweeps is not None else (25 if tiny else 40)
    test = split(df, 0.2, seed)
    train, held = df[~test], df[test]
    t0 = time.perf_counter()
    res = fit(
        train, coords=COORDS, value=VALUE, rank=rank, max_sweeps=sweeps, seed=seed, progress=show
    )
    elapsed = time.perf_counter() - t0
    pred = res.predict(held)
    base_mean, base_sd = additive_baseline(
        train, held, value=VALUE, location=("lat", "lon"), time="month"
    )
    y = held[VALUE].to_numpy(np.float64)
    results = {
        "FunBaT-Tucker": heldout_metrics(y, pred["mean"], pred["sd"], nu=pred.get("nu")),
        "location + month means": heldout_metrics(y, base_mean, base_sd),
    }
    results["FunBaT-Tucker"]["fit_seconds"] = elapsed
    forest = forest_baseline(train, held, value=VALUE, coords=COORDS, seed=seed)
    if forest is not None:
        err = y - forest
        results["random forest"] = {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "nll": float("nan"),
            "coverage": float("nan"),
        }

    month = int(np.median(df["month"]))
    figures = {
        "ozone_factors.png": plotting.plot_factors(res.factors(), kinds=res.coords),
        "ozone_heldout.png": plotting.plot_observed_vs_predicted(
            y, pred["mean"], pred["lower"], pred["upper"], label="ozone (DU)"
        ),
        "ozone_map.png": plotting.plot_prediction_map(
            res, x="lon", y="lat", fixed={"month": month}, observed=train[train["month"] == month]
        ),
    }
    observed = df[df["month"] == month].pivot(index="lat", columns="lon", values=VALUE)
    figures["ozone_observed.png"] = plotting.plot_heatmap(
        observed.to_numpy()[::-1],
        row_labels=observed.index[::-1],
        col_labels=observed.columns,
        title=f"observed ozone (DU), month {month}",
        xlabel="lon",
        ylabel="lat",
    )
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
    if show:
        n_train, n_test = len(train), len(held)
        print(
            f"ozone {df['lat'].nunique()} lat x {df['lon'].nunique()} lon x "
            f"{df['month'].nunique()} months: {n_train} training / {n_test} held-out cells"
        )
        print(res)
        print(f"fit took {elapsed:.1f} s")
        print(f"{'held-out cells':<24}{'RMSE':>8}{'MAE':>8}{'NLL':>8}{'cover95':>9}")
        for name, m in results.items():
            nll, cover = (
                ("–", "–") if np.isnan(m["nll"]) else (f"{m['nll']:.3f}", f"{m['coverage']:.3f}")
            )
            print(f"{name:<24}{m['rmse']:8.3f}{m['mae']:8.3f}{nll:>8}{cover:>9}")
        if "random forest" not in results:
            print("(pip install scikit-learn to also see a random forest on the same split)")
        print(f"figures written to {out.resolve()}")
    return results
