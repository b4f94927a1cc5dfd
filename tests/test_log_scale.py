"""Coordinates on the log scale (``bt.fit(..., log_coords=...)``, :mod:`bayestensor.log_scale`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.data import decode, encode, encode_new
from bayestensor.log_scale import is_geometric, on_log_scale
from bayestensor.modes import Mode


def _dilution_panel(seed: int = 0) -> pd.DataFrame:
    """Nine units × a dilution series (0.05 · 2^k): responses saturating in log conc."""
    rng = np.random.default_rng(seed)
    conc = 0.05 * 2.0 ** np.arange(8)
    rows = [
        (f"u{i}", c, (1 + 0.2 * i) * 100 / (1 + (1.5 / c) ** 1.2)) for i in range(9) for c in conc
    ]
    df = pd.DataFrame(rows, columns=["unit", "conc", "y"])
    return df.assign(y=df["y"] + rng.normal(0, 1.0, len(df)))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (0.05 * 2.0 ** np.arange(8), True),  # a dilution series
        ([1, 3, 7, 14, 28, 56, 90], True),  # ages of a curing test: near-geometric
        ([6.25, 12.5, 25, 50, 100, 200], True),  # doses that double
        (np.arange(1, 13), False),  # months: evenly spaced
        (np.arange(1900, 1950), False),  # years: span under 10
        ([0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2], False),  # a zero dose
        ([0.5, 1, 2, 4], False),  # span 8
        ([1, 10, 100], False),  # three values
        (np.sort(np.random.default_rng(0).uniform(1, 100, 40)), False),  # irregular times
    ],
)
def test_auto_takes_geometric_designs_only(values, expected):
    assert is_geometric(np.asarray(values, dtype=float)) is expected


def test_a_log_scale_mode_holds_logs_and_reports_its_own_units():
    df = _dilution_panel()
    enc = on_log_scale(encode(df, ["unit", "conc"], "y"), ["conc"])
    mode = enc.modes[1]
    conc = np.unique(df["conc"])
    assert mode.log and not enc.modes[0].log
    np.testing.assert_array_equal(mode.values, np.log(conc))
    # the coordinates as given, not exp(log x) (off by a rounding for 2 of these 8)
    assert (np.exp(np.log(conc)) != conc).any()
    np.testing.assert_array_equal(mode.coordinates(), conc)
    np.testing.assert_array_equal(decode(enc)["conc"], df["conc"])
    new = encode_new(pd.DataFrame({"unit": ["u1", "u2"], "conc": [conc[3], 0.3]}), enc.modes)
    assert new.index[0, 1] == 3 and new.index[1, 1] == -1
    np.testing.assert_array_equal(new.x[1], np.log([conc[3], 0.3]))
    with pytest.raises(ValueError, match="'conc' is on the log scale"):
        encode_new(pd.DataFrame({"unit": ["u1"], "conc": [0.0]}), enc.modes)
    back = Mode.from_dict(mode.to_dict())
    assert back == mode and back.log
    old = {k: v for k, v in mode.to_dict().items() if k != "log"}  # written before the field
    assert not Mode.from_dict(old).log and Mode.from_dict(old) != mode
    with pytest.raises(ValueError, match="only a continuous mode"):
        Mode("unit", "categorical", np.array(["a", "b"], dtype=object), log=True)
    with pytest.raises(ValueError, match="needs raw coordinates"):
        Mode("conc", "continuous", np.log(conc), log=True)  # no raw coordinates


def test_a_fit_on_the_log_scale_is_the_fit_of_the_logged_column(tmp_path):
    """``"auto"`` puts the dilution series on the log scale, and the fit is the one of the
    column logged beforehand (the same coordinates, the same arithmetic); its factors are
    reported at the concentrations, and a save and load keeps the scale."""
    df = _dilution_panel()
    res = bt.fit(df, coords=["unit", "conc"], value="y", progress=False)
    assert res.log_coords == ("conc",)
    logged = df.assign(conc=np.log(df["conc"]))
    ref = bt.fit(logged, coords=["unit", "conc"], value="y", progress=False, log_coords=None)
    assert ref.log_coords == () and res.ranks == ref.ranks
    new = pd.DataFrame({"unit": ["u0", "u4", "u8"], "conc": [0.07, 1.0, 6.4]})
    got, want = res.predict(new), ref.predict(new.assign(conc=np.log(new["conc"])))
    tol = TOL["log_scale_vs_prelogged"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=tol, atol=tol)
    f = res.factors()
    np.testing.assert_array_equal(
        np.unique(f.loc[f["mode"] == "conc", "coordinate"].to_numpy(float)), np.unique(df["conc"])
    )
    assert res.summary().loc["conc", "scale"] == "log"
    back = bt.load(res.save(tmp_path / "log.bt"))
    assert back.log_coords == ("conc",) and back.modes == res.modes
    pd.testing.assert_frame_equal(back.predict(new), got)
    pd.testing.assert_frame_equal(back.factors(), f)


def test_auto_leaves_evenly_spaced_coordinates_alone():
    rng = np.random.default_rng(1)
    x = np.arange(1.0, 25.0)
    rows = [(f"u{i}", t, np.sin(t / 4) * (1 + 0.1 * i)) for i in range(5) for t in x]
    df = pd.DataFrame(rows, columns=["unit", "t", "y"])
    df["y"] += 0.05 * rng.normal(size=len(df))
    res = bt.fit(df, coords=["unit", "t"], value="y", progress=False, local=None)
    assert res.log_coords == () and "scale" not in res.summary().columns


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (["unit"], "not a continuous numeric coordinate"),
        (["dose"], "not one of coords"),
        (3, "log_coords must be"),
        (["conc", "conc"], "twice"),
    ],
)
def test_bad_log_coords_are_refused_before_the_fit(option, match):
    with pytest.raises(ValueError, match=match):
        bt.fit(_dilution_panel(), coords=["unit", "conc"], value="y", log_coords=option)


def test_a_named_column_with_a_zero_is_refused_and_auto_skips_it():
    df = _dilution_panel()
    df.loc[df["conc"] == df["conc"].min(), "conc"] = 0.0
    with pytest.raises(ValueError, match="'conc' is on the log scale .* > 0"):
        bt.fit(df, coords=["unit", "conc"], value="y", log_coords=["conc"])
    res = bt.fit(df, coords=["unit", "conc"], value="y", progress=False, local=None)
    assert res.log_coords == ()


def test_update_keeps_the_log_scale():
    df = _dilution_panel()
    res = bt.fit(df, coords=["unit", "conc"], value="y", progress=False, local=None)
    more = pd.DataFrame({"unit": ["u2", "u5"], "conc": [0.3, 0.3], "y": [20.0, 25.0]})
    up = res.update(more)
    assert up.log_coords == ("conc",)
    assert np.log(0.3) in up.modes[1].values and 0.3 in up.modes[1].coordinates()
    assert np.isfinite(up.predict(more)["mean"]).all()


def test_poisson_tucker_takes_no_log_coords():
    df = pd.DataFrame({"a": ["x", "y", "x"], "b": ["p", "p", "q"], "n": [1, 2, 3]})
    with pytest.raises(ValueError, match="log_coords"):
        bt.fit(df, coords=["a", "b"], value="n", model="poisson-tucker", log_coords=["a"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"values": [0.0, 1.0, 2.0, 4.0]}, "finite"),  # a coordinate ≤ 0
        ({"log": "yes"}, "log must be a bool"),
    ],
)
def test_a_saved_log_scale_mode_is_checked_on_load(change, match):
    d = Mode.on_log_scale("conc", np.array([0.5, 1.0, 2.0, 4.0])).to_dict() | change
    with pytest.raises(ValueError, match=match):
        Mode.from_dict(d)


def test_a_time_mode_has_no_log_scale():
    df = pd.DataFrame({"t": pd.to_timedelta([1, 2, 4, 8], unit="D"), "y": [1.0, 2.0, 3.0, 4.0]})
    time_mode = encode(df, ["t"], "y").modes[0]
    d = time_mode.to_dict() | {"log": True}
    with pytest.raises(ValueError, match="numeric column can be on the log scale"):
        Mode.from_dict(d)
