"""The battery's report (``benchmarks/battery.py``): the markdown tables of held-out RMSE, NLL,
coverage and fit time, the defaults against the best fixed rank, the rank picked on the other
folds (:func:`cross_fold_best`) and the random forest."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _num(x: float) -> str:
    """An RMSE for the tables: four decimals, or four significant digits below 0.01."""
    return f"{x:.4f}" if not abs(x) < 0.01 else f"{x:.4g}"


#: how the table names the FunBaT rows' ``local=`` when ``--local`` is not given
DEFAULT_LOCAL = "bt.fit's default local="


def _by_fold(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Data set ``name``'s RMSEs as a fold × method table."""
    rows = table[table["data set"] == name]
    return rows.pivot_table(index="fold", columns="method", values="rmse", aggfunc="mean")


def cross_fold_best(table: pd.DataFrame) -> pd.DataFrame:
    """The fixed rank a user would have picked from other splits, judged on the split it
    was not picked on: for each data set and fold, the ``FunBaT Tucker`` row with the smallest
    mean RMSE over the *other* folds, and its RMSE on this fold.

    "The best fixed rank" of the report is chosen on the very folds it is scored on, so with
    few folds and a noisy RMSE it flatters the fixed ranks (the winner's curse); this is the
    same choice made out of sample. Returns one row per data set: ``rmse`` (the mean over
    folds of the picked rank's RMSE; NaN with fewer than two folds) and ``picks`` (the picked
    ranks, fold by fold).
    """
    out = {}
    fixed = table[table["method"].str.startswith("FunBaT Tucker")]
    for name in fixed["data set"].unique():
        by = _by_fold(fixed, name).dropna()
        if len(by) < 2:
            out[name] = {"rmse": np.nan, "picks": ""}
            continue
        scores, picks = [], []
        for fold in by.index:
            pick = by.drop(index=fold).mean().idxmin()
            scores.append(by.loc[fold, pick])
            picks.append(pick.removeprefix("FunBaT Tucker "))
        out[name] = {"rmse": float(np.mean(scores)), "picks": " ".join(picks)}
    return pd.DataFrame.from_dict(out, orient="index", columns=["rmse", "picks"])


def fold_ratio(table: pd.DataFrame, name: str, method: str) -> tuple[float, float]:
    """``(ratio, factor)``: the geometric mean over folds of the defaults' RMSE over
    ``method``'s on data set ``name``, and the factor of two standard errors of that mean
    (the ratio is resolved to within ``ratio / factor … ratio × factor``; NaN with fewer than
    two folds). Fold by fold, so that a few splits where every fit does badly do not decide
    it; where ``factor`` exceeds the gap, the folds do not tell the two apart."""
    by = _by_fold(table, name)
    if "FunBaT defaults" not in by or method not in by:
        return np.nan, np.nan
    logs = np.log(by["FunBaT defaults"] / by[method]).dropna().to_numpy()
    if len(logs) < 2:
        return np.nan, np.nan
    return float(np.exp(logs.mean())), float(np.exp(2 * logs.std(ddof=1) / np.sqrt(len(logs))))


def report(table: pd.DataFrame, folds: int, local: str = DEFAULT_LOCAL) -> None:
    """Print the battery's markdown table: means over folds, and the default's verdicts;
    ``local`` says which ``local=`` the FunBaT rows were fitted with."""
    summary = (
        table.groupby(["data set", "method"], sort=False)
        .agg(
            rmse=("rmse", "mean"),
            nll=("nll", "mean"),
            coverage=("coverage", "mean"),
            time=("time", "mean"),
            time_max=("time", "max"),
            chosen=("chosen", "first"),
        )
        .reset_index()
    )
    print(f"\nHeld-out means over {folds} fold(s); FunBaT rows with {local}\n")
    print("| data set | method | RMSE | NLL | 95 % cover | fit time (max) | ranks, kernels |")
    print("|---|---|---:|---:|---:|---:|---|")
    for _, r in summary.iterrows():
        nll = "–" if np.isnan(r["nll"]) else f"{r['nll']:.3f}"
        cover = "–" if np.isnan(r["coverage"]) else f"{r['coverage']:.3f}"
        print(
            f"| {r['data set']} | {r['method']} | {_num(r['rmse'])} | {nll} | {cover} | "
            f"{r['time']:.1f} s ({r['time_max']:.1f}) | {r['chosen']} |"
        )
    print(
        "\n| data set | defaults RMSE | best fixed rank | defaults / best fixed | "
        "per fold (× / ÷ 2 SE) | rank picked on the other folds | defaults / picked | "
        "random forest | defaults beat RF |"
    )
    print("|---|---:|---|---:|---:|---|---:|---:|---|")
    crossed = cross_fold_best(table)
    for name, group in summary.groupby("data set", sort=False):
        by = group.set_index("method")["rmse"]
        fixed = by[[m for m in by.index if m.startswith("FunBaT Tucker")]]
        default = by.get("FunBaT defaults", np.nan)
        rf = by.get("random forest", np.nan)
        best = fixed.idxmin() if len(fixed) else "–"
        ratio = default / fixed.min() if len(fixed) else np.nan
        beat = "–" if np.isnan(rf) else ("yes" if default < rf else "**no**")
        cross = crossed.loc[name] if name in crossed.index else {"rmse": np.nan, "picks": ""}
        picked = "–" if np.isnan(cross["rmse"]) else f"{cross['picks']} ({_num(cross['rmse'])})"
        geo, factor = fold_ratio(table, name, best) if len(fixed) else (np.nan, np.nan)
        per_fold = "–" if np.isnan(factor) else f"{geo:.3f} (× / ÷ {factor:.3f})"
        print(
            f"| {name} | {_num(default)} | {best.removeprefix('FunBaT Tucker ')} "
            f"({_num(fixed.min())}) | {ratio:.3f} | {per_fold} | {picked} | "
            f"{default / cross['rmse']:.3f} | {_num(rf)} | {beat} |"
        )
