"""Multi-process FunBaT fits (:mod:`bayestensor.distributed`): two CPU processes on localhost.

Two worker subprocesses join one ``jax.distributed`` run (gloo CPU collectives, one device
each), each with its own part of the rows: the rows are split unevenly and so that a category,
the largest coordinates of a continuous mode and the last days of a time mode are held by one
process only (the modes must be gathered). The workers run with JAX's default float32 mode
(the fit itself computes in float64, FunBaT's default ``dtype``), so the gathers must not round
anything. Each worker saves its model; the parent fits all rows in one process and compares
predictions, factor means, noise sd, per-sweep training RMSE and the encoded modes with both
workers' models. ``rank="auto"`` (upper ranks above what an unfolding holds) makes the
comparison sensitive: the spectral start amplifies a one-ulp change of the standardisation to
~1e-5, so the multi-process start must be exactly the single-process one. The workers also
check that what is not supported with several processes is refused with a ValueError.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest

#: Fit settings shared by the workers and the single-process reference (few sweeps).
FIT = {"rank": "auto", "max_sweeps": 3, "tol": 1e-12, "progress": False}
#: Per run: the coordinates and whether hyperparameters are learned (the pattern search then
#: runs over both processes' rows too). Each of the three processes pays its compilation, so
#: the default run has categorical modes only (int and str categories; half the compilation of
#: a continuous mode — the sharded Kalman sweeps are compared on one host in
#: tests/test_sharding.py); the full one has a continuous mode, a tz-aware datetime mode (whose
#: origin, the earliest time, one process holds) and learned hyperparameters.
RUNS = {
    "quick": {"coords": {"day": "categorical", "g": "categorical"}, "learn_hyper": False},
    "full": {
        "coords": {"t": "continuous", "d": "continuous", "g": "categorical"},
        "learn_hyper": True,
    },
}


def _frame(n: int = 97) -> pd.DataFrame:
    """Noisy low-rank values over a float ``t``, a day (as an int ``day`` and a tz-aware
    datetime ``d``) and a category ``g``."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0.0, 10.0, n).round(1)
    day = rng.integers(0, 12, n)
    g = rng.integers(0, 3, n)
    y = np.sin(day / 2.0) * (1.0 + 0.3 * g) + 0.3 * np.cos(t) + 0.05 * rng.normal(size=n)
    d = pd.Timestamp("2024-03-01", tz="Europe/Paris") + pd.to_timedelta(day, unit="D")
    return pd.DataFrame({"t": t, "day": day, "d": d, "g": [f"g{v}" for v in g], "y": y})


def _parts() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Process 1: category g2, t ≥ 8 and the last two days; process 0: the rest."""
    df = _frame()
    one = (df["g"] == "g2") | (df["t"] >= 8.0) | (df["d"] >= df["d"].max() - pd.Timedelta("1D"))
    return df[~one].reset_index(drop=True), df[one].reset_index(drop=True)


def _results(res, new: pd.DataFrame) -> dict:
    """The arrays compared: predictions, factor means, noise sd, RMSE per sweep, modes."""
    mean, sd_f, _ = res.estimator.predict(_encode_new(new, res.modes))
    out = {"mean": mean, "sd_f": sd_f, "noise": np.asarray(res.noise_sd)}
    out["rmse"] = np.asarray([h["rmse"] for h in res.estimator.history_])
    for k, mode in enumerate(res.modes):
        out[f"U{k}"] = res.estimator.factor_moments(k)[0]
        if mode.kind == "continuous":
            out[f"x{k}"] = np.asarray(mode.values, dtype=np.float64)
    return out


def _encode_new(new, modes):
    from bayestensor.data import encode_new

    return encode_new(new, modes)


def _worker(rank: int, port: int, out: str, run: str) -> None:
    """One of the two processes: join the run, fit its rows, save the model; check that the
    unsupported paths say so."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # short timeouts: a failed peer ends this process in seconds, not minutes
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=2,
        process_id=rank,
        initialization_timeout=60,
        heartbeat_timeout_seconds=10,
        shutdown_timeout_seconds=10,
    )
    import bayestensor as bt
    from bayestensor.data import encode
    from bayestensor.models.funbat import FunBaT

    assert jax.process_count() == 2 and not jax.config.jax_enable_x64
    df = _parts()[rank]
    res = bt.fit(df, value="y", **FIT, **RUNS[run])
    res.save(out)  # the parent predicts with it (one compilation for all three models)
    errors = []
    for call in (
        lambda: res.update(df.iloc[:3]),
        lambda: bt.fit(df.assign(n=1), coords=["g"], value="n", model="poisson-tucker"),
        lambda: bt.fit(df, value="y", devices=1, **FIT, **RUNS[run]),
        # encoded per process (not by distributed.encode): the modes differ
        lambda: FunBaT(rank=2).fit(encode(df, RUNS[run]["coords"], "y")),
    ):
        try:
            call()
        except ValueError as err:
            errors.append(str(err))
    print(json.dumps({"rows": len(df), "errors": errors}))


def _wait(procs, timeout: float) -> list[dict]:
    """Wait for the workers; the first to fail (or the timeout: a stuck collective) ends the
    others and the test. Returns each worker's last printed JSON line."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            errors = [p.communicate()[1][-3000:] for p in procs]
            pytest.fail(f"worker failed or timed out: {errors}")
        time.sleep(0.1)
    outputs = []
    for p in procs:
        stdout, stderr = p.communicate()
        assert p.returncode == 0, stderr[-4000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("run", ["quick", pytest.param("full", marks=pytest.mark.slow)])
def test_two_processes_equal_one(tmp_path, run):
    """A fit over two localhost processes, each with its own rows, equals the fit of all rows
    in one process (to rounding), and both processes hold the same fitted model."""
    # here, not at the top: the workers import this module, and conftest's imports (gpjax …)
    # would cost each of them seconds
    from conftest import TOL

    import bayestensor as bt
    from bayestensor import api

    port = _free_port()
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        BAYESTENSOR_TEST_X64="0",  # users' default mode: the gathers must be exact anyway
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import test_distributed as t; t._worker({r}, {port}, {out!r}, {run!r})",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r, out in enumerate([str(tmp_path / "0.bt"), str(tmp_path / "1.bt")])
    ]
    df0, df1 = _parts()
    # the reference keeps the rows in process order, as the processes do (one process puts
    # them in bayestensor.api._canonical_order, which the rounding here would show)
    with mock.patch.object(api, "_canonical_order", lambda enc, df: (enc, df)):
        ref = _results(
            bt.fit(pd.concat([df0, df1], ignore_index=True), value="y", **FIT, **RUNS[run]),
            _frame().iloc[::5],
        )
    outputs = _wait(procs, timeout=120)
    assert [o["rows"] for o in outputs] == [len(df0), len(df1)] and len(df0) != len(df1)
    assert set(df1["g"]) - set(df0["g"]) and set(df1["day"]) - set(df0["day"])
    assert df1["t"].max() > df0["t"].max() and df1["d"].max() > df0["d"].max()
    for o in outputs:  # update, Poisson, devices=1, per-process modes: refused, and said why
        assert len(o["errors"]) == 4
        assert all("multi-process" in e for e in o["errors"])
    worst = {}
    for r in (0, 1):
        got = _results(bt.load(tmp_path / f"{r}.bt"), _frame().iloc[::5])
        assert sorted(got) == sorted(ref)
        for name, want in ref.items():
            assert got[name].shape == want.shape, name
            scale = max(float(np.max(np.abs(want))), 1e-300)
            err = float(np.max(np.abs(got[name] - want))) / scale
            worst[name] = max(worst.get(name, 0.0), err)
    print("max relative difference, 2 processes vs 1:", worst)
    assert all(e < TOL["sharded_vs_single"] for e in worst.values()), worst
    sd = _frame()["y"].std()
    assert ref["rmse"][-1] < 0.5 * sd  # the fit explains the data (not two untouched starts)
