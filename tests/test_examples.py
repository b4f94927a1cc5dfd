"""Every example runs with --tiny and produces sensible numbers and its figure."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_tiny(path, tmp_path):
    results = _load(path).main(["--tiny", "--out", str(tmp_path)])
    assert list(tmp_path.glob("*.png")), "the example wrote no figure"
    assert results
    for per_kernel in results.values():
        best, linear = per_kernel["best"], per_kernel["linear"]
        # the kernel chosen by evidence predicts held-out months about as well as linear
        # interpolation (a strong baseline for random-walk-like prices), with calibrated bands
        assert best["rmse"] <= 1.25 * linear["rmse"]
        assert 0.85 <= best["coverage"] <= 1.0
