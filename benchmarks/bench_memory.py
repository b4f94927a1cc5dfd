"""Memory over many fits of different sizes in one process (what a cross-validation loop does).

Fits ``n`` FunBaT models on data of ``3·(30 + i)`` rows (``i = 0 … n−1``, every fit a new size)
and predicts, printing the resident memory and the number of memory maps every 10 fits and the
peak at the end. Without releasing compiled code each new size added ~23 MB and ~745 maps until
XLA failed near fit 86 (issue 12); with :func:`bayestensor.driver.bound_compiled` memory stays
flat.

With ``--defaults``: ``bt.fit`` with its defaults (learned ranks, the local stage and the
checks that refit small data at other ranks) on smooth surfaces of ``(14 + i)²`` rows with
noise of sd 0.01, ``i = 0 … n−1``, each fitted twice (the second fit of the same rows
compiles nothing, except where the bound on held programs is reached:
:func:`bayestensor.driver.call_scope`), then predicted.

Usage: ``python benchmarks/bench_memory.py [--fits 130] [--defaults]`` (JAX's default float32,
as users run).
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


def _surface_fits(n_side: int, rng):
    """Defaults on an ``n_side²`` smooth surface with noise of sd 0.01, twice; the result and
    the second fit's seconds."""
    g = np.linspace(0.0, 1.0, n_side)
    X, Y = np.meshgrid(g, g, indexing="ij")
    v = np.sin(3 * X) * np.cos(2 * Y) + 0.5 * np.sin(5 * X * Y)
    df = pd.DataFrame({"x": X.ravel(), "y": Y.ravel(), "v": v.ravel()})
    df["v"] += 0.01 * rng.normal(size=len(df))
    bt.fit(df, coords=["x", "y"], value="v", progress=False)
    t = time.perf_counter()
    res = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    seconds = time.perf_counter() - t
    res.predict(df)
    return res, seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=130)
    parser.add_argument("--defaults", action="store_true", help="defaults on small surfaces")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    again = " | fit again (s)" if args.defaults else ""
    print(f"| fit | RSS (MB) | memory maps | seconds{again} |\n|---:|---:|---:|---:|", end="")
    print("---:|" if args.defaults else "")
    for i in range(args.fits):
        if args.defaults:
            res, t_again = _surface_fits(14 + i, rng)
        else:
            m = 30 + i
            t = np.repeat(np.linspace(0, 1, m), 3)
            g = np.tile(["a", "b", "c"], m)
            df = pd.DataFrame({"t": t, "g": g, "y": np.sin(6 * t) + rng.normal(0, 0.1, 3 * m)})
            res = bt.fit(df, coords=["t", "g"], value="y", rank=2, max_sweeps=2, progress=False)
            res.predict(df)
        if args.defaults or i % 10 == 0 or i == args.fits - 1:
            rss, maps = _status("VmRSS"), _maps()
            row = f"| {i} | {rss:.0f} | {maps} | {time.perf_counter() - t0:.0f} |"
            print(row + (f" {t_again:.1f} |" if args.defaults else ""), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB over {args.fits} fits")
    return {"peak_mb": peak}


if __name__ == "__main__":
    main()
