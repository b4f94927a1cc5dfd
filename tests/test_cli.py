"""The console script: fit / predict round trip, the data set listing, and every error path
printing one clear line on stderr with a non-zero exit status."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TOL, count_frame

import bayestensor as bt
from bayestensor.cli import main, read_csv_exact


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"bayestensor {command}: error:")
    return err[0]


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    """A small mixed-mode table: y = g(group) · sin(x) + noise, and rows to predict."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("cli")
    x = np.linspace(0, 6, 25)
    scale = {"a": 1.0, "b": -2.0, "c": 0.5}
    rows = [(g, xi, s * np.sin(xi) + 0.05 * rng.normal()) for g, s in scale.items() for xi in x]
    df = pd.DataFrame(rows, columns=["group", "x", "y"])
    df.to_csv(folder / "train.csv", index=False)
    new = pd.DataFrame({"x": [0.3, 2.2, 4.7, 5.5], "group": ["a", "b", "c", "b"], "extra": 1})
    new.to_csv(folder / "new.csv", index=False)
    return folder, scale


@pytest.fixture(scope="module")
def model_file(csv_files):
    folder, _ = csv_files
    out = folder / "model.bt"
    code = main(
        [
            "fit",
            str(folder / "train.csv"),
            "--coords",
            "group",
            "x:continuous",
            "--value",
            "y",
            "--rank",
            "1",
            "2",
            "--max-sweeps",
            "30",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_fit_saves_the_model_it_was_asked_for(model_file):
    res = bt.load(model_file)
    assert res.coords == {"group": "categorical", "x": "continuous"}
    assert res.ranks == (1, 2) and res.value == "y"


def test_predict_writes_csv_to_stdout(csv_files, model_file, capsys):
    folder, scale = csv_files
    assert main(["predict", str(model_file), str(folder / "new.csv")]) == 0
    captured = capsys.readouterr()
    pred = pd.read_csv(io.StringIO(captured.out))
    assert list(pred.columns) == ["group", "x", "mean", "sd", "lower", "upper"]
    truth = np.array([scale[g] * np.sin(x) for g, x in zip(pred["group"], pred["x"], strict=True)])
    assert np.max(np.abs(pred["mean"] - truth)) < TOL["cli_max_abs_error"]  # the noise sd is 0.05
    np.testing.assert_allclose(
        pred["upper"] - pred["mean"], 1.959964 * pred["sd"], rtol=TOL["csv_interval_halfwidth"]
    )
    # the same numbers as the Python API
    api = bt.load(model_file).predict(pd.read_csv(folder / "new.csv"))
    np.testing.assert_allclose(pred["mean"], api["mean"], rtol=TOL["cli_vs_api"])


def test_predict_level_and_out_file(csv_files, model_file, tmp_path):
    folder, _ = csv_files
    out = tmp_path / "pred.csv"
    args = ["predict", str(model_file), str(folder / "new.csv"), "--level", "0.5", "--out"]
    assert main([*args, str(out)]) == 0
    pred = pd.read_csv(out)
    np.testing.assert_allclose(
        pred["upper"] - pred["mean"], 0.6744898 * pred["sd"], rtol=TOL["csv_interval_halfwidth"]
    )


def test_datasets_lists_names_and_shapes(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in bt.datasets.list():
        meta = bt.datasets.info(name)
        assert f"{name} " in out and " x ".join(map(str, meta.shape)) in out
    assert "24 x 24 x 72" in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "required: command" in line


def test_unwritable_output_folder_fails_fast(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["demo", "--out", str(blocker / "figures")]) == 1
    _one_error_line(capsys, "demo")


def _fit_args(data, *extra, coords=("group", "x"), value="y"):
    return ["fit", str(data), "--coords", *coords, "--value", value, "--quiet", *extra]


@pytest.mark.parametrize(
    ("coords", "value", "extra", "message"),
    [
        (("group", "depth"), "y", (), r"column\(s\) \['depth'\] not in"),
        (("group", "x"), "temp", (), r"column\(s\) \['temp'\] not in"),
        (("group", "x:spatial"), "y", (), "the kind after ':' must be one of"),
        (("group", "x", "x"), "y", (), "names 'x' twice"),
        (("group", "x"), "y", ("--rank", "0"), "positive"),
        (("group", "x"), "y", ("--rank", "2", "2", "2"), "rank has 3 entries"),
        (("group", "x"), "y", ("--rank", "auto", "2"), "'auto' stands alone"),
        (("group", "x"), "group", (), "group"),
    ],
)
def test_fit_bad_input_is_one_line(csv_files, tmp_path, capsys, coords, value, extra, message):
    folder, _ = csv_files
    args = _fit_args(folder / "train.csv", *extra, coords=coords, value=value)
    assert main([*args, "--out", str(tmp_path / "m.bt")]) == 1
    assert re.search(message, _one_error_line(capsys, "fit"))
    assert not (tmp_path / "m.bt").exists()


def test_fit_missing_file(tmp_path, capsys):
    assert main([*_fit_args(tmp_path / "nope.csv"), "--out", str(tmp_path / "m.bt")]) == 1
    assert "nope.csv' does not exist" in _one_error_line(capsys, "fit")


def test_fit_unreadable_csv_and_bad_out_folder(csv_files, tmp_path, capsys):
    folder, _ = csv_files
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    assert main([*_fit_args(binary), "--out", str(tmp_path / "m.bt")]) == 1
    _one_error_line(capsys, "fit")
    out = tmp_path / "missing-folder" / "m.bt"
    assert main([*_fit_args(folder / "train.csv"), "--out", str(out)]) == 1
    assert "does not exist" in _one_error_line(capsys, "fit")


@pytest.mark.parametrize("rank", ["x", "1.5"])
def test_non_integer_rank_is_a_one_line_usage_error(csv_files, tmp_path, capsys, rank):
    folder, _ = csv_files
    with pytest.raises(SystemExit) as exc:
        main([*_fit_args(folder / "train.csv", "--rank", rank), "--out", str(tmp_path / "m")])
    assert exc.value.code == 2
    assert "--rank: invalid rank value" in _one_error_line(capsys, "fit")


def test_predict_missing_and_bad_model_files(csv_files, tmp_path, capsys):
    folder, _ = csv_files
    new = str(folder / "new.csv")
    assert main(["predict", str(tmp_path / "none.bt"), new]) == 1
    assert "no saved model" in _one_error_line(capsys, "predict")
    assert main(["predict", new, new]) == 1  # a CSV file is not a model
    assert "is not a saved bayestensor model" in _one_error_line(capsys, "predict")


def test_predict_bad_data(csv_files, model_file, tmp_path, capsys):
    folder, _ = csv_files
    assert main(["predict", str(model_file), str(tmp_path / "nope.csv")]) == 1
    assert "does not exist" in _one_error_line(capsys, "predict")
    pd.DataFrame({"x": [1.0]}).to_csv(tmp_path / "no_group.csv", index=False)
    assert main(["predict", str(model_file), str(tmp_path / "no_group.csv")]) == 1
    assert "['group'] of the model not in" in _one_error_line(capsys, "predict")
    pd.DataFrame({"x": [1.0], "group": ["zzz"]}).to_csv(tmp_path / "unseen.csv", index=False)
    assert main(["predict", str(model_file), str(tmp_path / "unseen.csv")]) == 1
    assert "zzz" in _one_error_line(capsys, "predict")
    assert main(["predict", str(model_file), str(folder / "new.csv"), "--level", "2"]) == 1
    assert "level" in _one_error_line(capsys, "predict")


# ------------------------------------------------ full precision, Poisson Tucker, times, pipes


def test_predict_csv_holds_the_api_numbers_exactly(csv_files, model_file, capsys):
    folder, _ = csv_files
    assert main(["predict", str(model_file), str(folder / "new.csv")]) == 0
    pred = read_csv_exact(io.StringIO(capsys.readouterr().out))
    api = bt.load(model_file).predict(read_csv_exact(folder / "new.csv"))
    for c in ("mean", "sd", "lower", "upper"):
        np.testing.assert_array_equal(pred[c].to_numpy(), api[c].to_numpy())


@pytest.mark.parametrize("method", ["vi", "gibbs"])
def test_fit_poisson_tucker(tmp_path, capsys, method):
    rng = np.random.default_rng(3)
    counts = count_frame(rng.poisson(3.0, size=(4, 3, 2)), ["a", "b", "c"], "n")
    counts.to_csv(tmp_path / "counts.csv", index=False)
    opts = ["--max-iter", "8"] if method == "vi" else ["--num-warmup", "3", "--num-samples", "4"]
    args = ["fit", str(tmp_path / "counts.csv"), "--coords", "a", "b", "c", "--value", "n"]
    args += ["--model", "poisson-tucker", "--method", method, "--rank", "2", *opts, "--quiet"]
    assert main([*args, "--out", str(tmp_path / "m.bt")]) == 0
    res = bt.load(tmp_path / "m.bt")
    assert res.kind == "poisson-tucker" and res.method == method and res.ranks == (2, 2, 2)
    if method == "vi":
        assert res.info["n_iter"] <= 8
    else:
        assert (res.info["num_warmup"], res.info["num_samples"]) == (3, 4)
    assert main(["predict", str(tmp_path / "m.bt"), str(tmp_path / "counts.csv")]) == 0
    pred = read_csv_exact(io.StringIO(capsys.readouterr().out))
    api = res.predict(counts)
    # exact: the CSV holds the shortest text that reads back to the same value in the
    # prediction's own dtype (float32 when the rates are float32, in JAX's default mode)
    mean = api["mean"].to_numpy()
    np.testing.assert_array_equal(pred["mean"].to_numpy().astype(mean.dtype), mean)


@pytest.mark.parametrize(
    ("model", "option", "flag"),
    [
        ("poisson-tucker", ["--kernel", "matern12"], "--kernel"),
        ("poisson-tucker", ["--max-sweeps", "3"], "--max-sweeps"),
        ("tucker", ["--method", "vi"], "--method"),
        ("cp", ["--num-samples", "4"], "--num-samples"),
    ],
)
def test_fit_refuses_options_of_the_other_model(csv_files, tmp_path, capsys, model, option, flag):
    folder, _ = csv_files
    args = _fit_args(folder / "train.csv", "--model", model, *option)
    assert main([*args, "--out", str(tmp_path / "m.bt")]) == 1
    assert f"{flag} not accepted by --model {model}" in _one_error_line(capsys, "fit")


def test_fit_and_predict_with_a_time_column(tmp_path, capsys):
    df = bt.datasets.load("weather")
    df = df[df["time"] < 3].reset_index(drop=True)[["origin", "time", "temp"]]
    hours = np.rint(df["time"].to_numpy() * 24).astype(np.int64)
    start = pd.Timestamp("2013-01-01", tz="America/New_York")
    df["when"] = start + pd.to_timedelta(hours, unit="h")
    df.drop(columns="time").to_csv(tmp_path / "w.csv", index=False)
    args = ["fit", str(tmp_path / "w.csv"), "--coords", "origin", "when:time", "--value", "temp"]
    args += ["--rank", "2", "--max-sweeps", "5", "--time-unit", "h", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "w.bt")]) == 0
    res = bt.load(tmp_path / "w.bt")
    assert res.modes[1].time.unit == "h" and res.modes[1].time.kind == "datetime"
    new = pd.DataFrame({"origin": ["JFK", "LGA"]})
    new["when"] = (start + pd.to_timedelta([5.5, 80.0], unit="h")).tz_convert("UTC")
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(tmp_path / "w.bt"), str(tmp_path / "new.csv")]) == 0
    pred = read_csv_exact(io.StringIO(capsys.readouterr().out))
    # the times come back in the model's zone; the numbers are the API's
    assert list(pred["when"]) == [str(t) for t in new["when"].dt.tz_convert(start.tz)]
    np.testing.assert_array_equal(pred["mean"].to_numpy(), res.predict(new)["mean"].to_numpy())
    pd.DataFrame({"origin": ["JFK"], "when": ["soon"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["predict", str(tmp_path / "w.bt"), str(tmp_path / "bad.csv")]) == 1
    assert "column 'when' does not hold dates/times" in _one_error_line(capsys, "predict")


def test_datasets_export(tmp_path, capsys):
    out = tmp_path / "ozone.csv"
    assert main(["datasets", "export", "ozone", str(out)]) == 0
    meta = bt.datasets.info("ozone")
    pd.testing.assert_frame_equal(
        read_csv_exact(out, dtype=meta.dtypes), bt.datasets.load("ozone"), check_exact=True
    )
    capsys.readouterr()
    assert main(["datasets", "export", "weather", "-"]) == 0
    weather = bt.datasets.info("weather").dtypes
    back = read_csv_exact(io.StringIO(capsys.readouterr().out), dtype=weather)
    pd.testing.assert_frame_equal(back, bt.datasets.load("weather"), check_exact=True)
    assert main(["datasets", "export", "nope", str(out)]) == 1
    assert "unknown data set 'nope'" in _one_error_line(capsys, "datasets")
    assert main(["datasets", "export", "ozone", str(tmp_path / "no" / "x.csv")]) == 1
    assert "folder does not exist" in _one_error_line(capsys, "datasets")
    assert main(["datasets", "list"]) == 0 and "24 x 24 x 72" in capsys.readouterr().out


def _cli(*command: str, stdout) -> subprocess.Popen:
    root = Path(__file__).parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "bayestensor.cli", *command],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_closed_pipe_stops_quietly_after_a_line():
    """``bayestensor datasets export weather - | head -1``: no traceback, no Errno message
    (1.5 MB of CSV: far more than a pipe buffers, so the reader's exit is seen)."""
    proc = _cli("datasets", "export", "weather", "-", stdout=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"origin,time,temp") and err == ""


@pytest.mark.parametrize(
    "command",
    [["datasets"], ["datasets", "export", "ozone", "-"]],
    ids=["list", "export"],
)
def test_output_into_a_closed_pipe_stops_quietly(command):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    proc = _cli(*command, stdout=write)
    os.close(write)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert err == ""
