"""Data-parallel fits over several devices of one host (:mod:`bayestensor.sharding`).

JAX fixes its device count when it starts, so the comparisons run in one subprocess with four
host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, float64): there, each
model is fitted on one device (the plain code path) and on several, from the same data and
seed, and the parent compares the saved results. The row counts are not multiples of the
device counts, so the padding rows are exercised.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from forced_devices import run_worker

from bayestensor.sharding import padded_size, resolve_devices

#: Per run of the subprocess: device counts compared with the single-device fit, FunBaT's
#: coordinates, models and hyperparameter learning, and whether Poisson CAVI is compared too.
#: The default run stays small (each fit pays its compilation) and uses 2 of the 4 devices; the
#: 4-device stall on 2 cores (jaxlib 0.10's batched LAPACK kernels, see bayestensor/_xla.py)
#: has its own test, test_four_host_devices_on_fewer_cores_do_not_stall.
RUNS = {
    "quick": {
        "sharded": (2,),
        "coords": {"t": "continuous", "g": "categorical"},
        "models": ("tucker",),
        "learn_hyper": False,
        "cavi": False,
    },
    "full": {
        "sharded": (2, 4),
        "coords": {"t": "continuous", "s": "continuous", "g": "categorical"},
        "models": ("tucker", "cp"),
        "learn_hyper": True,
        "cavi": True,
    },
}


def _funbat_frame(n: int = 203, seed: int = 0) -> pd.DataFrame:
    """Noisy low-rank values on two continuous modes and one categorical one."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 10.0, n).round(1)
    s = rng.uniform(0.0, 5.0, n).round(1)
    g = rng.integers(0, 3, n)
    y = np.sin(t) * (1.0 + 0.3 * g) + 0.5 * np.cos(s) * t / 10.0 + 0.05 * rng.normal(size=n)
    return pd.DataFrame({"t": t, "s": s, "g": [f"g{v}" for v in g], "y": y})


def _count_frame() -> pd.DataFrame:
    """Poisson counts on a 6 × 5 × 4 grid (nonzero cells only)."""
    rng = np.random.default_rng(1)
    lam = np.einsum(
        "ir,jr,kr->ijk",
        rng.gamma(1.0, 1.0, (6, 2)),
        rng.gamma(1.0, 1.0, (5, 2)),
        rng.gamma(1.0, 1.0, (4, 2)),
    )
    y = rng.poisson(3.0 * lam)
    idx = np.argwhere(y > 0)
    return pd.DataFrame({"a": idx[:, 0], "b": idx[:, 1], "c": idx[:, 2], "n": y[y > 0]})


def _worker(out: str, run: str) -> None:
    """Fit every case of ``RUNS[run]`` on 1 and on several devices; save the predictions,
    posterior means and (CAVI) bounds, and print the row counts."""
    import bayestensor as bt
    from bayestensor.data import encode, encode_new
    from bayestensor.models.funbat import FunBaT
    from bayestensor.models.funbat.result import FitResult

    assert len(jax.devices()) == 4 and jax.config.jax_enable_x64
    opts = RUNS[run]
    df = _funbat_frame()
    enc = encode(df, opts["coords"], "y")
    new = encode_new(df.iloc[::7], enc.modes)
    counts = _count_frame()
    arrays = {}
    for d in (1,) + opts["sharded"]:
        for model in opts["models"]:
            est = FunBaT(
                model, rank=2, max_sweeps=6, tol=1e-12, learn_hyper=opts["learn_hyper"], devices=d
            ).fit(enc)
            mean, sd_f, _ = est.predict(new)
            arrays[f"{model}_mean_{d}"] = mean
            arrays[f"{model}_sd_{d}"] = sd_f
            arrays[f"{model}_rmse_{d}"] = np.asarray([h["rmse"] for h in est.history_])
            for k in range(enc.K):
                arrays[f"{model}_U{k}_{d}"] = est.factor_moments(k)[0]
            arrays[f"{model}_noise_{d}"] = np.asarray(est.noise_sd_)
            if model == "tucker":  # an update with new rows (the default scope="new")
                up = FitResult(est, "y").update(_funbat_frame(41, seed=9), sweeps=2)
                arrays[f"update_mean_{d}"] = up.predict(df.iloc[::7])["mean"].to_numpy()
        if opts["cavi"]:
            res = bt.fit(
                counts,
                coords=["a", "b", "c"],
                value="n",
                model="poisson-tucker",
                rank=2,
                method="vi",
                max_iter=20,
                vi_tol=1e-14,
                progress=False,
                devices=d,
            )
            arrays[f"cavi_elbo_{d}"] = np.asarray(res.info["elbo"])
            for name, v in res.mean.items():
                arrays[f"cavi_{name}_{d}"] = np.asarray(v)
    np.savez(out, **arrays)
    print(json.dumps({"n_funbat": len(df), "n_counts": len(counts)}))


def _run_worker(tmp_path, run: str):
    """:func:`_worker` in a subprocess with four host devices: its arrays and JSON line."""
    return run_worker(__file__, tmp_path, run)


def _max_rel(a, b) -> float:
    """Largest difference relative to the reference's largest entry."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(
    "run",  # the worker runs float64 in both passes (forced_devices): once
    [pytest.param("quick", marks=pytest.mark.once), pytest.param("full", marks=pytest.mark.slow)],
)
def test_sharded_fits_equal_single_device(tmp_path, run):
    """FunBaT (and in the full run CP and Poisson CAVI) on 2 (and 4) host devices equals the
    one-device fit: predictions (also after an update), factor means, noise, training RMSE per
    sweep, CAVI's parameters and bound."""
    arrays, rows = _run_worker(tmp_path, run)
    opts = RUNS[run]
    assert rows["n_funbat"] % 2 and rows["n_counts"] % 2  # padding rows are exercised
    names = {k.rsplit("_", 1)[0] for k in arrays}
    n_names = len(opts["models"]) * (4 + len(opts["coords"])) + 1 + 13 * opts["cavi"]
    assert len(names) == n_names
    for d in opts["sharded"]:
        for name in sorted(names):
            ref, got = arrays[f"{name}_1"], arrays[f"{name}_{d}"]
            assert got.shape == ref.shape, name
            assert _max_rel(got, ref) < TOL["sharded_vs_single"], (name, d)
    sd = _funbat_frame()["y"].std()
    for model in opts["models"]:  # the fits explain the data (not two untouched starts)
        assert arrays[f"{model}_rmse_1"][-1] < 0.5 * sd
    if opts["cavi"]:
        elbo = arrays["cavi_elbo_1"]
        assert len(elbo) == 20 and elbo[-1] > elbo[0]


def _stall_worker(n: int) -> None:
    """A FunBaT Tucker fit (rank 3) on all four host devices of ``n`` rows on three continuous
    modes, one of them with 2,000 unique times: the smoother's batched ``eigh`` (2,000 3 × 3
    matrices, replicated on every device) is large enough for jaxlib 0.10 to split it over
    XLA's CPU thread pool. Prints the largest relative difference of the predictions from the
    one-device fit."""
    from bayestensor.data import encode, encode_new
    from bayestensor.models.funbat import FunBaT

    assert len(jax.devices()) == 4
    rng = np.random.default_rng(3)
    t = np.concatenate([np.arange(2000), rng.integers(0, 2000, n - 2000)]).astype(float)
    s = rng.integers(0, 300, n).astype(float)
    z = rng.integers(0, 400, n).astype(float)
    y = np.sin(t / 300.0) * np.cos(s / 100.0) + z / 400.0 + 0.05 * rng.normal(size=n)
    df = pd.DataFrame({"t": t, "s": s, "z": z, "y": y})
    enc = encode(df, dict.fromkeys("tsz", "continuous"), "y")
    new = encode_new(df.iloc[::7], enc.modes)
    means = [
        FunBaT("tucker", rank=3, max_sweeps=2, tol=1e-12, devices=d).fit(enc).predict(new)[0]
        for d in (4, 1)
    ]
    print(json.dumps({"diff": _max_rel(means[0], means[1])}))


@pytest.mark.slow  # about a minute on the loaded 2-core machine (two fits, compiled)
def test_four_host_devices_on_fewer_cores_do_not_stall():
    """With four forced host devices on a 2-core machine, XLA's CPU pool had four threads, and
    the four devices' replicated batched ``eigh`` blocked all of them (jaxlib 0.10's
    ``ParallelBatchMap``): the fit stalled in its first sweep, for good.
    ``bayestensor._xla`` now sizes the pool (``PJRT_NPROC``); the fit finishes and equals the
    one-device fit."""
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC")}
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    )
    code = "import test_sharding; test_sharding._stall_worker(4001)"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the 4-device fit stalled (no result in 180 s)")
    assert proc.returncode == 0, proc.stderr[-4000:]
    diff = json.loads(proc.stdout.strip().splitlines()[-1])["diff"]
    assert diff < TOL["sharded_vs_single"]


def test_host_pool_sized_for_forced_devices(monkeypatch):
    """``_xla.apply`` sets ``PJRT_NPROC=2N`` for N forced host devices when N ≥ the cores, keeps
    a user's pool size, and leaves fewer devices than cores alone; ``resolve_devices`` warns
    when the pool is not larger than the device count."""
    from bayestensor import _xla
    from bayestensor.sharding import _check_host_pool

    cpus = jax.devices("cpu")  # the backend starts now, before XLA_FLAGS is patched below
    monkeypatch.setattr(_xla, "cpu_count", lambda: 2)
    for flags, user, expected in [
        ("--xla_force_host_platform_device_count=4", None, "8"),
        ("--xla_force_host_platform_device_count=2 --other", None, "4"),
        ("--xla_force_host_platform_device_count 3", None, "6"),
        ("--xla_force_host_platform_device_count=4", "5", "5"),  # the user's choice
        ("--xla_force_host_platform_device_count=1", None, None),
        ("--other", None, None),
    ]:
        monkeypatch.setenv("XLA_FLAGS", flags)
        for var in _xla.POOL_VARS:
            monkeypatch.delenv(var, raising=False)
        if user:
            monkeypatch.setenv("PJRT_NPROC", user)
        _xla.apply()
        assert os.environ.get("PJRT_NPROC") == expected, flags
    monkeypatch.setattr(_xla, "cpu_count", lambda: 8)
    monkeypatch.delenv("PJRT_NPROC", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    _xla.apply()
    assert "PJRT_NPROC" not in os.environ  # 4 devices on 8 cores: the pool has 8 threads
    k = len(cpus) + 1  # a fit over k (repeated) host devices
    monkeypatch.setenv("PJRT_NPROC", str(k))
    with pytest.warns(RuntimeWarning, match=f"PJRT_NPROC={2 * k}"):
        _check_host_pool(cpus[:1] * k)  # k devices, a pool of k threads
    monkeypatch.setenv("PJRT_NPROC", str(k + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_host_pool(cpus[:1] * k)
        _check_host_pool(cpus[:1])


def test_resolve_devices():
    """``devices=`` takes None, "auto", an int in range or a list of distinct devices."""
    visible = jax.devices()
    assert resolve_devices(None) == list(visible)
    assert resolve_devices("auto") == list(visible)
    assert resolve_devices(1) == [visible[0]]
    assert resolve_devices(np.int64(1)) == [visible[0]]
    assert resolve_devices([visible[0]]) == [visible[0]]
    assert padded_size(203, 4) == 204 and padded_size(8, 4) == 8
    bad = [0, -1, len(visible) + 1, True, 1.0, "all", [], [visible[0], visible[0]], ["cpu"], {}]
    for value in bad:
        with pytest.raises(ValueError, match="devices"):
            resolve_devices(value)


def test_devices_option_validated():
    """Bad ``devices`` values fail at construction (FunBaT) and before any work (bt.fit)."""
    import bayestensor as bt
    from bayestensor.models.funbat import FunBaT

    with pytest.raises(ValueError, match="devices"):
        FunBaT(devices=0)
    df = _funbat_frame(20)
    with pytest.raises(ValueError, match="devices"):
        bt.fit(df, coords=["t", "s", "g"], value="y", devices="gpu0")
    with pytest.raises(ValueError, match="devices"):
        bt.fit(
            _count_frame(),
            coords=["a", "b", "c"],
            value="n",
            model="poisson-tucker",
            method="vi",
            devices=[],
        )


def _grid_frame(n: int, seed: int = 1) -> pd.DataFrame:
    """Noisy values on a few repeated coordinates (10 times, 5 places, 3 groups), so that
    random halves of the rows hold every coordinate value."""
    rng = np.random.default_rng(seed)
    t, s, g = rng.integers(0, 10, n) / 2.0, rng.integers(0, 5, n) * 1.0, rng.integers(0, 3, n)
    y = np.sin(t) * (1.0 + 0.3 * g) + 0.5 * np.cos(s) + 0.05 * rng.normal(size=n)
    return pd.DataFrame({"t": t, "s": s, "g": [f"g{v}" for v in g], "y": y})


def test_the_intercept_leaves_padding_rows_at_zero():
    """``intercept=True`` inside ``padded_rows``: its steps come off the real rows only (a
    padding row must stay 0: the sums count it with a zero value), so the padded fit is the
    plain one (the rank-1 check refits halves of the data so)."""
    import bayestensor as bt
    from bayestensor.sharding import padded_rows

    df = _grid_frame(240)
    half = df.sample(130, random_state=0).assign(y=lambda d: np.exp(d["y"]))  # a mean to move
    opts = {"coords": ["t", "s", "g"], "value": "y", "rank": 2, "max_sweeps": 4}
    opts |= {"local": None, "progress": False, "intercept": True}
    plain = bt.fit(half, **opts)
    with padded_rows(len(df)):
        padded = bt.fit(half, **opts)
    assert abs(plain.estimator.y_mean_ - half["y"].mean()) > 0.01  # the intercept moved
    a, b = plain.predict(df)["mean"].to_numpy(), padded.predict(df)["mean"].to_numpy()
    assert np.max(np.abs(a - b)) <= TOL["padded_vs_plain"] * np.max(np.abs(a))
    assert padded.estimator.y_mean_ == pytest.approx(plain.estimator.y_mean_, rel=1e-9)


def test_padded_rows_fit_equals_the_plain_fit_and_shares_its_compiled_sweep():
    """Inside ``padded_rows(n)`` a FunBaT fit pads its rows to ``n`` with zero-mask rows: the
    same fit as without (the same sums with zeros added), and fits of different row counts
    with the same modes run one compiled sweep and initial state (the rank-1 check's refits of
    halves of the data and its fit of all rows)."""
    import bayestensor as bt
    from bayestensor.models.funbat import estimator
    from bayestensor.sharding import padded_rows

    df = _grid_frame(240)
    half = df.sample(130, random_state=0)
    assert all(half[c].nunique() == df[c].nunique() for c in ("t", "s", "g"))
    opts = {"coords": ["t", "s", "g"], "value": "y", "rank": 2, "max_sweeps": 4}
    opts |= {"local": None, "progress": False}
    plain = bt.fit(half, **opts)
    programs = (estimator._sweep_jit, estimator._initial_state_jit)
    for f in (*programs, estimator._marginals_jit, estimator._rows_jit):
        f.clear_cache()  # (what earlier tests compiled could release them halfway)
    from bayestensor import driver  # nothing else held past its bound (released as a fit begins)

    driver.release_held()
    with padded_rows(len(df)):
        padded = bt.fit(half, **opts)
        whole = bt.fit(df, **opts)
    assert [f._cache_size() for f in programs] == [1, 1]
    a, b = plain.predict(df)["mean"].to_numpy(), padded.predict(df)["mean"].to_numpy()
    assert np.max(np.abs(a - b)) <= TOL["padded_vs_plain"] * np.max(np.abs(a))
    assert padded.noise_sd == pytest.approx(plain.noise_sd, rel=TOL["padded_vs_plain"])
    c = bt.fit(df, **opts).predict(df)["mean"].to_numpy()
    d = whole.predict(df)["mean"].to_numpy()
    assert np.max(np.abs(c - d)) <= TOL["padded_vs_plain"] * np.max(np.abs(c))
    with padded_rows(100):  # more rows than n: not padded, the plain fit's own sweep
        bt.fit(df, **opts)
    assert estimator._sweep_jit._cache_size() == 2
    for bad in (0, -3, 2.5, "all", True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            with padded_rows(bad):
                pass


def test_fits_on_all_rows_modes_predict_as_on_their_own_and_share_their_compiled_sweep():
    """Inside ``distributed.on_modes(modes)`` a fit encodes its rows on ``modes`` (all rows'
    grid), coordinates no row has included: a state-space GP's posterior at the rows'
    coordinates is the same without them, and at the others its interpolation between
    neighbours, so it predicts as the fit on its own grid (kriging there). Two subsets lacking
    different coordinates then have the same shapes: with ``padded_rows`` one compiled sweep
    and initial state (the check refits of ``bt.fit`` on small data). Rows with a coordinate
    ``modes`` lack, or other columns, are an error."""
    import bayestensor as bt
    from bayestensor import distributed, driver
    from bayestensor.models.funbat import estimator
    from bayestensor.sharding import padded_rows

    df = _grid_frame(240)
    opts = {"coords": ["t", "s", "g"], "value": "y", "rank": 2, "max_sweeps": 100}
    opts |= {"local": None, "progress": False, "learn_hyper": False, "lengthscale": 1.0}
    whole = bt.fit(df, **opts)
    parts = [df[~df["t"].isin([1.0, 3.5]) & (df["s"] != 2.0)], df[df["t"] != 2.0]]
    programs = (estimator._sweep_jit, estimator._initial_state_jit)
    for f in (*programs, estimator._marginals_jit, estimator._rows_jit):
        f.clear_cache()
    driver.release_held()
    with padded_rows(len(df)), distributed.on_modes(whole.modes):
        on = [bt.fit(part, **opts) for part in parts]
    assert [f._cache_size() for f in programs] == [1, 1]
    assert [len(m.values) for m in on[0].modes] == [len(m.values) for m in whole.modes]
    own = bt.fit(parts[0], **opts)
    assert len(own.modes[0].values) == len(whole.modes[0].values) - 2
    a, b = own.predict(df)["mean"].to_numpy(), on[0].predict(df)["mean"].to_numpy()
    assert np.max(np.abs(a - b)) <= TOL["on_modes_vs_own"] * np.max(np.abs(a))
    assert on[0].noise_sd == pytest.approx(own.noise_sd, rel=TOL["on_modes_vs_own"])
    wider = df.assign(t=df["t"] + 0.25)
    with distributed.on_modes(whole.modes), pytest.raises(ValueError, match="lack"):
        bt.fit(wider, **opts)
    with distributed.on_modes(whole.modes), pytest.raises(ValueError, match="not on_modes"):
        bt.fit(df, **{**opts, "coords": ["s", "t", "g"]})
    with pytest.raises(ValueError, match="non-empty sequence of Mode"):
        with distributed.on_modes([]):
            pass


@pytest.mark.x64
def test_fibre_gp_padded_to_all_rows_fits_as_plain_and_shares_its_programs(monkeypatch):
    """Inside ``padded_local(rows)`` the fibre GP pads its arrays to the fibres of ``rows`` and
    their longest fibre (padding carries no messages: the same likelihood, the same fit). Fits
    of subsets of those rows, and their predictions of other rows among them, then run one
    compiled fibre likelihood and posterior (the check refits of ``bt.fit`` on small data,
    and the fit of all rows)."""
    from bayestensor.models.funbat import local_fibre_dense
    from bayestensor.models.funbat.local_fibre import (
        FibreGP,
        _fibre_arrays,
        _fibre_post_jit,
        _fibre_vg,
        padded_local,
    )

    # the compiled fibre programs, which layouts past the dense algebra's bound run
    monkeypatch.setattr(local_fibre_dense, "DENSE_MAX_WORK", 0)

    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame(
        {"t": rng.integers(0, 40, n) / 4.0, "s": rng.integers(0, 6, n) * 1.0, "x": rng.random(n)}
    )
    r = np.sin(df["t"].to_numpy()) * np.cos(df["s"]) + 0.1 * rng.normal(size=n)
    parts = [np.flatnonzero(rng.random(n) < share) for share in (0.35, 0.5)]
    rows = df[["t", "s", "x"]]
    coords, programs = ["t", "s"], (_fibre_vg, _fibre_post_jit)
    for f in programs:
        f.clear_cache()
    with padded_local(rows[coords]):
        fitted = [FibreGP("t").fit(df.iloc[p], coords, r[p], 0.05) for p in [*parts, np.arange(n)]]
    for part, gp in zip(parts, fitted, strict=False):  # predictions outside the block
        gp.posterior(df.drop(index=part))
    assert max(f._cache_size() for f in programs) == 1
    # on its own a part has other shapes (the test would share nothing without the floor)
    plain = FibreGP("t").fit(df.iloc[parts[0]], coords, r[parts[0]], 0.05)
    assert (
        _fibre_arrays(plain._layout(None))[0].shape
        != _fibre_arrays(fitted[-1]._layout(None))[0].shape
    )
    tol = TOL["padded_local_vs_plain"]
    np.testing.assert_allclose(fitted[0].theta, plain.theta, rtol=tol, atol=tol)
    assert fitted[0].nll == pytest.approx(plain.nll, rel=tol)
    new = df.drop(index=parts[0])
    for a, b in zip(fitted[0].posterior(new), plain.posterior(new), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.max(np.abs(b)))
    with pytest.raises(ValueError, match="non-empty pandas DataFrame"):
        with padded_local(rows.iloc[:0]):
            pass


@pytest.mark.slow  # 36 s over both passes; other padded-fit tests check the values (nox -s bench)
def test_fixed_ranks_padded_fit_as_their_own_and_share_one_compiled_sweep():
    """Inside ``padded_ranks(R)`` a fixed-rank Tucker fit at ranks ``r ≤ R`` runs at ``R``
    with the core entries of the components past ``r`` held at zero: those components get no
    message and add nothing, so the fit is the rank-``r`` fit (hyperparameters learned, to
    rounding), and fits at several ranks run one compiled sweep and initial state (the check
    refits of ``bt.fit``). Ranks above ``R`` run at their own."""
    import bayestensor as bt
    from bayestensor import driver
    from bayestensor.models.funbat import estimator
    from bayestensor.models.funbat.padded import padded_ranks

    rng = np.random.default_rng(1)
    n = 300
    t, s, g = rng.uniform(0, 5, n), rng.integers(0, 6, n) * 1.0, rng.integers(0, 3, n)
    y = np.sin(t) * (1.0 + 0.3 * g) * (1 + 0.2 * s) + 0.3 * np.cos(2 * t) * (g == 1) * np.cos(s)
    df = pd.DataFrame({"t": t, "s": s, "g": [f"g{v}" for v in g], "y": y})
    df["y"] += 0.05 * rng.normal(size=n)
    opts = {"coords": ["t", "s", "g"], "value": "y", "local": None, "progress": False}
    opts |= {"max_sweeps": 25, "tol": 1e-12}  # (every fit runs all its sweeps)
    ranks = [(1, 1, 1), (2, 1, 2)]
    plain = [bt.fit(df, rank=r, **opts) for r in ranks]
    programs = (estimator._sweep_jit, estimator._initial_state_jit)
    driver.release_held()
    for f in programs:
        f.clear_cache()
    with padded_ranks((2, 2, 2)):
        padded = [bt.fit(df, rank=r, **opts) for r in ranks]
        assert [f._cache_size() for f in programs] == [1, 1]
        assert bt.fit(df, rank=(3, 1, 1), **opts).ranks == (3, 1, 1)  # above R: its own
        assert [f._cache_size() for f in programs] == [2, 2]
    for a, b in zip(plain, padded, strict=True):
        assert b.ranks == a.ranks and b.estimator.state_.core.mean.shape == a.ranks
        pa, pb = a.predict(df), b.predict(df)
        for column in ("mean", "sd"):
            gap = np.max(np.abs(pa[column] - pb[column])) / np.max(np.abs(pa[column]))
            assert gap <= TOL["padded_vs_plain"], column
        assert b.noise_sd == pytest.approx(a.noise_sd, rel=TOL["padded_vs_plain"])
        for k in (0, 2):  # the learned hyperparameters (continuous t, categorical g: None)
            ha, hb = a.estimator.state_.log_hyper[k], b.estimator.state_.log_hyper[k]
            assert (ha is None and hb is None) or np.allclose(ha, hb, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="sequence of ints"):
        with padded_ranks([0, 2]):
            pass
