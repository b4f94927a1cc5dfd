"""Cold start: the same fit in two fresh processes sharing an empty compilation cache.

The first process compiles everything and fills the cache (``BAYESTENSOR_CACHE_DIR`` pointed at a
new temporary folder); the second reads the compiled programs back. Each process reports the
``import bayestensor`` time and the ``bt.fit`` + ``predict`` time; this prints both runs and
their ratio, for FunBaT on ``beijing_pm25`` fold 0 (Tucker rank (5, 5, 3), Matérn-3/2, at most
100 sweeps, as in ``bench_funbat.py``) and for ``bayestensor demo --tiny`` (whole CLI command).
A third line per case runs with the cache switched off (``BAYESTENSOR_COMPILE_CACHE=0``).

With ``--defaults`` it times, instead, ``bt.fit(train, coords=..., value=...)`` with every
default (automatic ranks, the local residual stage) on fold 0 of ``beijing_pm25`` and
``us_temp``: issue 14's cold fits. "fit" there includes the first use of ``bt.fit``, which
imports JAX and the fitting modules (``import bayestensor`` itself imports almost nothing).

Usage: ``python benchmarks/bench_cold_start.py [--data-dir DIR] [--skip-demo] [--defaults]
[--repeat N]`` (``--repeat``: the warm process N times, with the median, min and max fit time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "funbat"

FIT = """
import json, sys, time
t0 = time.perf_counter()
import bayestensor as bt
import pandas as pd
t1 = time.perf_counter()
df = pd.read_csv(sys.argv[1])
train, test = df[df["split"] == "train"], df[df["split"] == "test"]
t2 = time.perf_counter()
res = bt.fit(train, coords=["temperature", "pressure", "day"], value="pm25", rank=(5, 5, 3),
             kernel="matern32", max_sweeps=100, progress=False)
pred = res.predict(test)
t3 = time.perf_counter()
rmse = float(((pred["mean"] - test["pm25"]) ** 2).mean() ** 0.5)
print(json.dumps({"import": t1 - t0, "fit": t3 - t2, "rmse": rmse}))
"""

DEFAULTS = """
import json, sys, time
t0 = time.perf_counter()
import bayestensor as bt
import pandas as pd
t1 = time.perf_counter()
df = pd.read_csv(sys.argv[1])
coords, value = json.loads(sys.argv[2]), sys.argv[3]
train, test = df[df["split"] == "train"], df[df["split"] == "test"]
t2 = time.perf_counter()
res = bt.fit(train, coords=coords, value=value, progress=False)
t3 = time.perf_counter()
pred = res.predict(test)
t4 = time.perf_counter()
rmse = float(((pred["mean"] - test[value]) ** 2).mean() ** 0.5)
print(json.dumps({"import": t1 - t0, "fit": t3 - t2, "predict": t4 - t3, "rmse": rmse}))
"""

#: issue 14's cold-fit sets (their coordinates and value as the battery has them)
DEFAULT_SETS = ("beijing_pm25", "us_temp")


def _env(cache: Path | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BAYESTENSOR_", "JAX_COMPILATION", "JAX_PERSISTENT"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if cache is None:
        env["BAYESTENSOR_COMPILE_CACHE"] = "0"
    else:
        env["BAYESTENSOR_CACHE_DIR"] = str(cache)
    return env


def _run(cmd: list[str], cache: Path | None, cwd: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=_env(cache), cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return wall, json.loads(last) if last.startswith("{") else {}


def _case(name: str, cmd: list[str], tmp: Path, repeat: int = 1) -> None:
    cache = tmp / f"cache-{name}"
    runs = [
        ("cache off", None),
        ("cold (empty cache)", cache),
        *[("warm (cache filled)", cache)] * repeat,
    ]
    walls: dict[str, list[float]] = {}
    fits: list[float] = []
    for label, folder in runs:
        wall, info = _run(cmd, folder, tmp)
        walls.setdefault(label, []).append(wall)
        if label.startswith("warm") and "fit" in info:
            fits.append(info["fit"])
        extra = "".join(f", {k} {v:.2f}{' s' if k != 'rmse' else ''}" for k, v in info.items())
        print(f"{name:>12} | {label:<20} | wall {wall:6.2f} s{extra}", flush=True)
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
    warm = float(np.median(walls["warm (cache filled)"]))
    ratio = walls["cold (empty cache)"][0] / warm
    print(f"{name:>12} | cold / warm = {ratio:.2f}x, cache {size:.1f} MiB", flush=True)
    if repeat > 1 and fits:  # this machine's speed varies by ±30 % from run to run
        print(
            f"{name:>12} | warm fit over {len(fits)} runs: median {np.median(fits):.2f} s, "
            f"min {min(fits):.2f} s, max {max(fits):.2f} s",
            flush=True,
        )
    print(flush=True)


def main(args: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--defaults", action="store_true", help="bt.fit with defaults (issue 14)")
    p.add_argument(
        "--repeat", type=int, default=1, help="warm runs per case (median, min and max reported)"
    )
    opts = p.parse_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if opts.defaults:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from battery import SHARED_SETS

            for name in DEFAULT_SETS:
                coords, value = SHARED_SETS[name]
                path = opts.data_dir / name / "fold0.csv"
                if not path.is_file():
                    print(f"reference data not found at {path}; skipping {name}")
                    continue
                cmd = [sys.executable, "-c", DEFAULTS, str(path), json.dumps(coords), value]
                _case(name, cmd, tmp, opts.repeat)
            return
        path = opts.data_dir / "beijing_pm25" / "fold0.csv"
        if path.is_file():
            _case("beijing_pm25", [sys.executable, "-c", FIT, str(path)], tmp, opts.repeat)
        else:
            print(f"reference data not found at {path}; skipping the beijing_pm25 fit")
        if not opts.skip_demo:
            cli = "import sys; from bayestensor.cli import main; sys.exit(main(sys.argv[1:]))"
            demo = [sys.executable, "-c", cli, "demo", "--tiny", "--out", "demo-out"]
            _case("demo --tiny", demo, tmp, opts.repeat)


if __name__ == "__main__":
    main()
