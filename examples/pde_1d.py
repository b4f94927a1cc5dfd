# %% [markdown]
# # GP-HM on high-frequency and multi-scale 1-D PDEs
#
# `bt.pde.solve` puts a GP prior with a spectral-mixture kernel on the solution values at a grid
# of collocation points and minimises the GP-HM objective (GP prior + boundary likelihood + PDE
# residual likelihood). The grid values are solved for exactly at each step and Adam tunes the
# kernel; early stopping watches the PDE residual between the grid points.
#
# Run as a script: `python examples/pde_1d.py --out figures` (add `--tiny` for a quick run).

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bayestensor as bt  # noqa: E402

jax.config.update("jax_enable_x64", True)


# %%
def main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Solve 1-D benchmark problems; print their errors and write one figure per problem."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="figures")
    p.add_argument("--tiny", action="store_true", help="one small problem, few optimiser steps")
    opts = p.parse_args(args)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    if opts.tiny:
        # u = sin x + 0.1 sin 20x + 0.05 cos 100x on [0, 1], 200 collocation points
        jobs = {"poisson_1d_multiscale": dict(grid=200, steps=10)}
    else:
        jobs = {
            "poisson_1d_sin100": dict(steps=30),
            "poisson_1d_multiscale": dict(steps=30),
            "allen_cahn_1d_sin6cos100": dict(steps=30),
        }
    results = {}
    for name, kw in jobs.items():
        sol = bt.pde.solve(bt.pde.benchmark(name, kw.get("grid")), steps=kw["steps"])
        results[name] = {
            "rel_l2": sol.relative_l2(),
            "wall_time": sol.wall_time,
            "adam_steps": sol.trace.n_adam,
            "final_residual": float(sol.residual_history[sol.trace.best_step]),
        }
        print(f"{name:28s} rel L2 {results[name]['rel_l2']:.2e}  {sol.wall_time:.1f} s")
        fig = sol.plot(out / f"pde_1d_{name}.png")
        plt.close(fig)
    return results


# %%
def check_results(results: dict[str, dict[str, float]]) -> None:
    """The tiny (and full) runs solve every problem to relative L2 ≤ 1e-3."""
    assert results
    for name, r in results.items():
        assert r["rel_l2"] <= 1e-3, (name, r)
        assert r["final_residual"] < 1e-2, (name, r)
        assert r["adam_steps"] >= 1


# %%
if __name__ == "__main__":
    check_results(main(sys.argv[1:]))
