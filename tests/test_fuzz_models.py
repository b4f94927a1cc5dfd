"""Unusual and bad input to FunBaT's kernels and periods, its result methods, and the Poisson
Tucker options, found by fuzzing: each is refused with a ValueError that names the argument
(instead of a raw TypeError or AttributeError, a silent misreading, or a message about rows
the caller never gave), and a Gibbs fit of one kept draw gives an honest predictive interval."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayestensor as bt

matplotlib.use("Agg")

#: A quick FunBaT fit (the tests check inputs and reporting, not the fit).
QUICK = {"rank": 1, "progress": False, "max_sweeps": 2, "local": None}


def _grid() -> pd.DataFrame:
    """y = sin(3x) cos(2πt/6) + noise on a 6 × 6 grid of x (float) and t (months 1–6)."""
    rng = np.random.default_rng(0)
    x, t = np.meshgrid(np.linspace(0.0, 1.0, 6), np.arange(1.0, 7.0), indexing="ij")
    y = np.sin(3 * x) * np.cos(2 * np.pi * t / 6) + 0.1 * rng.standard_normal(x.shape)
    return pd.DataFrame({"x": x.ravel(), "t": t.ravel(), "y": y.ravel()})


@pytest.fixture(scope="module")
def fitted():
    df = _grid()
    return bt.fit(df, coords=["x", "t"], value="y", **QUICK), df


def _counts() -> pd.DataFrame:
    return pd.DataFrame({"a": list("ppqq"), "b": list("uvuv"), "n": [1, 2, 3, 4]})


def _poisson(df, **options):
    kw = {"model": "poisson-tucker", "rank": 2, "progress": False}
    return bt.fit(df, coords=["a", "b"], value="n", **(kw | options))


# ---------------------------------------------------------------------- kernels and periods


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"period": {"t": True}}, r"period\['t'\] must be a positive number, got True"),
        ({"period": True}, "period must be a positive number, got True"),
        ({"tol": True}, "tol must be a positive number, got True"),
    ],
)
def test_a_bool_is_not_a_period_or_tolerance(setting, match):
    """``True`` was read as 1.0: a period of one unit, silently."""
    with pytest.raises(ValueError, match=match):
        bt.fit(_grid(), coords=["x", "t"], value="y", kernel={"t": "periodic"}, **setting, **QUICK)


@pytest.mark.parametrize("span", [pd.Timedelta(days=365), np.timedelta64(365, "D")])
def test_a_time_span_as_period_says_the_unit_it_must_be_in(span):
    df = _grid().assign(t=lambda d: pd.Timestamp("2020-01-01") + pd.to_timedelta(d.t, unit="D"))
    with pytest.raises(ValueError, match=r"period\['t'\] .*time_unit \(days by default\)"):
        bt.fit(df, coords=["x", "t"], value="y", kernel={"t": "periodic"}, period={"t": span})


# ---------------------------------------------------------------------------- result methods


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_plot_factors_max_components_must_be_a_positive_int(fitted, bad):
    """-1 dropped the last component and 0 drew empty panels, silently; 1.5 was a TypeError."""
    res, _ = fitted
    with pytest.raises(
        ValueError, match=f"max_components must be a positive int or None, got {bad!r}"
    ):
        res.plot_factors(max_components=bad)


def test_plot_factors_units_must_be_a_dict(fitted):
    res, _ = fitted
    with pytest.raises(ValueError, match=r"units must be a dict \{column: unit\}, got \['m'\]"):
        res.plot_factors(units=["m"])


def test_observed_values_of_text_name_the_value_column(fitted):
    """Was numpy's "could not convert string to float: 'a'"."""
    res, df = fitted
    text = df.iloc[:3].assign(y="a")
    match = "value column 'y' has dtype .*; expected a numeric"
    with pytest.raises(ValueError, match=match):
        res.plot_fit(text)
    pytest.importorskip("arviz")
    with pytest.raises(ValueError, match=match):
        res.to_inference_data(text, draws=4, chains=1)


@pytest.mark.parametrize(
    "coords",
    [{"x": [0.1, np.nan]}, {"x": [0.1, np.inf]}, {"t": pd.array([1.0, None], dtype="Float64")}],
)
def test_grid_coordinates_with_missing_values_name_the_mode(fitted, coords):
    """Was "column 'x' has 6 rows with NaN or inf values": rows of the grid, not the input."""
    pytest.importorskip("xarray")
    res, _ = fitted
    (name,) = coords
    with pytest.raises(ValueError, match=rf"coords\['{name}'\] has 1 NaN, NaT, None or inf values"):
        res.predict_grid(coords)


def test_factors_as_xarray_must_be_a_bool(fitted):
    res, _ = fitted
    with pytest.raises(ValueError, match="as_xarray must be True or False, got 'yes'"):
        res.factors(as_xarray="yes")


# ---------------------------------------------------------------------------- Poisson Tucker


@pytest.mark.parametrize(
    "option, match",
    [
        ({"f0": "a"}, "f0 must be a positive number, got 'a'"),  # was a TypeError in isfinite
        ({"gamma0": True}, "gamma0 must be a positive number, got True"),
        ({"shrinkage": "yes"}, "shrinkage must be True or False, got 'yes'"),
        ({"pair": ("a", "b"), "share": 1}, "share must be True or False, got 1"),
        ({"pair": "ab"}, "pair must name two different columns of coords, got 'ab'"),
    ],
)
def test_poisson_options_of_the_wrong_type_are_refused(option, match):
    """``pair="ab"`` was read as the columns a and b, ``shrinkage="yes"`` as True."""
    with pytest.raises(ValueError, match=match):
        _poisson(_counts(), method="vi", max_iter=5, **option)


def test_effective_components_level_must_be_a_probability():
    """Any level was taken: 2 gave one component more than the rank, NaN gave 1."""
    res = _poisson(_counts(), method="vi", max_iter=5)
    for level in (0, 1, 2, np.nan):
        with pytest.raises(ValueError, match=f"level must be a probability in .*, got {level}"):
            res.effective_components(level=level)


def test_one_gibbs_draw_gives_the_poisson_interval_of_a_new_count():
    """With one kept draw the rate is one number μ and a new count is Poisson(μ); its interval
    came from 4 simulated counts (here [16.1, 21.9] against Poisson's [12, 28]); now exact."""
    df = _counts().assign(n=[20, 20, 20, 20])
    res = _poisson(df, method="gibbs", num_warmup=20, num_samples=1)
    pred = res.predict(df)
    mu = pred["mean"].to_numpy()
    assert np.allclose(pred["sd_f"], 0.0)  # one draw: the rate's own spread is not known
    for q, column in [(0.025, "lower"), (0.975, "upper")]:
        np.testing.assert_array_equal(pred[column], stats.poisson.ppf(q, mu))


# ---------------------------------------------------------------------------------- values


@pytest.mark.parametrize("constant", [0.1, 1e30])
def test_a_constant_value_column_is_predicted_as_that_constant(constant):
    """The mean of 30 copies of 0.1 is not 0.1: the deviations were all one tiny number, their
    sd 0, and the z-scored values infinite (the fit was refused as non-finite)."""
    df = _grid().assign(y=constant)
    pred = bt.fit(df, coords=["x", "t"], value="y", **QUICK).predict(df.iloc[:3])
    np.testing.assert_allclose(pred["mean"], constant, rtol=1e-12)


def test_a_non_finite_fit_names_the_precision_it_ran_in():
    # the message blamed float32 in a fit that computes in float64 (the default)
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": np.repeat(np.arange(6.0), 5), "t": np.tile(np.arange(5.0), 6)})
    df["y"] = np.sin(df["x"]) + np.cos(df["t"]) + 0.1 * rng.normal(size=len(df))
    with pytest.raises(ValueError, match="orders of magnitude for the fit's float64"):
        bt.fit(df.assign(x=df["x"] * 1e300), coords=["x", "t"], value="y", rank=1,
               max_sweeps=3, local=None, progress=False)  # fmt: skip
