"""Plots of PDE solutions (:mod:`bayestensor.pde`)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


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
            fig.colorbar(mesh, ax=ax, label="|u − exact|" if values is err else "u")
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
        grid = fig.add_gridspec(2, ncol)  # images above, the history across below
        for i, (title, img) in enumerate(panels):
            ax = fig.add_subplot(grid[0, i])
            im = ax.imshow(img, extent=ext, origin="lower", aspect="auto")
            ax.set(title=title, xlabel=problem.variables[1], ylabel=problem.variables[0])
            fig.colorbar(im, ax=ax, label="|error|" if title == "|error|" else "u")
        hist_ax = fig.add_subplot(grid[1, :])
    history = np.asarray(solution.residual_history)
    hist_ax.semilogy(  # markers: a history of one step is a point, not an empty line
        history, marker="o" if history.size < 50 else None, ms=3,
        label="midpoint residual (relative)",
    )  # fmt: skip
    hist_ax.axvline(solution.trace.best_step, color="k", lw=0.5, label="returned step")
    hist_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if history.size <= 1:  # one step: an axis around it, not ±0.05
        hist_ax.set_xlim(-1.0, 1.0)
    hist_ax.set_xlabel("optimiser step")
    hist_ax.legend(fontsize=8)
    return fig
