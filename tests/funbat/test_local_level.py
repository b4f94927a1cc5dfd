"""The local stage's predictive scale that grows with the level (local_tails.fit_level_scale):
the fitter against planted scales, and bt.fit on data whose errors are in proportion to the
value (concentrations), against the same fit with one scale everywhere."""

import numpy as np
import pandas as pd
import pytest

from bayestensor.models.funbat.local_tails import (
    LEVEL_MAX_FACTOR,
    fit_level_scale,
    fit_student_t,
    level_factor,
)


@pytest.mark.x64  # (NumPy alone: one run)
def test_fit_level_scale_recovers_a_planted_slope():
    """Values of both signs: the scale grows with the level itself."""
    rng = np.random.default_rng(11)
    y = rng.normal(5.0, 2.0, 4000)  # the training values: centre 5, unit 2, some below 0
    mean = y + rng.normal(0.0, 0.1, y.size)  # the left-out predictions
    u = (mean - y.mean()) / y.std()
    b, c = 0.4, 0.8
    z = c * np.exp(b * u) * rng.standard_t(6.0, y.size)
    nu, c_fit, level = fit_level_scale(z, mean, y)
    assert level[0] == pytest.approx(b, abs=0.03) and c_fit == pytest.approx(c, rel=0.05)
    assert nu == pytest.approx(6.0, rel=0.3)
    assert level[1:3] == pytest.approx((y.mean(), y.std()), rel=1e-12)
    assert level[3:] == pytest.approx((u.min(), u.max(), 0.0), rel=1e-12)  # (floor 0: linear)
    # the factor at the predictions is exp(b u), held within the levels the rows spanned
    np.testing.assert_allclose(level_factor(level, mean), np.exp(level[0] * u), rtol=1e-12)
    far = np.array([y.mean() + 100.0 * y.std()])
    assert level_factor(level, far)[0] == pytest.approx(np.exp(level[0] * u.max()), rel=1e-12)
    assert np.all(level_factor(None, mean) == 1.0)


@pytest.mark.x64  # (NumPy alone: one run)
def test_fit_level_scale_recovers_a_power_of_positive_values():
    """Positive values: the scale grows as a power of the value (sd ∝ mean^p)."""
    rng = np.random.default_rng(12)
    y = np.exp(rng.normal(1.0, 0.8, 4000))
    mean = y * np.exp(rng.normal(0.0, 0.05, y.size))
    p, c = 0.7, 0.5
    z = c * (mean / np.exp(np.mean(np.log(y)))) ** p * rng.normal(size=y.size)
    nu, c_fit, level = fit_level_scale(z, mean, y)
    b, centre, unit, lo, hi, floor = level
    assert b / unit == pytest.approx(p, abs=0.03) and c_fit == pytest.approx(c, rel=0.05)
    assert nu > 30 and floor == y.min()
    assert (centre, unit) == pytest.approx((np.mean(np.log(y)), np.std(np.log(y))), rel=1e-12)
    # below the smallest value the level is held there (a left-out mean may fall under 0)
    low = level_factor(level, np.array([-1.0, 0.0, floor]))
    np.testing.assert_allclose(low, np.exp(b * lo), rtol=1e-12)


@pytest.mark.x64  # (NumPy alone: one run)
def test_fit_level_scale_keeps_no_slope_where_the_scale_is_one():
    """Scores of one scale: the slope does not pass its bound (on 20 seeds, at most one); the
    caller keeps its own tails then."""
    kept = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.normal(size=300)
        z = 1.3 * rng.normal(size=300)
        kept += fit_level_scale(z, y + 0.3 * rng.normal(size=300), y) is not None
    assert kept <= 1
    rng = np.random.default_rng(0)
    assert fit_level_scale(rng.normal(size=19), rng.normal(size=19), rng.normal(size=19)) is None
    y = np.ones(50)  # values without spread: no level to scale by
    assert fit_level_scale(np.exp(np.arange(50) / 10), y, y) is None
    assert fit_student_t(np.zeros(30)) is not None  # (the caller's fallback exists for these)


@pytest.mark.x64  # (NumPy alone: one run)
def test_the_level_factor_is_held_within_its_bounds():
    level = (2.0, 0.0, 1.0, -3.0, 3.0, 0.0)  # at the levels' ends exp(±6) would pass the bound
    f = level_factor(level, np.array([-5.0, -1.0, 0.0, 1.0, 5.0]))
    big = LEVEL_MAX_FACTOR
    np.testing.assert_allclose(f, [1 / big, np.exp(-2.0), 1.0, np.exp(2.0), big], rtol=1e-12)


def _concentrations(seed):
    """Ten units × 24 times of a smooth curve per unit, levels 0.5–60, errors of 15 % of the
    value (log-normal): the spread of a concentration assay."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 24)
    units = [f"u{k}" for k in range(10)]
    amp = np.geomspace(1.0, 20.0, len(units))
    rows = [
        (u, ti, a * (1.5 + np.sin(2.0 * np.pi * ti)) * np.exp(0.15 * rng.normal()))
        for u, a in zip(units, amp, strict=True)
        for ti in t
    ]
    df = pd.DataFrame(rows, columns=["unit", "t", "y"])
    test = rng.random(len(df)) < 0.25
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


@pytest.fixture(scope="module")
def level_fits():
    """The concentration data fitted with the level's scale (the default) and without it."""
    import bayestensor as bt
    from bayestensor.models.funbat import local

    train, test = _concentrations(3)
    with_level = bt.fit(train, coords=["unit", "t"], value="y", progress=False)
    old, local.LEVEL_SCALE = local.LEVEL_SCALE, False
    try:
        one_scale = bt.fit(train, coords=["unit", "t"], value="y", progress=False)
    finally:
        local.LEVEL_SCALE = old
    return train, test, with_level, one_scale


def _scores(pred, y):
    from bayestensor.metrics import student_t_logpdf

    z = (y - pred["mean"].to_numpy()) / pred["sd"].to_numpy()
    nu = float(pred["nu"].iloc[0]) if "nu" in pred else np.inf
    logpdf = -0.5 * z**2 - 0.5 * np.log(2 * np.pi) if np.isinf(nu) else student_t_logpdf(z, nu)
    inside = (y >= pred["lower"].to_numpy()) & (y <= pred["upper"].to_numpy())
    return float(np.mean(np.log(pred["sd"].to_numpy()) - logpdf)), inside


def test_errors_in_proportion_to_the_value_get_intervals_that_grow_with_it(level_fits):
    _, test, res, one = level_fits
    loc = res.local
    assert loc.level is not None and loc.level[0] > 0.2 and one.local.level is None
    assert "with the level" in res.title()
    y = test["y"].to_numpy()
    pred, flat = res.predict(test), one.predict(test)
    np.testing.assert_array_equal(pred["mean"], flat["mean"])  # the means are the same
    # the ratio of the two fits' sds grows with the predicted level
    order = np.argsort(pred["mean"].to_numpy())
    assert np.all(np.diff(pred["sd"].to_numpy()[order] / flat["sd"].to_numpy()[order]) >= -1e-9)
    nll, inside = _scores(pred, y)
    nll_flat, inside_flat = _scores(flat, y)
    assert nll < nll_flat - 0.2  # (measured in float64: 1.56 against 2.25 nats per held-out row)
    high = pred["mean"].to_numpy() > np.median(pred["mean"])  # the upper half of the levels
    assert inside[high].mean() > inside_flat[high].mean()
    assert 0.85 <= inside.mean() <= 1.0


def test_the_level_scale_round_trips(level_fits, tmp_path):
    import json
    import zipfile

    import bayestensor as bt

    _, test, res, _ = level_fits
    path = res.save(tmp_path / "level.bt")
    back = bt.load(path)
    assert back.local.level == res.local.level  # (JSON keeps every float exactly)
    for col in ("mean", "sd", "lower", "upper"):
        np.testing.assert_array_equal(back.predict(test)[col], res.predict(test)[col])
    # a file whose level is not [b, centre, unit, lo, hi, floor] (finite, unit > 0, lo ≤ hi,
    # floor ≥ 0) is refused, the field named
    with zipfile.ZipFile(path) as z:
        header, arrays = json.loads(z.read("header.json")), z.read("arrays.npz")
    broken = tmp_path / "broken.bt"
    bad_levels = (
        [0.3, 1.0, 0.0, -1.0, 1.0, 0.0],  # unit 0
        [0.3, 1.0, 2.0, -1.0, 1.0],  # five numbers
        [0.3, 1.0, 2.0, 1.0, -1.0, 0.0],  # lo > hi
        [0.3, 1.0, 2.0, -1.0, 1.0, -0.5],  # floor < 0
    )
    for bad in bad_levels:
        header["local"]["level"] = bad
        with zipfile.ZipFile(broken, "w") as z:
            z.writestr("header.json", json.dumps(header))
            z.writestr("arrays.npz", arrays)
        with pytest.raises(ValueError, match="local.level"):
            bt.load(broken)
