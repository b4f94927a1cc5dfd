"""Bayesian Poisson Tucker benchmarks: sweep times at the BPTD sizes and an ICEWS hold-out.

(a) Time per Gibbs sweep and per CAVI iteration on synthetic tensors the size of the BPTD
    reference runs (50×50×20×12 with C=10, K=4, R=2; 100×100×20×24 with C=20, K=6, R=3),
    against the BPTD Cython/OpenMP figures (53 ms and 2.48 s per sweep on this kind of machine).
(b) Counts simulated from the BPTD posterior sample fitted to ICEWS (``../shared/data/bptd``),
    restricted to the most active countries and the first months; 10 % of the
    (time, sender, receiver) slices are held out. Held-out Poisson log-likelihood per cell for
    our Gibbs sampler and CAVI, the true rates, a constant rate, pyttb ``cp_apr`` and tensorly
    ``non_negative_tucker`` (neither baseline supports missing cells: they see the held-out
    cells as zeros, as the README's reference runs do not say otherwise).

Usage::

    python benchmarks/bench_poisson.py                 # both parts
    python benchmarks/bench_poisson.py --part timing --sweeps 10
    python benchmarks/bench_poisson.py --part icews --countries 100 --months 24 --sweeps 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import bayestensor  # noqa: F401  (XLA flags before any JAX computation)

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "bptd"


def _simulate(rng, N, A, T, C, K, R, target_nnz):
    """Sparse BPTD-like counts with about ``target_nnz`` nonzeros (diagonal excluded)."""
    theta = rng.gamma(0.3, 1.0, (N, C))
    phi = rng.gamma(0.3, 1.0, (A, K))
    psi = rng.gamma(1.0, 1.0, (T, R))
    core = rng.gamma(0.2, 1.0, (C, C, K, R))
    mu = np.einsum("cdkr,ic,jd,ak,tr->ijat", core, theta, theta, phi, psi, optimize=True)
    mu[np.arange(N), np.arange(N)] = 0
    lo, hi = 1e-6, 1e6
    for _ in range(60):  # scale so that the expected number of nonzeros is the target
        m = np.sqrt(lo * hi)
        lo, hi = (m, hi) if (-np.expm1(-m * mu)).sum() < target_nnz else (lo, m)
    y = rng.poisson(mu * m)
    idx = np.argwhere(y > 0)
    return idx, y[y > 0]


def timing(args):
    import jax

    from bayestensor.models import poisson_tucker as pt
    from bayestensor.models.poisson_tucker.gibbs import gibbs_sweep_jit, init_params_jit

    rows = []
    sizes = [
        ((50, 50, 20, 12), (10, 10, 4, 2), 64_000, 0.053),
        ((100, 100, 20, 24), (20, 20, 6, 3), 523_000, 2.48),
    ]
    rng = np.random.default_rng(0)
    for shape, ranks, nnz, ref in sizes:
        N, _, A, T = shape
        C, _, K, R = ranks
        idx, y = _simulate(rng, N, A, T, C, K, R, nnz)
        spec = pt.make_spec(shape, ranks, pair=(0, 1), share=True, within_between=True)
        data = pt.prepare_data(spec, idx, y)
        p = init_params_jit(spec, data, jax.random.key(0))
        t0 = time.perf_counter()
        p, _ = gibbs_sweep_jit(spec, data, p, jax.random.key(1))
        jax.block_until_ready(p)
        compile_s = time.perf_counter() - t0
        times = []
        for i in range(args.sweeps):
            t0 = time.perf_counter()
            p, _ = gibbs_sweep_jit(spec, data, p, jax.random.key(2 + i))
            jax.block_until_ready(p)
            times.append(time.perf_counter() - t0)
        step = jax.jit(lambda d, s, spec=spec: pt.cavi_step(spec, d, s))
        st = pt.vi_init(spec, data, jax.random.key(0))
        st, _ = step(data, st)
        jax.block_until_ready(st)
        vt = []
        for _ in range(args.sweeps):
            t0 = time.perf_counter()
            st, b = step(data, st)
            jax.block_until_ready(b)
            vt.append(time.perf_counter() - t0)
        rows.append(
            (
                "×".join(map(str, shape)),
                f"C={C}, K={K}, R={R}",
                len(y),
                int(y.sum()),
                np.median(times),
                min(times),
                ref,
                np.median(vt),
                compile_s,
            )
        )
        print(rows[-1], flush=True)
    print()
    print(
        "| tensor | ranks | nonzeros | tokens | Gibbs s/sweep (median) | best | BPTD Cython "
        "| CAVI s/iter (median) | first sweep incl. compile |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:,} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} "
            f"| {r[7]:.3f} | {r[8]:.1f} s |"
        )


def _icews(args, rng):
    """True rates of the most active countries / first months, counts, held-out slices."""
    d = np.load(DATA / "icews_1995_2000_posterior_sample.npz")
    theta, phi, psi, lam = d["Theta_NC"], d["Phi_AK"], d["Psi_TR"], d["Lambda_RKCC"]
    core = np.transpose(lam, (2, 3, 1, 0))  # (C, C, K, R): sender, receiver, action, time
    # activity of each country as sender + receiver
    cd = core.sum((2, 3))
    act = theta @ (cd @ theta.sum(0)) + theta @ (cd.T @ theta.sum(0))
    keep = np.sort(np.argsort(-act)[: args.countries])
    theta, psi = theta[keep], psi[: args.months]
    N, T = len(keep), args.months
    mu = np.einsum("cdkr,ic,jd,ak,tr->ijat", core, theta, theta, phi, psi, optimize=True)
    mu[np.arange(N), np.arange(N)] = 0
    y = rng.poisson(mu)
    # hold out 10 % of the (time, sender, receiver) slices with sender ≠ receiver
    off = np.argwhere(~np.eye(N, dtype=bool))
    slices = np.array([(i, j, t) for i, j in off for t in range(T)])
    held = slices[rng.random(len(slices)) < 0.1]
    return mu, y, held, core.shape


def icews(args):
    import pandas as pd
    import pyttb
    import tensorly as tl
    from scipy import stats
    from tensorly.decomposition import non_negative_tucker

    import bayestensor as bt

    rng = np.random.default_rng(0)
    if not (DATA / "icews_1995_2000_posterior_sample.npz").exists():
        print("ICEWS posterior sample not found; skipping part (b)")
        return
    mu, y, held, _ = _icews(args, rng)
    N, _, A, T = y.shape
    hmask = np.zeros((N, N, T), bool)
    hmask[held[:, 0], held[:, 1], held[:, 2]] = True
    region = np.broadcast_to(hmask[:, :, None, :], y.shape)
    n_cells = int(region.sum())
    y_train = np.where(region, 0, y)

    def frame(cells):
        cols = dict(zip(["sender", "receiver", "action", "month"], cells.T, strict=True))
        return pd.DataFrame({**cols, "count": y[tuple(cells.T)]})

    idx = np.argwhere(y_train > 0)
    df = frame(idx)
    mask = pd.DataFrame({"sender": held[:, 0], "receiver": held[:, 1], "month": held[:, 2]})
    held_df = frame(np.argwhere((y > 0) & region))
    yh = y[region]

    def ll_dense(rate):
        return float(stats.poisson.logpmf(yh, np.maximum(rate[region], 1e-10)).sum()) / n_cells

    print(
        f"tensor {y.shape}, {int((y_train > 0).sum()):,} training nonzeros, "
        f"{len(held):,} held-out slices ({n_cells:,} cells, {len(held_df):,} nonzero)"
    )
    rows = [("true rates", ll_dense(mu), 0.0)]
    obs = ~region.copy()
    obs[np.arange(N), np.arange(N)] = False
    const = y_train[obs].mean()
    rows.append(("constant rate", ll_dense(np.full(y.shape, const)), 0.0))
    opts = dict(
        coords=["sender", "receiver", "action", "month"],
        value="count",
        model="poisson-tucker",
        rank=tuple(args.rank),
        pair=("sender", "receiver"),
        share=True,
        within_between=True,
        mask=mask,
        progress=False,
    )
    for method, extra in [
        ("gibbs", dict(num_warmup=args.sweeps // 2, num_samples=args.sweeps - args.sweeps // 2)),
        ("vi", dict(max_iter=args.vi_iter, vi_tol=1e-8)),
    ]:
        t0 = time.perf_counter()
        res = bt.fit(df, method=method, **opts, **extra)
        fit_s = time.perf_counter() - t0
        out = res.heldout_loglik(held_df, mask)
        label = f"ours, Gibbs {args.sweeps} sweeps" if method == "gibbs" else "ours, CAVI"
        rows.append((label, out["per_cell"], fit_s))
        print(rows[-1], res.effective_components(), flush=True)

    # pyttb cp_apr (sparse input; held-out cells are zeros to it)
    sp = pyttb.sptensor(idx, y_train[tuple(idx.T)][:, None].astype(float), y.shape)
    t0 = time.perf_counter()
    M, _, _ = pyttb.cp_apr(sp, args.cp_rank, algorithm="pdnr", printitn=0)
    fit_s = time.perf_counter() - t0
    rate = M.full().double()
    rows.append((f"pyttb cp_apr PDNR, rank {args.cp_rank}", ll_dense(rate), fit_s))
    print(rows[-1], flush=True)

    t0 = time.perf_counter()
    core, factors = non_negative_tucker(
        tl.tensor(y_train.astype(float)),
        rank=list(args.rank),
        n_iter_max=args.nnt_iter,
        init="random",
        random_state=0,
    )
    fit_s = time.perf_counter() - t0
    rate = tl.tucker_to_tensor((core, factors))
    rows.append((f"tensorly non_negative_tucker {tuple(args.rank)}", ll_dense(rate), fit_s))
    print(rows[-1], flush=True)

    print()
    print("| method | held-out log-lik per cell | fit time |")
    print("|---|---:|---:|")
    for name, ll, t in rows:
        print(f"| {name} | {ll:.4f} | {t:.1f} s |" if t else f"| {name} | {ll:.4f} | – |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["timing", "icews", "all"], default="all")
    ap.add_argument("--sweeps", type=int, default=None, help="timed sweeps / Gibbs sweeps")
    ap.add_argument("--countries", type=int, default=100)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--rank", type=int, nargs=4, default=[20, 20, 6, 3])
    ap.add_argument("--cp-rank", type=int, default=20)
    ap.add_argument("--vi-iter", type=int, default=300)
    ap.add_argument("--nnt-iter", type=int, default=100)
    ap.add_argument("--float64", action="store_true", help="run JAX in float64")
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", args.float64)
    if args.part in ("timing", "all"):
        args_t = argparse.Namespace(**{**vars(args), "sweeps": args.sweeps or 10})
        timing(args_t)
    if args.part in ("icews", "all"):
        args_i = argparse.Namespace(**{**vars(args), "sweeps": args.sweeps or 200})
        icews(args_i)


if __name__ == "__main__":
    main()
