"""Work around CPU deadlocks in jaxlib 0.10.2: set XLA options before JAX's backend starts.

Both deadlocks come from jaxlib 0.10's batched LAPACK kernels (``jaxlib/cpu/lapack_kernels.cc``,
``ParallelBatchMap``): a batched call with enough work splits its batch into tasks on XLA's CPU
thread pool and then *blocks a pool thread* until they are done. When every pool thread is
blocked that way, nobody runs the tasks. (jaxlib 0.11 compiles this parallel path out of its
open-source builds.)

1. One device: a compiled function that runs several independent *batched* LAPACK custom calls
   at once (e.g. ``jnp.linalg.solve``, ``inv`` or ``cho_solve`` under ``vmap``, as FunBaT's
   prediction does for each mode) can fill the pool on a 2-core machine.
   ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` removes it (measured: 0 hangs in
   15 runs with the flag, hangs in most runs without it; ``tests/test_xla_workaround.py``).
2. Several forced host devices (``--xla_force_host_platform_device_count=N``): the pool has
   ``max(cores, N)`` threads, and a sharded fit on all ``N`` devices runs the same replicated
   batched ``eigh`` (FunBaT's smoother) on every device at once: ``N`` blocked threads fill a
   pool of ``N`` whenever ``N ≥ cores`` (a 2-core machine with 4 devices stalled in the first
   sweep from ~2,000 unique coordinates on). XLA sizes the pool from the ``PJRT_NPROC``
   variable when it is set, so it is set to ``2 N`` here (a spare thread per device and more);
   ``tests/test_sharding.py``.

The flag is appended to ``XLA_FLAGS`` unless the user has set that flag already, and
``PJRT_NPROC`` only when neither it nor ``NPROC`` is set. Both take effect only if the JAX
backend has not started yet, i.e. if ``bayestensor`` is imported before the first JAX
computation (:func:`bayestensor.sharding.resolve_devices` warns when a sharded fit may stall).
"""

import os
import re

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
#: Environment variables XLA reads for the size of its CPU thread pool (first one set wins).
POOL_VARS = ("PJRT_NPROC", "NPROC")
_FORCED = re.compile(r"--xla_force_host_platform_device_count[= ](\d+)")


def forced_host_devices(flags: str) -> int:
    """The host (CPU) device count forced in ``flags`` (an ``XLA_FLAGS`` string); 0 if none."""
    counts = _FORCED.findall(flags)
    return int(counts[-1]) if counts else 0


def cpu_count() -> int:
    """The cores this process may run on (what XLA sizes its CPU thread pool from)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def apply() -> None:
    """Append ``FLAG=false`` to ``XLA_FLAGS`` unless the user chose a value; with ``N`` forced
    host devices and ``N ≥`` the cores, set ``PJRT_NPROC=2N`` unless the pool size was chosen."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}=false".strip()
    n = forced_host_devices(flags)
    if n > 1 and n >= cpu_count() and not any(os.environ.get(v) for v in POOL_VARS):
        os.environ["PJRT_NPROC"] = str(2 * n)
