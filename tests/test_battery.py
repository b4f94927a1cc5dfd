"""The benchmark battery's bookkeeping (benchmarks/battery.py), on tables written by hand."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_datasets import _script

BATTERY = Path(__file__).parents[1] / "benchmarks" / "battery.py"


@pytest.fixture(scope="module")
def battery():
    return _script(BATTERY, "battery_bookkeeping")


def _table(rmse: dict[str, list[float]], name: str = "set") -> pd.DataFrame:
    rows = [
        {"data set": name, "fold": fold, "method": method, "rmse": value}
        for method, values in rmse.items()
        for fold, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_cross_fold_best_picks_each_fold_s_rank_on_the_other_folds(battery):
    """R=2 has the smaller mean (2.0 against 2.33: the in-sample best), but fold 1's pick is
    made without fold 1, where R=1 looks better (1.0 against 2.0) and then scores 5.0 there:
    out of sample the picks score (2 + 5 + 2) / 3 = 3.0, worse than either rank's mean. The
    defaults' row is not a candidate."""
    table = _table(
        {
            "FunBaT Tucker R=1": [1.0, 5.0, 1.0],
            "FunBaT Tucker R=2": [2.0, 2.0, 2.0],
            "FunBaT defaults": [0.5, 0.5, 0.5],
        }
    )
    got = battery.cross_fold_best(table)
    assert got.loc["set", "picks"] == "R=2 R=1 R=2"
    assert got.loc["set", "rmse"] == pytest.approx(3.0)


def test_cross_fold_best_needs_two_folds_and_keeps_sets_apart(battery):
    one = _table({"FunBaT Tucker R=1": [1.0], "FunBaT Tucker R=3": [0.9]}, "one")
    two = _table({"FunBaT Tucker R=1": [1.0, 3.0], "FunBaT Tucker R=3": [2.0, 2.5]}, "two")
    got = battery.cross_fold_best(pd.concat([one, two], ignore_index=True))
    assert np.isnan(got.loc["one", "rmse"]) and got.loc["one", "picks"] == ""
    # fold 0 is scored by the rank best on fold 1 (R=3: 2.5 < 3.0), fold 1 by the rank best
    # on fold 0 (R=1: 1.0 < 2.0)
    assert got.loc["two", "picks"] == "R=3 R=1"
    assert got.loc["two", "rmse"] == pytest.approx((2.0 + 3.0) / 2)


def test_report_prints_the_out_of_sample_ratio(battery, capsys):
    table = _table(
        {
            "FunBaT Tucker R=1": [1.0, 5.0, 1.0],
            "FunBaT Tucker R=2": [2.0, 2.0, 2.0],
            "FunBaT defaults": [1.5, 1.5, 1.5],
        }
    )
    for column, value in [("nll", np.nan), ("coverage", np.nan), ("time", 1.0), ("chosen", "")]:
        table[column] = value
    battery.report(table, folds=3)
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("| set | 1.5")]
    # defaults 1.5 against the in-sample best R=2 (2.0): 0.750, on every fold (no spread);
    # against the picks (3.0): 0.500
    assert line == [
        "| set | 1.5000 | R=2 (2.0000) | 0.750 | 0.750 (× / ÷ 1.000) | R=2 R=1 R=2 (3.0000) "
        "| 0.500 | nan | – |"
    ]


def test_fold_ratio_is_the_geometric_mean_with_two_standard_errors(battery):
    """Per-fold ratios 1/2 and 2: geometric mean 1, log ratios ±ln 2 with standard error ln 2,
    so two standard errors are a factor e^(2 ln 2) = 4; one fold gives no spread (NaN)."""
    table = _table({"FunBaT defaults": [1.0, 2.0], "FunBaT Tucker R=1": [2.0, 1.0]})
    ratio, factor = battery.fold_ratio(table, "set", "FunBaT Tucker R=1")
    assert ratio == pytest.approx(1.0) and factor == pytest.approx(4.0)
    one = _table({"FunBaT defaults": [1.0], "FunBaT Tucker R=1": [2.0]})
    assert all(np.isnan(battery.fold_ratio(one, "set", "FunBaT Tucker R=1")))
    assert all(np.isnan(battery.fold_ratio(table, "set", "FunBaT Tucker R=9")))


def test_held_out_rows_of_a_category_never_trained_on_are_left_out(battery):
    """A held-out row whose subject has no training row is dropped (no factor to predict it
    from); a continuous coordinate outside the training values is kept."""
    train = pd.DataFrame({"subject": ["a", "a", "b"], "t": [0.0, 1.0, 0.0], "y": [1.0, 2, 3]})
    test = pd.DataFrame({"subject": ["a", "c", "b"], "t": [5.0, 0.0, 1.0], "y": [4.0, 5, 6]})
    kept = battery._seen(test, train, ["subject", "t"])
    assert kept["subject"].tolist() == ["a", "b"] and kept["t"].tolist() == [5.0, 1.0]
