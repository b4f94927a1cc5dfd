"""Reliability regressions (issue 12): every bad input refused up front with a ValueError naming
it, no silent NaN or wrong answer, memory bounded over many fits, and a bounded fuzz.

The PDE cases live in ``tests/pde/``, the crafted model files in ``tests/test_io.py``, Poisson
Tucker's options in ``tests/poisson_tucker/test_estimator.py``.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayestensor as bt
from bayestensor.cli import main
from bayestensor.data import encode
from bayestensor.driver import MAX_COMPILED


def _frame(m=20, groups=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    t = np.repeat(np.linspace(0.0, 1.0, m), len(groups))
    g = np.tile(list(groups), m)
    y = np.sin(6 * t) * (1 + np.arange(len(g)) % len(groups)) + 0.1 * rng.normal(size=t.size)
    return pd.DataFrame({"t": t, "g": g, "y": y})


def _fit(df, **kw):
    opts = dict(coords=["t", "g"], value="y", rank=2, max_sweeps=5, progress=False)
    return bt.fit(df, **{**opts, **kw})


# ----------------------------------------------------------- 3, minor: arguments and settings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init_noise_sd": 0.0}, "init_noise_sd must be a positive number"),
        ({"init_noise_sd": -0.1}, "init_noise_sd must be a positive number"),
        ({"lengthscale_fraction": 0.0}, "lengthscale_fraction must be a positive number"),
        ({"init": "random", "init_scale": float("nan")}, "init_scale must be a positive number"),
        ({"init_cov_scale": float("inf")}, "init_cov_scale must be a positive number"),
        ({"lengthscale": float("nan")}, "lengthscale must be a positive number"),
        ({"variance": -1.0}, "variance must be a positive number"),
        ({"hyper_steps": -1}, "hyper_steps must be a positive int"),
        ({"hyper_step": -1.0}, "hyper_step must be a positive number"),
        ({"a0": -1.0}, "a0 must be a number ≥ 0"),
        ({"b0": float("nan")}, "b0 must be a number ≥ 0"),
        ({"damping": 1.5}, r"damping must be in \(0, 1\]"),
        ({"learn_hyper": "yes"}, "learn_hyper must be True or False"),
        ({"chunk": 2.5}, "chunk must be a positive int"),
        ({"tol": "abc"}, "tol must be a positive number"),
        ({"tol": -1.0}, "tol must be a positive number"),
        ({"max_sweeps": True}, "max_sweeps must be a positive int"),
        ({"max_sweeps": 2.5}, "max_sweeps must be a positive int"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\)"),
        ({"seed": 2**70}, "seed must be an int"),
        ({"seed": "abc"}, "seed must be an int"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"value": None}, "value must be the name of the value column"),
        ({"progress": "no"}, "progress must be True or False"),
    ],
)
def test_bad_settings_are_refused_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(_frame(), **kwargs)


# ------------------------------------------------------------------- 2: values far from O(1)


@pytest.mark.parametrize(("shift", "scale"), [(1e8, 1.0), (0.0, 1e200), (0.0, 1e-200)])
def test_values_far_from_unit_scale_fit_as_well(shift, scale):
    df = _frame()
    base = _fit(df).predict(df)
    moved = df.assign(y=df["y"] * scale + shift)
    pred = _fit(moved).predict(moved)
    # the same fit in the data's units: predictions move with the data, sds scale with it
    np.testing.assert_allclose(
        (pred["mean"] - shift) / scale, base["mean"], atol=TOL["rescaled_fit_vs_unit"]
    )
    np.testing.assert_allclose(pred["sd"] / scale, base["sd"], rtol=TOL["rescaled_fit_vs_unit"])


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    import jax
    import bayestensor as bt
    assert not jax.config.jax_enable_x64
    df = pd.read_csv(sys.argv[1])
    df["y"] = df["y"] + 1e8
    res = bt.fit(df, coords=["t", "g"], value="y", rank=2, progress=False)
    p = res.predict(df)
    print(json.dumps({"rmse": float(np.sqrt(np.mean((p["mean"] - df["y"]) ** 2))),
                      "sd": float(p["sd"].mean())}))
    """
)


@pytest.mark.once  # its child runs without x64 in both passes
def test_float32_large_offset_predicts_within_the_noise(tmp_path):
    """y += 1e8 in JAX's default float32: predictions are not all rounded to 1e8."""
    _frame(m=40).to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "d.csv")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rmse"] < TOL["float32_offset_rmse"]  # the noise sd is 0.1
    assert out["sd"] < TOL["float32_offset_rmse"]


# ------------------------------------------------------------------------ 6: rank guard


def test_ranks_beyond_what_the_data_identify_are_capped_with_a_warning():
    df = _frame(m=10)  # 10 × 3 tensor
    # the rank guard is the point: the low-rank part alone
    with pytest.warns(UserWarning, match=r"using \(10, 3\)"):
        res = _fit(df, rank=200, local=None)
    assert res.ranks == (10, 3)
    with pytest.warns(UserWarning, match=r"using \(3, 3\)"):
        res = _fit(df, model="cp", rank=200, local=None)
    assert res.ranks == (3, 3)


# ------------------------------------------------------------ 10: late failures, saveability


def test_datetime_categories_save_and_load(tmp_path):
    df = _frame(m=8)
    df["g"] = pd.to_datetime(df["g"].map({"a": "2020-01-01", "b": "2021-06-30", "c": "2022-03-04"}))
    res = _fit(df)
    back = bt.load(res.save(tmp_path / "m.bt"))
    pd.testing.assert_frame_equal(back.predict(df), res.predict(df), check_exact=True)


def test_unsaveable_categories_warn_at_fit_time():
    df = _frame(m=8)
    # object first: with pyarrow installed pandas keeps strings in Arrow, which holds no complex
    df["g"] = df["g"].astype(object).map({"a": 1 + 1j, "b": 2 + 0j, "c": 3j})
    with pytest.warns(UserWarning, match="will not be saveable"):
        _fit(df)


def test_cli_out_folder_is_refused_before_fitting(tmp_path, capsys):
    _frame().to_csv(tmp_path / "d.csv", index=False)
    code = main(
        ["fit", str(tmp_path / "d.csv"), "--coords", "t", "g", "--value", "y"]
        + ["--out", str(tmp_path), "--quiet"]
    )
    assert code == 1
    assert "is a folder" in capsys.readouterr().err


# ------------------------------------------------------------------ 1: memory over many fits


@pytest.mark.slow  # 36 s over both passes; bench_memory.py measures the same (nox -s bench)
def test_compiled_variants_stay_bounded_over_differently_sized_fits(monkeypatch):
    from bayestensor import driver
    from bayestensor.models.funbat import estimator, local, local_fibre_dense

    # the fibre GP's compiled programs, which layouts past the dense algebra's bound run (the
    # neighbour GP computes in NumPy)
    monkeypatch.setattr(local_fibre_dense, "DENSE_MAX_WORK", 0)
    local_programs = (local._fibre_vg, local._fibre_post_jit)
    # count what these fits compile, not earlier tests in the process (nor the size of their
    # calls, which call_scope's bound follows)
    for f in (*local_programs, estimator._sweep_jit, estimator._initial_state_jit):
        f.clear_cache()
    monkeypatch.setitem(driver._HELD, "most", {})
    for i in range(MAX_COMPILED + 2):  # one fit past the bound (MAX_COMPILED + 1 held)
        # a local process asked for by name (local="auto" skips fits this small)
        kind = "fibre" if i % 2 else "neighbours"
        _fit(_frame(m=10 + i), max_sweeps=1, learn_hyper=False, local=kind)
        for f in (estimator._sweep_jit, estimator._initial_state_jit):
            assert f._cache_size() <= MAX_COMPILED + 1
        # the local residual stage (on by default): shape buckets, one program per kind
        for f in local_programs:
            assert f._cache_size() <= 2


class _Compiled:
    """A stand-in jitted function holding ``n`` compiled variants."""

    def __init__(self, n, per_fit=1):
        self.n, self.per_fit = n, per_fit

    def _cache_size(self):
        return self.n

    def clear_cache(self):
        self.n = 0


@pytest.mark.parametrize(
    ("per_fit", "held", "released"),
    [
        (1, 4, False),
        (1, 5, True),
        (2, 8, False),
        (2, 9, True),
        ("mode", 12, False),
        ("mode", 13, True),
    ],
)
def test_compiled_variants_are_bounded_per_fit(monkeypatch, per_fit, held, released):
    """A function one fit compiles several times (per mode: 3 here) holds that many times
    MAX_COMPILED variants; past it, every function of the call is released."""
    from bayestensor import driver

    calls = []
    monkeypatch.setattr(driver, "release_compiled", lambda: calls.append(1))
    f, other = _Compiled(held, per_fit), _Compiled(1)
    driver.bound_compiled(f, other, keep=4, modes=3)
    assert (f.n, other.n, len(calls)) == ((0, 0, 1) if released else (held, 1, 0))


def test_going_back_to_an_earlier_size_reuses_its_compiled_sweep():
    """Three 2-mode fits of different sizes, then the first size again: its sweep is still
    compiled (the mode marginals, compiled per mode, held 6 variants after the third fit,
    past the bound of 4, so the fourth released every program and recompiled them)."""
    from bayestensor import driver
    from bayestensor.models.funbat import estimator

    programs = (estimator._sweep_jit, estimator._initial_state_jit, estimator._marginals_jit)
    for f in (*programs, estimator._rows_jit):  # what earlier tests compiled counts too
        f.clear_cache()
    # (and whatever else they left held past its bound would be released as a fit begins)
    driver.release_held()
    for m in (10, 11, 12, 10):  # each fit and its predictions (where the marginals compile)
        df = _frame(m=m)
        _fit(df, max_sweeps=1, learn_hyper=False, local=None).predict(df)
    assert estimator._sweep_jit._cache_size() == 3


def test_a_call_scope_releases_nothing_inside_and_bounds_by_the_largest_call(monkeypatch):
    """Inside ``call_scope`` ``bound_compiled`` releases nothing, however many variants. On
    entering an outermost scope everything ``bound_compiled`` has seen is released once a
    function holds more variants than ``keep`` times the most one call added to it (or its
    own bound, if larger); nested scopes are part of their call."""
    from bayestensor import driver

    calls = []
    monkeypatch.setattr(driver, "release_compiled", lambda: calls.append(1))
    for key in ("fns", "bounds", "most"):
        monkeypatch.setitem(driver._HELD, key, {})
    f, g = _Compiled(0), _Compiled(0)

    def one_call(new):
        with driver.call_scope(keep=2):
            with driver.call_scope(keep=2):  # a refit inside the fit
                f.n += new
                driver.bound_compiled(f, g, keep=1)
            f.n += new
            driver.bound_compiled(f, g, keep=1)

    one_call(2)  # four variants, past keep=1: nothing released inside the call
    assert (f.n, calls) == (4, [])
    driver.bound_compiled(f, keep=1)  # nor outside it: the largest call (4) is one fit's
    assert (f.n, calls) == (4, [])
    one_call(0)  # the same call again: 4 held, the bound 2 × 4
    one_call(2)
    assert (f.n, calls) == (8, [])
    one_call(1)  # entering it, 8 held: not past the bound
    assert (f.n, calls) == (10, [])
    one_call(0)  # entering it, 10 held: past 2 × 4, everything released
    assert (f.n, g.n, calls) == (0, 0, [1])
    driver.bound_compiled(g, keep=0)  # the largest call is counted afresh after a release,
    g.n = 1  # so outside a scope g's own bound (0 here) holds again
    driver.bound_compiled(g, keep=0)
    assert (g.n, calls) == (0, [1, 1])


# --------------------------------------------------------------------------- bounded fuzz


def _bounded(n: int):
    """Hypothesis settings of the CI fuzzes: ``n`` examples, no per-example deadline."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@_bounded(100)
@given(
    data=st.lists(
        st.tuples(
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
            st.one_of(st.text(max_size=3), st.integers(0, 3), st.none()),
            st.one_of(st.floats(allow_nan=True), st.integers(-3, 3), st.text(max_size=2)),
        ),
        max_size=12,
    ),
    coords=st.sampled_from([["t", "g"], ["t"], ["g"], {"t": "categorical"}, ["t", "t"], "t"]),
)
def test_encode_fuzz_refuses_or_encodes(data, coords):
    df = pd.DataFrame(data, columns=["t", "g", "y"])
    before = df.copy(deep=True)
    try:
        enc = encode(df, coords, "y")
    except ValueError:
        pass  # refused with our error type (never TypeError, KeyError, ...)
    else:
        assert np.all(np.isfinite(enc.y)) and enc.index.shape == (len(df), enc.K)
        for k, mode in enumerate(enc.modes):
            assert np.all((enc.index[:, k] >= 0) & (enc.index[:, k] < mode.size))
    pd.testing.assert_frame_equal(df, before)


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=2),
)


@_bounded(30)
@given(
    settings_=st.fixed_dictionaries(
        {},
        optional={
            "rank": st.one_of(_ANY, st.tuples(st.integers(0, 3), st.integers(0, 3))),
            "tol": _ANY,
            "max_sweeps": _ANY,
            "seed": _ANY,
            "damping": _ANY,
            "init_noise_sd": _ANY,
            "lengthscale": _ANY,
            "model": st.sampled_from(["tucker", "cp", "poisson-tucker", "x"]),
        },
    )
)
def test_fit_settings_fuzz_refuses_or_fits_finitely(settings_):
    df = _frame(m=6)
    kw = {"rank": 1, "max_sweeps": 2, **settings_}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rank caps
            res = bt.fit(df, coords=["t", "g"], value="y", progress=False, **kw)
    except ValueError:
        return
    assert np.all(np.isfinite(res.predict(df).to_numpy()))
