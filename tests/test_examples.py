"""Every example runs with --tiny, writes a figure, and passes its own ``check_results``.

The protocol of ``examples/*.py``: ``main(args)`` takes ``--tiny`` and ``--out DIR`` and
returns a results dict; ``check_results(results)`` asserts what a tiny run must show.
"""

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
def test_example_follows_the_protocol(path):
    text = path.read_text()
    assert text.startswith("# %% [markdown]"), "examples are jupytext percent-format scripts"
    module = _load(path)
    assert callable(module.main) and callable(module.check_results)


#: Examples whose tiny run is slow marked (they run at full size in ``nox -s examples`` and with
#: ``pytest -m slow``): those over 30 s on the 2-core CI machine (ozone_xarray: two fits, two
#: predict compiles and a save/load, 30 s of CPU), and, for the CI's 20-minute budget, the
#: PDE and stock examples (12-25 s each), whose solvers the PDE and GP tests cover, and the
#: FunBaT ones (21-24 s each over both passes; the README's quick start test fits FunBaT).
SLOW_EXAMPLES = {
    "flights_poisson",
    "ozone_xarray",
    "pde_1d",
    "pde_2d",
    "stocks_gp",
    "weather_mixed",
    "ozone_funbat",
}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_EXAMPLES else p for p in EXAMPLES],
    ids=lambda p: p.stem,
)
def test_example_runs_tiny(path, tmp_path):
    module = _load(path)
    results = module.main(["--tiny", "--out", str(tmp_path)])
    assert list(tmp_path.glob("*.png")), "the example wrote no figure"
    assert results
    module.check_results(results)
