"""Work around a CPU deadlock in jaxlib 0.10.2: set an XLA flag before JAX's backend starts.

With the CPU runtime's concurrency-optimised scheduler, a compiled function that runs several
independent *batched* LAPACK custom calls at once (e.g. ``jnp.linalg.solve``, ``inv`` or
``cho_solve`` under ``vmap``, as FunBaT's prediction does for each mode) can deadlock on a
2-core machine: every worker thread waits for work while the caller waits for the result.
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` removes it (measured: 0 hangs in 15
runs with the flag, hangs in most runs without it; ``tests/test_xla_workaround.py``).

The flag is appended to ``XLA_FLAGS`` unless the user has set that flag already. It takes effect
only if the JAX backend has not started yet, i.e. if ``bayestensor`` is imported before the
first JAX computation.
"""

import os

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def apply() -> None:
    """Append ``FLAG=false`` to ``XLA_FLAGS`` unless the user chose a value."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}=false".strip()
