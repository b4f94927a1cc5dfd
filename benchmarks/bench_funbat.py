"""FunBaT on the reference continuous-indexed tensors, beside a random forest and the paper's code.

For every data set in ``../shared/data/funbat`` (fold 0, or all folds with ``--folds 5``) this fits
our Tucker and CP models at the requested ranks and a scikit-learn
``RandomForestRegressor(200, min_samples_leaf=2)`` in the same run, and prints test RMSE, MAE,
NLL, 95 % coverage and fit time as a markdown table, with the reference figures quoted from
``../shared/data/README.md`` (measured on the same kind of 2-core machine).

Usage: ``python benchmarks/bench_funbat.py [--folds 5] [--datasets beijing_pm25 us_temp]
[--ranks 2 3 5] [--models tucker cp] [--kernel matern32]``

``--battery [options]`` runs the benchmark battery instead (``benchmarks/battery.py``: FunBaT's
defaults beside a random forest and gradient boosting on the shared and bundled data sets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "funbat"

COLUMNS = {
    "beijing_pm25": (["temperature", "pressure", "day"], "pm25"),
    "beijing_pm10": (["temperature", "pressure", "day"], "pm10"),
    "beijing_so2": (["temperature", "pressure", "day"], "so2"),
    "us_temp": (["latitude_bin", "longitude_bin", "year_bin"], "temperature_f"),
    "synthetic_r1": (["x", "y"], "value"),
}

#: Reference figures from ../shared/data/README.md (fold 0, test split): (method, RMSE, MAE, time).
REFERENCE = {
    "beijing_pm25": [
        ("FunBaT reference code, Tucker R=3, Matérn-1/2", 0.3495, 0.2237, "218 s"),
        ("exact GP, product Matérn-3/2 (scikit-learn)", 0.2628, 0.1567, "868 s"),
        ("random forest (README)", 0.3703, 0.2253, "1.8 s"),
    ],
    "beijing_pm10": [("random forest (README)", 0.4155, 0.2705, "1.7 s")],
    "beijing_so2": [("random forest (README)", 0.3665, 0.2218, "1.7 s")],
    "us_temp": [
        ("FunBaT reference code, CP R=3", 1.184, 0.680, "99 s"),
        ("random forest (README)", 1.282, 0.597, "3.1 s"),
    ],
    "synthetic_r1": [("FunBaT reference code, CP R=1, Matérn-3/2", 0.0042, 0.0025, "26 s")],
}


def _row(dataset, fold, method, metrics, seconds, sweeps=np.nan):
    return {
        "data set": dataset,
        "fold": fold,
        "method": method,
        **metrics,
        "fit time (s)": seconds,
        "sweeps": sweeps,
    }


def main(args: list[str] | None = None) -> pd.DataFrame:
    args = sys.argv[1:] if args is None else list(args)
    if "--battery" in args:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "battery", Path(__file__).with_name("battery.py")
        )
        battery = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(battery)
        return battery.main([a for a in args if a != "--battery"])
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--folds", type=int, default=1)
    p.add_argument("--datasets", nargs="+", default=list(COLUMNS))
    p.add_argument(
        "--ranks",
        nargs="+",
        default=["2", "3", "5"],
        help="ranks to try: an int, or comma-separated per mode (e.g. 3,3,8)",
    )
    p.add_argument("--models", nargs="+", default=["tucker", "cp"])
    p.add_argument("--kernel", default="matern32")
    p.add_argument("--max-sweeps", type=int, default=100)
    p.add_argument("--no-rf", action="store_true", help="skip the random forest")
    opts = p.parse_args(args)

    import bayestensor as bt
    from bayestensor.metrics import heldout_metrics

    if not opts.data_dir.is_dir():
        print(f"reference data not found at {opts.data_dir}; nothing to benchmark")
        return pd.DataFrame()
    rows = []
    for name in opts.datasets:
        coords, value = COLUMNS[name]
        for fold in range(opts.folds):
            path = opts.data_dir / name / f"fold{fold}.csv"
            if not path.is_file():
                continue
            df = pd.read_csv(path)
            train, test = df[df["split"] == "train"], df[df["split"] == "test"]
            for model in opts.models:
                for rank_text in opts.ranks:
                    rank = tuple(int(r) for r in rank_text.split(","))
                    rank = rank[0] if len(rank) == 1 else rank
                    if model == "cp" and not np.isscalar(rank):
                        continue
                    if name == "synthetic_r1" and rank_text != opts.ranks[0]:
                        continue
                    t = time.perf_counter()
                    res = bt.fit(
                        train,
                        coords=coords,
                        value=value,
                        model=model,
                        rank=rank,
                        kernel=opts.kernel,
                        max_sweeps=opts.max_sweeps,
                        progress=False,
                    )
                    seconds = time.perf_counter() - t
                    pred = res.predict(test)
                    m = heldout_metrics(test[value], pred["mean"], pred["sd"], nu=pred.get("nu"))
                    label = f"ours {model} R={rank_text}"
                    rows.append(_row(name, fold, label, m, seconds, len(res.history)))
                    print(
                        f"{name} fold {fold} {model} R={rank_text}: RMSE {m['rmse']:.4f} "
                        f"({seconds:.1f} s, {len(res.history)} sweeps)",
                        file=sys.stderr,
                    )
            if not opts.no_rf:
                from sklearn.ensemble import RandomForestRegressor

                t = time.perf_counter()
                rf = RandomForestRegressor(200, min_samples_leaf=2, n_jobs=2, random_state=0)
                rf.fit(train[coords].to_numpy(), train[value].to_numpy())
                seconds = time.perf_counter() - t
                mean = rf.predict(test[coords].to_numpy())
                err = test[value].to_numpy() - mean
                m = {
                    "rmse": float(np.sqrt(np.mean(err**2))),
                    "mae": float(np.mean(np.abs(err))),
                    "nll": np.nan,
                    "coverage": np.nan,
                }
                rows.append(_row(name, fold, "random forest (this run)", m, seconds))
    table = pd.DataFrame(rows)
    if table.empty:
        print("no data sets found")
        return table
    summary = (
        table.groupby(["data set", "method"], sort=False)
        .agg(
            rmse=("rmse", "mean"),
            mae=("mae", "mean"),
            nll=("nll", "mean"),
            coverage=("coverage", "mean"),
            time=("fit time (s)", "mean"),
            time_max=("fit time (s)", "max"),
            sweeps=("sweeps", "mean"),
            folds=("fold", "count"),
        )
        .reset_index()
    )
    print(f"\nTest-split means over {opts.folds} fold(s); kernel {opts.kernel}\n")
    print("| data set | method | RMSE | MAE | NLL | 95 % cover | fit time (max) | sweeps |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for _, r in summary.iterrows():
        sweeps = "–" if np.isnan(r["sweeps"]) else f"{r['sweeps']:.0f}"
        print(
            f"| {r['data set']} | {r['method']} | {r['rmse']:.4f} | {r['mae']:.4f} | "
            f"{r['nll']:.3f} | {r['coverage']:.3f} | {r['time']:.1f} s ({r['time_max']:.1f}) "
            f"| {sweeps} |"
        )
        last_of_set = r["data set"] != summary["data set"].shift(-1).loc[_]
        if last_of_set:
            for method, rmse, mae, t in REFERENCE.get(r["data set"], []):
                print(
                    f"| {r['data set']} | {method} (reference, fold 0) | {rmse:.4f} | {mae:.4f} |"
                    f" – | – | {t} | – |"
                )
    return table


if __name__ == "__main__":
    main()
