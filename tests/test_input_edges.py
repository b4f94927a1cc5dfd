"""Edge cases of the input: numbers given to the CLI as times, categorical labels that mix bool
with numbers, a 0-d xarray array, strings for a time mode at prediction, and ``time_unit``
without a time coordinate. Each is refused with a ValueError (or one error line) that names
the column or argument, instead of a silent misreading or an unclear error."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import bayestensor as bt
from bayestensor.cli import main, read_csv_exact
from bayestensor.data import CATEGORICAL, CONTINUOUS, encode, encode_new

FIT = {"rank": 2, "progress": False, "max_sweeps": 3}


def _grid(n1: int = 8, n2: int = 3) -> pd.DataFrame:
    """y = sin(3x) · (1 + c) on an x (float) × c (label) grid, with a little noise."""
    rng = np.random.default_rng(0)
    x, c = np.meshgrid(np.linspace(0.0, 1.0, n1), np.arange(n2), indexing="ij")
    y = np.sin(3 * x) * (1 + c) + 0.1 * rng.standard_normal(x.shape)
    labels = np.array([f"c{i}" for i in range(n2)])
    return pd.DataFrame({"x": x.ravel(), "c": labels[c.ravel()], "y": y.ravel()})


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"bayestensor {command}: error:")
    return err[0]


# ------------------------------------------------------------------ CLI: numbers are not times


@pytest.mark.parametrize("column", ["float", "int"])
def test_cli_refuses_a_numeric_column_as_time(tmp_path, capsys, column):
    df = _grid()
    if column == "int":  # e.g. years: not nanoseconds since 1970 either
        df["x"] = 2000 + np.round(df["x"] * 7).astype(np.int64)
    df.to_csv(tmp_path / "g.csv", index=False)
    args = ["fit", str(tmp_path / "g.csv"), "--coords", "x:time", "c", "--value", "y"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "z.bt")]) == 1
    line = _one_error_line(capsys, "fit")
    assert "column 'x' does not hold dates/times: it holds numbers" in line
    assert not (tmp_path / "z.bt").exists()


def test_cli_time_columns_of_text_still_fit_and_numbers_do_not_predict(tmp_path, capsys):
    df = _grid()
    days = pd.to_timedelta(np.round(df["x"] * 7).astype(np.int64), unit="D")
    df["when"] = (pd.Timestamp("2021-03-01") + days).astype(str)  # text, as in any CSV file
    df.drop(columns="x").to_csv(tmp_path / "g.csv", index=False)
    args = ["fit", str(tmp_path / "g.csv"), "--coords", "when:time", "c", "--value", "y"]
    args += ["--rank", "2", "--max-sweeps", "3", "--quiet", "--out", str(tmp_path / "w.bt")]
    assert main(args) == 0
    mode = bt.load(tmp_path / "w.bt").modes[0]
    assert mode.time.kind == "datetime" and mode.values.size == 8
    capsys.readouterr()
    pd.DataFrame({"when": [1.5], "c": ["c0"]}).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(tmp_path / "w.bt"), str(tmp_path / "new.csv")]) == 1
    line = _one_error_line(capsys, "predict")
    assert "column 'when' does not hold dates/times: it holds numbers" in line


def test_cli_reads_durations_at_fit_as_at_prediction(tmp_path, capsys):
    # text such as "3 days" was refused at fit and "2h" read as 2 a.m. of the year 1
    df = _grid()
    hours = np.round(df["x"] * 7).astype(np.int64)
    df["after"] = [f"{h}h" for h in hours]  # "0h" ... "7h"
    df.drop(columns="x").to_csv(tmp_path / "g.csv", index=False)
    args = ["fit", str(tmp_path / "g.csv"), "--coords", "after:time", "c", "--value", "y"]
    args += ["--rank", "2", "--max-sweeps", "3", "--quiet", "--out", str(tmp_path / "d.bt")]
    assert main(args) == 0
    res = bt.load(tmp_path / "d.bt")
    mode = res.modes[0]
    assert mode.time.kind == "timedelta" and mode.values.size == 8
    capsys.readouterr()
    new = pd.DataFrame({"after": ["0 days 03:00:00", "5h"], "c": ["c0", "c1"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(tmp_path / "d.bt"), str(tmp_path / "new.csv")]) == 0
    pred = read_csv_exact(io.StringIO(capsys.readouterr().out))
    ref = res.predict(new.assign(after=pd.to_timedelta(new["after"])))
    np.testing.assert_array_equal(pred["mean"].to_numpy(), ref["mean"].to_numpy())


def test_cli_refuses_times_of_day_without_a_date(tmp_path, capsys):
    # pandas puts today's date on "07:30": the same file fitted another day moved every row
    df = _grid()
    minutes = 420 + np.round(df["x"] * 7).astype(np.int64) * 15
    df["at"] = [f"{m // 60:02d}:{m % 60:02d}" for m in minutes]
    df.drop(columns="x").to_csv(tmp_path / "g.csv", index=False)
    args = ["fit", str(tmp_path / "g.csv"), "--coords", "at:time", "c", "--value", "y"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "t.bt")]) == 1
    line = _one_error_line(capsys, "fit")
    assert "column 'at' holds times of day without a date" in line
    assert not (tmp_path / "t.bt").exists()


# ------------------------------------------------------- categorical labels: bool with numbers


def _labels(df: pd.DataFrame, first, second) -> pd.DataFrame:
    """``df`` with the labels c0 and c1 of column c replaced by ``first`` and ``second`` (an
    object column; a dict would merge the keys 1 and True)."""
    labels = np.empty(len(df), dtype=object)
    labels[:] = [first if c == "c0" else second for c in df["c"]]
    return df.assign(c=labels)


def test_fit_refuses_categorical_labels_that_mix_bool_with_numbers():
    df = _grid()
    df = df[df["c"].isin(["c0", "c1"])].reset_index(drop=True)
    mixed = _labels(df, 1, True)  # pandas hashes True as 1: one level before the fix
    coords = {"x": CONTINUOUS, "c": CATEGORICAL}
    with pytest.raises(ValueError, match=r"column 'c' has labels that mix bool with numbers"):
        bt.fit(mixed, coords=coords, value="y", **FIT)
    with pytest.raises(ValueError, match=r"column 'c' .*convert the column to str"):
        encode(_labels(df, np.float64(0.0), np.bool_(False)), coords)
    with pytest.raises(ValueError, match="mix bool with numbers"):  # Poisson Tucker's levels
        counts = mixed.assign(y=1)
        bt.fit(counts, coords=["c", "x"], value="y", model="poisson-tucker", method="vi")
    # bools alone, and equal numbers of different types (one label), are categories as before
    assert list(encode(_labels(df, False, True), coords).modes[1].values) == [False, True]
    assert list(encode(_labels(df, 1, 1.0), coords).modes[1].values) == [1]
    as_text = encode(mixed.assign(c=mixed["c"].astype(str)), coords)
    assert list(as_text.modes[1].values) == ["1", "True"]


# ----------------------------------------------------------------------- a 0-d xarray array


def test_fit_refuses_a_0d_array():
    xr = pytest.importorskip("xarray")
    with pytest.raises(ValueError, match="'v' is a 0-d array.*at least one dimension"):
        bt.fit(xr.DataArray(1.0, name="v"), progress=False)
    with pytest.raises(ValueError, match="'w' is a 0-d array.*at least one dimension"):
        bt.fit(xr.Dataset({"w": 2.0}), progress=False)


# ------------------------------------------------------------ strings for a time mode at predict


def test_predict_refuses_strings_for_a_datetime_mode():
    df = _grid()
    df["t"] = pd.Timestamp("2021-01-01") + pd.to_timedelta(df["x"] * 10, unit="D")
    result = bt.fit(df, coords=["t", "c"], value="y", local=None, **FIT)
    message = r"column 't' is a datetime64\[ns\] time in the model but has dtype (str|object)"
    with pytest.raises(ValueError, match=message):
        result.predict(pd.DataFrame({"t": ["2021-01-03"], "c": ["c0"]}))
    # the same as a given Timestamp once parsed by the caller
    parsed = pd.DataFrame({"t": pd.to_datetime(["2021-01-03"]), "c": ["c0"]})
    assert np.isfinite(result.predict(parsed)["mean"]).all()


@pytest.mark.parametrize("dtype", ["str", "object", "category"])
@pytest.mark.parametrize("kind", ["datetime", "timedelta"])
def test_new_rows_of_strings_for_a_time_mode_name_the_column(dtype, kind):
    times = pd.to_timedelta([0, 1, 2], unit="D")
    if kind == "datetime":
        times = pd.Timestamp("2021-01-01") + times
    modes = encode(pd.DataFrame({"t": times, "y": 1.0}), ["t"], "y").modes
    new = pd.DataFrame({"t": pd.Series([str(times[1])], dtype=dtype)})
    with pytest.raises(ValueError, match=rf"column 't' is a .*{kind}64.* time in the model but"):
        encode_new(new, modes)


# ---------------------------------------------------------- time_unit without a time coordinate


def test_time_unit_without_a_time_coordinate_says_so_plainly():
    df = _grid()
    message = r"^time_unit is given but no coordinate is a continuous datetime or timedelta column"
    with pytest.raises(ValueError, match=message):
        bt.fit(df, coords=["x", "c"], value="y", time_unit="h", **FIT)
    with pytest.raises(ValueError, match=message):
        encode(df, ["x", "c"], "y", time_unit={"x": "h"})


def test_xarray_factors_keep_a_continuous_mode_numeric_beside_a_categorical_one():
    """The long factor table mixes a float mode's coordinates with a label mode's (object
    dtype); the Dataset gives each mode its own dtype (it gave object for x, so ``.sel`` by
    number and plotting failed)."""
    df = _grid()
    res = bt.fit(df, coords=["x", "c"], value="y", **FIT)
    ds = res.factors(as_xarray=True)
    assert ds["x"].dtype == np.float64 and ds["c"].dtype == object
    np.testing.assert_array_equal(ds["x"].to_numpy(), np.unique(df["x"]))
    assert float(ds["x_mean"].sel(x=1.0, x_component=0)) == pytest.approx(
        float(res.factors().query("mode == 'x' and component == 0")["mean"].iloc[-1])
    )


# ------------------------------------------- a kernel where no coordinate is continuous


def test_one_kernel_for_data_without_a_continuous_coordinate_is_refused(tmp_path, capsys):
    """It was silently ignored (and the CLI passed matern32 even without --kernel, so a fit of
    categorical coordinates from the CLI could not have told a given kernel from none)."""
    df = _grid(4, 3)
    coords = {"x": "categorical", "c": "categorical"}
    message = r"kernel='periodic' was given, but none of the coordinates \['x', 'c'\]"
    with pytest.raises(ValueError, match=message):
        bt.fit(df, coords=coords, value="y", kernel="periodic", **FIT)
    with pytest.raises(ValueError, match=message):  # rows in parts: refused before the sweeps
        bt.fit([df.iloc[:6], df.iloc[6:]], coords=coords, value="y", kernel="periodic", **FIT)
    res = bt.fit(df, coords=coords, value="y", **FIT)  # no kernel: the categorical fit
    assert res.coords == coords
    df.to_csv(tmp_path / "g.csv", index=False)
    args = ["fit", str(tmp_path / "g.csv"), "--coords", "x:categorical", "c", "--value", "y"]
    out = ["--quiet", "--rank", "2", "--out", str(tmp_path / "z.bt")]
    assert main([*args, "--kernel", "matern12", *out]) == 1
    assert "kernel='matern12' was given, but none of the coordinates" in _one_error_line(
        capsys, "fit"
    )
    assert main([*args, *out]) == 0
