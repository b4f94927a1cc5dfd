"""The Poisson Tucker Gibbs sampler with its tokens split over several devices of one host.

JAX fixes its device count when it starts, so the runs happen in one subprocess with four host
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, float64), as in
``tests/test_sharding.py``; the parent compares the saved arrays. The token count is odd, so
the split pads it (one padding token on 2 devices, three on 4).

Checked: every sweep on split tokens allocates exactly the real events, the very core counts of
the single-device sweep from the same key (the padding counts nowhere), and draws the same
parameters up to rounding (partitionable threefry: a token's uniforms depend on its position
only); a fit through the public API on 2 devices does the same, and repeated from its seed gives
identical draws. The slow run adds 4 devices, large cells (allocated on the host), one exact
allocation and CRT draw, and fits with ``jax_threefry_partitionable`` off, whose draws differ
from the single-device ones and only share their law: posterior mean rates agree within
Monte-Carlo error (batch means).
"""

import json

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from forced_devices import run_worker

#: Per run of the subprocess: device counts compared with one device, whether fits through the
#: public API, large cells (allocated on the host) and fits without partitionable threefry (law
#: only) are run too. The default run compiles the sweep twice (1 and 2 devices, ~6 s each).
RUNS = {
    "quick": {"sharded": (2,), "fit": False, "big": False, "law": False},
    "full": {"sharded": (2, 4), "fit": True, "big": True, "law": True},
}
SHAPE, RANKS = (7, 6, 4), (3, 3, 2)
#: sweeps of the fits compared draw for draw, and of the fits compared in law
WARMUP, SAMPLES = 10, 20
#: (the fit keeps 200 thinned draws; shorter chains of this slowly mixing sampler gave
#: |z| > 5 between two single-device chains with different seeds: the batch means did not
#: cover the autocorrelation; these gave mean z² ≈ 1 there)
LAW_WARMUP, LAW_SAMPLES, LAW_BATCHES = 500, 2000, 20


def _counts() -> pd.DataFrame:
    """Poisson counts of a rank-2 Tucker tensor on a 7 × 6 × 4 grid (nonzero cells only), with
    an odd total (the number of tokens)."""
    rng = np.random.default_rng(1)
    lam = np.einsum(
        "ir,jr,kr->ijk",
        rng.gamma(1.0, 1.0, (SHAPE[0], 2)),
        rng.gamma(1.0, 1.0, (SHAPE[1], 2)),
        rng.gamma(1.0, 1.0, (SHAPE[2], 2)),
    )
    y = rng.poisson(1.5 * lam)
    if y.sum() % 2 == 0:
        y[0, 0, 0] += 1
    idx = np.argwhere(y > 0)
    return pd.DataFrame({"a": idx[:, 0], "b": idx[:, 1], "c": idx[:, 2], "n": y[y > 0]})


def _fit(df, devices, seed=3, warmup=WARMUP, samples=SAMPLES) -> dict:
    """The kept draws of a Gibbs fit through the public API: ``core`` and ``theta{k}``."""
    import bayestensor as bt
    from bayestensor.models.poisson_tucker.result import MAX_DRAWS

    res = bt.fit(
        df,
        coords=["a", "b", "c"],
        value="n",
        model="poisson-tucker",
        rank=RANKS,
        method="gibbs",
        num_warmup=warmup,
        num_samples=samples,
        seed=seed,
        progress=False,
        devices=devices,
    )
    assert res.draws["core"].shape[0] == min(samples, MAX_DRAWS)
    return {k: np.asarray(v) for k, v in res.draws.items() if k == "core" or k[:5] == "theta"}


def _chain(df, devices, tcm=1000, sweeps=SAMPLES) -> dict:
    """Sweeps of the kernel from one key: the allocated core counts ``Y`` and the parameters."""
    import bayestensor.models.poisson_tucker as pt

    spec = pt.make_spec(SHAPE, RANKS)
    data = pt.prepare_data(
        spec, df[["a", "b", "c"]].to_numpy(), df["n"].to_numpy(), token_cell_max=tcm
    )
    kernel = pt.PoissonTuckerGibbs(spec, data, devices=devices)
    rng = np.random.default_rng(7)  # a NumPy start: the kernel's compiled init costs seconds
    start = {f"theta{k}": rng.gamma(1.0, 1.0, (n, RANKS[k])) for k, n in enumerate(SHAPE)}
    start.update({f"b{k}": 1.0 for k in range(len(SHAPE))}, zeta=1.0, delta=1.0)
    start.update(
        {f"w{k}": np.ones(r) for k, r in enumerate(RANKS)}, core=rng.gamma(1.0, 1.0, RANKS)
    )
    start = {k: jax.numpy.asarray(v, dtype=float) for k, v in start.items()}
    state = kernel.init(jax.random.key(7), 0, start, (), {})
    out: dict = {"Y": [], "core": [], "tokens": int(data.tok_x.shape[1])}
    for _ in range(sweeps):
        state = kernel.sample(state, (), {})
        out["Y"].append(np.asarray(state.Y))
        for k, v in state.z.items():
            if k == "core" or k[:5] == "theta":
                out.setdefault(k, []).append(np.asarray(v))
    return out


def _save(arrays, prefix, draws) -> None:
    for k, v in draws.items():
        if k != "tokens":
            arrays[f"{prefix}_{k}"] = np.asarray(v)


def _allocations(arrays, df, sharded) -> None:
    """One allocation and one CRT draw per device count, with large cells on the host."""
    import bayestensor.models.poisson_tucker as pt
    from bayestensor.models.poisson_tucker import gibbs
    from bayestensor.sharding import row_mesh

    spec = pt.make_spec(SHAPE, RANKS)
    data = pt.prepare_data(
        spec, df[["a", "b", "c"]].to_numpy(), df["n"].to_numpy(), token_cell_max=3
    )
    allocate = jax.jit(gibbs.allocate, static_argnums=(0, 5))
    crt = jax.jit(gibbs.crt, static_argnums=(3, 4))
    p = pt.init_params(spec, data, jax.random.key(0))
    factors = pt.mode_factors(spec, p)
    for d in (1, *sharded):
        split = gibbs.shard_tokens(data, jax.devices()[:d])
        mesh = row_mesh(jax.devices()[:d]) if d > 1 else None
        Y, counts = allocate(spec, split, factors, p["core"], jax.random.key(1), mesh)
        arrays[f"alloc_Y_{d}"] = np.asarray(Y)
        for k, c in enumerate(counts):
            arrays[f"alloc_counts{k}_{d}"] = np.asarray(c)
        total = int(Y.sum())
        ell = crt(jax.random.key(2), Y, pt.core_shape(spec, p), total, mesh)
        arrays[f"alloc_ell_{d}"] = np.asarray(ell)


def _worker(out: str, run: str) -> None:
    """Draw what ``RUNS[run]`` asks for on 1 and on several devices; save the arrays, print the
    token counts."""
    assert len(jax.devices()) == 4 and jax.config.jax_enable_x64
    assert jax.config.jax_threefry_partitionable
    opts = RUNS[run]
    df = _counts()
    big = df.assign(n=df["n"] + np.where(np.arange(len(df)) < 2, 1500, 0))  # 2 cells on the host
    arrays: dict = {}
    info = {"events": int(df["n"].sum()), "big_events": int(big["n"].sum())}
    for d in (1, *opts["sharded"]):
        chain = _chain(df, d)
        info["tokens"] = chain["tokens"]
        _save(arrays, f"chain_{d}", chain)
        if opts["fit"]:
            _save(arrays, f"fit_{d}", _fit(df, d))
        if opts["big"]:
            chain = _chain(big, d)
            info["big_tokens"] = chain["tokens"]
            _save(arrays, f"bigchain_{d}", chain)
    d = opts["sharded"][0]
    _save(arrays, f"chain_{d}_again", _chain(df, d))
    if opts["fit"]:
        _save(arrays, f"fit_{d}_again", _fit(df, d))
    if opts["big"]:
        _allocations(arrays, big, opts["sharded"])
    if opts["law"]:  # draws that differ from the single-device ones, with the same law
        jax.config.update("jax_threefry_partitionable", False)
        jax.clear_caches()
        for d in (1, 2):
            _save(arrays, f"law_{d}", _fit(df, d, seed=5, warmup=LAW_WARMUP, samples=LAW_SAMPLES))
    np.savez(out, **arrays)
    print(json.dumps(info))


def _run_worker(tmp_path, run: str):
    """:func:`_worker` in a subprocess with four host devices: its arrays and JSON line."""
    return run_worker(__file__, tmp_path, run)


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _batch_means(draws: np.ndarray, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``draws`` (n, cells) over its first axis and its Monte-Carlo standard error from
    ``batches`` batch means (autocorrelation within a batch is allowed for)."""
    n = draws.shape[0] // batches * batches
    bm = draws[:n].reshape(batches, -1, draws.shape[1]).mean(1)
    return draws[:n].mean(0), bm.std(0, ddof=1) / np.sqrt(batches)


def _rates(arrays, prefix, index) -> np.ndarray:
    """Per-draw rates at the cells ``index`` from saved draws (NumPy, independent of the
    package's contractions)."""
    core = arrays[f"{prefix}_core"]
    th = [arrays[f"{prefix}_theta{k}"] for k in range(len(SHAPE))]
    a, b, c = index.T
    return np.einsum("sxyz,snx,sny,snz->sn", core, th[0][:, a], th[1][:, b], th[2][:, c])


@pytest.mark.parametrize(
    "run",  # the worker runs float64 in both passes (forced_devices): once
    [pytest.param("quick", marks=pytest.mark.once), pytest.param("full", marks=pytest.mark.slow)],
)
def test_sharded_gibbs_draws_what_one_device_draws(tmp_path, run):
    arrays, info = _run_worker(tmp_path, run)
    opts = RUNS[run]
    index = _counts()[["a", "b", "c"]].to_numpy()
    assert info["tokens"] == info["events"] and info["events"] % 2  # padding tokens occur
    chains = ["chain"] + ["bigchain"] * opts["big"]
    if opts["big"]:
        assert 0 < info["big_tokens"] < info["events"] < info["big_events"]
    for d in opts["sharded"]:
        # every sweep allocates exactly the real events on split tokens (the padding counts
        # nowhere), the very counts of the single-device sweep
        for name, events in zip(chains, (info["events"], info["big_events"]), strict=False):
            ref, got = arrays[f"{name}_1_Y"], arrays[f"{name}_{d}_Y"]
            np.testing.assert_array_equal(got, ref, err_msg=f"{name} on {d} devices")
            assert np.all(got.sum(axis=(1, 2, 3)) == events)
            assert (
                _max_rel(_rates(arrays, f"{name}_{d}", index), _rates(arrays, f"{name}_1", index))
                < TOL["sharded_vs_single"]
            )
        if opts["fit"]:  # a fit through the public API: the single-device fit's draws
            ref, got = _rates(arrays, "fit_1", index), _rates(arrays, f"fit_{d}", index)
            assert got.shape == ref.shape == (SAMPLES, len(index))
            assert _max_rel(got, ref) < TOL["sharded_vs_single"], d
        if opts["big"]:  # one allocation and one CRT draw, large cells included: exact
            for name in ["Y", "ell"] + [f"counts{k}" for k in range(len(SHAPE))]:
                ref, got = arrays[f"alloc_{name}_1"], arrays[f"alloc_{name}_{d}"]
                np.testing.assert_array_equal(got, ref, err_msg=f"{name} on {d} devices")
            assert arrays["alloc_Y_1"].sum() == info["big_events"]
    d = opts["sharded"][0]  # reproducible from its seed: identical draws
    for run_ in ["chain"] + ["fit"] * opts["fit"]:
        for k in ["Y", "core"] + [f"theta{k}" for k in range(len(SHAPE))]:
            if f"{run_}_{d}_{k}" in arrays:
                again, first = arrays[f"{run_}_{d}_again_{k}"], arrays[f"{run_}_{d}_{k}"]
                np.testing.assert_array_equal(again, first, err_msg=f"{run_} {k}")
    assert np.ptp(_rates(arrays, "chain_1", index), axis=0).min() > 0  # the draws move
    if opts["law"]:
        m1, se1 = _batch_means(_rates(arrays, "law_1", index), LAW_BATCHES)
        m2, se2 = _batch_means(_rates(arrays, "law_2", index), LAW_BATCHES)
        assert _max_rel(m1, m2) > 1e-6  # different draws ...
        z = (m2 - m1) / np.sqrt(se1**2 + se2**2)
        assert np.max(np.abs(z)) < TOL["mc_sigmas"], np.max(np.abs(z))  # ... the same law
