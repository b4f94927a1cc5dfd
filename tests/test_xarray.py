"""xarray in and out: ``bt.fit(DataArray | Dataset)`` (NaN cells missing) is the DataFrame fit;
``result.predict_grid`` is ``predict`` on the flattened grid, computed in chunks."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.xr import from_xarray, require_xarray

xr = pytest.importorskip("xarray")


T = np.linspace(0.0, 2.0, 14)
SITES = np.array(["north", "south", "east"])
DAYS = pd.date_range("2021-06-01", periods=9, freq="D")


def _cube(seed: int = 0, missing: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = (
        np.sin(3 * T)[:, None, None] * np.array([1.0, -0.5, 2.0])[None, :, None]
        + np.cos(0.7 * np.arange(9))[None, None, :]
        + 0.05 * rng.standard_normal((T.size, SITES.size, DAYS.size))
    )
    f[rng.random(f.shape) < missing] = np.nan
    return f


def _array(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("t", "site", "day"),
        coords={"t": T, "site": SITES, "day": DAYS},
        name="y",
    )


def _frame(values: np.ndarray, seed: int = 1) -> pd.DataFrame:
    """The observed cells as a long DataFrame, built from the NumPy array itself (shuffled)."""
    i, j, k = np.nonzero(~np.isnan(values))
    df = pd.DataFrame({"t": T[i], "site": SITES[j], "day": DAYS[k], "y": values[i, j, k]})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


FIT = {"rank": 2, "max_sweeps": 6, "progress": False}


@pytest.fixture(scope="module")
def cube_fits():
    values = _cube()
    from_array = bt.fit(_array(values), **FIT)
    from_frame = bt.fit(_frame(values), coords=["t", "site", "day"], value="y", **FIT)
    return values, from_array, from_frame


def test_dataarray_with_nan_cells_is_the_dataframe_fit(cube_fits):
    values, from_array, from_frame = cube_fits
    n_nan = int(np.isnan(values).sum())
    assert 0.15 < n_nan / values.size < 0.25
    assert from_array.n_missing == n_nan and from_frame.n_missing == 0
    assert f"({n_nan} missing cells left out)" in repr(from_array)
    assert from_array.modes == from_frame.modes
    new = pd.DataFrame(
        {
            "t": [0.05, 1.3, 2.5],
            "site": ["east", "north", "south"],
            "day": pd.to_datetime(["2021-06-01 12:00", "2021-06-05 00:00", "2021-06-12 00:00"]),
        }
    )
    a, b = from_array.predict(new), from_frame.predict(new)
    scale = np.nanstd(values)
    np.testing.assert_allclose(
        a.to_numpy(), b.to_numpy(), rtol=0, atol=TOL["xarray_vs_frame"] * scale
    )


def test_predict_grid_is_predict_on_the_flattened_grid(cube_fits):
    _, res, _ = cube_fits
    grid = res.predict_grid(chunk=100)  # 378 cells: three full chunks and a remainder
    assert tuple(grid.sizes.items()) == (("t", 14), ("site", 3), ("day", 9))
    assert set(grid.data_vars) == set(res.predict(grid.to_dataframe().reset_index().head()))
    assert all(grid[v].dtype == np.float64 for v in grid.data_vars)
    np.testing.assert_array_equal(grid["t"].values, T)
    np.testing.assert_array_equal(grid["day"].values, DAYS.to_numpy())
    flat = grid.to_dataframe().reset_index()
    ref = res.predict(flat[["t", "site", "day"]])
    for c in ref.columns:
        np.testing.assert_array_equal(flat[c].to_numpy(), ref[c].to_numpy())


def test_factors_as_xarray_hold_the_factor_table(cube_fits):
    _, res, _ = cube_fits
    table, ds = res.factors(), res.factors(as_xarray=True)
    for mode in ("t", "site", "day"):
        part = table[table["mode"] == mode]
        for stat in ("mean", "sd"):
            da = ds[f"{mode}_{stat}"]
            assert da.dims == (mode, f"{mode}_component")
            back = da.to_dataframe(name=stat).reset_index()
            part = part.assign(coordinate=part["coordinate"].astype(back[mode].dtype))
            merged = part.merge(
                back, left_on=["coordinate", "component"], right_on=[mode, f"{mode}_component"]
            )
            assert len(merged) == len(part) == da.size
            np.testing.assert_array_equal(merged[f"{stat}_x"], merged[f"{stat}_y"])
    np.testing.assert_array_equal(ds["day"].values, DAYS.to_numpy())


def test_predict_grid_on_given_coordinates(cube_fits):
    _, res, _ = cube_fits
    t = np.array([-0.5, 0.33, 1.0, 4.0])
    days = pd.to_datetime(["2021-05-30 06:00", "2021-06-20 00:00"])
    grid = res.predict_grid({"t": t, "day": days, "site": ["south"]}, level=0.8, chunk=3)
    assert tuple(grid.sizes.values()) == (4, 1, 2)
    cells = pd.DataFrame([(a, "south", d) for a in t for d in days], columns=["t", "site", "day"])
    ref = res.predict(cells, level=0.8)
    np.testing.assert_array_equal(grid["lower"].values.ravel(), ref["lower"].to_numpy())
    np.testing.assert_array_equal(grid["mean"].values.ravel(), ref["mean"].to_numpy())
    assert grid.attrs["level"] == 0.8


@pytest.mark.parametrize(
    ("coords", "match"),
    [
        ({"x": [1.0]}, r"names \['x'\], which are not modes"),
        ({"t": [[0.0, 1.0]]}, "1-D"),
        ({"t": []}, "non-empty"),
        ({"site": ["west"]}, "not seen in training"),
        ([0.0, 1.0], "dict of mode"),
    ],
)
def test_predict_grid_refuses_bad_coordinates(cube_fits, coords, match):
    _, res, _ = cube_fits
    with pytest.raises(ValueError, match=match):
        res.predict_grid(coords)


def test_dataset_value_names_the_variable(cube_fits):
    values, _, from_frame = cube_fits
    ds = xr.Dataset({"y": _array(values), "other": _array(np.ones_like(values))})
    res = bt.fit(ds, value="y", coords=["t", "site", "day"], **FIT)
    new = _frame(values).head(5)
    np.testing.assert_allclose(
        res.predict(new)["mean"], from_frame.predict(new)["mean"], rtol=0, atol=1e-8
    )
    with pytest.raises(ValueError, match="value must name the data variable"):
        from_xarray(ds, None, None)
    with pytest.raises(ValueError, match="'z' is not a data variable"):
        from_xarray(ds, None, "z")


def test_conversion_rules():
    values = _cube(missing=0.0)
    da = _array(values).rename(None)
    conv = from_xarray(da, {"day": "continuous", "t": "continuous", "site": "categorical"}, None)
    assert conv.value == "value" and conv.n_missing == 0
    assert list(conv.df.columns) == ["day", "t", "site", "value"]  # the coords' order
    assert conv.df["day"].dtype.kind == "M" and len(conv.df) == values.size
    # C order of the coords: the first rows run along 'site'
    assert list(conv.df["site"][:3]) == list(SITES)
    for coords, match in [
        (["t", "site"], "every dimension"),
        (["t", "site", "day", "day"], "every dimension"),
        ("t", "the string"),
    ]:
        with pytest.raises(ValueError, match=match):
            from_xarray(da, coords, None)
    with pytest.raises(ValueError, match="also a dimension"):
        from_xarray(da, None, "t")
    with pytest.raises(ValueError, match="every cell"):
        from_xarray(da * np.nan, None, None)
    with pytest.raises(ValueError, match="expected numbers"):
        from_xarray(da.astype(str), None, None)
    # a dimension without coordinates becomes 0, 1, 2, ...
    plain = from_xarray(xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("a", "b")), None, "v")
    assert list(plain.df["b"]) == [0, 1, 2, 0, 1, 2]


def test_dataframe_needs_coords_and_value():
    df = pd.DataFrame({"t": [0.0, 1.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="coords must be given"):
        bt.fit(df, value="y")
    with pytest.raises(ValueError, match="value must be the name of the value column"):
        bt.fit(df, coords=["t"])


def test_poisson_tucker_refuses_nan_cells_and_fits_complete_counts():
    rng = np.random.default_rng(2)
    counts = rng.poisson(2.0, size=(4, 3, 2)).astype(float)
    da = xr.DataArray(counts, dims=("a", "b", "c"), name="n")
    kw = {"model": "poisson-tucker", "rank": 2, "method": "vi", "max_iter": 5, "progress": False}
    res = bt.fit(da, **kw)
    assert res.value == "n" and list(res.coords) == ["a", "b", "c"]
    counts[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN cells; model='poisson-tucker'"):
        bt.fit(da.copy(data=counts), **kw)


def test_n_missing_is_saved(cube_fits, tmp_path):
    _, res, _ = cube_fits
    back = bt.load(res.save(tmp_path / "m.bt"))
    assert back.n_missing == res.n_missing > 0


def test_missing_xarray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"pip install 'bayestensor\[xarray\]'"):
        require_xarray()
