"""The persistent compilation cache switched on at import (bayestensor/_cache.py), and lazy imports.

Each case runs ``import bayestensor`` in a fresh Python with a temporary folder, since both the
cache settings and the import cost are decided once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import bayestensor as bt

ROOT = Path(__file__).resolve().parents[1]

#: Printed by the child: the folder bayestensor chose, JAX's settings, what got imported.
REPORT = """
import json, sys
import bayestensor
from bayestensor import _cache
imported = sorted(m for m in ("jax", "pandas", "gpjax", "numpyro", "scipy", "matplotlib")
                  if m in sys.modules)
import jax
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
    "min_size": jax.config.jax_persistent_cache_min_entry_size_bytes,
    "imported": imported,
}))
"""


def run_child(tmp_path, code=REPORT, **env):
    """Run ``code`` in a fresh Python with a clean cache environment plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BAYESTENSOR_", "JAX_COMPILATION", "JAX_PERSISTENT", "XDG_CACHE"))
    }
    base["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")])
    base.update(env)
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out


def report(tmp_path, **env):
    out = run_child(tmp_path, **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG folder layout")
def test_default_folder_and_thresholds(tmp_path):
    r = report(tmp_path)
    assert r["dir"] == str((tmp_path / "xdg" / "bayestensor" / "jax").resolve())
    assert Path(r["dir"]).is_dir()
    assert r["min_time"] == 0.0
    assert r["min_size"] == -1


def test_import_pulls_in_no_heavy_dependency(tmp_path):
    assert report(tmp_path)["imported"] == []


def test_folder_from_environment(tmp_path):
    r = report(tmp_path, BAYESTENSOR_CACHE_DIR=str(tmp_path / "mine"))
    assert r["dir"] == str((tmp_path / "mine").resolve())


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_opt_out(tmp_path, value):
    r = report(tmp_path, BAYESTENSOR_COMPILE_CACHE=value)
    assert r["dir"] is None
    assert r["min_time"] == 1.0
    assert not (tmp_path / "xdg" / "bayestensor").exists()


def test_user_jax_settings_are_kept(tmp_path):
    r = report(
        tmp_path,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "theirs"),
        BAYESTENSOR_CACHE_DIR=str(tmp_path / "mine"),
    )
    assert r["dir"] == str(tmp_path / "theirs")
    assert r["min_time"] == 1.0
    assert not (tmp_path / "mine").exists()
    r = report(tmp_path, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    assert r["min_time"] == 0.5
    assert r["dir"] is not None


def test_jax_imported_first(tmp_path):
    """With JAX imported before bayestensor the settings go through jax.config.update."""
    code = "import jax\n" + REPORT
    out = run_child(tmp_path, code, BAYESTENSOR_CACHE_DIR=str(tmp_path / "mine"))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["dir"] == str((tmp_path / "mine").resolve())
    assert r["min_time"] == 0.0
    code = "import jax\njax.config.update('jax_compilation_cache_dir', 'x')\n" + REPORT
    out = run_child(tmp_path, code, BAYESTENSOR_CACHE_DIR=str(tmp_path / "mine"))
    assert json.loads(out.stdout.strip().splitlines()[-1])["dir"] == "x"


def test_unwritable_folder_never_fails_the_import(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    # named by the user: one warning (an error under -W error, so check it without -W error)
    code = "import warnings\nwarnings.simplefilter('default')\n" + REPORT
    out = run_child(tmp_path, code, BAYESTENSOR_CACHE_DIR=str(blocker / "sub"))
    assert out.returncode == 0, out.stderr
    assert "BAYESTENSOR_CACHE_DIR" in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["dir"] is None
    # the default folder: silently no cache
    r = report(tmp_path, XDG_CACHE_HOME=str(blocker))
    assert r["dir"] is None


def test_compiled_programs_land_in_the_folder(tmp_path):
    code = (
        "import bayestensor, jax, jax.numpy as jnp\n"
        "print(jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).sum())\n"
    )
    out = run_child(tmp_path, code, BAYESTENSOR_CACHE_DIR=str(tmp_path / "mine"))
    assert out.returncode == 0, out.stderr
    assert any((tmp_path / "mine").iterdir())


#: A small FunBaT fit (two continuous modes, so the Matérn forms come from gpjax) and its
#: predictions, with whether the process traced anything (imported gpjax).
FIT = """
import json, sys
import numpy as np, pandas as pd
import bayestensor as bt
sys.path.insert(0, sys.argv[1])
from test_cache import small_fit
mean, sd = small_fit(bt)
print(json.dumps({"mean": mean.tolist(), "sd": sd.tolist(), "traced": "gpjax" in sys.modules}))
"""


def small_fit(bt):
    """Fit and predict the small problem; the predictive means and sds."""
    rng = np.random.default_rng(0)
    a, b = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 2, 10), indexing="ij")
    df = pd.DataFrame({"a": a.ravel(), "b": b.ravel()})
    df["y"] = np.sin(3 * df.a) * np.cos(df.b) + 0.05 * rng.normal(size=len(df))
    # the low-rank fit alone: its programs are the ones kept on disk
    res = bt.fit(
        df, coords=["a", "b"], value="y", rank=(2, 2), max_sweeps=3, progress=False, local=None
    )
    pred = res.predict(pd.DataFrame({"a": [0.05, 0.5, 0.95], "b": [0.1, 1.0, 1.9]}))
    return pred["mean"].to_numpy(), pred["sd"].to_numpy()


def _fit_child(tmp_path, **env):
    # the child computes in the precision of this test run (float64, or float32 in the f32 pass)
    x64 = "1" if jax.config.jax_enable_x64 else "0"
    code = FIT.replace("sys.argv[1]", repr(str(Path(__file__).parent)))
    out = run_child(tmp_path, code, JAX_ENABLE_X64=x64, **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_reuses_the_traced_fit(tmp_path, tol):
    """The fit's traced programs are kept on disk (bayestensor/_export.py): a second process
    predicts exactly what the first did without tracing (gpjax, which the first trace imports,
    is never imported), and both agree with this process's plain ``jax.jit`` fit."""
    folder = tmp_path / "cache"
    first = _fit_child(tmp_path, BAYESTENSOR_CACHE_DIR=str(folder))
    programs = sorted((folder / "bayestensor-programs").glob("*.jaxexport"))
    assert first["traced"] and len(programs) >= 4  # initial state, sweep, marginals, rows
    second = _fit_child(tmp_path, BAYESTENSOR_CACHE_DIR=str(folder))
    assert not second["traced"]
    assert second["mean"] == first["mean"] and second["sd"] == first["sd"]
    mean, sd = small_fit(bt)  # this process has no cache folder: plain jax.jit
    np.testing.assert_allclose(first["mean"], mean, rtol=tol["exported_vs_jit"])
    np.testing.assert_allclose(first["sd"], sd, rtol=tol["exported_vs_jit"])


@pytest.mark.slow
def test_damaged_program_files_are_traced_anew(tmp_path):
    folder = tmp_path / "cache"
    first = _fit_child(tmp_path, BAYESTENSOR_CACHE_DIR=str(folder))
    programs = sorted((folder / "bayestensor-programs").glob("*.jaxexport"))
    for path in programs:
        path.write_bytes(path.read_bytes()[:100])
    again = _fit_child(tmp_path, BAYESTENSOR_CACHE_DIR=str(folder))
    assert again["traced"] and again["mean"] == first["mean"] and again["sd"] == first["sd"]
    assert all(path.stat().st_size > 100 for path in programs)
