"""The loader refuses crafted files with a ValueError naming the field or array, before building.

Every case is a file saved by a real fit and then edited: header fields removed, retyped or
made inconsistent with the configuration, arrays of the wrong shape, dtype or values, and
``.npy`` headers declaring far more data than the file holds (the arrays are never read then).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import count_frame

import bayestensor as bt


@pytest.fixture(scope="module")
def funbat():
    t, s = np.meshgrid(np.linspace(0, 1, 8), np.linspace(0, 1, 6), indexing="ij")
    df = pd.DataFrame({"t": t.ravel(), "s": s.ravel()})
    df["y"] = np.sin(3 * df["t"]) * np.cos(2 * df["s"])
    # the low-rank part alone: files with local processes round-trip in their own tests
    # (test_funbat_local, test_funbat_anova, test_funbat_cavity); the loader is the point here
    kw = dict(rank=2, max_sweeps=2, local=None, progress=False)
    res = bt.fit(df, coords=["t", "s"], value="y", **kw)
    return res, pd.DataFrame({"t": [0.1, 0.7], "s": [0.2, 0.9]})


def _count_df():
    return count_frame(np.random.default_rng(1).poisson(2.0, size=(5, 4, 3)), list("abc"), "n")


@pytest.fixture(scope="module")
def poisson():
    df = _count_df()
    kw = dict(coords=list("abc"), value="n", model="poisson-tucker", rank=2, progress=False)
    res = bt.fit(df, method="vi", max_iter=5, **kw)
    return res, df.iloc[[0, 5]].drop(columns="n")


@pytest.fixture(scope="module")
def pde():
    # a tiny solve for the file format, not a good one: the reliability warning is beside the point
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "the solution may be inaccurate", RuntimeWarning)
        sol = bt.pde.solve(bt.pde.poisson_1d(grid=20), n_components=3, steps=2, progress=False)
    return sol, pd.DataFrame({"x": [0.1, 1.7]})


def _craft(path, header=None, arrays=None, raw=None):
    """Rewrite a saved file: ``header(h)`` and ``arrays(a)`` edit in place; ``raw`` adds (or
    replaces) arrays by a hand-written ``.npy`` header ``(shape, descr)`` and payload bytes."""
    with zipfile.ZipFile(path) as zf:
        h = json.loads(zf.read("header.json"))
        with np.load(io.BytesIO(zf.read("arrays.npz"))) as npz:
            a = {k: npz[k] for k in npz.files}
    if header:
        header(h)
    if arrays:
        arrays(a)
    raw = raw or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, arr in a.items():
            if name not in raw:
                with z.open(name + ".npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(arr), allow_pickle=True)
        for name, (shape, descr, payload) in raw.items():
            with z.open(name + ".npy", "w") as f:
                d = {"descr": descr, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, d)
                f.write(payload)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(h))
        zf.writestr("arrays.npz", buf.getvalue())
    return path


def _refused(res, tmp_path, match, **edits):
    path = _craft(res.save(tmp_path / "m.bt"), **edits)
    with pytest.raises(ValueError, match=match):
        bt.load(path)


def _set(d, key, value):
    return lambda h: d(h).__setitem__(key, value)


def _top(h):
    return h


# -- valid files --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["funbat", "poisson", "pde"])
def test_rewritten_valid_file_loads_bit_identically(which, request, tmp_path):
    res, new = request.getfixturevalue(which)
    back = bt.load(_craft(res.save(tmp_path / "m.bt")))
    pd.testing.assert_frame_equal(back.predict(new), res.predict(new), check_exact=True)


def test_gibbs_result_round_trips(tmp_path):
    df = _count_df()
    kw = dict(coords=list("abc"), value="n", model="poisson-tucker", rank=2, progress=False)
    res = bt.fit(df, method="gibbs", num_warmup=2, num_samples=3, **kw)
    back = bt.load(res.save(tmp_path / "g.bt"))
    new = df.iloc[[1, 2]].drop(columns="n")
    pd.testing.assert_frame_equal(back.predict(new), res.predict(new), check_exact=True)
    _refused(res, tmp_path, "info.num_samples", header=_set(lambda h: h["info"], "num_samples", 0))


# -- sizes: declared before read ----------------------------------------------------------------


def test_small_file_declaring_800_mb_is_refused_before_reading(pde, tmp_path):
    res, _ = pde
    raw = {"source": ((10**8,), "<f8", bytes(800))}  # 800 MB declared, 800 bytes held
    _refused(res, tmp_path, r"'source' has shape \(100000000,\).*implies shape \(20,\)", raw=raw)


def test_terabyte_declaration_is_refused_by_the_cap(funbat, tmp_path):
    res, _ = funbat
    raw = {"extra": ((10**12,), "<f8", b"")}  # 8 TB
    _refused(res, tmp_path, "MAX_LOAD_BYTES", raw=raw)


def test_caps_can_be_raised_and_lowered(pde, tmp_path, monkeypatch):
    res, new = pde
    path = res.save(tmp_path / "m.bt")
    monkeypatch.setattr(bt.io, "MAX_LOAD_BYTES", 100)
    with pytest.raises(ValueError, match="MAX_LOAD_BYTES = 100; if the file is trusted, raise"):
        bt.load(path)
    monkeypatch.setattr(bt.io, "MAX_LOAD_BYTES", 10**9)
    monkeypatch.setattr(bt.io, "MAX_HEADER_BYTES", 50)
    with pytest.raises(ValueError, match="MAX_HEADER_BYTES"):
        bt.load(path)
    monkeypatch.undo()
    bt.load(path).predict(new)


def test_truncated_array_data_is_a_value_error(pde, tmp_path):
    res, _ = pde
    _refused(res, tmp_path, "'source' cannot be read", raw={"source": ((20,), "<f8", bytes(8))})


# -- FunBaT -------------------------------------------------------------------------------------


def _mode0(h):
    return h["modes"][0]


def _config(h):
    return h["config"]


FUNBAT_CASES = {
    "missing key": ("no field 'y_scale'", dict(header=lambda h: h.pop("y_scale"))),
    "string for list": ("modes must be a list", dict(header=_set(_top, "modes", "t"))),
    "string ranks": ("config.ranks must be a list", dict(header=_set(_config, "ranks", "22"))),
    "edited ranks": ("implies shape", dict(header=_set(_config, "ranks", [3, 3]))),
    "modes shortened": ("config", dict(header=lambda h: h["modes"].pop())),
    "values too short": ("config.sizes", dict(header=lambda h: _mode0(h)["values"].pop())),
    "unknown config field": (
        "unknown fields \\['bogus'\\]",
        dict(header=_set(_config, "bogus", 1)),
    ),
    "unknown header field": ("unknown fields \\['extra'\\]", dict(header=_set(_top, "extra", 1))),
    "unknown estimator field": (
        "estimator has unknown",
        dict(header=_set(lambda h: h["estimator"], "x", 1)),
    ),
    "estimator mistyped": (
        "estimator.max_sweeps",
        dict(header=_set(lambda h: h["estimator"], "max_sweeps", [5])),
    ),
    "kernel unknown": ("config", dict(header=_set(_config, "kernel", "rbf"))),
    "continuous flags": (
        "config.continuous",
        dict(header=_set(_config, "continuous", [True, False])),
    ),
    "mode dtype": ("modes\\[0\\].dtype", dict(header=_set(_mode0, "dtype", "<c16"))),
    "mode values unsorted": ("modes\\[0\\]", dict(header=lambda h: _mode0(h)["values"].reverse())),
    "mode value a dict": (
        "modes\\[0\\].values",
        dict(header=lambda h: _mode0(h)["values"].__setitem__(0, {})),
    ),
    "empty history": ("history", dict(header=_set(_top, "history", []))),
    "y_scale negative": ("y_scale", dict(header=_set(_top, "y_scale", -1.0))),
    "converged a string": (
        "converged must be a boolean",
        dict(header=_set(_top, "converged", "yes")),
    ),
    "NaN leaf": ("NaN or infinite", dict(arrays=lambda a: a["state/core/mean"].fill(np.nan))),
    "inf leaf": ("NaN or infinite", dict(arrays=lambda a: a["state/factors/0/mean"].fill(np.inf))),
    "complex leaf": (
        "real floating point",
        dict(arrays=lambda a: a.update({"state/core/mean": a["state/core/mean"] + 0j})),
    ),
    "bool leaf": (
        "real floating point",
        dict(arrays=lambda a: a.update({"state/core/cov": a["state/core/cov"] > 0})),
    ),
    "object leaf": (
        "only plain numeric",
        dict(arrays=lambda a: a.update({"state/core/mean": a["state/core/mean"].astype(object)})),
    ),
    "negative noise": ("noise", dict(arrays=lambda a: a["state/noise/rate"].fill(-1.0))),
    "missing array": (
        "missing.*state/noise/rate",
        dict(arrays=lambda a: a.pop("state/noise/rate")),
    ),
}


@pytest.mark.parametrize("case", sorted(FUNBAT_CASES))
def test_crafted_funbat_files_are_refused(case, funbat, tmp_path):
    match, edits = FUNBAT_CASES[case]
    _refused(funbat[0], tmp_path, match, **edits)


# -- Poisson Tucker -----------------------------------------------------------------------------


def _spec(h):
    return h["spec"]


def _theta_up(a):
    a["draws/theta1"] = -a["draws/theta1"]


POISSON_CASES = {
    "shape edited": (
        "levels.a has 5 levels; spec.shape\\[0\\] is 6",
        dict(header=_set(_spec, "shape", [6, 4, 3])),
    ),
    "ranks edited": ("implies shape", dict(header=_set(_spec, "ranks", [3, 2, 2]))),
    "ranks shortened": ("spec", dict(header=_set(_spec, "ranks", [2, 2]))),
    "unknown spec field": ("spec has unknown", dict(header=_set(_spec, "bogus", 1))),
    "pair out of range": ("spec", dict(header=_set(_spec, "pair", [0, 7]))),
    "level missing": ("levels has no field 'c'", dict(header=lambda h: h["levels"].pop("c"))),
    "levels repeated": (
        "levels.b repeats",
        dict(header=lambda h: h["levels"].__setitem__("b", [0, 0, 1, 2])),
    ),
    "coords a string": ("coords must be a list", dict(header=_set(_top, "coords", "abc"))),
    "method unknown": ("info.method", dict(header=_set(lambda h: h["info"], "method", "mcmc"))),
    "elbo empty": ("info.n_iter", dict(header=_set(lambda h: h["info"], "elbo", []))),
    "theta shape": (
        "draws/theta1.*implies shape",
        dict(arrays=lambda a: a.update({"draws/theta1": a["draws/theta1"][:, :3]})),
    ),
    "draw counts differ": (
        "implies shape",
        dict(arrays=lambda a: a.update({"draws/core": a["draws/core"][:5]})),
    ),
    "negative theta": ("non-negative", dict(arrays=_theta_up)),
    "core NaN": ("NaN", dict(arrays=lambda a: a["mean/core"].fill(np.nan))),
    "index out of range": (
        "data/\\*: index of mode 0 out of range",
        dict(arrays=lambda a: a["data/index"].__setitem__((0, 0), 99)),
    ),
    "index float": (
        "'data/index'.*integer",
        dict(arrays=lambda a: a.update({"data/index": a["data/index"] + 0.5})),
    ),
    "index wrong width": (
        "'data/index'.*implies",
        dict(arrays=lambda a: a.update({"data/index": a["data/index"][:, :2]})),
    ),
    "counts not integers": (
        "data/\\*: counts",
        dict(arrays=lambda a: a["data/y"].__setitem__(0, 0.5)),
    ),
    "mask not in spec": (
        "unexpected.*data/mask",
        dict(arrays=lambda a: a.update({"data/mask": np.zeros(5)})),
    ),
}


@pytest.mark.parametrize("case", sorted(POISSON_CASES))
def test_crafted_poisson_files_are_refused(case, poisson, tmp_path):
    match, edits = POISSON_CASES[case]
    _refused(poisson[0], tmp_path, match, **edits)


def test_poisson_cells_beyond_the_tensor_are_refused_before_reading(poisson, tmp_path):
    raw = {"data/y": ((10**6,), "<f8", b"")}
    _refused(poisson[0], tmp_path, "'data/y' lists 1000000 cells", raw=raw)


# -- PDE ----------------------------------------------------------------------------------------


def _pconfig(h):
    return h["config"]


PDE_CASES = {
    "grid shorter than source": (
        "'source'.*implies shape \\(19,\\)",
        dict(arrays=lambda a: a.update({"grid/0": a["grid/0"][:-1]})),
    ),
    "U of the wrong shape": (
        "'params/U'.*implies",
        dict(arrays=lambda a: a.update({"params/U": a["params/U"][:-1]})),
    ),
    "n_components edited": (
        "kernels/0.*implies shape \\(5,\\)",
        dict(header=_set(_pconfig, "n_components", 5)),
    ),
    "n_components a string": (
        "config.n_components must be an integer",
        dict(header=_set(_pconfig, "n_components", "3")),
    ),
    "method not resolved": ("not resolved", dict(header=_set(_pconfig, "method", "auto"))),
    "spectrum unknown": ("config", dict(header=_set(_pconfig, "spectrum", "laplace"))),
    "variables vs box": ("box and variables", dict(header=_set(_top, "variables", ["x", "y"]))),
    "box reversed": ("box", dict(header=_set(_top, "box", [[1.0, 0.0]]))),
    "box a string": ("box must be a list", dict(header=_set(_top, "box", "0..1"))),
    "best_step beyond trace": ("best_step", dict(header=_set(_top, "best_step", 99))),
    "grid unsorted": (
        "grid/0.*increasing",
        dict(arrays=lambda a: a["grid/0"].__setitem__(0, 99.0)),
    ),
    "inf in U": ("NaN or infinite", dict(arrays=lambda a: a["params/U"].fill(np.inf))),
    "complex kernel": (
        "real floating point",
        dict(arrays=lambda a: a.update({"params/kernels/0/freq": a["params/kernels/0/freq"] * 1j})),
    ),
    "grid missing": ("grid/0", dict(arrays=lambda a: a.pop("grid/0"))),
    "trace too long": (
        "trace/losses",
        dict(arrays=lambda a: a.update({"trace/losses": np.zeros(99)})),
    ),
}


@pytest.mark.parametrize("case", sorted(PDE_CASES))
def test_crafted_pde_files_are_refused(case, pde, tmp_path):
    match, edits = PDE_CASES[case]
    _refused(pde[0], tmp_path, match, **edits)
