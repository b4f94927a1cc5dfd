"""Datetime and timedelta coordinates: continuous by default, converted to float time in a
stated unit, the scale saved with the model, new times accepted at prediction, times given back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.data import decode, encode, encode_new, parse_coords
from bayestensor.modes import TIME_UNITS, Mode, TimeScale

ROOT = Path(__file__).parents[1]


def _weather(days: float = 4.0) -> pd.DataFrame:
    """The bundled hourly weather (3 airports) over a few days, with real timestamps."""
    df = bt.datasets.load("weather")
    df = df[df["time"] < days].reset_index(drop=True)
    # the data set's time is days since 2013-01-01 00:00 EST; hours are whole
    hours = np.rint(df["time"].to_numpy() * 24).astype(np.int64)
    start = pd.Timestamp("2013-01-01 00:00", tz="America/New_York")
    df["when"] = start + pd.to_timedelta(hours, unit="h")
    df["hours"] = hours.astype(np.float64)
    return df


# ------------------------------------------------------------------- kinds and conversion


def test_time_columns_are_continuous_by_default():
    df = pd.DataFrame(
        {
            "naive": pd.to_datetime(["2020-01-01", "2020-02-01"]),
            "aware": pd.to_datetime(["2020-01-01", "2020-02-01"]).tz_localize("UTC"),
            "span": pd.to_timedelta([1, 2], unit="h"),
            "y": [1.0, 2.0],
        }
    )
    assert parse_coords(df, ["naive", "aware", "span"], "y") == dict.fromkeys(
        ["naive", "aware", "span"], "continuous"
    )
    # declared continuous is accepted; declared categorical keeps one level per time
    assert parse_coords(df, {"naive": "continuous"}, "y") == {"naive": "continuous"}
    enc = encode(df, {"naive": "categorical"}, "y")
    assert enc.modes[0].kind == "categorical" and enc.modes[0].time is None


@pytest.mark.parametrize("resolution", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("unit", ["D", "h", "s"])
def test_datetimes_become_time_since_the_earliest_in_the_unit(resolution, unit, rng):
    ticks = np.sort(rng.choice(10**6, size=40, replace=False)) * 37  # seconds, uneven
    times = pd.Series(pd.to_datetime(1_600_000_000 + ticks, unit="s")).astype(
        f"datetime64[{resolution}]"
    )
    df = pd.DataFrame({"t": times.sample(frac=1, random_state=0).to_numpy(), "y": 0.0})
    enc = encode(df, ["t"], "y", time_unit=unit)
    mode = enc.modes[0]
    # independent reference: whole seconds since the earliest time, divided by the unit
    expected = (ticks - ticks.min()) / (TIME_UNITS[unit] / 10**9)
    np.testing.assert_allclose(mode.values, expected, rtol=1e-15, atol=0)
    assert mode.time == TimeScale("datetime", unit, resolution, mode.time.origin, None, "s")
    # decode gives the same times back, exactly, in the column's own type
    pd.testing.assert_series_equal(decode(enc)["t"], df["t"])


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_tz_aware_round_trip_and_any_zone_at_prediction(tz):
    local = pd.date_range("2021-03-13", periods=72, freq="h", tz=tz)  # spans a DST change
    df = pd.DataFrame({"t": local, "y": 1.0})
    enc = encode(df, ["t"], "y", time_unit="h")
    out = decode(enc)["t"]
    assert str(out.dtype.tz) == tz
    pd.testing.assert_series_equal(out, df["t"])
    # hours since the first instant, whatever the wall clock did
    np.testing.assert_array_equal(enc.modes[0].values, np.arange(72.0))
    # the same instants written in another zone land on the same coordinates
    other = pd.DataFrame({"t": local.tz_convert("Pacific/Auckland")})
    new = encode_new(other, enc.modes)
    np.testing.assert_array_equal(new.x[0], np.arange(72.0))
    np.testing.assert_array_equal(new.index[:, 0], np.arange(72))


def test_timedelta_coordinates():
    df = pd.DataFrame({"lag": pd.to_timedelta([90, 30, 60, 30], unit="min"), "y": 1.0})
    enc = encode(df, ["lag"], "y", time_unit="h")
    np.testing.assert_array_equal(enc.modes[0].values, [0.5, 1.0, 1.5])
    assert enc.modes[0].time.kind == "timedelta" and enc.modes[0].time.origin == 0
    pd.testing.assert_series_equal(decode(enc)["lag"], df["lag"])
    new = encode_new(pd.DataFrame({"lag": pd.to_timedelta([2], unit="D")}), enc.modes)
    np.testing.assert_array_equal(new.x[0], [48.0])


def test_new_times_outside_the_range_and_at_another_resolution():
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-02", "2020-01-04"]), "y": 1.0})
    modes = encode(df, ["t"], "y").modes
    new = pd.DataFrame(
        {
            "t": pd.to_datetime(
                ["2019-12-31 12:00", "2020-01-03 00:00", "2021-01-02 00:00"]
            ).as_unit("ns")
        }
    )
    located = encode_new(new, modes)
    np.testing.assert_array_equal(located.x[0], [-1.5, 1.0, 366.0])
    np.testing.assert_array_equal(located.left[:, 0], [-1, 0, 1])
    np.testing.assert_array_equal(located.index[:, 0], [-1, -1, -1])


@pytest.mark.parametrize(
    ("new", "match"),
    [
        (pd.to_datetime(["2020-01-03"]).tz_localize("UTC"), "tz-naive .* localize"),
        (pd.to_timedelta([1], unit="D"), "same kind of time"),
        (np.array([1.0]), "pass times"),
        (pd.to_datetime(["2020-01-03", None]), "NaN"),
    ],
    ids=["aware-for-naive", "timedelta-for-datetime", "float-for-datetime", "NaT"],
)
def test_new_times_of_the_wrong_kind_are_refused(new, match):
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-02", "2020-01-04"]), "y": 1.0})
    modes = encode(df, ["t"], "y").modes
    with pytest.raises(ValueError, match=match):
        encode_new(pd.DataFrame({"t": new}), modes)


def test_naive_times_for_an_aware_model_are_refused():
    df = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=3, tz="UTC"), "y": 1.0})
    modes = encode(df, ["t"], "y").modes
    with pytest.raises(ValueError, match="column 't' is a tz-aware"):
        encode_new(pd.DataFrame({"t": pd.date_range("2020-01-01", periods=2)}), modes)


def test_missing_times_and_bad_units_are_refused():
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-02", None]), "g": "a", "y": 1.0})
    with pytest.raises(ValueError, match="column 't' has 1 row with NaN"):
        encode(df, ["t"], "y")
    df = df.dropna()
    with pytest.raises(ValueError, match="time_unit must be one of"):
        encode(df, ["t"], "y", time_unit="month")
    with pytest.raises(ValueError, match=r"time_unit is given but \['g'\] is not"):
        encode(df, ["t", "g"], "y", time_unit={"g": "h"})
    with pytest.raises(ValueError, match="no coordinate"):
        encode(df, ["g"], "y", time_unit="h")
    with pytest.raises(ValueError, match="time_unit"):
        bt.fit(df, coords=["t", "g"], value="y", model="poisson-tucker", time_unit="h")


@pytest.mark.parametrize(
    "scale",
    [
        TimeScale("datetime", "D", "s", 1_600_000_000, None),
        TimeScale("datetime", "h", "ns", -5, "Europe/Paris"),
        TimeScale("timedelta", "min", "us", 0),
    ],
)
def test_time_mode_json_round_trip(scale):
    mode = Mode("t", "continuous", np.array([0.0, 1.5, 2.0]), time=scale)
    back = Mode.from_dict(json.loads(json.dumps(mode.to_dict())))
    assert back == mode and back.time == scale
    assert back != Mode("t", "continuous", np.array([0.0, 1.5, 2.0]))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"unit": "month"}, "time_unit must be one of"),
        ({"resolution": "D"}, "resolution"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"origin": 1.5}, "origin must be an int"),
        ({"kind": "timedelta", "tz": "UTC"}, "tz must be None"),
    ],
)
def test_time_scale_rejects_bad_fields(fields, match):
    base = {"kind": "datetime", "unit": "D", "resolution": "s", "origin": 0, "tz": None}
    with pytest.raises(ValueError, match=match):
        TimeScale(**(base | fields))


def test_time_scale_only_on_continuous_modes():
    with pytest.raises(ValueError, match="only a continuous mode"):
        Mode("t", "categorical", np.array([1, 2]), time=TimeScale("timedelta", "D", "s", 0))


# ------------------------------------------------------------------------- FunBaT fits


@pytest.fixture(scope="module")
def weather_fits():
    df = _weather()
    kw = {"value": "temp", "rank": 2, "max_sweeps": 8, "progress": False}
    by_time = bt.fit(df, coords=["origin", "when"], time_unit="h", **kw)
    by_float = bt.fit(df, coords=["origin", "hours"], **kw)
    return df, by_time, by_float


def test_weather_fit_on_timestamps_equals_the_fit_on_hours(weather_fits):
    df, by_time, by_float = weather_fits
    mode = by_time.modes[1]
    assert mode.time.tz == "America/New_York" and mode.time.unit == "h"
    start = df["when"].min()
    # new times: between the hours, beyond the training range, written in UTC
    hours = np.array([0.5, 30.25, 95.0, 130.0])
    new_time = pd.DataFrame(
        {
            "origin": ["JFK", "EWR", "LGA", "JFK"],
            "when": (start + pd.to_timedelta(hours, unit="h")).tz_convert("UTC"),
        }
    )
    new_float = pd.DataFrame({"origin": new_time["origin"], "hours": hours + df["hours"].min()})
    a, b = by_time.predict(new_time), by_float.predict(new_float)
    scale = df["temp"].std()
    np.testing.assert_allclose(
        a.to_numpy(), b.to_numpy(), rtol=0, atol=TOL["time_vs_float_fit"] * scale
    )
    assert by_time.summary().loc["when", "lengthscale"] == pytest.approx(
        by_float.summary().loc["hours", "lengthscale"], rel=TOL["time_vs_float_fit"]
    )


def test_weather_factors_give_times_back(weather_fits):
    df, by_time, _ = weather_fits
    f = by_time.factors()
    when = f.loc[f["mode"] == "when", "coordinate"]
    expected = np.repeat(np.sort(df["when"].unique()), 2)
    assert list(when) == list(expected)
    assert all(t.tzinfo is not None for t in when)
    fig = by_time.plot_factors()
    assert len(fig.axes) == 2


def test_weather_time_model_save_load_round_trip(weather_fits, tmp_path):
    df, by_time, _ = weather_fits
    back = bt.load(by_time.save(tmp_path / "w.bt"))
    assert back.modes == by_time.modes and back.modes[1].time == by_time.modes[1].time
    new = pd.DataFrame(
        {"origin": ["EWR", "LGA"], "when": pd.to_datetime(["2013-01-02 03:30", "2013-02-01 00:00"])}
    )
    new["when"] = new["when"].dt.tz_localize("America/New_York")
    pd.testing.assert_frame_equal(back.predict(new), by_time.predict(new), check_exact=True)
    pd.testing.assert_frame_equal(back.factors(), by_time.factors(), check_exact=True)
    with pytest.raises(ValueError, match="tz-aware"):
        back.predict(new.assign(when=new["when"].dt.tz_localize(None)))


def test_saved_time_scale_is_checked_on_load(weather_fits, tmp_path):
    import zipfile

    _, by_time, _ = weather_fits
    path = by_time.save(tmp_path / "w.bt")
    with zipfile.ZipFile(path) as z:
        header = json.loads(z.read("header.json"))
        arrays = z.read("arrays.npz")
    for bad, match in [({"unit": "fortnight"}, "time_unit"), ({"origin": "x"}, "origin")]:
        h = json.loads(json.dumps(header))
        h["modes"][1]["time"] |= bad
        out = tmp_path / "bad.bt"
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("header.json", json.dumps(h))
            z.writestr("arrays.npz", arrays)
        with pytest.raises(ValueError, match=match):
            bt.load(out)


@pytest.mark.once  # its child runs without x64 in both passes
def test_load_keeps_the_fit_precision_outside_x64_mode(tmp_path):
    """Without JAX's global x64 (the default), a saved float64 model predicts identically
    after loading (the state was once read back as float32)."""
    script = """
import sys, numpy as np, pandas as pd, bayestensor as bt
df = pd.DataFrame({"t": np.linspace(0, 1, 30), "g": ["a", "b", "c"] * 10})
df["y"] = np.sin(6 * df["t"]) + (df["g"] == "b")
res = bt.fit(df, coords=["t", "g"], value="y", rank=2, max_sweeps=4, progress=False)
back = bt.load(res.save(sys.argv[1]))
new = pd.DataFrame({"t": [0.123, 0.9], "g": ["a", "c"]})
pd.testing.assert_frame_equal(back.predict(new), res.predict(new), check_exact=True)
"""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m.bt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
