"""Plots for fitted models and solutions (matplotlib; every function returns its Figure).

The figures are built with :class:`matplotlib.figure.Figure` directly, not through pyplot, so
they work under any backend (Agg included), are never shown or kept alive by a global figure
manager, and display in a notebook when they are a cell's last expression. Save one with
``fig.savefig(path)``.

The helpers:

- ``plot_factors``: learned latent functions ``u^k_r(x)`` with their posterior bands (from
  ``FitResult.factors()``), ordered by ``component_shares`` (the share of the fit each
  component carries; ``tucker_shares`` from factor matrices and a core), minor components
  faded in a panel of their own, small multiples when a mode has many; date axes for time
  modes;
- ``plot_observed_vs_predicted``: observed values against predictive means with intervals;
- ``plot_prediction_map``: the posterior mean and the sd of the latent f (or of a new y)
  over two continuous modes at fixed values of the others, with labelled colour bars;
- ``plot_heatmap``, ``plot_heatmaps``: matrices (factor matrices, core slices — e.g. of a
  Poisson Tucker fit) as heatmaps;
- ``plot_pde_solution``: a 1-D or 2-D PDE solution beside the exact one, with the pointwise
  error; ``plot_pde_fit``: a GP-HM solution with its optimisation history.

Result methods (``FitResult.plot_factors``, ``PoissonTuckerResult.plot_core``,
``PDESolution.plot`` …) delegate here.
"""

from __future__ import annotations

from bayestensor.plotting.factors import component_shares, plot_factors, tucker_shares
from bayestensor.plotting.maps import (
    plot_heatmap,
    plot_heatmaps,
    plot_observed_vs_predicted,
    plot_prediction_map,
)
from bayestensor.plotting.pde import plot_pde_fit, plot_pde_solution

__all__ = [
    "component_shares",
    "plot_factors",
    "plot_heatmap",
    "plot_heatmaps",
    "plot_observed_vs_predicted",
    "plot_pde_fit",
    "plot_pde_solution",
    "plot_prediction_map",
    "tucker_shares",
]
