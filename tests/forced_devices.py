"""Run a test module's ``_worker(out, run)`` in a subprocess with four forced host devices
(float64), and read back what it wrote: the JSON of its last stdout line and its ``.npz``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_worker(test_file: str, tmp_path, run: str) -> tuple[dict, object]:
    """``(arrays, info)`` of ``_worker(out, run)`` of the module at ``test_file``; a stuck
    collective fails by timeout (300 s for ``run="quick"``, else 900 s) instead of hanging."""
    out = tmp_path / f"{run}.npz"
    module = Path(test_file).stem
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_ENABLE_X64="1",
        # the worker imports its module and so conftest, which sets the flag from this
        # variable: the comparisons are float64 ones in both passes
        BAYESTENSOR_TEST_X64="1",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(Path(test_file).parent), *sys.path]),
    )
    code = f"import {module}; {module}._worker({str(out)!r}, {run!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300 if run == "quick" else 900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as f:
        return dict(f), info
