"""Kalman filter + RTS smoother time versus the number of coordinates.

Prints, for R = 3 stacked Matérn-3/2 functions with random natural-parameter messages, the
filter+smoother wall time at n = 1e4, 1e5, 1e6 coordinates and the fitted slope of log time vs
log n (linear cost gives ≈ 1). A peer runs in the same script: gpjax's square-root
``kalman_filter`` (scalar observations, R = 1, log-likelihood only) beside our filter-only
``log_marginal`` at R = 1.

Usage: ``python benchmarks/bench_ssm.py [--sizes 10000 100000 1000000] [--float32]``
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def _best_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def _messages(rng, n, R, dtype):
    dt = rng.exponential(0.01, n)
    dt[0] = 0.0
    B = rng.normal(size=(n, R, R)) * 0.5
    prec = B @ np.swapaxes(B, 1, 2) + 0.1 * np.eye(R)
    shift = rng.normal(size=(n, R))
    return dt.astype(dtype), prec.astype(dtype), shift.astype(dtype)


def main(args: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    opts = p.parse_args(args)
    if not opts.float32:
        jax.config.update("jax_enable_x64", True)
    import gpjax
    import jax.numpy as jnp
    from gpjax.state_space import to_sde
    from gpjax.state_space.inference import kalman_filter as gpjax_kalman_filter

    from bayestensor.ssm import log_marginal, smooth, stacked_matern

    dtype = np.float32 if opts.float32 else np.float64
    rng = np.random.default_rng(0)

    @jax.jit
    def ours_smooth(dt, prec, shift):
        sde = stacked_matern("matern32", jnp.asarray(0.5, dt.dtype), jnp.asarray(1.0, dt.dtype), 3)
        post = smooth(sde, dt, prec, shift)
        return post.mean, post.cov, post.log_marginal

    @jax.jit
    def ours_filter_r1(dt, y):
        sde = stacked_matern("matern32", jnp.asarray(0.5, dt.dtype), jnp.asarray(1.0, dt.dtype), 1)
        prec = jnp.full((dt.shape[0], 1, 1), 1.0 / 0.01, dt.dtype)
        return log_marginal(sde, dt, prec, (y / 0.01)[:, None])

    @jax.jit
    def gpjax_filter_r1(dt, y):
        k = gpjax.kernels.Matern32(lengthscale=jnp.asarray(0.5, dt.dtype), variance=1.0)
        obs = jnp.ones(dt.shape, bool)
        return gpjax_kalman_filter(to_sde(k), y, dt, obs, jnp.asarray(0.1, dt.dtype))

    rows = []
    for n in opts.sizes:
        dt, prec, shift = _messages(rng, n, 3, dtype)
        y = rng.normal(size=n).astype(dtype)
        rows.append(
            (
                n,
                _best_time(ours_smooth, dt, prec, shift, repeats=opts.repeats),
                _best_time(ours_filter_r1, dt, y, repeats=opts.repeats),
                _best_time(gpjax_filter_r1, dt, y, repeats=opts.repeats),
            )
        )
    ns = np.array([r[0] for r in rows], float)
    slopes = [np.polyfit(np.log(ns), np.log([r[c] for r in rows]), 1)[0] for c in (1, 2, 3)]
    dname = "float32" if opts.float32 else "float64"
    print(
        f"Kalman filter + RTS smoother, Matérn-3/2, {dname}, {jax.device_count()} device(s): "
        f"{jax.devices()[0].platform}"
    )
    print(
        f"{'n':>9} | {'ours R=3 filter+smoother':>25} | {'ours R=1 filter':>16} | "
        f"{'gpjax R=1 filter':>17}"
    )
    for n, a, b, c in rows:
        print(f"{n:>9} | {a:>23.3f} s | {b:>14.3f} s | {c:>15.3f} s")
    print(f"{'slope':>9} | {slopes[0]:>25.2f} | {slopes[1]:>16.2f} | {slopes[2]:>17.2f}")
    print("(slope = fitted d log(time) / d log(n); linear cost gives 1)")
    return {"rows": rows, "slopes": slopes}


if __name__ == "__main__":
    main()
