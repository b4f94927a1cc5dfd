"""FunBaT in JAX's default mode (x64 off): the default fit gives the float64 answer, and
``dtype="float32"`` stays close to it.

The test session runs in float64 (conftest), so the default-mode fits run in a subprocess with
x64 off; all fit the same synthetic data with the same settings and predict the same rows.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    import jax
    import bayestensor as bt
    assert not jax.config.jax_enable_x64
    tr, te = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
    out = {}
    for dtype in ("float64", "float32"):
        res = bt.fit(tr, coords=["a", "b"], value="y", rank=2, progress=False,
                     max_sweeps=40, dtype=dtype, local=None)
        p = res.predict(te)
        out[dtype] = {"mean": p["mean"].tolist(), "sd": p["sd"].tolist(),
                      "dtype": str(res.estimator.state_.noise.mean.dtype)}
    assert not jax.config.jax_enable_x64  # the scoped precision did not leak
    print(json.dumps(out))
    """
)


def _data():
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(0, 10, 400), rng.uniform(0, 5, 400)
    f = np.sin(x1) * np.cos(1.3 * x2) + 0.5 * np.cos(0.5 * x1) * np.sin(x2)
    df = pd.DataFrame({"a": x1, "b": x2, "y": f + 0.05 * rng.normal(size=400)})
    return df.iloc[:300], df.iloc[300:], f[300:]


@pytest.mark.x64  # its child process runs with x64 off whatever the pass: run it once
def test_float32_fit_matches_float64(tmp_path):
    tr, te, f_true = _data()
    tr.to_csv(tmp_path / "tr.csv", index=False, float_format="%.17g")
    te.to_csv(tmp_path / "te.csv", index=False, float_format="%.17g")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "tr.csv"), str(tmp_path / "te.csv")],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out32 = json.loads(proc.stdout.strip().splitlines()[-1])
    span = np.ptp(f_true)
    res = bt.fit(
        tr, coords=["a", "b"], value="y", rank=2, progress=False, max_sweeps=40, local=None
    )
    p64 = res.predict(te)
    # by default the fit runs in float64 whatever the global flag: the user's default mode
    # gives the float64 answer
    default = out32["float64"]
    assert default["dtype"] == "float64"
    np.testing.assert_allclose(default["mean"], p64["mean"], rtol=TOL["behaviour_rel"])
    np.testing.assert_allclose(default["sd"], p64["sd"], rtol=TOL["behaviour_rel"])
    # dtype="float32" computes in float32 and stays close to it
    r32 = out32["float32"]
    assert r32["dtype"] == "float32"
    np.testing.assert_allclose(
        r32["mean"], p64["mean"], atol=TOL["float32_vs_float64"] * span, rtol=0
    )
    np.testing.assert_allclose(r32["sd"], p64["sd"], rtol=TOL["float32_vs_float64"] * 10)
    # and the fit itself is good: the test rows' noiseless values within a few noise sds
    assert np.sqrt(np.mean((np.asarray(r32["mean"]) - f_true) ** 2)) < TOL["float32_fit_rmse"]
