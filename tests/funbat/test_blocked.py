"""FunBaT on rows given in parts (:mod:`bayestensor.models.funbat.blocked`): blocked sweeps.

References: the in-memory fit of the concatenated rows, continued by the fit's own sweep (the
blocked sweeps must equal it up to the order of the sums), and the same fit from CSV files.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.data import encode
from bayestensor.driver import precision
from bayestensor.models.funbat import FunBaT
from bayestensor.models.funbat import estimator as est_module
from bayestensor.models.funbat.blocked import fit_parts
from bayestensor.ssm import gaps

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64

COORDS = ["t", "s", "g"]


def _frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 40, n).astype(float)
    s = rng.uniform(0, 1, n).round(2)
    g = rng.choice(list("abc"), n)
    f = np.sin(t / 5) * np.cos(3 * s) + (g == "b") * 0.5
    return pd.DataFrame({"t": t, "s": s, "g": g, "y": f + 0.05 * rng.normal(size=n)}), f


@pytest.mark.parametrize("model", ["tucker", "cp"])
def test_blocked_sweeps_equal_the_in_memory_sweeps(model):
    """Three parts, blocks of 128 rows (padded): the warm start on all rows (the sample) then
    three blocked sweeps equal the in-memory fit continued by three of its own sweeps."""
    df, _ = _frame()
    parts = [df.iloc[:300], df.iloc[300:650], df.iloc[650:]]
    opts = dict(model=model, rank=2, max_sweeps=3, tol=1e-12)
    est = fit_parts(parts, COORDS, "y", FunBaT(**opts), block_rows=128)
    enc = encode(df, COORDS, "y")
    assert all(
        np.array_equal(a.values, b.values) for a, b in zip(enc.modes, est.modes_, strict=True)
    )
    ref = FunBaT(**opts).fit(enc)
    with precision(ref.dtype):
        y = jnp.asarray((enc.y - ref.y_mean_) / ref.y_scale_)
        dts = tuple(
            jnp.asarray(gaps(m.values)) if m.kind == "continuous" else None for m in enc.modes
        )
        state = ref.state_
        for _ in range(3):
            state, _ = est_module._sweep_jit(state, jnp.asarray(enc.index), y, dts, ref.cfg_)
    got, want = jax.tree.leaves(est.state_), jax.tree.leaves(state)
    assert len(got) == len(want) and len(est.history_) == 6
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        scale = max(np.max(np.abs(b)), 1.0) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL["blocked_vs_in_memory"] * scale)


@pytest.mark.slow  # ~22 s (CI time; `pytest -m slow`)
def test_fit_from_csv_files_equals_the_frames(tmp_path):
    """``bt.fit`` on a folder of CSV files, on a glob, on Parquet files and on the list of
    frames: one fit."""
    df, f = _frame(seed=1)
    parts = [df.iloc[:400], df.iloc[400:]]
    (tmp_path / "pq").mkdir()
    for i, part in enumerate(parts):
        part.to_csv(tmp_path / f"part{i}.csv", index=False)
        part.to_parquet(tmp_path / "pq" / f"part{i}.parquet")
    opts = dict(coords=COORDS, value="y", rank=2, max_sweeps=4, progress=False)
    frames = bt.fit(parts, **opts)
    folder = bt.fit(tmp_path, **opts)
    pattern = bt.fit(str(tmp_path / "part*.csv"), **opts)
    parquet = bt.fit(tmp_path / "pq", **opts)
    want = frames.predict(df)["mean"].to_numpy()
    for res in (folder, pattern, parquet):
        got = res.predict(df)["mean"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL["blocked_vs_in_memory"])
    rmse = np.sqrt(np.mean((want - f) ** 2))
    assert rmse < TOL["blocked_truth_rmse"]  # the noise sd is 0.05
    with pytest.raises(ValueError, match="training rows"):
        frames.update(df.iloc[:10])


def test_a_sample_warm_start_then_all_rows():
    """With ``sample_rows`` below ``n`` the warm start sees a sample; the blocked sweeps then
    fit all rows (RMSE against the noiseless function)."""
    df, f = _frame(n=3000, seed=2)
    parts = [df.iloc[i : i + 1000] for i in range(0, 3000, 1000)]
    res = bt.fit(parts, coords=COORDS, value="y", rank=2, sample_rows=400, progress=False)
    rmse = np.sqrt(np.mean((res.predict(df)["mean"].to_numpy() - f) ** 2))
    assert rmse < TOL["blocked_truth_rmse"]
    assert len(res.history) > 1


def test_bad_parts_are_refused(tmp_path):
    df, _ = _frame(n=200)
    opts = dict(coords=COORDS, value="y", progress=False)
    with pytest.raises(ValueError, match="no CSV or Parquet"):
        bt.fit(str(tmp_path / "nothing*.csv"), **opts)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="csv or .parquet"):
        bt.fit([tmp_path / "a.txt"], **opts)
    with pytest.raises(ValueError, match="'s'"):
        bt.fit([df, df.drop(columns="s")], **opts)
    with pytest.raises(ValueError, match=r"'y'.*dropna\(subset=\['y'\]\)"):
        bt.fit([df, df.assign(y=np.where(np.arange(200) == 3, np.nan, df["y"]))], **opts)
    with pytest.raises(ValueError, match="FunBaT"):
        bt.fit([df], coords=COORDS, value="y", model="poisson-tucker")
    with pytest.raises(ValueError, match="DataFrames or paths"):
        bt.fit([df, 3], **opts)
    with pytest.raises(ValueError, match="block_rows"):
        bt.fit([df], block_rows=0, **opts)
    # named: which part is empty, an empty list, a label type that differs between parts (a
    # CSV part reads the labels "2" as numbers: they were other categories than the frame's)
    with pytest.raises(ValueError, match="part 1 is empty"):
        bt.fit([df, df.iloc[:0], df], **opts)
    with pytest.raises(ValueError, match="empty list of parts"):
        bt.fit([], **opts)
    codes = df.assign(g=df["g"].map({"a": 1, "b": 2, "c": 3}))
    path = tmp_path / "codes.csv"
    codes.iloc[100:].to_csv(path, index=False)
    with pytest.raises(ValueError, match="'g' holds numbers in part 1 .*codes.csv.* other labels"):
        bt.fit([codes.iloc[:100].astype({"g": str}), path], **opts)
    # numbers in both: one type (the parts are the point: the low-rank part alone)
    bt.fit([codes.iloc[:100], path], rank=2, max_sweeps=2, local=None, **opts)


@pytest.mark.slow  # 17 s of compiles (nox -s bench runs it)
def test_going_back_to_an_earlier_size_reuses_the_blocked_programs():
    """Two 3-mode parts fits of different sizes, then the first again: its per-mode programs
    are still compiled (bounded at 4 variants, the 6 of two fits released everything, so the
    third fit recompiled them)."""
    from bayestensor.models.funbat import blocked

    # every program bounded on the way (the blocked sweep's four, the warm starts' in-memory
    # fit's four) starts empty, so that what earlier tests compiled cannot release everything
    # halfway
    parts_programs = (blocked._messages_jit, blocked._core_jit, blocked._fit_jit, blocked._mode_jit)
    in_memory = (est_module._initial_state_jit, est_module._sweep_jit)
    in_memory += (est_module._marginals_jit, est_module._rows_jit)
    for f in (*parts_programs, *in_memory):
        f.clear_cache()
    for n in (300, 400, 300):
        df, _ = _frame(n)
        parts = [df.iloc[: n // 2], df.iloc[n // 2 :]]
        fit_parts(parts, COORDS, "y", FunBaT(rank=2, max_sweeps=1), block_rows=128)
    assert blocked._messages_jit._cache_size() == blocked._mode_jit._cache_size() == 6
