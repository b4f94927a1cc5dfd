"""Plots for fitted models and solutions (matplotlib; every function returns its Figure).

The figures are built with :class:`matplotlib.figure.Figure` directly, not through pyplot, so
they work under any backend (Agg included), are never shown or kept alive by a global figure
manager, and display in a notebook when they are a cell's last expression. Save one with
``fig.savefig(path)``.

The helpers:

- ``plot_factors``: learned latent functions ``u^k_r(x)`` with their posterior bands (from
  ``FitResult.factors()``);
- ``plot_observed_vs_predicted``: observed values against predictive means with intervals;
- ``plot_prediction_map``: the predictive mean and sd over two continuous modes at fixed values
  of the others;
- ``plot_heatmap``, ``plot_heatmaps``: matrices (factor matrices, core slices — e.g. of a
  Poisson Tucker fit) as heatmaps;
- ``plot_pde_solution``: a 1-D or 2-D PDE solution beside the exact one, with the pointwise
  error; ``plot_pde_fit``: a GP-HM solution with its optimisation history.

Result methods (``FitResult.plot_factors``, ``PoissonTuckerResult.plot_core``,
``PDESolution.plot`` …) delegate here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

__all__ = [
    "plot_factors",
    "plot_heatmap",
    "plot_heatmaps",
    "plot_observed_vs_predicted",
    "plot_pde_fit",
    "plot_pde_solution",
    "plot_prediction_map",
]

_FACTOR_COLUMNS = ("mode", "coordinate", "component", "mean", "sd")


def _z(level: float) -> float:
    """Half-width of the central ``level`` interval of a standard normal."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(stats.norm.ppf(0.5 + level / 2))


def _is_numeric(values: np.ndarray) -> bool:
    """Whether every value converts to a finite float (a continuous coordinate)."""
    try:
        return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def plot_factors(
    factors: pd.DataFrame,
    *,
    level: float = 0.95,
    kinds: Mapping[str, str] | None = None,
    max_components: int | None = None,
) -> Figure:
    """Latent functions ``u^k_r`` with central posterior bands, one panel per mode.

    A continuous mode is drawn as lines (posterior mean) with shaded bands
    ``mean ± z · sd``; a categorical mode as points with error bars.

    Parameters
    ----------
    factors : pandas.DataFrame
        Long format with columns ``mode``, ``coordinate``, ``component``, ``mean``, ``sd`` — the
        output of :meth:`bayestensor.FitResult.factors`.
    level : float
        Probability of the bands (0.95: ``z = 1.96``).
    kinds : dict, optional
        ``{mode: "continuous" | "categorical"}`` (e.g. ``result.coords``). By default a mode is
        continuous when all its coordinates are numbers.
    max_components : int, optional
        Draw at most this many components per mode.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per mode, in the order the modes first appear in ``factors``.

    Raises
    ------
    ValueError
        If a column is missing, ``factors`` is empty or ``level`` is not in (0, 1).
    """
    missing = [c for c in _FACTOR_COLUMNS if c not in factors.columns]
    if missing:
        raise ValueError(f"factors is missing columns {missing}; expected {list(_FACTOR_COLUMNS)}")
    if len(factors) == 0:
        raise ValueError("factors is empty")
    z = _z(level)
    modes = list(dict.fromkeys(factors["mode"]))
    fig = Figure(figsize=(4.2 * len(modes), 3.3), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False)[0]
    for ax, mode in zip(axes, modes, strict=True):
        part = factors[factors["mode"] == mode]
        components = sorted(part["component"].unique())[:max_components]
        kind = (kinds or {}).get(mode)
        continuous = _is_numeric(part["coordinate"]) if kind is None else kind == "continuous"
        labels = list(dict.fromkeys(part["coordinate"]))
        for j, r in enumerate(components):
            comp = part[part["component"] == r]
            m, s = comp["mean"].to_numpy(float), comp["sd"].to_numpy(float)
            if continuous:
                x = comp["coordinate"].to_numpy(np.float64)
                order = np.argsort(x)
                x, m, s = x[order], m[order], s[order]
                (line,) = ax.plot(x, m, lw=1.2, label=f"r = {r}")
                ax.fill_between(x, m - z * s, m + z * s, alpha=0.2, color=line.get_color())
            else:
                pos = np.array([labels.index(c) for c in comp["coordinate"]]) + 0.12 * j
                ax.errorbar(pos, m, yerr=z * s, fmt="o", ms=3, label=f"r = {r}")
        if not continuous:
            ax.set_xticks(np.arange(len(labels)), [str(v) for v in labels], rotation=90)
        ax.set(title=f"mode {mode!r}", xlabel=str(mode), ylabel="u(x)")
        ax.legend(fontsize="small")
    return fig


def plot_observed_vs_predicted(
    observed,
    mean,
    lower=None,
    upper=None,
    *,
    label: str = "value",
    ax=None,
) -> Figure:
    """Observed values (x) against predictive means (y) with predictive intervals.

    Parameters
    ----------
    observed, mean : array-like of shape (n,)
        Observations and predictive means.
    lower, upper : array-like of shape (n,), optional
        Interval bounds (e.g. the ``lower`` / ``upper`` columns of
        :meth:`bayestensor.FitResult.predict`); drawn as vertical error bars.
    label : str
        Name of the quantity, for the axis labels.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        With the points (an errorbar container) and the ``y = x`` line; the title gives the
        RMSE and, with intervals, their coverage.

    Raises
    ------
    ValueError
        If the arrays do not share one 1-D shape, or only one interval bound is given.
    """
    y = np.asarray(observed, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    if y.ndim != 1 or m.shape != y.shape:
        raise ValueError(f"observed and mean must be 1-D of one shape, got {y.shape}, {m.shape}")
    if (lower is None) != (upper is None):
        raise ValueError("give both lower and upper, or neither")
    if ax is None:
        fig = Figure(figsize=(4.6, 4.4), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    title = f"RMSE {np.sqrt(np.mean((y - m) ** 2)):.4g}"
    yerr = None
    if lower is not None:
        lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        if lo.shape != y.shape or hi.shape != y.shape:
            raise ValueError(
                f"lower and upper must have shape {y.shape}, got {lo.shape}, {hi.shape}"
            )
        yerr = np.vstack([m - lo, hi - m])
        title += f", interval coverage {np.mean((lo <= y) & (y <= hi)):.3f}"
    ax.errorbar(y, m, yerr=yerr, fmt=".", ms=3, alpha=0.6, elinewidth=0.5)
    ends = [y.min(), y.max(), m.min(), m.max()]
    ax.plot([min(ends), max(ends)], [min(ends), max(ends)], "k--", lw=0.8)
    ax.set(xlabel=f"observed {label}", ylabel=f"predicted {label}", title=title)
    return fig


def _grid_values(result, name: str, values, n: int) -> np.ndarray:
    """Grid along a continuous mode: given values, or ``n`` points over its training range."""
    if values is not None:
        return np.asarray(values, dtype=np.float64)
    modes = {m.name: m for m in result.modes}
    if name not in modes:
        raise ValueError(f"{name!r} is not a mode of the fit; modes are {list(modes)}")
    if modes[name].kind != "continuous":
        raise ValueError(f"mode {name!r} is {modes[name].kind}; a map needs continuous modes")
    v = np.asarray(modes[name].values, dtype=np.float64)
    return np.linspace(v.min(), v.max(), n)


def plot_prediction_map(
    result,
    *,
    x: str,
    y: str,
    fixed: Mapping[str, object],
    n: int = 60,
    x_values=None,
    y_values=None,
    observed: pd.DataFrame | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Predictive mean and sd over two continuous modes, the other modes held fixed.

    The model is evaluated with ``result.predict`` at every point of the grid
    ``x_values × y_values`` (e.g. ozone over longitude × latitude in one month).

    Parameters
    ----------
    result : FitResult
        A fitted model (anything with ``modes`` and ``predict(df) -> DataFrame`` with ``mean``
        and ``sd`` columns).
    x, y : str
        The two coordinate columns spanning the map (horizontal, vertical).
    fixed : dict
        ``{column: value}`` for every other coordinate column.
    n : int
        Grid points per axis when ``x_values`` / ``y_values`` are not given (they then span the
        training range of the mode).
    x_values, y_values : array-like, optional
        Explicit grid coordinates.
    observed : pandas.DataFrame, optional
        Observations to overlay as points (columns ``x`` and ``y``; drawn on both panels).
    cmap : str
        Colour map of the mean panel.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the predictive mean and the predictive sd of new observations, each a
        ``pcolormesh`` whose array has shape ``(len(y_values), len(x_values))``.

    Raises
    ------
    ValueError
        If ``x == y``, a mode is unknown or categorical, or ``fixed`` misses a coordinate.
    """
    if x == y:
        raise ValueError(f"x and y must be different modes, both are {x!r}")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    xs = _grid_values(result, x, x_values, n)
    ys = _grid_values(result, y, y_values, n)
    names = [m.name for m in result.modes]
    others = [c for c in names if c not in (x, y)]
    lacking = [c for c in others if c not in fixed]
    if lacking:
        raise ValueError(f"fixed must give a value for {lacking} (the modes other than x and y)")
    X, Y = np.meshgrid(xs, ys)  # (len(ys), len(xs))
    grid = pd.DataFrame({x: X.ravel(), y: Y.ravel()} | {c: fixed[c] for c in others})
    pred = result.predict(grid[names])
    mean = pred["mean"].to_numpy(np.float64).reshape(X.shape)
    sd = pred["sd"].to_numpy(np.float64).reshape(X.shape)
    where = ", ".join(f"{c} = {fixed[c]}" for c in others)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, colours in (
        (axes[0], mean, "predictive mean", cmap),
        (axes[1], sd, "predictive sd", "magma"),
    ):
        mesh = ax.pcolormesh(xs, ys, values, shading="nearest", cmap=colours)
        fig.colorbar(mesh, ax=ax)
        if observed is not None:
            ax.plot(observed[x], observed[y], ".", ms=2, color="w", alpha=0.7)
        ax.set(xlabel=x, ylabel=y, title=f"{title} ({where})" if where else title)
    return fig


def plot_heatmap(
    matrix,
    *,
    row_labels: Sequence | None = None,
    col_labels: Sequence | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    ax=None,
) -> Figure:
    """One matrix as a heatmap (``imshow``, row 0 at the top) with a colour bar.

    Parameters
    ----------
    matrix : array-like of shape (m, n)
        E.g. a factor matrix (coordinates × components) or a core slice.
    row_labels, col_labels : sequence, optional
        Tick labels (``m`` and ``n`` of them).
    title, xlabel, ylabel : str, optional
        Axis annotations.
    cmap : str
        Colour map.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``matrix`` is not 2-D or a label list has the wrong length.
    """
    A = np.asarray(matrix, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {A.shape}")
    for labels, size, what in ((row_labels, A.shape[0], "row"), (col_labels, A.shape[1], "col")):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{what}_labels must have {size} entries, got {len(labels)}")
    if ax is None:
        fig = Figure(figsize=(1.0 + 0.35 * A.shape[1] + 1.2, 1.0 + 0.25 * A.shape[0]))
        fig.set_layout_engine("constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    image = ax.imshow(A, aspect="auto", interpolation="nearest", cmap=cmap)
    fig.colorbar(image, ax=ax)
    if row_labels is not None:
        ax.set_yticks(np.arange(A.shape[0]), [str(v) for v in row_labels])
    if col_labels is not None:
        ax.set_xticks(np.arange(A.shape[1]), [str(v) for v in col_labels], rotation=90)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_heatmaps(
    matrices: Mapping[str, object],
    *,
    row_labels: Mapping[str, Sequence] | None = None,
    cmap: str = "viridis",
    ncols: int | None = None,
) -> Figure:
    """Several matrices side by side (e.g. every mode's factor matrix, or core slices).

    Parameters
    ----------
    matrices : dict
        ``{title: 2-D array}``, drawn in order.
    row_labels : dict, optional
        ``{title: labels}`` for the matrices whose rows are named (e.g. airports).
    cmap : str
        Colour map.
    ncols : int, optional
        Panels per row (default: all in one row).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per matrix (surplus grid cells hidden).

    Raises
    ------
    ValueError
        If ``matrices`` is empty or one of them is not 2-D.
    """
    if not matrices:
        raise ValueError("matrices is empty")
    ncols = len(matrices) if ncols is None else int(ncols)
    nrows = -(-len(matrices) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (title, A) in zip(axes, matrices.items(), strict=False):
        plot_heatmap(
            A, row_labels=(row_labels or {}).get(title), title=str(title), cmap=cmap, ax=ax
        )
    for ax in axes[len(matrices) :]:
        ax.set_visible(False)
    return fig


def plot_pde_solution(x, u, exact, *, y=None, title: str | None = None) -> Figure:
    """A PDE solution beside the exact one, and the pointwise absolute error.

    Parameters
    ----------
    x : array-like of shape (n,)
        Grid along the first dimension.
    u, exact : array-like
        The computed and exact solutions: shape ``(n,)`` in 1-D, or ``(n, m)`` on the grid
        ``x × y`` in 2-D (``u[i, j]`` at ``(x[i], y[j])``).
    y : array-like of shape (m,), optional
        Grid along the second dimension (2-D problems only).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        1-D: two axes — both solutions as lines, then ``|u − exact|`` on a log scale.
        2-D: three axes — ``u``, ``exact`` and ``|u − exact|`` as ``pcolormesh`` images whose
        arrays are transposed to ``(m, n)`` (``y`` vertical).

    Raises
    ------
    ValueError
        If the shapes do not match the grid.
    """
    xs = np.asarray(x, dtype=np.float64)
    U = np.asarray(u, dtype=np.float64)
    E = np.asarray(exact, dtype=np.float64)
    if U.shape != E.shape:
        raise ValueError(f"u and exact must have one shape, got {U.shape} and {E.shape}")
    err = np.abs(U - E)
    if y is None:
        if U.shape != xs.shape or xs.ndim != 1:
            raise ValueError(f"1-D: u must have the shape of x {xs.shape}, got {U.shape}")
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        ax_u, ax_e = fig.subplots(1, 2)
        ax_u.plot(xs, E, "k-", lw=2.2, alpha=0.5, label="exact")
        ax_u.plot(xs, U, "C0--", lw=1.2, label="solution")
        ax_u.set(xlabel="x", ylabel="u(x)")
        ax_u.legend()
        ax_e.semilogy(xs, err, "C3-", lw=1)
        ax_e.set(xlabel="x", ylabel="|u − exact|", title=f"max error {err.max():.3g}")
    else:
        ys = np.asarray(y, dtype=np.float64)
        if U.shape != (xs.size, ys.size):
            raise ValueError(f"2-D: u must have shape (len(x), len(y)) = {(xs.size, ys.size)}")
        fig = Figure(figsize=(13, 3.8), layout="constrained")
        axes = fig.subplots(1, 3)
        for ax, values, name in zip(
            axes, (U, E, err), ("solution", "exact", "|u − exact|"), strict=True
        ):
            mesh = ax.pcolormesh(xs, ys, values.T, shading="nearest")
            fig.colorbar(mesh, ax=ax)
            ax.set(xlabel="x", ylabel="y", title=name)
        axes[2].set_title(f"|u − exact| (max {err.max():.3g})")
    if title:
        fig.suptitle(title)
    return fig


def plot_pde_fit(solution) -> Figure:
    """A GP-HM solution with its optimisation history (``PDESolution.plot`` delegates here).

    1-D: the GP mean on a finer grid with the grid values (and the exact solution when the
    problem has one), the pointwise error, and the midpoint residual per optimiser step. 2-D:
    images of the mean (exact and error when known) above the history.

    Parameters
    ----------
    solution : PDESolution

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For problems of more than two dimensions.
    """
    problem = solution.problem
    D = len(problem.shape)
    if D not in (1, 2):
        raise ValueError("plot() draws 1-D and 2-D problems only")
    has_exact = problem.exact is not None
    coords = solution.test_grid()
    mean = solution.on_grid(*coords)
    exact = solution.exact_on(coords) if has_exact else None
    if D == 1:
        fig = Figure(figsize=(8, 7.5), layout="constrained")
        ax, err_ax, hist_ax = fig.subplots(3, 1)
        ax.plot(coords[0], mean, lw=0.8, label="GP mean")
        if has_exact:
            ax.plot(coords[0], exact, "--", lw=0.8, label="exact")
        ax.plot(solution.grid[0], solution.values, ".", ms=2, label="grid values")
        ax.set(xlabel=problem.variables[0], title="solution")
        ax.legend(loc="upper right", fontsize=8)
        if has_exact:
            err_ax.semilogy(coords[0], np.abs(mean - exact) + 1e-300, lw=0.8)
            err_ax.set_title(f"|error| (relative L2 {solution.relative_l2():.2e})")
        err_ax.set_xlabel(problem.variables[0])
    else:
        ncol = 3 if has_exact else 1
        fig = Figure(figsize=(4 * ncol, 7), layout="constrained")
        ext = [*problem.box[1], *problem.box[0]]
        panels = [("GP mean", mean)]
        if has_exact:
            panels += [("exact", exact), ("|error|", np.abs(mean - exact))]
        for i, (title, img) in enumerate(panels):
            ax = fig.add_subplot(2, ncol, i + 1)
            im = ax.imshow(img, extent=ext, origin="lower", aspect="auto")
            ax.set(title=title, xlabel=problem.variables[1], ylabel=problem.variables[0])
            fig.colorbar(im, ax=ax)
        hist_ax = fig.add_subplot(2, 1, 2)
    hist_ax.semilogy(solution.residual_history, label="midpoint residual (relative)")
    hist_ax.axvline(solution.trace.best_step, color="k", lw=0.5, label="returned step")
    hist_ax.set_xlabel("optimiser step")
    hist_ax.legend(fontsize=8)
    return fig
