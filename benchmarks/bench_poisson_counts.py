"""Poisson Tucker with very large counts: 1.5e8 events on the 48 cells of a 4×4×3 tensor.

Memory and time scale with the nonzero cells, not with the events (issue 12): each method runs
in a fresh process (JAX's default float32, default settings) and the script prints the wall time
of fit + predict, the whole process's time and its peak RSS.

Usage: ``python benchmarks/bench_poisson_counts.py [--events 150000000]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
import bayestensor as bt
rng = np.random.default_rng(0)
idx = np.argwhere(np.ones((4, 4, 3)))
y = rng.multinomial(int(sys.argv[2]), np.full(48, 1 / 48))
df = pd.DataFrame({"a": [f"a{i}" for i in idx[:, 0]], "b": [f"b{i}" for i in idx[:, 1]],
                   "c": idx[:, 2], "n": y})
t1 = time.perf_counter()
res = bt.fit(df, coords=["a", "b", "c"], value="n", model="poisson-tucker", method=sys.argv[1],
             progress=False)
p = res.predict(df)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
err = abs(p["mean"].sum() / y.sum() - 1)
print(f"| {sys.argv[1]} | {t2 - t1:.1f} | {t2 - t0:.1f} | {peak:.0f} | {err:.1e} |")
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000_000)
    args = parser.parse_args(argv)
    print(f"{args.events:.2g} events on 48 cells\n")
    print("| method | fit + predict (s) | process (s) | peak RSS (MB) | total rate rel. error |")
    print("|---|---:|---:|---:|---:|")
    for method in ("vi", "gibbs"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, method, str(args.events)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
