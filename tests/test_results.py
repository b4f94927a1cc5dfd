"""The result contract, run over all three kinds: FunBaT, Poisson Tucker and the PDE solution.

Every result has an informative ``repr`` and ``_repr_html_``, returns a table from
``summary()``, saves to one file that :func:`bayestensor.load` reads back as the same kind with
bit-identical predictions, and works with the CLI's ``predict``.
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
from bayestensor.cli import main, read_csv_exact


def _funbat_rows():
    rng = np.random.default_rng(0)
    t, s = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 9), indexing="ij")
    df = pd.DataFrame({"t": t.ravel(), "s": s.ravel()})
    df["y"] = np.sin(3 * df["t"]) * np.cos(2 * df["s"]) + 0.05 * rng.standard_normal(len(df))
    return df


def _funbat():
    df = _funbat_rows()
    res = bt.fit(df, coords=["t", "s"], value="y", rank=2, max_sweeps=5, progress=False)
    new = pd.DataFrame({"t": [0.05, 0.5, 0.97], "s": [0.1, 0.33, 0.9]}, index=[7, 3, 11])
    return res, new, ("t", "s"), ["FunBaT-tucker", "'y'", "sweeps"]


def _poisson():
    rng = np.random.default_rng(1)
    df = count_frame(rng.poisson(2.0, size=(5, 4, 3)), ["a", "b", "c"], "n")
    res = bt.fit(
        df,
        coords=["a", "b", "c"],
        value="n",
        model="poisson-tucker",
        rank=2,
        method="vi",
        max_iter=20,
        progress=False,
    )
    new = df.iloc[[0, 5, 9]].drop(columns="n")
    return res, new, ("a", "b", "c"), ["Poisson Tucker", "'n'", "CAVI"]


def _pde():
    # a tiny solve for the file format, not a good one: the reliability warning is beside the point
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "the solution may be inaccurate", RuntimeWarning)
        sol = bt.pde.solve(bt.pde.poisson_1d(grid=30), n_components=4, steps=3, progress=False)
    new = pd.DataFrame({"x": [0.1, 1.7, 3.3]}, index=["p", "q", "r"])
    return sol, new, ("x",), ["GP-HM", "30-point grid", "midpoint residual"]


KINDS = {"funbat": _funbat, "poisson-tucker": _poisson, "pde": _pde}


@pytest.fixture(scope="module", params=sorted(KINDS))
def fitted(request):
    return request.param, *KINDS[request.param]()


def _predict(res, df):
    return res.predict(df)


def test_repr_html_and_summary(fitted):
    kind, res, _, variables, words = fitted
    assert res.kind == kind
    text = repr(res)
    for w in words:
        assert w in text, (w, text)
    table = res.summary()
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == list(variables)
    assert table.to_string() in text  # the repr shows the table
    html = res._repr_html_()
    assert "<table" in html and words[0] in html


def test_predict_uses_the_shared_columns(fitted):
    _, res, new, variables, _ = fitted
    pred = _predict(res, new)
    assert pred.index.equals(new.index)
    expected = [c for c in bt.results.PREDICTION_COLUMNS if c in pred.columns]
    assert list(pred.columns) == expected and expected[0] == "mean"
    assert np.all(np.isfinite(pred.to_numpy()))
    if "lower" in pred:
        assert np.all(pred["lower"] <= pred["mean"]) and np.all(pred["mean"] <= pred["upper"])
    assert list(res.coords) == list(variables)


def test_save_load_predicts_bit_identically(fitted, tmp_path):
    kind, res, new, _, _ = fitted
    path = res.save(tmp_path / "model.bt")
    back = bt.load(path)
    assert type(back) is type(res) and back.kind == kind
    pd.testing.assert_frame_equal(_predict(back, new), _predict(res, new), check_exact=True)
    assert back.summary().equals(res.summary())


def test_cli_predict_reads_every_kind(fitted, tmp_path, capsys):
    _, res, new, variables, _ = fitted
    res.save(tmp_path / "m.bt")
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(tmp_path / "m.bt"), str(tmp_path / "new.csv")]) == 0
    out = read_csv_exact(io.StringIO(capsys.readouterr().out))
    assert list(out.columns[: len(variables)]) == list(variables)
    mean = _predict(res, new)["mean"].to_numpy()
    # the CSV holds each number's shortest repr in its own precision (float32 with x64 off)
    np.testing.assert_array_equal(out["mean"].to_numpy().astype(mean.dtype), mean)


def _rewrite(path, edit_header=None, drop_array=None, edit_arrays=None):
    """Rewrite a saved file with an edited header or arrays, or one array removed."""
    with zipfile.ZipFile(path) as zf:
        header = json.loads(zf.read("header.json"))
        arrays = dict(np.load(io.BytesIO(zf.read("arrays.npz"))))
    if edit_header:
        edit_header(header)
    if drop_array:
        arrays.pop(drop_array)
    if edit_arrays:
        edit_arrays(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(header))
        zf.writestr("arrays.npz", buf.getvalue())


def test_load_checks_version_kind_and_named_fields(tmp_path):
    res, *_ = _funbat()
    path = res.save(tmp_path / "m.bt")
    with zipfile.ZipFile(path) as zf:
        names = np.load(io.BytesIO(zf.read("arrays.npz"))).files
    # the state is stored by field name, not position
    assert "state/noise/shape" in names and "state/core/mean" in names
    _rewrite(path, drop_array="state/core/mean")
    with pytest.raises(ValueError, match="missing.*state/core/mean"):
        bt.load(path)
    path = res.save(tmp_path / "m.bt")
    _rewrite(path, edit_header=lambda h: h.update(version=99))
    with pytest.raises(ValueError, match="version 99"):
        bt.load(path)
    path = res.save(tmp_path / "m.bt")
    _rewrite(path, edit_header=lambda h: h.update(kind="bogus"))
    with pytest.raises(ValueError, match="unknown kind"):
        bt.load(path)
    (tmp_path / "junk.bt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a saved bayestensor model"):
        bt.load(tmp_path / "junk.bt")
    with pytest.raises(ValueError, match="does not exist"):
        res.save(tmp_path / "no" / "such" / "m.bt")


def test_load_refuses_states_no_fit_makes(tmp_path):
    """A file whose posterior covariances are not covariances (negated), or whose neighbour GP
    asks for no neighbours, is refused on load, naming what is wrong (it loaded before, and
    predicted the same sd at every row, or failed inside the prediction)."""
    res, new, *_ = _funbat()
    path = res.save(tmp_path / "m.bt")

    def negated(arrays):
        arrays["state/core/cov"] = -arrays["state/core/cov"]

    _rewrite(path, edit_arrays=negated)
    with pytest.raises(ValueError, match="'state/core/cov' is not a covariance"):
        bt.load(path)
    df = _funbat_rows()
    local = bt.fit(df, coords=["t", "s"], value="y", rank=1, local="neighbours", progress=False)
    path = local.save(tmp_path / "local.bt")
    bt.load(path)  # as saved: fine
    _rewrite(path, edit_header=lambda h: h["local"]["process"].update(m=0))
    with pytest.raises(ValueError, match="local neighbour process: its m, .* must be ≥ 1"):
        bt.load(path)


def test_save_plot_and_title_say_what_is_wrong_or_missing(tmp_path):
    """Saving to a folder, or plotting a fit against rows without the value column, is a
    ValueError saying so; a fit without continuous modes has no kernel in its title or table;
    a prediction whose intervals overflow is an error, not infinities."""
    import matplotlib

    matplotlib.use("Agg")
    res, new, *_ = _funbat()
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        res.save(tmp_path)
    with pytest.raises(ValueError, match="plot_fit needs rows with the value column 'y'"):
        res.plot_fit(new)
    df = _funbat_rows()
    labels = df.assign(t=df["t"].round(3).astype(str), s=df["s"].round(3).astype(str))
    plain = bt.fit(labels, coords=["t", "s"], value="y", rank=2, max_sweeps=3, progress=False)
    assert "FunBaT-tucker fit of 'y' (rank (2, 2)):" in plain.title()
    assert "kernel" not in plain.summary().columns
    local = bt.fit(df, coords=["t", "s"], value="y", rank=1, local="neighbours", progress=False)
    local.local.scale = 1e308  # (as a file edited to it would load)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="came out non-finite"):
        local.predict(new)
