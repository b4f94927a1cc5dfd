"""FunBaT ``predict`` on the training rows beside the time of one fit sweep.

Fits FunBaT (Tucker, rank 3, Matérn-3/2) on ``n`` synthetic observations of a 3-mode tensor
with continuous coordinates, times each sweep (through the fit's callback; the first sweep,
which compiles, is left out), then times ``FitResult.predict`` on the same rows twice (the
first call compiles) and on a sample of new rows between and beyond the training coordinates.
Run it with ``PYTHONPATH`` pointing at another checkout to time that checkout's code.

Usage: ``python benchmarks/bench_predict.py [--n 1000000] [--shape 300 400 2000]
[--sweeps 4] [--model tucker]``

Measured on 2 shared cores (10⁶ rows, 300 × 400 × 2000, rank 3, 4 sweeps; load average ~3 from
other jobs): Tucker, one sweep 0.71–0.74 s; ``predict`` on the training rows 23.9 s before the
blocked prediction (row-by-row bridge, 24 µs a row, 32 sweeps), 0.49 s after (0.69 of a sweep),
same predictive means; first calls (compiling) 26.1 s and 4.6 s. CP: one sweep 0.34 s,
``predict`` 0.40 s after (1.2 sweeps: a CP sweep is cheap). Later runs (2026-12-02: Tucker 0.60
of a sweep, CP 0.81, Tucker rank 6 0.07) are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--shape", type=int, nargs="+", default=[300, 400, 2000])
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--model", default="tucker", choices=["tucker", "cp"])
    parser.add_argument("--rank", type=int, default=3)
    args = parser.parse_args()

    import bayestensor
    from bayestensor.data import encode
    from bayestensor.models.funbat import FitResult, FunBaT

    print(f"bayestensor from {os.path.dirname(bayestensor.__file__)}")
    print(f"load average before: {os.getloadavg()}")
    rng = np.random.default_rng(0)
    names = [f"x{k}" for k in range(len(args.shape))]
    axes = [np.sort(rng.uniform(0.0, 10.0, size)) for size in args.shape]
    idx = [rng.integers(0, size, args.n) for size in args.shape]
    y = np.sin(axes[0][idx[0]]) * np.cos(0.5 * axes[1][idx[1]])
    for k in range(2, len(args.shape)):
        y = y + 0.3 * np.sin(0.7 * axes[k][idx[k]])
    y = y + 0.1 * rng.normal(size=args.n)
    df = pd.DataFrame({name: a[i] for name, a, i in zip(names, axes, idx, strict=True)})
    df["y"] = y

    enc = encode(df, names, "y")
    stamps = []
    est = FunBaT(model=args.model, rank=args.rank, max_sweeps=args.sweeps, tol=1e-12)
    t0 = time.perf_counter()
    est.fit(enc, callback=lambda record: stamps.append(time.perf_counter()))
    fit_s = time.perf_counter() - t0
    sweep_s = float(np.median(np.diff(stamps))) if len(stamps) > 1 else fit_s
    result = FitResult(est, "y")
    print(
        f"fit: n={args.n:,} shape={tuple(args.shape)} {args.model} rank {args.rank}: "
        f"{len(stamps)} sweeps in {fit_s:.1f} s; one sweep (median after the first) "
        f"{sweep_s:.2f} s"
    )

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        pred = result.predict(df)
        times.append(time.perf_counter() - t0)
    print(
        f"predict on the {args.n:,} training rows: first call {times[0]:.2f} s, second "
        f"{times[1]:.2f} s ({1e6 * times[1] / args.n:.2f} µs a row; "
        f"{times[1] / sweep_s:.2f} sweeps)"
    )

    m = min(args.n, 100_000)
    new = pd.DataFrame(
        {name: rng.uniform(-1.0, 11.0, m).round(3) for name in names}  # repeats, beyond ends
    )
    t0 = time.perf_counter()
    result.predict(new)
    t_new = time.perf_counter() - t0
    print(f"predict on {m:,} new rows (between and beyond): {t_new:.2f} s")
    print(f"mean of the predictive means {pred['mean'].mean():.10g}, sd {pred['sd'].mean():.10g}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
