"""Memory over many fits of different sizes in one process (what a cross-validation loop does).

Fits ``n`` FunBaT models on data of ``3·(30 + i)`` rows (``i = 0 … n−1``, every fit a new size)
and predicts, printing the resident memory and the number of memory maps every 10 fits and the
peak at the end. Without releasing compiled code each new size added ~23 MB and ~745 maps until
XLA failed near fit 86 (issue 12); with :func:`bayestensor.driver.bound_compiled` memory stays
flat.

Usage: ``python benchmarks/bench_memory.py [--fits 130]`` (JAX's default float32, as users run).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

import bayestensor as bt


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=130)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    print("| fit | RSS (MB) | memory maps | seconds |\n|---:|---:|---:|---:|")
    for i in range(args.fits):
        m = 30 + i
        t = np.repeat(np.linspace(0, 1, m), 3)
        g = np.tile(["a", "b", "c"], m)
        df = pd.DataFrame({"t": t, "g": g, "y": np.sin(6 * t) + rng.normal(0, 0.1, 3 * m)})
        res = bt.fit(df, coords=["t", "g"], value="y", rank=2, max_sweeps=2, progress=False)
        res.predict(df)
        if i % 10 == 0 or i == args.fits - 1:
            rss, maps = _status("VmRSS"), _maps()
            print(f"| {i} | {rss:.0f} | {maps} | {time.perf_counter() - t0:.0f} |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB over {args.fits} fits")
    return {"peak_mb": peak}


if __name__ == "__main__":
    main()
