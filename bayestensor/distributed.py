"""Multi-process (multi-host) FunBaT fits with ``jax.distributed``.

After ``jax.distributed.initialize(...)`` every process runs the same script on its own part of
the rows (e.g. its own Parquet files); ``bt.fit(df_local, ...)`` (or
:func:`encode` + :meth:`FunBaT.fit <bayestensor.models.funbat.FunBaT.fit>`) then fits the model
of all processes' rows together, and every process gets the same fitted model. How:

- **Global coordinates** (:func:`encode`): the unique coordinates of every mode (categories,
  numbers, times) are gathered from all processes, so each process encodes its rows against
  the same modes as a single-process encode of all rows would give.
- **Global standardisation** (:func:`standardisation`): the mean and scale of all processes'
  values (gathered), exactly the single-process ones.
- **Rows on a global mesh** (:func:`shard_local_rows`, called by
  :func:`bayestensor.sharding.shard_rows`): each process pads its rows (mask 0) to a common
  local count and they become one array over every process's devices
  (``jax.make_array_from_process_local_data``); the jitted sweeps then run unchanged under
  JAX's automatic partitioning, their per-coordinate and global sums becoming cross-process
  reductions (:mod:`bayestensor.sharding`).
- **Per-sweep statistics** (:func:`row_errors`): the training RMSE and the move of the fitted
  values are reduced on the devices; the posterior comes back replicated and is copied to
  each process's own default device after the sweeps (:func:`to_local`).

**Memory.** The standardisation, the spectral start
(:func:`~bayestensor.models.funbat.inference.spectral_init`) and the CP component shares need
every row: all processes' values and indices are gathered into each process's host memory
(:func:`standardisation`, :func:`all_rows`: about ``n · (K + 2)`` numbers per process).
The sweeps themselves hold only each device's rows. So the multi-process fit spreads the
compute and device memory of the sweeps, not the host memory of the start.

**Not supported** with more than one process (a ``ValueError`` says so, see
:func:`single_process_only`): the Poisson Tucker model and ``FitResult.update``. Every
process must call the same functions in the same order (they are collective); a process with
no rows is not supported.

With one process every function here is the plain single-process code (or the identity).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.experimental import multihost_utils

from bayestensor import checks, data
from bayestensor.checks import CATEGORICAL
from bayestensor.modes import Encoded, Mode
from bayestensor.sharding import padded_size, row_sharding

#: The modes single-process fits encode their rows against (:func:`on_modes`); None: their own.
_ON_MODES: contextvars.ContextVar[tuple[Mode, ...] | None] = contextvars.ContextVar(
    "on_modes", default=None
)


def is_multiprocess() -> bool:
    """Whether this is one of several JAX processes (``jax.process_count() > 1``)."""
    return jax.process_count() > 1


def single_process_only(what: str) -> None:
    """Raise a ValueError saying ``what`` needs a single-process run, if there are several."""
    if is_multiprocess():
        raise ValueError(
            f"{what} is not supported in a multi-process run (jax.process_count() = "
            f"{jax.process_count()}); run it in a single process"
        )


# -- collectives on host data ---------------------------------------------------------------
def _allgather_bytes(blob: bytes) -> list[bytes]:
    """Every process's ``blob``, in process order (as bytes: no float64 → float32 cast when
    ``jax_enable_x64`` is off)."""
    arr = np.frombuffer(blob, dtype=np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([arr.size], np.int64).view(np.uint8))
    sizes = np.ascontiguousarray(sizes).view(np.int64).reshape(-1)
    padded = np.zeros(max(int(sizes.max()), 1), dtype=np.uint8)
    padded[: arr.size] = arr
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[p, : int(n)].tobytes() for p, n in enumerate(sizes)]


def _allgather_array(a: np.ndarray) -> list[np.ndarray]:
    """Every process's numeric array (same dtype and trailing shape), in process order."""
    a = np.ascontiguousarray(a)
    return [
        np.frombuffer(b, dtype=a.dtype).reshape((-1,) + a.shape[1:])
        for b in _allgather_bytes(a.tobytes())
    ]


def row_count(n: int) -> int:
    """The number of rows of all processes (``n`` with one process)."""
    if not is_multiprocess():
        return n
    return int(np.sum(_allgather_array(np.asarray([n], dtype=np.int64))))


# -- encoding ---------------------------------------------------------------------------------
def _local_uniques(df: pd.DataFrame, mode: Mode) -> tuple[bytes, dict]:
    """This process's distinct raw values of ``mode``'s column, serialised, and a description
    of the column's type that must agree between processes."""
    series = df[mode.name]
    if mode.time is not None:
        times, kind, tz = data._naive_times(series)
        ticks = np.unique(times.view(np.int64))
        return ticks.tobytes(), {"time": kind, "dtype": str(times.dtype), "tz": tz}
    if mode.kind == CATEGORICAL:
        levels = [checks.python_scalar(v) for v in mode.values]
        try:
            blob = json.dumps(levels, allow_nan=False).encode()
        except (TypeError, ValueError):
            raise ValueError(
                f"column {mode.name!r}: a multi-process fit gathers the categories of every "
                "process, which must be str, int, float or bool; convert the column (e.g. "
                ".astype(str))"
            ) from None
        return blob, {"categorical": True}
    return np.ascontiguousarray(mode.values, dtype=np.float64).tobytes(), {"float": True}


def _global_column(blobs: list[bytes], desc: dict) -> pd.Series:
    """The union of all processes' values of one column, as a Series of the column's type."""
    if "time" in desc:
        ticks = np.unique(np.concatenate([np.frombuffer(b, np.int64) for b in blobs]))
        unit = np.datetime_data(np.dtype(desc["dtype"]))[0]
        code = "M8" if desc["time"] == "datetime" else "m8"
        series = pd.Series(ticks.view(f"{code}[{unit}]"))
        if desc["tz"] is not None:
            series = series.dt.tz_localize("UTC").dt.tz_convert(desc["tz"])
        return series
    if "categorical" in desc:
        values = [v for b in blobs for v in json.loads(b.decode())]
        return pd.Series(pd.unique(pd.Series(values)))
    return pd.Series(np.unique(np.concatenate([np.frombuffer(b, np.float64) for b in blobs])))


def encode(df: pd.DataFrame, coords, value: str | None = None, time_unit=None) -> Encoded:
    """:func:`bayestensor.data.encode` of this process's rows against the modes of all
    processes' rows.

    With one process this is :func:`bayestensor.data.encode`. With several (after
    ``jax.distributed.initialize``), every process calls it with its own rows: the distinct
    coordinates of each mode are gathered from all processes and encoded together (time modes
    get the global earliest time as origin), so the modes are those of a single-process
    encode of all rows; ``index`` and ``y`` hold this process's rows only. Categorical
    columns must hold str, int, float or bool categories (they travel as JSON).

    Parameters
    ----------
    df, coords, value, time_unit
        As for :func:`bayestensor.data.encode` (``df``: this process's rows).

    Returns
    -------
    Encoded
        The global modes; this process's indices and values.

    Raises
    ------
    ValueError
        As :func:`bayestensor.data.encode`; if a column's type differs between processes; for
        categories that are not str, int, float or bool.
    """
    local = data.encode(df, coords, value, time_unit=time_unit)
    if not is_multiprocess():
        return local if _ON_MODES.get() is None else _encode_on(local, df, _ON_MODES.get())
    kinds = data.parse_coords(df, coords, value)
    columns = {}
    for mode in local.modes:
        blob, desc = _local_uniques(df, mode)
        descs = [json.loads(b.decode()) for b in _allgather_bytes(json.dumps(desc).encode())]
        if any(d != desc for d in descs):
            raise ValueError(
                f"column {mode.name!r} has different types in different processes: {descs}"
            )
        columns[mode.name] = _global_column(_allgather_bytes(blob), desc)
    longest = max(len(c) for c in columns.values())
    # one frame holding every distinct value (each column padded by repeating its first)
    frame = pd.DataFrame(
        {
            name: pd.concat([c, c.iloc[[0] * (longest - len(c))]], ignore_index=True)
            for name, c in columns.items()
        }
    )
    modes = data.encode(frame, dict(kinds), None, time_unit=time_unit).modes
    index = data.encode_new(df, modes).index
    if np.any(index < 0):  # cannot happen: every local coordinate is among the gathered ones
        raise ValueError("internal error: a local coordinate is missing from the global modes")
    return Encoded(modes=modes, index=index.astype(np.int64), y=local.y, value=value)


@contextmanager
def on_modes(modes: Sequence[Mode]) -> Iterator[None]:
    """Within this block, a single-process :func:`encode` (so :func:`bayestensor.fit`) encodes
    its rows against ``modes``, e.g. a fit of all rows' modes, instead of their own
    coordinates: the fit's grid then holds coordinates no row has, where each latent function
    takes its GP's interpolation between its neighbours (a state-space GP's posterior and
    evidence at the rows' coordinates are those without them; a category no row has keeps its
    prior). Fits of different subsets of the rows then have the same grid, so the same array
    shapes, and share their compiled programs (the check refits of :func:`bayestensor.fit` on
    small data). The rows' columns must be ``modes``' names and kinds, in order, with
    coordinates among theirs."""
    modes = tuple(modes)
    if not modes or not all(isinstance(m, Mode) for m in modes):
        raise ValueError("modes must be a non-empty sequence of Mode objects")
    token = _ON_MODES.set(modes)
    try:
        yield
    finally:
        _ON_MODES.reset(token)


def _encode_on(local: Encoded, df: pd.DataFrame, modes: tuple[Mode, ...]) -> Encoded:
    """``local`` (the rows' own encode) re-encoded against ``modes`` (:func:`on_modes`)."""
    names, theirs = ([(m.name, m.kind) for m in ms] for ms in (local.modes, modes))
    if names != theirs:
        raise ValueError(f"the rows' modes {names} are not on_modes' {theirs} (name, kind)")
    index = data.encode_new(df, modes).index
    if np.any(index < 0):
        raise ValueError("the rows have coordinates that on_modes' modes lack")
    return Encoded(modes=modes, index=index.astype(np.int64), y=local.y, value=local.value)


def _modes_digest(modes) -> bytes:
    """A hash of the modes' names, kinds, values and time scales."""
    h = hashlib.sha256()
    for m in modes:
        h.update(repr((m.name, m.kind, m.time)).encode())
        if m.kind == CATEGORICAL:
            h.update(repr([checks.python_scalar(v) for v in m.values]).encode())
        else:
            h.update(np.ascontiguousarray(m.values, dtype=np.float64).tobytes())
    return h.digest()


def check_same_modes(modes) -> None:
    """Raise a ValueError unless every process encoded its rows with the same modes (a no-op
    with one process)."""
    if not is_multiprocess():
        return
    digests = _allgather_bytes(_modes_digest(modes))
    if any(d != digests[0] for d in digests):
        raise ValueError(
            "enc has different modes in different processes; in a multi-process fit encode "
            "each process's rows with bayestensor.distributed.encode (bt.fit does)"
        )


# -- values and rows ---------------------------------------------------------------------------
def standardisation(y: np.ndarray) -> tuple[float, float]:
    """:func:`bayestensor.checks.standardisation` of all processes' values.

    With several processes the values are gathered (in process order, ``n`` float64 numbers on
    every process, like :func:`all_rows`) and standardised together: the same mean and scale,
    to the last bit, as a single-process fit of the concatenated rows. (An all-reduce of
    counts and sums would agree only to rounding, and the spectral start amplifies rounding
    in directions the data do not determine — e.g. a rank above what an unfolding can hold —
    so the fits would then differ by far more than rounding.)
    """
    if not is_multiprocess():
        return checks.standardisation(y)
    return checks.standardisation(np.concatenate(_allgather_array(np.asarray(y, dtype=np.float64))))


def all_rows(index: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All processes' rows, concatenated in process order, on every process (the identity
    with one process). Costs ``n · (K + 1)`` numbers of host memory per process (the indices
    are gathered as int64)."""
    if not is_multiprocess():
        return index, y
    y = np.asarray(y)
    index = np.concatenate(_allgather_array(np.asarray(index, dtype=np.int64)))
    return index, np.concatenate(_allgather_array(y)).astype(y.dtype)


def check_devices(devices) -> None:
    """Raise a ValueError unless ``devices`` are all devices of all processes (a multi-process
    fit splits its rows over every process's devices)."""
    if is_multiprocess() and set(devices) != set(jax.devices()):
        raise ValueError(
            "devices must be None or 'auto' (every device of every process) in a "
            f"multi-process run (jax.process_count() = {jax.process_count()}), got {devices!r}"
        )


def shard_local_rows(arrays, devices) -> tuple[list, jax.Array]:
    """This process's rows as its part of global arrays split over every process's devices.

    Each process pads its rows with zeros to a common local count (a multiple of its device
    count; the largest over processes) and gets a 0/1 mask like
    :func:`bayestensor.sharding.shard_rows`; the global arrays hold process 0's rows (and
    padding), then process 1's, and so on.

    Returns
    -------
    arrays : list of jax.Array
        Global arrays, split along their first axis over ``devices``.
    mask : jax.Array
        Global ``(n_padded,)`` row mask (JAX's default float type), split like the rows.
    """
    check_devices(devices)
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(
            f"arrays must share their leading (row) length, got {[a.shape[0] for a in arrays]}"
        )
    n_local = len([d for d in devices if d.process_index == jax.process_index()])
    counts = _allgather_array(np.asarray([padded_size(n, n_local)], dtype=np.int64))
    per_process = int(max(int(c[0]) for c in counts))
    # equal local blocks: every device then holds the same number of rows
    per_process = padded_size(per_process, n_local)
    sharding = row_sharding(devices)
    total = per_process * jax.process_count()
    pad = per_process - n

    def _global(a):
        local = np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return jax.make_array_from_process_local_data(sharding, local, (total,) + a.shape[1:])

    mask = np.ones(n, dtype=jnp.result_type(float))  # padded with zeros by _global
    return [_global(a) for a in arrays], _global(mask)


def _squared_errors(Ef, y, Ef_old, mask):
    """``Σ mask (E[f] − y)²``, ``Σ mask (E[f] − E[f]_old)²`` and ``Σ mask (y − E[f])``."""
    return (
        jnp.sum(mask * (Ef - y) ** 2),
        jnp.sum(mask * (Ef - Ef_old) ** 2),
        jnp.sum(mask * (y - Ef)),
    )


_squared_errors_jit = jax.jit(_squared_errors)


def row_errors(Ef, Ef_old, y_np: np.ndarray, y, mask, n_rows: int):
    """After a sweep: the fitted values to keep for the next, the mean squared training error
    ``mean (E[f] − y)²``, the mean squared move ``mean (E[f] − E[f]_old)²`` (``None``
    after the first sweep) and the mean residual ``mean (y − E[f])``, over the ``n_rows``
    real rows.

    With one process ``E[f]`` comes to the host (its padding rows dropped); with several it
    stays on the devices and the sums are reduced there, the results replicated.
    """
    if not is_multiprocess():
        Ef = np.asarray(Ef)[: y_np.shape[0]]
        moved = None if Ef_old is None else float(np.mean((Ef - Ef_old) ** 2))
        return Ef, float(np.mean((Ef - y_np) ** 2)), moved, float(np.mean(y_np - Ef))
    # full reductions: the scalars come out replicated on every process
    sq, moved, res = _squared_errors_jit(Ef, y, Ef if Ef_old is None else Ef_old, mask)
    moved = None if Ef_old is None else float(moved) / n_rows
    return Ef, float(sq) / n_rows, moved, float(res) / n_rows


def to_local(tree):
    """Every global array leaf of ``tree`` as an array on this process's default device (the
    identity with one process): a fitted posterior that predicts and saves like a
    single-process one."""
    if not is_multiprocess():
        return tree

    def _leaf(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return a
        if a.is_fully_replicated:
            return jnp.asarray(np.asarray(a.addressable_data(0)))
        return jnp.asarray(np.asarray(multihost_utils.process_allgather(a, tiled=True)))

    return jax.tree.map(_leaf, tree)
