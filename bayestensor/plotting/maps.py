"""Maps of a fitted model over two continuous modes, observed-vs-predicted plots, heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bayestensor.plotting._common import (
    TIME_UNIT_NAMES,
    axis_label,
    dates_to_num,
    set_date_axis,
    timedeltas_to_num,
)


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


def _map_axis(result, name: str, values, n: int):
    """A continuous mode's grid: the values to predict at, to draw at, and its time axis.

    Returns ``(predict_at, drawn, (time kind or None, zone), unit)``: without ``values``,
    the training coordinates (``n`` None) or ``n`` points over their range (times for a time
    mode; evenly spaced in ``log x`` for a log-scale mode); a datetime mode is drawn
    at matplotlib date numbers, a timedelta mode in its time unit.
    """
    modes = {m.name: m for m in result.modes}
    if name not in modes:
        raise ValueError(f"{name!r} is not a mode of the fit; modes are {list(modes)}")
    mode = modes[name]
    if mode.kind != "continuous":
        raise ValueError(f"mode {name!r} is {mode.kind}; a map needs continuous modes")
    time = getattr(mode, "time", None)
    if values is None:
        v = np.asarray(mode.values, dtype=np.float64)  # (a log-scale mode's: logs)
        grid = v if n is None else np.linspace(v.min(), v.max(), n)
        if getattr(mode, "log", False):  # its coordinates as given, or the grid's exp
            grid = mode.raw if n is None else np.exp(grid)
        at = grid if time is None else time.to_pandas(grid)
    else:
        at = np.asarray(values, dtype=np.float64) if time is None else pd.Index(values)
        if at.ndim != 1 or len(at) < 1:
            raise ValueError(f"{name} values must be a non-empty 1-D array")
    if time is None:
        return at, np.asarray(at, dtype=np.float64), (None, None), None
    if time.kind == "datetime":
        drawn, tz = dates_to_num(at)
        return at, drawn, ("datetime", tz), None
    return at, timedeltas_to_num(at, time.unit), ("timedelta", None), TIME_UNIT_NAMES[time.unit]


def _drawn(values, kind: str | None, unit_code: str | None) -> np.ndarray:
    """Observed coordinates as drawn on a map axis (date numbers, time units or floats)."""
    if kind == "datetime":
        return dates_to_num(values)[0]
    if kind == "timedelta":
        return timedeltas_to_num(values, unit_code)
    return np.asarray(values, dtype=np.float64)


#: The sd panels of :func:`plot_prediction_map`: prediction column and title.
MAP_SD = {
    "f": ("sd_f", "posterior sd of the latent f"),
    "y": ("sd", "predictive sd of a new y"),
}


def plot_prediction_map(
    result,
    *,
    x: str,
    y: str,
    fixed: Mapping[str, object],
    n: int | None = None,
    x_values=None,
    y_values=None,
    observed: pd.DataFrame | None = None,
    cmap: str = "viridis",
    sd: str = "f",
    units: Mapping[str, str] | None = None,
) -> Figure:
    """Posterior mean and sd over two continuous modes, the other modes held fixed.

    The model is evaluated with ``result.predict`` at every point of the grid
    ``x_values × y_values`` (e.g. ozone over longitude × latitude in one month). The sd panel
    shows by default the posterior sd of the latent function f — where the model is unsure of
    the field — rather than the predictive sd of a new observation y, which adds the
    (constant) noise variance and so mostly shows the noise.

    Parameters
    ----------
    result : FitResult
        A fitted model (anything with ``modes``, ``value`` and ``predict(df) -> DataFrame``
        with ``mean``, ``sd`` and ``sd_f`` columns).
    x, y : str
        The two coordinate columns spanning the map (horizontal, vertical). A datetime mode
        is drawn on a date axis, a timedelta mode in its time unit.
    fixed : dict
        ``{column: value}`` for every other coordinate column (times as times).
    n : int, optional
        Grid points per axis, evenly spread over the training range, when ``x_values`` /
        ``y_values`` are not given. By default the map is drawn at the training coordinates:
        between them the posterior sd of f rises and falls with the distance to the nearest
        one, and a grid not aligned with them shows that as a plaid pattern.
    x_values, y_values : array-like, optional
        Explicit grid coordinates (times for a time mode).
    observed : pandas.DataFrame, optional
        Observations to overlay as points (columns ``x`` and ``y``; drawn on both panels).
    cmap : str
        Colour map of the mean panel.
    sd : {"f", "y"}
        The sd panel: of the latent f (``sd_f``, default) or of a new observation y (``sd``).
    units : dict, optional
        ``{column: unit}`` for the axis and colour-bar labels, e.g.
        ``{"lat": "°N", "lon": "°E", "ozone": "DU"}`` (the value column names the colour bars).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, the posterior mean and the chosen sd, each a ``pcolormesh`` whose array has
        shape ``(len(y_values), len(x_values))``, with a labelled colour bar (two more axes).

    Raises
    ------
    ValueError
        If ``x == y``, a mode is unknown or categorical, ``fixed`` misses a coordinate or
        ``sd`` is not "f" or "y".
    """
    if x == y:
        raise ValueError(f"x and y must be different modes, both are {x!r}")
    if n is not None and (not isinstance(n, int | np.integer) or n < 2):
        raise ValueError(f"n must be None or an int >= 2, got {n!r}")
    if sd not in MAP_SD:
        raise ValueError(f"sd must be one of {list(MAP_SD)}, got {sd!r}")
    units = dict(units or {})
    x_at, xs, (x_kind, x_tz), x_unit = _map_axis(result, x, x_values, n)
    y_at, ys, (y_kind, y_tz), y_unit = _map_axis(result, y, y_values, n)
    names = [m.name for m in result.modes]
    others = [c for c in names if c not in (x, y)]
    lacking = [c for c in others if c not in fixed]
    if lacking:
        raise ValueError(f"fixed must give a value for {lacking} (the modes other than x and y)")
    nx, ny = len(xs), len(ys)
    cols = np.tile(np.arange(nx), ny)  # row-major over (y, x): y varies slowest
    rows = np.repeat(np.arange(ny), nx)
    grid = pd.DataFrame(
        {x: pd.Index(x_at)[cols], y: pd.Index(y_at)[rows]} | {c: fixed[c] for c in others}
    )
    pred = result.predict(grid[names])
    column, sd_title = MAP_SD[sd]
    if column not in pred.columns:
        raise ValueError(f"the prediction has no {column!r} column; use sd='y'")
    mean = pred["mean"].to_numpy(np.float64).reshape(ny, nx)
    spread = pred[column].to_numpy(np.float64).reshape(ny, nx)
    value = str(getattr(result, "value", "value"))
    where = ", ".join(f"{c} = {fixed[c]}" for c in others)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, colours in (
        (axes[0], mean, "posterior mean", cmap),
        (axes[1], spread, sd_title, "magma"),
    ):
        mesh = ax.pcolormesh(xs, ys, values, shading="nearest", cmap=colours)
        what = f"{value}: {'mean' if values is mean else 'sd of ' + sd}"
        fig.colorbar(mesh, ax=ax, label=axis_label(what, units.get(value)))
        if observed is not None:
            ax.plot(
                _drawn(observed[x], x_kind, getattr(_mode(result, x).time, "unit", None)),
                _drawn(observed[y], y_kind, getattr(_mode(result, y).time, "unit", None)),
                ".", ms=2, color="w", alpha=0.7,
            )  # fmt: skip
        for axis, kind, tz in ((ax.xaxis, x_kind, x_tz), (ax.yaxis, y_kind, y_tz)):
            if kind == "datetime":
                set_date_axis(axis, tz)
        ax.set(
            xlabel=axis_label(x, x_unit or x_tz or units.get(x)),
            ylabel=axis_label(y, y_unit or y_tz or units.get(y)),
            title=f"{title} ({where})" if where else title,
        )
    return fig


def _mode(result, name: str):
    """The fitted mode called ``name``."""
    return next(m for m in result.modes if m.name == name)


def plot_heatmap(
    matrix,
    *,
    row_labels: Sequence | None = None,
    col_labels: Sequence | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    cbar_label: str | None = None,
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
    cbar_label : str, optional
        Label of the colour bar (what the colours measure).
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
    fig.colorbar(image, ax=ax, label=cbar_label)
    if row_labels is not None:
        ax.set_yticks(np.arange(A.shape[0]), [str(v) for v in row_labels])
    else:  # row indices: whole numbers only
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if col_labels is not None:
        ax.set_xticks(np.arange(A.shape[1]), [str(v) for v in col_labels], rotation=90)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_heatmaps(
    matrices: Mapping[str, object],
    *,
    row_labels: Mapping[str, Sequence] | None = None,
    cmap: str = "viridis",
    ncols: int | None = None,
    col_labels: Mapping[str, Sequence] | None = None,
    xlabel: str | Mapping[str, str] | None = None,
    ylabel: str | Mapping[str, str] | None = None,
    cbar_label: str | Mapping[str, str] | None = None,
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
    col_labels : dict, optional
        ``{title: labels}`` of the columns.
    xlabel, ylabel, cbar_label : str or dict, optional
        Axis and colour-bar labels: one for every panel, or ``{title: label}``.

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

    def pick(option, title):
        return option.get(title) if isinstance(option, Mapping) else option

    for ax, (title, A) in zip(axes, matrices.items(), strict=False):
        plot_heatmap(
            A,
            row_labels=pick(row_labels, title),
            col_labels=pick(col_labels, title),
            title=str(title),
            xlabel=pick(xlabel, title),
            ylabel=pick(ylabel, title),
            cbar_label=pick(cbar_label, title),
            cmap=cmap,
            ax=ax,
        )
    for ax in axes[len(matrices) :]:
        ax.set_visible(False)
    return fig
