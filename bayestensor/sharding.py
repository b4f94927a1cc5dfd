"""Data-parallel fits over the devices of one host: the observation rows are split over a 1-D
device mesh, everything else is replicated.

The estimators place their per-observation arrays (indices, values, a 0/1 row mask) with
:func:`shard_rows` and leave the rest to ``jax.jit``'s automatic partitioning (GSPMD): the
per-coordinate ``segment_sum`` of the messages and the sums over observations (core and noise
statistics, Poisson expected counts) become cross-device reductions, and the per-mode updates
on the unique coordinates run on the reduced (small) arrays. The row count is padded to a
multiple of the device count with rows that contribute nothing (zero mask, zero value), so a
sharded fit computes the same sums as a single-device fit, in a different order (equal up to
rounding).

With one device nothing is placed and the estimators run their single-device code unchanged,
except inside :func:`padded_rows`: there a FunBaT fit pads its rows to a given count with the
same zero-mask rows, so that fits of different row counts (the rank-1 check's refits of halves
of the data and its fit of all of it) run one compiled sweep. Several hosts
(``jax.distributed``, FunBaT only): :mod:`bayestensor.distributed`.
"""

from __future__ import annotations

import contextvars
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bayestensor.checks import is_int

#: Name of the mesh axis over the observation rows.
ROW_AXIS = "obs"

#: The row count that single-device FunBaT fits pad to (:func:`padded_rows`); None: no padding.
_PAD_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar("pad_rows", default=None)

_DEVICES_EXPECTED = (
    "None or 'auto' (all visible devices), a positive int n (the first n visible devices) or a "
    "non-empty list of distinct jax devices"
)


def resolve_devices(devices=None) -> list:
    """The devices a fit runs on.

    Parameters
    ----------
    devices : None, "auto", int or sequence of jax.Device
        ``None`` or ``"auto"``: every visible device (``jax.devices()``; a sharded fit when
        there is more than one); an int ``n``: the first ``n`` visible devices; a list: those
        devices.

    Returns
    -------
    list of jax.Device
        At least one device; one device means the plain single-device fit.

    Raises
    ------
    ValueError
        Naming ``devices`` for anything else: an int below 1 or above the number of visible
        devices, an empty list, a list with duplicates or with entries that are not devices;
        with several JAX processes, anything but all devices of all processes.
    """
    resolved = _resolve_devices(devices)
    if jax.process_count() > 1:  # several processes: the rows go over every device
        from bayestensor.distributed import check_devices

        check_devices(resolved)
    _check_host_pool(resolved)
    return resolved


def host_pool_size() -> int:
    """Threads of XLA's CPU thread pool, as jaxlib 0.10 sizes it: ``PJRT_NPROC`` (or
    ``NPROC``) when set, else the cores; at least the number of CPU devices."""
    from bayestensor._xla import POOL_VARS, cpu_count

    size = cpu_count()
    for var in POOL_VARS:
        value = os.environ.get(var, "")
        if value.strip().isdigit():
            size = int(value)
            break
    return max(size, len(jax.devices("cpu")))


def _check_host_pool(devices: list) -> None:
    """Warn when a sharded fit over host CPU devices may deadlock: each device can block a
    thread of XLA's CPU pool in a batched LAPACK call (jaxlib 0.10, see
    :mod:`bayestensor._xla`), so the pool needs more threads than devices."""
    if len(devices) < 2 or any(d.platform != "cpu" for d in devices):
        return
    pool = host_pool_size()
    if len(devices) >= pool:
        warnings.warn(
            f"a fit over {len(devices)} host CPU devices with {pool} threads in XLA's CPU pool "
            "can deadlock (jaxlib 0.10's batched LAPACK kernels block a thread per device); "
            f"set PJRT_NPROC={2 * len(devices)} before JAX starts (importing bayestensor "
            "before the first JAX computation does it), or use fewer devices than cores",
            RuntimeWarning,
            stacklevel=3,
        )


def _resolve_devices(devices) -> list:
    """:func:`resolve_devices` without the multi-process check."""
    visible = jax.devices()
    if devices is None or (isinstance(devices, str) and devices == "auto"):
        return list(visible)
    if is_int(devices):
        if not 1 <= int(devices) <= len(visible):
            raise ValueError(
                f"devices must be between 1 and the {len(visible)} visible device(s), "
                f"got {devices!r}"
            )
        return list(visible[: int(devices)])
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        devices = list(devices)
        if (
            devices
            and all(isinstance(d, jax.Device) for d in devices)
            and len(set(devices)) == len(devices)
        ):
            return devices
    raise ValueError(f"devices must be {_DEVICES_EXPECTED}, got {devices!r}")


def row_mesh(devices: Sequence) -> Mesh:
    """A 1-D mesh over ``devices`` with the axis :data:`ROW_AXIS`."""
    return Mesh(np.asarray(list(devices), dtype=object), (ROW_AXIS,))


def row_sharding(devices: Sequence) -> NamedSharding:
    """Leading (observation) axis split over ``devices``, the other axes whole."""
    return NamedSharding(row_mesh(devices), PartitionSpec(ROW_AXIS))


def padded_size(n: int, n_devices: int) -> int:
    """``n`` rounded up to a multiple of ``n_devices`` (every device gets as many rows)."""
    return -(-n // n_devices) * n_devices


def shard_rows(arrays: Sequence, devices: Sequence) -> tuple[list, jax.Array]:
    """Pad the rows of ``arrays`` with zeros to a multiple of the device count and split them
    over ``devices``.

    Parameters
    ----------
    arrays : sequence of array-like
        Per-observation arrays with the same leading length ``n`` (indices, values, …). Padded
        rows are zeros: index 0 (a valid coordinate) and value 0; the caller must make them
        contribute nothing (the returned mask, or a zero count that has no likelihood term).
        With several JAX processes: this process's rows, as its part of global arrays
        (:func:`bayestensor.distributed.shard_local_rows`).
    devices : sequence of jax.Device
        The devices (see :func:`resolve_devices`).

    Returns
    -------
    arrays : list of jax.Array
        The padded arrays, sharded along their first axis.
    mask : jax.Array
        ``(n_padded,)`` of JAX's default float type: 1 on the ``n`` real rows, 0 on the padding;
        sharded like the rows.

    Raises
    ------
    ValueError
        If the arrays' leading lengths differ.
    """
    if jax.process_count() > 1:  # several processes: each holds its own part of the rows
        from bayestensor.distributed import shard_local_rows

        return shard_local_rows(arrays, devices)
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(
            f"arrays must share their leading (row) length, got {[a.shape[0] for a in arrays]}"
        )
    pad = padded_size(n, len(devices)) - n
    sharding = row_sharding(devices)
    out = [
        jax.device_put(np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)), sharding) for a in arrays
    ]
    mask = np.concatenate([np.ones(n), np.zeros(pad)]).astype(jax.numpy.result_type(float))
    return out, jax.device_put(mask, sharding)


@contextmanager
def padded_rows(n: int) -> Iterator[None]:
    """Within this block, FunBaT fits on one device pad their observation rows to ``n`` with
    rows that contribute nothing (mask 0, as :func:`shard_rows` pads), and run the masked sweep
    even with no row to add: fits of up to ``n`` rows then share one compiled sweep and initial
    state per model layout. A fit of more rows than ``n`` is not padded (its own shapes)."""
    if not is_int(n) or n < 1:
        raise ValueError(f"n must be a positive int (the padded row count), got {n!r}")
    token = _PAD_ROWS.set(int(n))
    try:
        yield
    finally:
        _PAD_ROWS.reset(token)


def placed_rows(index, y, devices: Sequence) -> tuple[list, jax.Array | None]:
    """A fit's ``[index, y]`` placed for its sweep and their 0/1 row mask: split over
    ``devices`` when there are several (:func:`shard_rows`); on one device as they are, with
    no mask, or inside :func:`padded_rows` padded to its row count, with a mask."""
    if len(devices) > 1:
        return shard_rows([index, y], devices)
    target = _PAD_ROWS.get()
    n = np.shape(index)[0]
    if target is None or n > target:
        return [jax.device_put(index), y], None
    pad = target - n
    index = np.pad(np.asarray(index), [(0, pad), (0, 0)])
    y = np.pad(np.asarray(y), (0, pad))
    mask = np.concatenate([np.ones(n), np.zeros(pad)]).astype(jax.numpy.result_type(float))
    return [jax.device_put(a) for a in (index, y)], jax.device_put(mask)
