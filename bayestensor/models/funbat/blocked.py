"""FunBaT on rows that do not fit in memory: ``bt.fit(parts, coords=..., value=...)``.

``parts`` is a sequence of pandas DataFrames or of CSV / Parquet file paths (a folder of them, a
glob pattern), read one at a time; or of :class:`bayestensor.xr.XarrayBlocks` (groups of chunks
of a dask-backed xarray object, computed one chunk at a time; a part of NaN cells only comes
out empty and is skipped). The fit then runs in four stages, its memory bounded by one part,
one block of rows and the per-coordinate quantities (never all rows at once):

1. **First pass:** each part is checked (columns, types, finite values) and its unique
   coordinates per mode are collected; the modes are the union (as :func:`bayestensor.data.encode`
   would build them from all rows).
2. **Second pass:** each part is encoded against those modes and written to a scratch folder as
   NumPy arrays (indices and values, read back memory-mapped), and a uniform random sample of at
   most ``sample_rows`` rows is kept (all rows when there are no more).
3. **Warm start:** the in-memory fit (:class:`FunBaT`) of the sample, with every option of the
   fit, on the full modes: standardisation, spectral start, ``rank="auto"`` pruning and
   ``kernel="auto"`` happen there.
4. **Blocked sweeps** over all rows: the sweep of :func:`~bayestensor.models.funbat.inference.sweep`
   with every sum over rows taken block by block (``block_rows`` rows, the last block padded and
   masked): per mode, its message sums over all blocks, then its update; the core's (or CP
   weights') sums; the noise's. ``K + 2`` passes over the rows per sweep, until the fitted
   values move by less than ``tol`` noise sds or ``max_sweeps``.

With all rows in the sample (``n ≤ sample_rows``) and the same ``max_sweeps``, the warm start is
the in-memory fit itself and every blocked sweep equals the in-memory sweep up to the order of the
sums. The result is a :class:`FitResult` like any other, except that it cannot be ``update``\\ d
(the rows are not kept).
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayestensor.checks import (
    CATEGORICAL,
    CONTINUOUS,
    check_finite,
    check_frame,
    check_int,
    float_array,
)
from bayestensor.data import encode, encode_new, parse_coords
from bayestensor.driver import Step, bound_compiled, iterate, precision, progress_bar
from bayestensor.models.funbat.ard import ard_update, prior_precision
from bayestensor.models.funbat.grid import grid_second, mode_messages, plan
from bayestensor.models.funbat.inference import update_mode
from bayestensor.models.funbat.moments import (
    core_from_sums,
    core_sums,
    expected_f,
    gather,
    grouping,
    linear_sum,
    weight_from_sums,
    weight_sums,
)
from bayestensor.models.funbat.options import check_kernel_applies
from bayestensor.models.funbat.state import NoisePosterior, auto_chunk
from bayestensor.modes import Encoded
from bayestensor.ssm import gaps
from bayestensor.xr import XarrayBlocks

#: Rows per block of the blocked sweeps, and the largest warm-start sample.
BLOCK_ROWS, SAMPLE_ROWS = 2**18, 200_000
_SUFFIXES = (".csv", ".parquet", ".pq")


def is_parts(df) -> bool:
    """Whether ``bt.fit``'s data argument is a set of parts (paths or a list of frames; an
    empty list is one, refused as having no part)."""
    return isinstance(df, (str, os.PathLike, list, tuple))


def _paths(spec) -> list:
    """The parts named by ``spec``: frames as given; a folder → its CSV/Parquet files; a glob."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out = []
    for item in items:
        if isinstance(item, pd.DataFrame) or _is_source(item):
            out.append(item)
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise ValueError(
                "the parts must be DataFrames or paths of CSV / Parquet files, got "
                f"{type(item).__name__}"
            )
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        elif path.exists():
            found = [path]
        else:
            found = [Path(p) for p in sorted(glob.glob(str(item)))]
        if not found:
            raise ValueError(f"no CSV or Parquet file found at {str(item)!r}")
        for p in found:
            if p.suffix.lower() not in _SUFFIXES:
                raise ValueError(f"{str(p)!r}: expected a .csv or .parquet file")
        out.extend(found)
    return out


def _is_source(part) -> bool:
    """Whether ``part`` is a part object (blocks of a chunked xarray object, read on demand)."""
    return isinstance(part, XarrayBlocks)


def _skip(part, df: pd.DataFrame) -> bool:
    """Whether ``df``, read from ``part``, is an empty part that is skipped: blocks of NaN
    cells only (an empty frame or file is an error)."""
    return len(df) == 0 and _is_source(part)


def _read(part, columns: list[str]) -> pd.DataFrame:
    """One part's columns (a frame as given, a part object's rows, a file read)."""
    if isinstance(part, pd.DataFrame):
        return part
    if _is_source(part):
        return part.read(columns)
    if part.suffix.lower() == ".csv":
        return pd.read_csv(part, usecols=columns)
    try:
        return pd.read_parquet(part, columns=columns)
    except ImportError as err:
        raise ValueError(f"reading {str(part)!r} needs pyarrow (pip install pyarrow)") from err


def _union_modes(parts: list, coords, value: str, time_unit, progress: bool = False) -> tuple:
    """First pass: check every part and build the modes from the union of its coordinates."""
    if isinstance(coords, (str, bytes)) or not isinstance(coords, (list, tuple, dict)):
        raise ValueError(f"coords must be a list/tuple/dict of column names, got {coords!r}")
    if not parts:
        raise ValueError("df is an empty list of parts; give at least one DataFrame or file")
    columns = [*coords, value]
    kinds, uniques, n, first = None, None, 0, None
    bar = progress_bar(len(parts), "checking the parts (pass 1 of 2)", progress)
    for i, part in enumerate(parts):
        bar.update(1)
        df = _read(part, columns)
        if _skip(part, df):
            continue
        name = f"part {i}" + ("" if isinstance(part, pd.DataFrame) else f" ({str(part)!r})")
        check_frame(df, name)
        if kinds is None:  # every part is checked against the first one's kinds
            kinds = parse_coords(df, coords, value)
            uniques = {c: [] for c in kinds}
            first = (name, df)
        parse_coords(df, kinds, value)
        _same_label_types(df, first, kinds, name)
        check_finite(df[value], value, CONTINUOUS, value=True)
        for c in kinds:
            uniques[c].append(df[c].drop_duplicates())
        n += len(df)
    bar.close()
    if kinds is None:
        raise ValueError(f"every cell of {value!r} is NaN; nothing to fit")  # (empty parts)
    names = list(kinds)
    cols = {c: pd.concat(u, ignore_index=True).drop_duplicates() for c, u in uniques.items()}
    size = max(len(v) for v in cols.values())
    frame = pd.DataFrame(
        {
            c: pd.concat([v, v.iloc[:1].repeat(size - len(v))], ignore_index=True)
            for c, v in cols.items()
        }
    )
    enc = encode(frame, kinds, None, time_unit)
    return enc.modes, names, n


def _same_label_types(df: pd.DataFrame, first: tuple, kinds: dict, name: str) -> None:
    """Refuse a categorical column that holds numbers in one part and other labels in another
    (a CSV part reads the codes ``"2"`` as the number 2): they would be two categories."""
    first_name, first_df = first
    for c, kind in kinds.items():
        if kind != CATEGORICAL:
            continue
        numbers = pd.api.types.is_numeric_dtype(df[c])
        if numbers != pd.api.types.is_numeric_dtype(first_df[c]):
            a, b = (name, first_name) if numbers else (first_name, name)
            raise ValueError(
                f"categorical column {c!r} holds numbers in {a} and other labels in {b}: the "
                "same label would be two categories (2 and '2'); give every part the same "
                "type (e.g. .astype(str))"
            )


class _Rows:
    """The encoded rows on disk, part by part, read back in padded blocks."""

    def __init__(
        self, parts, modes, names, value, folder: Path, sample_rows: int, n, seed, progress=False
    ):
        self.files, self.n = [], 0
        rng = np.random.default_rng(seed)
        keep = min(1.0, sample_rows / max(n, 1))
        sample_index, sample_y = [], []
        bar = progress_bar(len(parts), "encoding the parts (pass 2 of 2)", progress)
        for i, part in enumerate(parts):
            bar.update(1)
            df = _read(part, names + [value])
            if _skip(part, df):
                continue
            index = np.asarray(encode_new(df, modes).index, dtype=np.int32)
            y = float_array(df[value])
            np.save(folder / f"index{i}.npy", index)
            np.save(folder / f"y{i}.npy", y)
            self.files.append((folder / f"index{i}.npy", folder / f"y{i}.npy"))
            self.n += len(y)
            take = slice(None) if keep >= 1.0 else rng.random(len(y)) < keep
            sample_index.append(index[take])
            sample_y.append(y[take])
        bar.close()
        self.sample = Encoded(
            modes, np.concatenate(sample_index).astype(np.int64), np.concatenate(sample_y), value
        )

    def blocks(self, size: int, y_mean: float, y_scale: float) -> Iterator[tuple]:
        """``(index, y, mask, n_real)`` blocks of ``size`` rows (z-scored values; the last
        block of each part padded with masked rows)."""
        for fi, fy in self.files:
            index, y = np.load(fi, mmap_mode="r"), np.load(fy, mmap_mode="r")
            for start in range(0, len(y), size):
                idx = np.zeros((size, index.shape[1]), np.int32)
                yy = np.zeros(size)
                m = min(size, len(y) - start)
                idx[:m] = index[start : start + m]
                yy[:m] = (y[start : start + m] - y_mean) / y_scale
                mask = (np.arange(size) < m).astype(np.float64)
                yield jnp.asarray(idx), jnp.asarray(yy), jnp.asarray(mask), m


def _block_messages(factors, core, tau, index, y, mask, cfg, k: int):
    """Mode ``k``'s message sums from one block (padding rows masked out)."""
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
    return mode_messages(k, y, tau, means, seconds, core, index, group, cfg.sizes, cfg.chunk, mask)


def _block_core(factors, index, y, mask, cfg):
    """The core's (Tucker) or CP weights' row sums from one block."""
    means, seconds = gather(tuple(factors), index)
    c = plan(cfg.sizes, cfg.ranks, y.shape[0]) if cfg.model == "tucker" else None
    if c is not None:  # the Gram sum over the grid of unique coordinates (funbat.grid)
        group = grouping(tuple(factors), index)
        return grid_second(group, cfg.sizes, c, weight=mask), linear_sum(y, means, cfg.chunk)
    seconds = list(seconds[:-1]) + [seconds[-1] * mask[:, None, None]]
    if cfg.model == "tucker":
        return core_sums(y, means, seconds, cfg.chunk)
    return weight_sums(y, means, seconds)


def _block_fit(factors, core, index, y, mask, cfg):
    """``E[f]`` at one block's rows, its part of the noise statistic ``Σ E[(y − f)²]`` and of
    the training residual ``Σ (y − E[f])²`` (padding rows masked out)."""
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
    Ef, Ef2 = expected_f(means, seconds, core, cfg.chunk, group)
    Ef, Ef2 = Ef * mask, Ef2 * mask
    return Ef, jnp.sum(y**2 - 2.0 * y * Ef + Ef2), jnp.sum((y - Ef) ** 2)


_messages_jit = jax.jit(_block_messages, static_argnames=("cfg", "k"))
_core_jit = jax.jit(_block_core, static_argnames=("cfg",))
_fit_jit = jax.jit(_block_fit, static_argnames=("cfg",))
_mode_jit = jax.jit(update_mode, static_argnames=("cfg", "k"))
_messages_jit.per_fit = _mode_jit.per_fit = "mode"  # one program per mode (bound_compiled)


def _add(a, b):
    return b if a is None else jax.tree.map(jnp.add, a, b)


def blocked_sweep(state, rows: _Rows, dts, cfg, block: int, y_mean: float, y_scale: float):
    """One sweep over all rows, block by block: the state, ``E[f]`` per block (float32) and
    the training residual ``Σ (y − E[f])²`` (z-scored)."""
    factors, messages = list(state.factors), list(state.messages)
    log_hyper, opt_state = list(state.log_hyper), list(state.opt_state)
    tau = state.noise.mean
    for k in range(len(cfg.ranks)):
        new = None
        for index, y, mask, _ in rows.blocks(block, y_mean, y_scale):
            new = _add(new, _messages_jit(tuple(factors), state.core, tau, index, y, mask, cfg, k))
        messages[k], factors[k], log_hyper[k], opt_state[k] = _mode_jit(
            cfg, k, new, messages[k], log_hyper[k], opt_state[k], dts[k]
        )
    core, ard = state.core, state.ard
    prior = None if ard is None else prior_precision(cfg, ard)
    if cfg.model == "tucker" or core is not None:
        sums = None
        for index, y, mask, _ in rows.blocks(block, y_mean, y_scale):
            sums = _add(sums, _core_jit(tuple(factors), index, y, mask, cfg))
        if cfg.model == "tucker":
            core = core_from_sums(*sums, tau, prior)
        else:
            core = weight_from_sums(*sums, tau, prior)
    if ard is not None:
        ard = ard_update(cfg, core, ard)
    sq, sse, Efs = 0.0, 0.0, []
    for index, y, mask, m in rows.blocks(block, y_mean, y_scale):
        Ef, part, residual = _fit_jit(tuple(factors), core, index, y, mask, cfg)
        sq, sse = sq + part, sse + float(residual)
        Efs.append(np.asarray(Ef, dtype=np.float32)[:m])  # 4 bytes a row, kept one sweep
    dtype = state.noise.rate.dtype
    noise = NoisePosterior(
        jnp.asarray(cfg.a0 + 0.5 * rows.n, dtype),
        jnp.asarray(cfg.b0 + 0.5 * jnp.maximum(sq, 0.0), dtype),
    )
    new_state = state._replace(
        factors=tuple(factors),
        messages=tuple(messages),
        core=core,
        noise=noise,
        log_hyper=tuple(log_hyper),
        opt_state=tuple(opt_state),
        ard=ard,
    )
    return new_state, Efs, sse


def fit_parts(
    parts,
    coords,
    value: str,
    estimator,
    time_unit=None,
    block_rows: int = BLOCK_ROWS,
    sample_rows: int = SAMPLE_ROWS,
    progress: bool = False,
    folder: str | None = None,
    kernel_given: bool = False,
):
    """Fit ``estimator`` (a :class:`FunBaT`, its options set) to rows read part by part (see
    the module docstring); returns the fitted estimator.

    ``folder``: where the encoded rows are written (default: a temporary folder, removed
    afterwards). ``kernel_given``: the user named one kernel (refused where no mode is
    continuous).
    """
    block_rows = check_int("block_rows", block_rows)
    sample_rows = check_int("sample_rows", sample_rows)
    if estimator.devices not in (None, "auto", 1):
        raise ValueError("out-of-core fits run on one device: leave devices= unset")
    parts = _paths(parts)
    modes, names, n = _union_modes(parts, coords, value, time_unit, progress)
    if kernel_given:
        check_kernel_applies(estimator.kernel, modes)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        rows = _Rows(
            parts, modes, names, value, Path(scratch), sample_rows, n, estimator.seed, progress
        )
        estimator.devices = 1
        estimator.fit(rows.sample, progress=progress)  # the warm start (stage 3)
        with precision(estimator.dtype):
            _sweeps(estimator, rows, block_rows, progress)
    estimator.train_ = None  # the rows are not kept: no update()
    return estimator


def _sweeps(est, rows: _Rows, block_rows: int, progress: bool) -> None:
    """Stage 4: blocked sweeps from the warm start until ``tol`` or ``max_sweeps``."""
    cfg = est.cfg_
    block = min(block_rows, max(rows.n, 1))
    if est.chunk == "auto":
        cfg = cfg._replace(chunk=auto_chunk(block, cfg.ranks, cfg.model))
    dts = tuple(
        jnp.asarray(gaps(m.values)) if cfg.continuous[k] else None for k, m in enumerate(est.modes_)
    )
    bound_compiled(_messages_jit, _core_jit, _fit_jit, _mode_jit, modes=len(cfg.ranks))
    history = list(est.history_)

    def _step(i, carry):
        state, Ef_old = carry
        state, Efs, sq = blocked_sweep(state, rows, dts, cfg, block, est.y_mean_, est.y_scale_)
        tau = float(state.noise.mean)
        moved = (
            None
            if Ef_old is None
            else sum(float(np.sum((a - b) ** 2)) for a, b in zip(Efs, Ef_old, strict=True))
        )
        change = np.inf if moved is None else float(np.sqrt(moved / rows.n * tau))
        hyper = [None if t is None else np.exp(np.asarray(t, np.float64)) for t in state.log_hyper]
        history.append(
            {
                "rmse": float(np.sqrt(sq / rows.n)) * est.y_scale_,
                "tau": tau,
                "noise_sd": est.y_scale_ / np.sqrt(tau),
                "lengthscale": [None if h is None else float(h[0]) for h in hyper],
                "variance": [None if h is None else float(h[1]) for h in hyper],
                "change": change,
            }
        )
        return Step((state, Efs), change < est.tol, {"rmse": history[-1]["rmse"]})

    (state, _), _, converged = iterate(
        _step, (est.state_, None), est.max_sweeps, desc="FunBaT (blocked)", progress=progress
    )
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state)):
        raise ValueError("the blocked fit came out non-finite (NaN or inf in the posterior)")
    est.state_ = state
    est.history_ = history
    est.n_sweeps_ = len(history)
    est.converged_ = converged
