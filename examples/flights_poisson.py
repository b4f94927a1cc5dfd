# %% [markdown]
# # Flights out of New York as a Poisson count tensor
#
# The bundled `flights` data (nycflights13, 2013) counts departures by origin airport (3),
# destination (105), carrier (16) and month (12): a sparse count tensor. A Bayesian Poisson
# Tucker decomposition (`model="poisson-tucker"`) finds destination and carrier groups that
# explain the counts; shrinkage switches off the components the data do not need.
#
# We hold out 10 % of the (origin, destination, month) slices (every carrier of them is missing,
# zeros included), fit by CAVI and by Gibbs sampling, and compare the held-out Poisson
# log-likelihood per cell with two baselines: one constant rate, and the rate of each
# (origin, destination, carrier) route averaged over its training months.
#
# Run as a script: `python examples/flights_poisson.py --out figures` (`--tiny` for a quick run).
# `check_results` states what a tiny run must show (the example test calls it).

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

import bayestensor as bt  # noqa: E402

COORDS = ["origin", "dest", "carrier", "month"]


# %% [markdown]
# Hold-out: a random 10 % of the (origin, dest, month) slices that have flights, plus the
# empty cells around them, i.e. all cells of those slices.


# %%
def split(df: pd.DataFrame, rng: np.random.Generator):
    """Training rows, held-out rows and the held-out slices (origin, dest, month)."""
    slices = df[["origin", "dest", "month"]].drop_duplicates()
    held = slices[rng.random(len(slices)) < 0.1].reset_index(drop=True)
    tagged = df.merge(held, how="left", indicator=True)
    train = tagged[tagged["_merge"] == "left_only"].drop(columns="_merge")
    test = tagged[tagged["_merge"] == "both"].drop(columns="_merge")
    return train.reset_index(drop=True), test.reset_index(drop=True), held


def baseline_loglik(train, test, held, carriers):
    """Per-cell held-out log-likelihood of a constant rate and of per-route monthly means."""
    cells = held.merge(pd.DataFrame({"carrier": carriers}), how="cross")
    y = cells.merge(test, how="left")["count"].fillna(0).to_numpy()
    n_cells = train[["origin", "dest"]].drop_duplicates().shape[0]
    const = train["count"].sum() / (n_cells * len(carriers) * 12)
    route = train.groupby(["origin", "dest", "carrier"])["count"].sum() / 12
    r = cells.merge(route.rename("rate").reset_index(), how="left")["rate"].fillna(0).to_numpy()
    return {
        "constant": float(stats.poisson.logpmf(y, const).mean()),
        "route mean": float(stats.poisson.logpmf(y, np.maximum(r, 1e-3)).mean()),
    }


# %%
def main(args: list[str] | None = None) -> dict:
    """Fit by CAVI and Gibbs, print held-out scores, write `flights_poisson_core.png`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="figures")
    p.add_argument("--tiny", action="store_true", help="few iterations and sweeps")
    opts = p.parse_args(args)
    rng = np.random.default_rng(0)
    df = bt.datasets.load("flights")
    train, test, held = split(df, rng)
    carriers = sorted(df["carrier"].unique())
    fit_opts = dict(
        coords=COORDS,
        value="count",
        model="poisson-tucker",
        rank=(3, 10, 8, 3),
        mask=held,
        progress=False,
    )
    fits = {
        "vi": bt.fit(train, method="vi", max_iter=60 if opts.tiny else 400, **fit_opts),
        "gibbs": bt.fit(
            train,
            method="gibbs",
            num_warmup=40 if opts.tiny else 400,
            num_samples=20 if opts.tiny else 300,
            **fit_opts,
        ),
    }
    results = baseline_loglik(train, test, held, carriers)
    for name, res in fits.items():
        results[name] = res.heldout_loglik(test, held)["per_cell"]
    results["elbo"] = fits["vi"].info["elbo"]
    results["effective"] = fits["gibbs"].effective_components()
    print("held-out Poisson log-likelihood per cell")
    for k in ["constant", "route mean", "vi", "gibbs"]:
        print(f"  {k:<12}{results[k]:10.4f}")
    print("components carrying 95 % of the counts (Gibbs):", results["effective"])
    print(fits["gibbs"])
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = fits["gibbs"].plot_core()
    fig.savefig(out / "flights_poisson_core.png", dpi=110)
    plt.close(fig)
    fig = fits["gibbs"].plot_factors()
    fig.savefig(out / "flights_poisson_factors.png", dpi=110)
    plt.close(fig)
    return results


# %%
def check_results(results: dict) -> None:
    """What a tiny run must show (called by ``tests/test_examples.py``)."""
    elbo = np.asarray(results["elbo"])
    assert np.all(np.diff(elbo) >= -1e-6 * np.abs(elbo[1:]))  # CAVI never decreases its bound
    # both fits beat a constant rate on the held-out slices by a wide margin
    for k in ["vi", "gibbs"]:
        assert results[k] > results["constant"] + 0.5


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
