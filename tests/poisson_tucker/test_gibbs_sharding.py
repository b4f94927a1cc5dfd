"""The Poisson Tucker Gibbs sampler with its tokens split over several devices of one host.

JAX fixes its device count when it starts, so the runs happen in one subprocess with four host
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, float64), as in
``tests/test_sharding.py``; the parent compares the saved arrays. The token count is odd, so
the split pads it (one padding token on 2 devices, three on 4).

Checked: one allocation and one CRT draw on split tokens equal the single-device draws exactly
(integers; also with large cells allocated on the host), and count exactly the real tokens (the
padding counts nowhere); a sharded fit repeated from its seed gives identical draws; and it
draws what the single-device fit draws (partitionable threefry: a token's uniforms depend on
its position only), up to rounding. The slow run adds 4 devices, the large-cell path in a whole
fit, and a fit with ``jax_threefry_partitionable`` off, where the draws differ from the single-
device ones and only their law is the same: posterior mean rates agree within Monte-Carlo error.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

#: Per run of the subprocess: device counts compared with one device, whether a fit with large
#: cells and a fit without partitionable threefry (law only) are run too.
RUNS = {
    "quick": {"sharded": (2,), "big_fit": False, "law": False},
    "full": {"sharded": (2, 4), "big_fit": True, "law": True},
}
SHAPE, RANKS = (7, 6, 4), (3, 3, 2)
#: sweeps of the fits compared draw for draw, and of the fits compared in law
WARMUP, SAMPLES = 10, 20
LAW_WARMUP, LAW_SAMPLES, LAW_BATCHES = 100, 200, 20


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


def _fit_rates(df, devices, seed=3, warmup=WARMUP, samples=SAMPLES):
    """Per-draw rates at the data's cells of a Gibbs fit, (samples, cells)."""
    import bayestensor as bt
    import bayestensor.models.poisson_tucker as pt

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
    spec, index = res.spec, res.data.index

    def rates(z):
        return pt.cell_rates(spec, pt.mode_factors(spec, z), z["core"], index)

    return np.asarray(jax.vmap(rates)({k: np.asarray(v) for k, v in res.draws.items()}))


def _allocations(arrays, df, sharded) -> dict:
    """One allocation and one CRT draw per device count, with and without large cells."""
    import bayestensor.models.poisson_tucker as pt
    from bayestensor.models.poisson_tucker import gibbs
    from bayestensor.sharding import row_mesh

    index, y = df[["a", "b", "c"]].to_numpy(), df["n"].to_numpy()
    spec = pt.make_spec(SHAPE, RANKS)
    allocate = jax.jit(gibbs.allocate, static_argnums=(0, 5))
    crt = jax.jit(gibbs.crt, static_argnums=(3, 4))
    tokens = {}
    for case, tcm in (("tok", 1000), ("big", 3)):
        data = pt.prepare_data(spec, index, y, token_cell_max=tcm)
        tokens[case] = int(data.tok_x.shape[1])
        p = pt.init_params(spec, data, jax.random.key(0))
        factors = pt.mode_factors(spec, p)
        s = pt.core_shape(spec, p)
        for d in (1, *sharded):
            split = gibbs.shard_tokens(data, jax.devices()[:d])
            mesh = row_mesh(jax.devices()[:d]) if d > 1 else None
            Y, counts = allocate(spec, split, factors, p["core"], jax.random.key(1), mesh)
            arrays[f"{case}_Y_{d}"] = np.asarray(Y)
            for k, c in enumerate(counts):
                arrays[f"{case}_counts{k}_{d}"] = np.asarray(c)
            if case == "tok":
                total = int(split.tok_x.shape[1])
                arrays[f"{case}_ell_{d}"] = np.asarray(crt(jax.random.key(2), Y, s, total, mesh))
    return tokens


def _worker(out: str, run: str) -> None:
    """Draw what ``RUNS[run]`` asks for on 1 and on several devices; save the arrays, print the
    token counts."""
    assert len(jax.devices()) == 4 and jax.config.jax_enable_x64
    assert jax.config.jax_threefry_partitionable
    opts = RUNS[run]
    df = _counts()
    arrays: dict = {}
    tokens = _allocations(arrays, df, opts["sharded"])
    for d in (1, *opts["sharded"]):
        arrays[f"rates_{d}"] = _fit_rates(df, d)
        if opts["big_fit"]:
            big = df.assign(n=df["n"] + np.where(np.arange(len(df)) < 2, 1500, 0))
            arrays[f"bigrates_{d}"] = _fit_rates(big, d)  # two cells allocated on the host
    d = opts["sharded"][0]
    arrays[f"rates_{d}_again"] = _fit_rates(df, d)
    if opts["law"]:  # draws that differ from the single-device ones, with the same law
        jax.config.update("jax_threefry_partitionable", False)
        jax.clear_caches()
        for d in (1, 2):
            arrays[f"law_{d}"] = _fit_rates(df, d, seed=5, warmup=LAW_WARMUP, samples=LAW_SAMPLES)
    np.savez(out, **arrays)
    print(json.dumps({"tokens": tokens, "events": int(df["n"].sum())}))


def _run_worker(tmp_path, run: str):
    """Run :func:`_worker` in a subprocess with four host devices (float64)."""
    out = tmp_path / f"{run}.npz"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_ENABLE_X64="1",
        BAYESTENSOR_TEST_X64="1",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    )
    code = f"import test_gibbs_sharding as t; t._worker({str(out)!r}, {run!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300 if run == "quick" else 900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as f:
        return dict(f), info


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _batch_means(draws: np.ndarray, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``draws`` (n, cells) over its first axis and its Monte-Carlo standard error from
    ``batches`` batch means (autocorrelation within a batch is allowed for)."""
    n = draws.shape[0] // batches * batches
    bm = draws[:n].reshape(batches, -1, draws.shape[1]).mean(1)
    return draws[:n].mean(0), bm.std(0, ddof=1) / np.sqrt(batches)


@pytest.mark.parametrize("run", ["quick", pytest.param("full", marks=pytest.mark.slow)])
def test_sharded_gibbs_draws_what_one_device_draws(tmp_path, run):
    arrays, info = _run_worker(tmp_path, run)
    opts = RUNS[run]
    assert info["tokens"]["tok"] == info["events"] and info["events"] % 2  # padding occurs
    assert 0 < info["tokens"]["big"] < info["events"]  # large cells on the host
    for d in opts["sharded"]:
        # padding: the split allocation and CRT equal the single-device draws exactly, and
        # every count sums to the real tokens (events), not the padded ones
        for case in ("tok", "big"):
            for name in ["Y"] + [f"counts{k}" for k in range(len(SHAPE))]:
                ref, got = arrays[f"{case}_{name}_1"], arrays[f"{case}_{name}_{d}"]
                np.testing.assert_array_equal(got, ref, err_msg=f"{case} {name} on {d}")
                assert got.sum() == info["events"]
        np.testing.assert_array_equal(arrays[f"tok_ell_{d}"], arrays["tok_ell_1"])
        assert 0 < arrays["tok_ell_1"].sum() <= info["events"]
        # a whole fit draws what the single-device fit draws, up to rounding
        names = ["rates"] + ["bigrates"] * opts["big_fit"]
        for name in names:
            ref, got = arrays[f"{name}_1"], arrays[f"{name}_{d}"]
            assert got.shape == ref.shape == (SAMPLES, len(_counts()))
            assert _max_rel(got, ref) < TOL["sharded_vs_single"], (name, d)
    d = opts["sharded"][0]  # reproducible from its seed: identical draws
    np.testing.assert_array_equal(arrays[f"rates_{d}_again"], arrays[f"rates_{d}"])
    assert np.ptp(arrays["rates_1"], axis=0).min() > 0  # the draws move
    if opts["law"]:
        m1, se1 = _batch_means(arrays["law_1"], LAW_BATCHES)
        m2, se2 = _batch_means(arrays["law_2"], LAW_BATCHES)
        assert _max_rel(m1, m2) > 1e-6  # different draws ...
        z = (m2 - m1) / np.sqrt(se1**2 + se2**2)
        assert np.max(np.abs(z)) < TOL["mc_sigmas"], np.max(np.abs(z))  # ... the same law
