"""FunBaT at scale: time and peak memory against the number of observations, and a streaming
update against a refit.

Data: a time-indexed tensor of three continuous modes, ``day`` (2,000 days), ``site`` (300)
and ``depth`` (400), a smooth function of the three plus Gaussian noise (sd 0.1), observed at
``n`` random cells (``n / 2,000`` rows a day).

``--sizes N …`` (default 1e5 1e6): one fresh process per size fits ``bt.fit(df, coords=...,
value=..., rank=3, max_sweeps=8, tol=1e-12)`` (8 sweeps, as in the issue's measurement) and reports
the wall time (compilation included), the time of the sweeps alone and the process's peak RSS;
then the time slope ``d log t / d log n`` between consecutive sizes.

``--devices 1 4`` (with ``--sizes``): each size on each device count, one fresh process each,
the rows split over that many devices (``bt.fit(..., devices=d)``; on a machine without
accelerators ``d`` host CPU devices are forced,
``XLA_FLAGS=--xla_force_host_platform_device_count=d`` in the child's environment before JAX
starts): wall time, time of the sweeps (the second,
compiled fit), peak RSS, and the largest difference of the predictions on 5,000 cells from the
one-device fit, relative to their largest entry; the load average of the machine after each run.

``--parts N …``: the same fits out of core — the rows written as CSV files of 10⁶ rows, then
``bt.fit(folder, ...)`` in a fresh process (:mod:`bayestensor.models.funbat.blocked`): wall time
(reading, encoding, the warm start on a 200,000-row sample and 8 blocked sweeps) and peak RSS.

``--update N`` (default 1e6): a fit with **defaults** on ``N`` rows of days 0 … 1,999, then one new
day (day 2,000, ``N / 2,000`` rows): ``result.update(new_day)`` (first call, compiling for the new
sizes, then a second day compiled), against a refit of all rows with defaults (timed the second
time, compiled: the refit's best case). Both are scored by RMSE against the noiseless function on
held-out cells, on the new day and on all days.

Runs in JAX's default precision (float32) unless ``--x64``. Usage::

    python benchmarks/bench_scale.py --sizes 1e5 1e6 1e7
    python benchmarks/bench_scale.py --update 1e6 --sizes --seeds 41 42 43
    python benchmarks/bench_scale.py --update 0 --sizes 1e5 1e6 --devices 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DAYS, SITES, DEPTHS = 2000, 300, 400
NOISE = 0.1


def truth(day, site, depth):
    """The noiseless function (a rank-3 Tucker-like smooth signal)."""
    import numpy as np

    s, z, d = site / SITES, depth / DEPTHS, day / 365.0
    return (
        np.sin(2 * np.pi * d) * np.cos(3.0 * s)
        + 0.5 * np.exp(-z) * np.sin(2.0 * s + 1.0)
        + 0.3 * np.cos(2 * np.pi * d / 3.0) * z
    )


def rows(rng, n: int, days):
    """``n`` noisy rows at random cells of ``days``, the sites and the depths."""
    import numpy as np
    import pandas as pd

    day = rng.choice(np.asarray(days, dtype=float), n)
    site = rng.integers(0, SITES, n).astype(float)
    depth = rng.integers(0, DEPTHS, n).astype(float)
    f = truth(day, site, depth)
    frame = pd.DataFrame({"day": day, "site": site, "depth": depth})
    return frame.assign(y=f + NOISE * rng.normal(size=n)), f


COORDS = ["day", "site", "depth"]


def _one_size(n: int, devices=None, predictions: str | None = None) -> dict:
    """Fit ``n`` rows (8 sweeps, rank 3) in this process on ``devices`` (None: every visible
    device); time and peak RSS. With ``predictions``: save the predicted means on 5,000 fixed
    cells there (``.npy``)."""
    import numpy as np

    import bayestensor as bt

    rng = np.random.default_rng(0)
    df, _ = rows(rng, n, range(DAYS))
    options = dict(coords=COORDS, value="y", rank=3, max_sweeps=8, tol=1e-12, progress=False)
    t0 = time.perf_counter()
    res = bt.fit(df, devices=devices, **options)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    bt.fit(df, devices=devices, **options)
    warm = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    if predictions:
        test, _ = rows(np.random.default_rng(5), 5000, range(DAYS))
        np.save(predictions, res.predict(test)["mean"].to_numpy())
    return {"n": n, "wall": wall, "warm": warm, "rss_gb": rss, "sweeps": len(res.history)}


def _child_env(devices: int) -> dict:
    """The environment of a child process that fits on ``devices`` devices: without
    accelerators, that many host CPU devices forced before JAX starts."""
    env = dict(os.environ)
    if devices > 1 and "host_platform_device_count" not in env.get("XLA_FLAGS", ""):
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    return env


def _by_devices(sizes, device_counts, x64: bool) -> list[dict]:
    """Each size on each device count, one fresh process each; a markdown table."""
    import tempfile

    import numpy as np

    print(
        "| n | devices | fit (s, fresh process) | sweeps (s, compiled fit) | peak RSS (GB) "
        "| max rel. diff of predictions vs 1 device | load average |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            ref = None
            for d in device_counts:
                path = os.path.join(folder, f"pred_{int(n)}_{d}.npy")
                cmd = [sys.executable, __file__, "--one", str(n), "--ndev", str(d)]
                cmd += ["--predictions", path] + (["--x64"] if x64 else [])
                line = subprocess.run(
                    cmd, env=_child_env(d), check=True, capture_output=True, text=True
                ).stdout
                r = json.loads(line.strip().splitlines()[-1])
                r["devices"] = d
                r["load"] = float(open("/proc/loadavg").read().split()[0])
                pred = np.load(path)
                if ref is None:
                    ref = pred
                r["diff"] = float(np.max(np.abs(pred - ref)) / np.max(np.abs(ref)))
                out.append(r)
                print(
                    f"| {r['n']:.0e} | {d} | {r['wall']:.1f} | {r['warm']:.1f} "
                    f"| {r['rss_gb']:.2f} | {r['diff']:.1e} | {r['load']:.1f} |",
                    flush=True,
                )
    return out


def _one_parts(n: int, folder: str) -> dict:
    """Fit the CSV parts in ``folder`` (``n`` rows; 8 sweeps, rank 3) out of core; time and
    peak RSS of this process."""
    import bayestensor as bt

    t0 = time.perf_counter()
    res = bt.fit(folder, coords=COORDS, value="y", rank=3, max_sweeps=8, tol=1e-12, progress=False)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "wall": wall, "rss_gb": rss, "sweeps": len(res.history)}


def write_parts(n: int, folder: str, part_rows: int = 1_000_000) -> None:
    """``n`` rows of the benchmark's data as CSV files of ``part_rows`` rows in ``folder``."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i, start in enumerate(range(0, n, part_rows)):
        df, _ = rows(rng, min(part_rows, n - start), range(DAYS))
        df.to_csv(os.path.join(folder, f"part{i:04d}.csv"), index=False)


def _rmse(res, test, f) -> float:
    import numpy as np

    return float(np.sqrt(np.mean((res.predict(test)["mean"].to_numpy() - f) ** 2)))


def _scores(res, test_new, f_new, test_all, f_all) -> tuple:
    """RMSE on the new day and on all days, against the noiseless function and against the
    held-out noisy observations (what a user can measure)."""
    return (
        _rmse(res, test_new, f_new),
        _rmse(res, test_all, f_all),
        _rmse(res, test_new, test_new["y"].to_numpy()),
        _rmse(res, test_all, test_all["y"].to_numpy()),
    )


def update_vs_refit(n: int, seed: int = 1) -> dict:
    """Defaults fit on ``n`` rows (data drawn with ``seed``), then one new day: update vs refit
    (see the module doc)."""
    import numpy as np
    import pandas as pd

    import bayestensor as bt

    rng = np.random.default_rng(seed)
    per_day = max(n // DAYS, 1)
    df, _ = rows(rng, n, range(DAYS))
    new, _ = rows(rng, per_day, [DAYS])
    new2, _ = rows(rng, per_day, [DAYS + 1])
    test_new, f_new = rows(rng, 5000, [DAYS])
    test_all, f_all = rows(rng, 5000, range(DAYS + 1))
    options = dict(coords=COORDS, value="y", progress=False)
    t0 = time.perf_counter()
    res = bt.fit(df, **options)
    t_fit = time.perf_counter() - t0
    out = {"n": n, "seed": seed, "per_day": per_day, "fit": t_fit, "ranks": list(res.ranks)}
    out["fit_rmse"] = _scores(res, test_new, f_new, test_all, f_all)
    t0 = time.perf_counter()
    up = res.update(new)
    out["update_first"] = time.perf_counter() - t0
    out["update_rmse"] = _scores(up, test_new, f_new, test_all, f_all)
    t0 = time.perf_counter()
    up.update(new2)
    out["update_next"] = time.perf_counter() - t0
    both = pd.concat([df, new], ignore_index=True)
    t0 = time.perf_counter()
    refit = bt.fit(both, **options)
    out["refit_first"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    refit = bt.fit(both, **options)
    out["refit"] = time.perf_counter() - t0
    out["refit_sweeps"] = len(refit.history)
    out["refit_rmse"] = _scores(refit, test_new, f_new, test_all, f_all)
    return out


def _four(r) -> str:
    return " | ".join(f"{v:.4f}" for v in r)


def _print_updates(runs: list) -> None:
    """The update-vs-refit table of each data seed, then the ratios over the seeds."""
    for u in runs:
        print(
            f"\nn = {u['n']}, seed {u['seed']}, one new day of {u['per_day']} rows; defaults "
            f"(ranks {u['ranks']})"
        )
        print(
            "| | time (s) | RMSE, new day | RMSE, all days | vs observations: new day | all days |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        fr, ur, rr = u["fit_rmse"], u["update_rmse"], u["refit_rmse"]
        print(f"| fit before the update | {u['fit']:.2f} | {_four(fr)} |")
        print(f"| update, first call | {u['update_first']:.2f} | {_four(ur)} |")
        print(f"| update, next day | {u['update_next']:.2f} | | |")
        print(f"| refit, first call | {u['refit_first']:.2f} | | |")
        print(f"| refit (compiled, {u['refit_sweeps']} sweeps) | {u['refit']:.2f} | {_four(rr)} |")
        print(
            f"update / refit: first {u['update_first'] / u['refit']:.1%}, "
            f"next {u['update_next'] / u['refit']:.1%}; RMSE (all days) update / refit "
            f"{ur[1] / rr[1]:.3f}, new day {ur[0] / rr[0]:.3f}; against the observations: all "
            f"days {ur[3] / rr[3]:.4f}, new day {ur[2] / rr[2]:.4f}"
        )
    if len(runs) > 1:
        import numpy as np

        def mean(key, i):
            return float(np.mean([u[key][i] for u in runs]))

        print(
            f"\nover {len(runs)} seeds, mean RMSE update / refit: new day "
            f"{mean('update_rmse', 0) / mean('refit_rmse', 0):.3f}, all days "
            f"{mean('update_rmse', 1) / mean('refit_rmse', 1):.3f}; fit before the update / "
            f"refit, all days {mean('fit_rmse', 1) / mean('refit_rmse', 1):.3f}; next-day update "
            f"/ compiled refit time {np.mean([u['update_next'] / u['refit'] for u in runs]):.1%}"
        )
        print(
            f"against the held-out observations: new day "
            f"{mean('update_rmse', 2) / mean('refit_rmse', 2):.4f}, all days "
            f"{mean('update_rmse', 3) / mean('refit_rmse', 3):.4f}"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e5, 1e6])
    parser.add_argument("--update", type=float, default=1e6, help="0: skip")
    parser.add_argument(
        "--parts", type=float, nargs="*", default=[], help="sizes fitted out of core (CSV parts)"
    )
    parser.add_argument(
        "--devices", type=int, nargs="*", default=[], help="device counts compared (--sizes)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=[1], help="data seeds of --update (one run each)"
    )
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--ndev", type=int, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--predictions", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--folder", help=argparse.SUPPRESS)  # child process, out of core
    args = parser.parse_args(argv)
    if args.x64:
        os.environ["JAX_ENABLE_X64"] = "1"
    if args.one and args.folder:
        print(json.dumps(_one_parts(int(args.one), args.folder)))
        return {}
    if args.one:
        print(json.dumps(_one_size(int(args.one), args.ndev, args.predictions)))
        return {}
    out = {"sizes": [], "parts": []}
    if args.parts:
        import tempfile

        print("| n (out of core, CSV parts of 10⁶ rows) | fit (s, fresh process) | peak RSS (GB) |")
        print("|---:|---:|---:|")
        for n in args.parts:
            with tempfile.TemporaryDirectory() as folder:
                write_parts(int(n), folder)
                cmd = [sys.executable, __file__, "--one", str(n), "--folder", folder]
                cmd += ["--x64"] if args.x64 else []
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(line.strip().splitlines()[-1])
            out["parts"].append(r)
            print(f"| {r['n']:.0e} | {r['wall']:.1f} | {r['rss_gb']:.2f} |", flush=True)
    if args.sizes and args.devices:
        out["devices"] = _by_devices(args.sizes, args.devices, args.x64)
    elif args.sizes:
        print("| n | fit (s, fresh process) | fit again (s, compiled) | peak RSS (GB) |")
        print("|---:|---:|---:|---:|")
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--one", str(n)] + (["--x64"] if args.x64 else [])
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(line.strip().splitlines()[-1])
            out["sizes"].append(r)
            print(f"| {r['n']:.0e} | {r['wall']:.1f} | {r['warm']:.1f} | {r['rss_gb']:.2f} |")
        s = out["sizes"]
        for a, b in zip(s, s[1:], strict=False):
            import math

            slope = math.log(b["warm"] / a["warm"]) / math.log(b["n"] / a["n"])
            print(f"time slope {a['n']:.0e} → {b['n']:.0e} (compiled fits): {slope:.2f}")
    if args.update:
        out["update"] = [update_vs_refit(int(args.update), seed) for seed in args.seeds]
        _print_updates(out["update"])
    return out


if __name__ == "__main__":
    main()
