"""PoissonTuckerResult.predict_grid: the result contract's grid of predictions (DESIGN.md), the
same as :meth:`predict` on every cell, for count tensors of categorical modes."""

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt

pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def fitted():
    """A CAVI fit of a 4 × 3 × 2 count tensor with one cell absent (a zero)."""
    rng = np.random.default_rng(3)
    cells = pd.MultiIndex.from_product([list("pqrs"), ["u", "v", "w"], [2020, 2021]])
    df = cells.to_frame(index=False, name=["a", "b", "year"])
    df["n"] = rng.poisson(4.0, len(df))
    df = df[(df["n"] > 0) & ~((df["a"] == "s") & (df["b"] == "w"))]
    res = bt.fit(df, coords=["a", "b", "year"], value="n", model="poisson-tucker", rank=2,
                 method="vi", max_iter=50, progress=False)  # fmt: skip
    return res, df


def test_the_grid_is_predict_on_every_cell_of_the_fitted_levels(fitted):
    res, df = fitted
    grid = res.predict_grid()
    assert grid["mean"].dims == ("a", "b", "year")
    assert list(grid["a"].values) == list("pqrs") and list(grid["year"].values) == [2020, 2021]
    cells = grid["mean"].to_dataframe().reset_index()[["a", "b", "year"]]
    pred = res.predict(cells)
    for column in ("mean", "sd", "lower", "upper", "sd_f", "lower_f", "upper_f"):
        np.testing.assert_array_equal(grid[column].values.ravel(), pred[column].to_numpy())
    assert "nu" not in grid and grid.attrs["value"] == "n"
    # the absent cell (s, w) is predicted too: a rate, not a missing value
    assert float(grid["mean"].sel(a="s", b="w", year=2020)) > 0


def test_given_levels_and_small_chunks_give_the_same_cells(fitted):
    res, _ = fitted
    full = res.predict_grid(level=0.8)
    part = res.predict_grid({"a": ["r", "p"], "year": [2021]}, level=0.8, chunk=5)
    assert part["mean"].shape == (2, 3, 1)
    expect = full.sel(a=["r", "p"], year=[2021])
    # a new count's interval is exact (it was simulated, and depended on the cells in a call)
    for column in ("lower", "upper"):
        np.testing.assert_array_equal(part[column].values, expect[column].values)
    for column in ("mean", "sd_f", "lower_f", "upper_f"):
        np.testing.assert_allclose(
            part[column].values, expect[column].values, rtol=TOL["poisson_chunks"]
        )


@pytest.mark.parametrize(
    ("coords", "match"),
    [
        ({"c": ["p"]}, r"coords names \['c'\], which are not modes"),
        ({"a": []}, r"coords\['a'\] must be a non-empty 1-D array"),
        ({"year": [2020.0, np.nan]}, r"coords\['year'\] has 1 NaN"),
        ({"a": ["p", "zz"]}, "zz"),
        ({"b": ["u", "v", "u"]}, r"coords\['b'\] repeats 'u'"),
        (["a"], "coords must be a dict"),
    ],
)
def test_bad_grids_are_refused_by_name(fitted, coords, match):
    res, _ = fitted
    with pytest.raises(ValueError, match=match):
        res.predict_grid(coords)


def test_switches_are_booleans(fitted):
    res, _ = fitted
    with pytest.raises(ValueError, match="normalize must be True or False, got 'x'"):
        res.plot_factors(normalize="x")
    with pytest.raises(ValueError, match="draws must be True or False, got 'x'"):
        res.component_mass(draws="x")
