"""Time of a sharded FunBaT fit on 1, 2, … devices of one host, and its agreement with the
one-device fit.

A Tucker fit (rank 3) of three continuous modes with 300 × 400 × 2,000 unique coordinates,
``--sweeps`` sweeps on ``--n`` observations, once per device count in ``--devices`` (each time
including its compilation). Without accelerators, ``--host-devices`` forces that many CPU
"devices" (``XLA_FLAGS=--xla_force_host_platform_device_count``, set before JAX starts); they
share the machine's cores, so expect no speed-up there — the point is that the same code runs,
and equals the one-device fit.

Usage: ``python benchmarks/bench_shard.py [--n 1000000] [--devices 1 2 4] [--host-devices 4]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sweeps", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--host-devices", type=int, default=4)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args(argv)
    if "jax" in sys.modules:
        raise RuntimeError("run this script in a fresh process (JAX must not be started yet)")
    flags = os.environ.get("XLA_FLAGS", "")
    if args.host_devices > 1 and "host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.host_devices}"
        ).strip()

    import jax
    import numpy as np

    from bayestensor.data import encode
    from bayestensor.models.funbat import FunBaT

    print(f"JAX {jax.__version__}, {len(jax.devices())} visible devices: {jax.devices()[0]} …")
    rng = np.random.default_rng(0)
    n = args.n
    grids = [np.sort(rng.uniform(0, 10, size)) for size in (300, 400, 2000)]
    coords = [g[rng.integers(0, g.size, n)] for g in grids]
    y = (
        np.sin(coords[0]) * np.cos(0.5 * coords[1])
        + 0.3 * np.cos(coords[2]) * coords[0] / 10
        + 0.1 * rng.normal(size=n)
    )
    import pandas as pd

    df = pd.DataFrame({"a": coords[0], "b": coords[1], "c": coords[2], "y": y})
    enc = encode(df, {c: "continuous" for c in "abc"}, "y")
    print(f"n = {n}, unique coordinates {enc.shape}, {args.sweeps} sweeps, {args.dtype}")
    print("| devices | fit (s, incl. compile) | max rel. diff vs 1 device (factor means, RMSE) |")
    print("|---:|---:|---:|")
    ref, out = None, {}
    for d in args.devices:
        est = FunBaT(
            "tucker", rank=3, max_sweeps=args.sweeps, tol=1e-12, dtype=args.dtype, devices=d
        )
        t0 = time.perf_counter()
        est.fit(enc)
        seconds = time.perf_counter() - t0
        means = np.concatenate([est.factor_moments(k)[0].ravel() for k in range(3)])
        rmse = np.asarray([h["rmse"] for h in est.history_])
        if ref is None:
            ref = (means, rmse)
        diff = max(
            float(np.max(np.abs(means - ref[0])) / np.max(np.abs(ref[0]))),
            float(np.max(np.abs(rmse - ref[1])) / np.max(np.abs(ref[1]))),
        )
        out[d] = {"seconds": seconds, "diff": diff}
        print(f"| {d} | {seconds:.1f} | {diff:.1e} |", flush=True)
    return out


if __name__ == "__main__":
    main()
