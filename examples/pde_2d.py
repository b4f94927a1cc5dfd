# %% [markdown]
# # GP-HM on 2-D PDEs with Kronecker-structured covariances
#
# On a tensor grid the GP covariance is K₁ ⊗ K₂, so derivatives, solves and log-determinants
# use per-dimension factorisations and mode products, never an N × N matrix. Small grids use the
# exact dense least-squares step; large ones the Kronecker (fast-diagonalisation) step.
#
# Run as a script: `python examples/pde_2d.py --out figures` (add `--tiny` for a quick run).

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bayestensor as bt  # noqa: E402
from bayestensor.pde.problems import laplacian  # noqa: E402

jax.config.update("jax_enable_x64", True)


# %%
def low_frequency(x, y):
    """A smooth manufactured solution for the quick run."""
    return jnp.sin(jnp.pi * x) * jnp.cos(1.5 * y) + 0.5 * x * y


def main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Solve 2-D Poisson problems; print their errors and write one figure per problem."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="figures")
    p.add_argument("--tiny", action="store_true", help="a 20 × 22 grid, few optimiser steps")
    opts = p.parse_args(args)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    if opts.tiny:
        prob = bt.pde.Problem.manufactured(
            laplacian, low_frequency, [(0.0, 1.0), (-1.0, 1.0)], (20, 22)
        )
        jobs = {"poisson_2d_low_frequency": (prob, dict(steps=5, max_freq=1.5))}
    else:
        jobs = {"poisson_2d_sin6cos20": (bt.pde.benchmark("poisson_2d_sin6cos20"), dict(steps=0))}
    results = {}
    for name, (prob, kw) in jobs.items():
        sol = bt.pde.solve(prob, **kw)
        results[name] = {
            "rel_l2": sol.relative_l2(),
            "wall_time": sol.wall_time,
            "grid_points": float(sol.values.size),
            "method": sol.config.method,
        }
        print(f"{name:28s} rel L2 {results[name]['rel_l2']:.2e}  {sol.wall_time:.1f} s")
        fig = sol.plot(out / f"pde_2d_{name}.png")
        plt.close(fig)
    return results


# %%
def check_results(results: dict[str, dict[str, float]]) -> None:
    """Every 2-D solve reaches relative L2 ≤ 1e-2 (the tiny one ≤ 1e-4)."""
    assert results
    for name, r in results.items():
        bound = 1e-4 if name == "poisson_2d_low_frequency" else 1e-2
        assert r["rel_l2"] <= bound, (name, r)


# %%
if __name__ == "__main__":
    check_results(main(sys.argv[1:]))
