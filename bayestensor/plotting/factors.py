"""Latent-function plots and the share of the fit each component carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayestensor.checks import is_int
from bayestensor.plotting._common import (
    TIME_UNIT_NAMES,
    axis_label,
    dates_to_num,
    is_numeric,
    set_date_axis,
    time_kind,
    timedeltas_to_num,
    z_of,
)

FACTOR_COLUMNS = ("mode", "coordinate", "component", "mean", "sd")
#: Most minor components drawn in their own colours (more are grey, with one legend entry).
MAX_NAMED_MINOR = 5


def tucker_shares(factors: Sequence, core) -> list[np.ndarray]:
    """Share of a Tucker model's energy carried by each component of each mode.

    With ``f = W ×₁ U¹ ⋯ ×_K U^K`` on the grid of the factors' rows, the part of ``f`` carried
    by component ``r`` of mode ``k`` is ``f^{(k,r)} = W[…, r, …] ×_{j≠k} U^j ×_k u^k_r``
    (so ``f = Σ_r f^{(k,r)}``). Its energy, the mean of ``(f^{(k,r)})²`` over the grid, is

    ``E_k[r] = G_k[r, r] · ⟨W_r, W_r ×_{j≠k} G_j⟩``, with ``G_j = U^jᵀ U^j / N_j``,

    and the share is ``E_k[r] / Σ_s E_k[s]`` — computed from the Gram matrices, without forming
    the grid. Rescaling a component (``u^k_r → c u^k_r``, ``W_r → W_r / c``) leaves it
    unchanged; a component switched off (``u^k_r ≈ 0`` or ``W_r ≈ 0``) has share ≈ 0. For CP
    (``W`` superdiagonal) every mode gives the same shares, one per rank-one term. Shares sum
    to one per mode; the energies themselves need not add up to that of ``f``, since the
    components are not orthogonal.

    Parameters
    ----------
    factors : sequence of array-like of shape (N_k, R_k)
        Factor matrices (e.g. posterior means at the training coordinates).
    core : array-like of shape (R_1, …, R_K)
        The core ``W``.

    Returns
    -------
    list of numpy.ndarray
        Per mode, the shares ``(R_k,)`` (uniform when every energy is zero).

    Raises
    ------
    ValueError
        If the shapes of the factors and the core do not agree.
    """
    U = [np.asarray(u, dtype=np.float64) for u in factors]
    W = np.asarray(core, dtype=np.float64)
    if W.ndim != len(U) or any(u.ndim != 2 for u in U):
        raise ValueError(
            f"core must have one axis per factor matrix (2-D each); got core {W.shape}, "
            f"factors {[u.shape for u in U]}"
        )
    if tuple(u.shape[1] for u in U) != W.shape:
        raise ValueError(
            f"factor columns {tuple(u.shape[1] for u in U)} must match the core shape {W.shape}"
        )
    G = [u.T @ u / max(u.shape[0], 1) for u in U]
    shares = []
    for k in range(len(U)):
        Q = W
        for j in range(len(U)):
            if j != k:  # Q ← Q ×_j G_j
                Q = np.moveaxis(np.tensordot(G[j], Q, axes=(1, j)), 0, j)
        row = np.moveaxis(W * Q, k, 0).reshape(W.shape[k], -1).sum(axis=1)
        energy = np.clip(np.diagonal(G[k]) * row, 0.0, None)
        total = energy.sum()
        shares.append(energy / total if total > 0 else np.full(W.shape[k], 1.0 / W.shape[k]))
    return shares


def component_shares(result, mode: str | None = None):
    """Share of the fitted ``f`` carried by each component of a FunBaT fit (see
    :func:`tucker_shares` for the definition).

    Computed from the posterior means of the factors at the training coordinates
    (:meth:`~bayestensor.FitResult.factors`) and of the core (:attr:`~bayestensor.FitResult.core`).
    The factors' z-scored units cancel in the ratio.

    Parameters
    ----------
    result : FitResult
        A fitted FunBaT model.
    mode : str, optional
        One mode's name.

    Returns
    -------
    dict of str to numpy.ndarray, or numpy.ndarray
        ``{mode: shares (R_k,)}`` (summing to one per mode), or the one mode's shares.

    Raises
    ------
    ValueError
        If ``mode`` is not a mode of the fit.
    """
    names = [m.name for m in result.modes]
    if mode is not None and mode not in names:
        raise ValueError(f"mode must be one of {names}, got {mode!r}")
    frame = result.factors()
    mats = []
    for name in names:
        part = frame[frame["mode"] == name]
        R = int(part["component"].max()) + 1
        comp = part["component"].to_numpy().reshape(-1, R)
        if not (comp == np.arange(R)).all():  # rows are coordinate-major, components tiled
            raise ValueError(f"factors() of mode {name!r} is not in coordinate-major order")
        mats.append(part["mean"].to_numpy(np.float64).reshape(-1, R))
    shares = dict(zip(names, tucker_shares(mats, result.core), strict=True))
    return shares if mode is None else shares[mode]


def _coordinates(part: pd.DataFrame, continuous: bool, time_unit: str) -> tuple:
    """x values of a mode's rows, and ``(kind, tz)`` of a time axis (``kind`` None if not)."""
    values = part["coordinate"]
    kind = time_kind(values) if continuous else None
    if kind == "datetime":
        x, tz = dates_to_num(values)
        return x, (kind, tz)
    if kind == "timedelta":
        return timedeltas_to_num(values, time_unit), (kind, None)
    return (values.to_numpy(np.float64) if continuous else None), (None, None)


def _panels(order: list, minor: set, per_panel: int) -> list[list]:
    """Components per panel: all in one when they fit, else the major ones in groups of
    ``per_panel``, then the minor ones."""
    if len(order) <= per_panel:
        return [list(order)]
    major = [r for r in order if r not in minor]
    groups = [major[i : i + per_panel] for i in range(0, len(major), per_panel)]
    return groups + ([[r for r in order if r in minor]] if minor else [])


def plot_factors(
    factors: pd.DataFrame,
    *,
    level: float = 0.95,
    kinds: Mapping[str, str] | None = None,
    max_components: int | None = None,
    shares: Mapping[str, Sequence[float]] | None = None,
    minor: float = 0.05,
    per_panel: int = 4,
    units: Mapping[str, str] | None = None,
    time_units: Mapping[str, str] | None = None,
    log_axes: Sequence[str] | None = None,
) -> Figure:
    """Latent functions ``u^k_r`` with central posterior bands, ordered by their share.

    A continuous mode is drawn as lines (posterior mean) with shaded bands
    ``mean ± z · sd``; a categorical mode as points with error bars; a datetime mode on a date
    axis, a timedelta mode in its time unit. Given ``shares`` (e.g.
    :func:`component_shares`), each mode's components are drawn largest share first with the
    share in the legend, and the **minor** ones (share below ``minor``) faded, without bands.
    A mode with more than ``per_panel`` components gets several panels (small multiples): its
    major components ``per_panel`` at a time, then the minor ones together; the modes are then
    rows.

    Parameters
    ----------
    factors : pandas.DataFrame
        Long format with columns ``mode``, ``coordinate``, ``component``, ``mean``, ``sd`` — the
        output of :meth:`bayestensor.FitResult.factors`.
    level : float
        Probability of the bands (0.95: ``z = 1.96``).
    kinds : dict, optional
        ``{mode: "continuous" | "categorical"}`` (e.g. ``result.coords``). By default a mode is
        continuous when all its coordinates are numbers or times.
    max_components : int, optional
        Draw at most this many components per mode (the largest shares, given ``shares``).
    shares : dict, optional
        ``{mode: share per component}``; without it, components keep their order and none is
        minor.
    minor : float
        Share below which a component is minor.
    per_panel : int
        Most major components in one panel.
    units : dict, optional
        ``{mode: unit}`` for the axis labels, e.g. ``{"lat": "°N"}``.
    time_units : dict, optional
        ``{mode: unit}`` in which a timedelta mode is drawn (``"D"`` by default; keys of
        :data:`bayestensor.modes.TIME_UNITS`).
    log_axes : sequence of str, optional
        Continuous modes drawn on a logarithmic axis (e.g. ``result.log_coords``).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel: the modes in the order they first appear in ``factors`` (one row
        when every mode fits one panel, else one row per mode, unused cells hidden).

    Raises
    ------
    ValueError
        If a column is missing, ``factors`` is empty, ``level`` is not in (0, 1), ``minor``
        not in [0, 1), ``per_panel`` or ``max_components`` not a positive int, ``units`` not
        a dict, or a mode's shares do not have one entry per component.
    """
    missing = [c for c in FACTOR_COLUMNS if c not in factors.columns]
    if missing:
        raise ValueError(f"factors is missing columns {missing}; expected {list(FACTOR_COLUMNS)}")
    if len(factors) == 0:
        raise ValueError("factors is empty")
    if not 0.0 <= minor < 1.0:
        raise ValueError(f"minor must be in [0, 1), got {minor!r}")
    if not isinstance(per_panel, int | np.integer) or per_panel < 1:
        raise ValueError(f"per_panel must be a positive int, got {per_panel!r}")
    if max_components is not None and not (is_int(max_components) and max_components >= 1):
        raise ValueError(f"max_components must be a positive int or None, got {max_components!r}")
    if units is not None and not isinstance(units, Mapping):
        raise ValueError(f"units must be a dict {{column: unit}}, got {units!r}")
    z = z_of(level)
    modes = list(dict.fromkeys(factors["mode"]))
    plans = {}
    for mode in modes:
        part = factors[factors["mode"] == mode]
        components = sorted(part["component"].unique())
        share = None if shares is None or mode not in shares else np.asarray(shares[mode], float)
        if share is not None:
            if share.shape != (len(components),):
                raise ValueError(
                    f"shares[{mode!r}] must have one entry per component ({len(components)}), "
                    f"got shape {share.shape}"
                )
            share = dict(zip(components, share, strict=True))
            components = sorted(components, key=lambda r: -share[r])
        components = components[:max_components]
        small = {r for r in components if share is not None and share[r] < minor}
        small = set() if len(small) == len(components) else small  # nothing stands out
        plans[mode] = (part, components, share, _panels(components, small, per_panel), small)
    widest = max(len(p[3]) for p in plans.values())
    single = widest == 1  # every mode in one panel: the modes side by side
    nrows, ncols = (1, len(modes)) if single else (len(modes), widest)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for i, mode in enumerate(modes):
        part, components, share, panels, small = plans[mode]
        kind = (kinds or {}).get(mode)
        numeric = is_numeric(part["coordinate"]) or time_kind(part["coordinate"]) is not None
        continuous = numeric if kind is None else kind == "continuous"
        unit = (time_units or {}).get(mode, "D")
        labels = list(dict.fromkeys(part["coordinate"]))
        row = [grid[0, i]] if single else list(grid[i])
        for p, (ax, group) in enumerate(zip(row, panels, strict=False)):
            minor_panel = bool(group) and all(r in small for r in group) and len(panels) > 1
            grey = minor_panel and len(group) > MAX_NAMED_MINOR  # too many to tell apart
            for j, r in enumerate(group):
                faded = r in small
                label = f"r = {r}" + ("" if share is None else f": {share[r]:.0%}")
                style = {"alpha": 0.55, "lw": 0.8} if faded else {"lw": 1.2}
                if grey:
                    names = ", ".join(str(c) for c in group)
                    label = f"r = {names}" if j == 0 else "_nolegend_"
                    style |= {"color": "0.45", "alpha": 0.35}
                comp = part[part["component"] == r]
                m, s = comp["mean"].to_numpy(float), comp["sd"].to_numpy(float)
                if continuous:
                    x, _ = _coordinates(comp, True, unit)
                    order = np.argsort(x, kind="stable")
                    x, m, s = x[order], m[order], s[order]
                    (line,) = ax.plot(x, m, label=label, **style)
                    if not faded:
                        ax.fill_between(x, m - z * s, m + z * s, alpha=0.2, color=line.get_color())
                else:
                    pos = np.array([labels.index(c) for c in comp["coordinate"]]) + 0.12 * j
                    ax.errorbar(
                        pos, m, yerr=None if faded else z * s, fmt="o", ms=3, label=label,
                        alpha=style.get("alpha", 1.0), color=style.get("color"),
                    )  # fmt: skip
            if continuous:
                _, (tkind, tz) = _coordinates(part.iloc[:1], True, unit)
                if tkind == "datetime":
                    set_date_axis(ax.xaxis, tz)
                    xlabel = axis_label(mode, tz)
                elif tkind == "timedelta":
                    xlabel = axis_label(mode, TIME_UNIT_NAMES[unit])
                else:
                    xlabel = axis_label(mode, (units or {}).get(mode))
                if mode in (log_axes or ()):
                    ax.set_xscale("log")
            else:
                ax.set_xticks(np.arange(len(labels)), [str(v) for v in labels], rotation=90)
                xlabel = axis_label(mode, (units or {}).get(mode))
            title = f"mode {mode!r}"
            if minor_panel:
                title += f": minor (< {minor:.0%} each)"
            elif len(panels) > 1:
                first = p * per_panel + 1
                title += (
                    f": largest share {first}"
                    if len(group) == 1
                    else f": largest shares {first}–{first + len(group) - 1}"
                )
            ax.set(title=title, xlabel=xlabel, ylabel=f"u({mode})")
            ax.legend(fontsize="small", ncol=2 if len(group) > 6 else 1)
        for ax in row[len(panels) :]:
            ax.set_visible(False)
    for ax in grid.ravel():
        if not ax.has_data():
            ax.set_visible(False)
    return fig
