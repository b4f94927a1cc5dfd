"""Front door and result object for Bayesian Poisson Tucker fits (``model="poisson-tucker"``)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import special, stats

from bayestensor.models import poisson_tucker as pt

__all__ = ["PoissonTuckerResult", "fit_poisson_tucker", "load_poisson"]

METHODS = ("gibbs", "vi")
FORMAT = "bayestensor-poisson-tucker"
FORMAT_VERSION = 1
_MAX_DRAWS = 200  # posterior draws kept for prediction intervals


# --------------------------------------------------------------------------------------------
# validation and encoding
# --------------------------------------------------------------------------------------------


def _check_counts(df: pd.DataFrame, value: str) -> np.ndarray:
    """The count column as float64, or a ValueError naming it."""
    if not isinstance(value, str):
        raise ValueError(f"value must be a column name (str), got {value!r}")
    if value not in df.columns:
        raise ValueError(f"value column {value!r} not found; available columns: {list(df.columns)}")
    col = df[value]
    if not (pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)):
        raise ValueError(f"count column {value!r} has dtype {col.dtype}; expected numeric counts")
    y = col.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"count column {value!r} has {int(bad.sum())} NaN or infinite values")
    if (y < 0).any():
        raise ValueError(f"count column {value!r} has {int((y < 0).sum())} negative values")
    frac = y != np.round(y)
    if frac.any():
        raise ValueError(
            f"count column {value!r} has {int(frac.sum())} non-integer values "
            f"(e.g. {y[frac][0]!r}); Poisson Tucker models counts"
        )
    return y


def _check_coords(df: pd.DataFrame, coords: Any, value: str) -> list[str]:
    if isinstance(coords, Mapping):
        bad = {c: k for c, k in coords.items() if k != "categorical"}
        if bad:
            raise ValueError(f"poisson-tucker modes are categorical; got kinds {bad} in coords")
        coords = list(coords)
    if isinstance(coords, str) or not isinstance(coords, Sequence) or not coords:
        raise ValueError(f"coords must be a non-empty list of column names, got {coords!r}")
    coords = list(coords)
    if len(set(coords)) != len(coords):
        raise ValueError(f"coords has repeated columns: {coords}")
    for c in coords:
        if c not in df.columns:
            raise ValueError(f"column {c!r} not found; available columns: {list(df.columns)}")
        if c == value:
            raise ValueError(f"column {c!r} cannot be both a coordinate and the value")
        if df[c].isna().any():
            raise ValueError(f"coordinate column {c!r} has missing values")
    return coords


def _levels(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted union of the values of several columns."""
    vals = pd.unique(np.concatenate([np.asarray(c, dtype=object) for c in columns]))
    try:
        return np.asarray(sorted(vals), dtype=object)
    except TypeError:
        return np.asarray(sorted(vals, key=str), dtype=object)


def _codes(values, levels: np.ndarray, column: str) -> np.ndarray:
    idx = pd.Index(levels).get_indexer(np.asarray(values, dtype=object))
    if np.any(idx < 0):
        unseen = pd.unique(np.asarray(values, dtype=object)[idx < 0])[:5]
        raise ValueError(f"column {column!r} has levels not seen in training: {list(unseen)}")
    return idx.astype(np.int64)


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit_poisson_tucker(
    df: pd.DataFrame,
    *,
    coords: Sequence[str],
    value: str,
    rank: int | Sequence[int] = 5,
    method: str = "gibbs",
    mask: pd.DataFrame | None = None,
    pair: tuple[str, str] | None = None,
    share: bool = False,
    exclude_diagonal: bool | None = None,
    within_between: bool = False,
    shrinkage: bool = True,
    num_warmup: int = 500,
    num_samples: int = 500,
    max_iter: int = 500,
    vi_tol: float = 1e-7,
    seed: int = 0,
    progress: bool = True,
    **hyper: float,
) -> PoissonTuckerResult:
    """Fit a Bayesian Poisson Tucker decomposition to counts in a long DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observed nonzero cell (rows with zero counts are allowed). Cells not listed
        are zeros unless ``mask`` marks them missing. It is never modified.
    coords : list of str
        Categorical coordinate columns, one per mode.
    value : str
        Column of non-negative integer counts.
    rank : int or tuple of int
        Upper bound on the number of components per mode (shrinkage prunes the unused ones).
    method : {"gibbs", "vi"}
        Compiled Gibbs sampler or mean-field variational fit.
    mask : pandas.DataFrame, optional
        Missing cells: columns a subset of ``coords``; each row marks every cell with those
        levels (a slice) as missing.
    pair : (str, str), optional
        Two coordinate columns with the same kind of levels (sender, receiver).
    share, exclude_diagonal, within_between, shrinkage : bool
        See :func:`bayestensor.models.poisson_tucker.make_spec`.
    num_warmup, num_samples : int
        Gibbs sweeps discarded and kept.
    max_iter, vi_tol : int, float
        CAVI iterations cap and relative ELBO change for stopping.
    seed : int
        Random seed.
    progress : bool
        Show a progress bar.
    **hyper
        ``factor_shape``, ``gamma0``, ``core_shape``, ``e0``, ``f0``.

    Returns
    -------
    PoissonTuckerResult

    Raises
    ------
    ValueError
        For bad columns, counts (negative, non-integer, NaN), ranks, options or mask, before any
        computation.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError("df is empty (0 rows)")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    coords = _check_coords(df, coords, value)
    y = _check_counts(df, value)
    K = len(coords)
    ranks = _check_rank(rank, K)
    for name, v in [
        ("num_warmup", num_warmup),
        ("num_samples", num_samples),
        ("max_iter", max_iter),
    ]:
        if not isinstance(v, (int, np.integer)) or v < (0 if name == "num_warmup" else 1):
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    unknown = set(hyper) - {"factor_shape", "gamma0", "core_shape", "e0", "f0"}
    if unknown:
        raise ValueError(f"unknown options for poisson-tucker: {sorted(unknown)}")
    pair_idx = None
    if pair is not None:
        if len(pair) != 2 or any(c not in coords for c in pair) or pair[0] == pair[1]:
            raise ValueError(f"pair must name two different columns of coords, got {pair!r}")
        pair_idx = (coords.index(pair[0]), coords.index(pair[1]))
    if mask is not None:
        if not isinstance(mask, pd.DataFrame) or len(mask) == 0:
            raise ValueError("mask must be a non-empty DataFrame of missing cells/slices")
        mcols = [c for c in mask.columns if c in coords]
        extra = [c for c in mask.columns if c not in coords]
        if extra or not mcols:
            raise ValueError(
                f"mask columns must be a subset of coords {coords}; got {list(mask.columns)}"
            )
    # levels: union over df and mask; a shared or diagonal pair uses one level set
    levels = []
    for c in coords:
        cols = [df[c].to_numpy()]
        if mask is not None and c in mask.columns:
            cols.append(mask[c].to_numpy())
        levels.append(cols)
    if pair_idx is not None:
        a, b = pair_idx
        joint = _levels(levels[a] + levels[b])
        level_arrays = [joint if k in pair_idx else _levels(levels[k]) for k in range(K)]
    else:
        level_arrays = [_levels(lv) for lv in levels]
    shape = tuple(len(lv) for lv in level_arrays)
    index = np.stack(
        [_codes(df[c].to_numpy(), level_arrays[k], c) for k, c in enumerate(coords)], 1
    )
    mask_modes: tuple[int, ...] = ()
    dense_mask = None
    spec = pt.make_spec(
        shape,
        ranks,
        pair=pair_idx,
        share=share,
        exclude_diagonal=exclude_diagonal,
        within_between=within_between,
        shrinkage=shrinkage,
        **hyper,
    )
    if mask is not None:
        mm = [coords.index(c) for c in mcols]
        rows = np.stack(
            [_codes(mask[c].to_numpy(), level_arrays[coords.index(c)], c) for c in mcols], 1
        )
        mask_modes, dense_mask = pt.region_mask(spec, mm, rows)
        spec = spec._replace(mask_modes=mask_modes)
    data = pt.prepare_data(spec, index, y, dense_mask)
    key = jax.random.key(seed)
    info: dict[str, Any] = {"method": method}
    if method == "gibbs":
        draws, mean = _run_gibbs(spec, data, key, num_warmup, num_samples, progress)
        info.update(num_warmup=num_warmup, num_samples=num_samples)
    else:
        draws, mean, elbos = _run_vi(spec, data, key, max_iter, vi_tol, progress)
        info.update(elbo=elbos, n_iter=len(elbos))
    return PoissonTuckerResult(spec, coords, value, level_arrays, data, draws, mean, info)


def _check_rank(rank, K: int) -> tuple[int, ...]:
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        rank = (int(rank),) * K
    try:
        rank = tuple(rank)
    except TypeError:
        raise ValueError(
            f"rank must be a positive int or a tuple of {K} ints, got {rank!r}"
        ) from None
    if len(rank) != K:
        raise ValueError(f"rank has {len(rank)} entries but there are {K} coords")
    if not all(
        isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 1 for r in rank
    ):
        raise ValueError(f"rank entries must be positive ints, got {rank}")
    return tuple(int(r) for r in rank)


def _run_gibbs(spec, data, key, num_warmup, num_samples, progress):
    """Sweeps with a tqdm bar; posterior means over all kept sweeps, up to 200 thinned draws."""
    from tqdm.auto import tqdm

    k_init, key = jax.random.split(key)
    p = pt._init_jit(spec, data, k_init)
    thin = max(1, num_samples // _MAX_DRAWS)
    total = jax.tree.map(jnp.zeros_like, p)
    kept = []
    n = 0
    with tqdm(
        total=num_warmup + num_samples, desc="BPTD Gibbs", disable=not progress, leave=False
    ) as bar:
        for it in range(num_warmup + num_samples):
            key, sub = jax.random.split(key)
            p, _ = pt.gibbs_sweep_jit(spec, data, p, sub)
            if it >= num_warmup:
                total = jax.tree.map(jnp.add, total, p)
                n += 1
                if (it - num_warmup) % thin == 0:
                    kept.append(jax.device_get(p))
            bar.update(1)
    mean = {k: np.asarray(v) / n for k, v in total.items()}
    draws = {k: np.stack([d[k] for d in kept]) for k in kept[0]}
    return draws, mean


def _run_vi(spec, data, key, max_iter, tol, progress):
    """CAVI with a progress bar; 200 draws from q for intervals."""
    from tqdm.auto import tqdm

    with tqdm(total=max_iter, desc="BPTD CAVI", disable=not progress, leave=False) as bar:

        def cb(it, bound):
            bar.update(1)
            bar.set_postfix(elbo=f"{bound:.6g}")

        st, elbos = pt.cavi_fit(spec, data, key, max_iter=max_iter, tol=tol, callback=cb)
    mean = {k: np.asarray(v) for k, v in pt._vi_point(spec, st).items()}
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    draws = {k: np.broadcast_to(v, (_MAX_DRAWS, *np.shape(v))).copy() for k, v in mean.items()}
    for g in range(len(spec.groups)):
        draws[f"theta{g}"] = rng.gamma(
            np.asarray(st.theta_shape[g]),
            1.0 / np.asarray(st.theta_rate[g]),
            (_MAX_DRAWS, *st.theta_shape[g].shape),
        )
    draws["core"] = rng.gamma(
        np.asarray(st.core_shape), 1.0 / np.asarray(st.core_rate), (_MAX_DRAWS, *spec.ranks)
    )
    return draws, mean, elbos


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


class PoissonTuckerResult:
    """A fitted Bayesian Poisson Tucker model (returned by ``bt.fit(..., model="poisson-tucker")``).

    The rate of cell ``i`` is ``μ[i] = Σ_r λ[r] Π_k θ^k[i_k, r_k]``. Factors and core are
    identified only up to per-component rescaling; rates, predictions and the component mass
    shares are identified.

    Attributes
    ----------
    coords : list of str
    value : str
    levels : dict of str to numpy.ndarray
        Levels of each mode (union over the two columns of a pair).
    spec : PoissonTuckerSpec
    method : str
    info : dict
        ``elbo`` trace (VI) or the numbers of sweeps (Gibbs).
    """

    def __init__(self, spec, coords, value, levels, data, draws, mean, info):
        self.spec = spec
        self.coords = list(coords)
        self.value = value
        self.levels = {c: lv for c, lv in zip(coords, levels, strict=True)}
        self._data = data
        self.draws = draws
        self.mean = mean
        self.info = info
        self.method = info["method"]

    # -- fitted quantities ------------------------------------------------------------------

    @property
    def ranks(self) -> tuple[int, ...]:
        """Rank upper bounds per mode."""
        return self.spec.ranks

    @property
    def core(self) -> np.ndarray:
        """Posterior mean of the core λ (shape ``ranks``)."""
        return np.asarray(self.mean["core"])

    def factors(self) -> dict[str, pd.DataFrame]:
        """Posterior mean factor matrix of every mode, rows indexed by level."""
        out = {}
        for k, c in enumerate(self.coords):
            th = np.asarray(self.mean[f"theta{self.spec.group_of[k]}"])
            out[c] = pd.DataFrame(th, index=pd.Index(self.levels[c], name=c))
        return out

    def component_mass(self, draws: bool = False) -> dict[str, np.ndarray]:
        """Per mode, the share of the expected total count on each component (sums to one).

        Parameters
        ----------
        draws : bool
            Return one row per kept posterior draw (shape ``(draws, R_k)``) instead of the
            average over draws. Shares are computed draw by draw, so label switching between
            draws does not blur them.
        """
        n = len(next(iter(self.draws.values())))
        per = [
            pt.component_mass(
                self.spec, {k: jnp.asarray(v[j]) for k, v in self.draws.items()}, self._data.mask
            )
            for j in range(n)
        ]
        out = {c: np.stack([p[k] for p in per]) for k, c in enumerate(self.coords)}
        return out if draws else {c: m.mean(0) for c, m in out.items()}

    def effective_components(self, level: float = 0.95) -> dict[str, int]:
        """Per mode, the fewest components carrying ``level`` of the expected total count.

        Computed per posterior draw (largest shares first) and summarised by the median.
        """
        out = {}
        for c, m in self.component_mass(draws=True).items():
            cum = np.cumsum(np.sort(m, axis=1)[:, ::-1], axis=1)
            need = (cum < level * cum[:, -1:]).sum(1) + 1
            out[c] = int(np.median(need))
        return out

    # -- prediction -------------------------------------------------------------------------

    def _index(self, df: pd.DataFrame) -> np.ndarray:
        for c in self.coords:
            if c not in df.columns:
                raise ValueError(f"column {c!r} not found in the DataFrame")
        return np.stack([_codes(df[c].to_numpy(), self.levels[c], c) for c in self.coords], 1)

    def _draw_rates(self, index: np.ndarray) -> np.ndarray:
        """Rates at the cells for every kept draw, shape (draws, n)."""
        spec = self.spec
        f = jax.jit(
            jax.vmap(lambda z: pt.cell_rates(spec, pt.mode_factors(spec, z), z["core"], index))
        )
        keys = [f"theta{g}" for g in range(len(spec.groups))] + ["core"]
        return np.asarray(f({k: jnp.asarray(self.draws[k]) for k in keys}))

    def rates(self, df: pd.DataFrame) -> np.ndarray:
        """Posterior mean rate ``E[μ]`` at the rows of ``df`` (from the posterior mean draws)."""
        return self._draw_rates(self._index(df)).mean(0)

    def predict(self, df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
        """Expected counts with intervals at the cells of ``df``.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``df``: ``mean`` (posterior mean rate), ``lower``/``upper`` (central
            interval of the rate), ``count_lower``/``count_upper`` (posterior predictive
            interval of a new count).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        R = self._draw_rates(self._index(df))
        lo, hi = (1 - level) / 2, (1 + level) / 2
        rng = np.random.default_rng(0)
        ysim = rng.poisson(np.broadcast_to(R, (4,) + R.shape)).reshape(-1, R.shape[1])
        return pd.DataFrame(
            {
                "mean": R.mean(0),
                "lower": np.quantile(R, lo, axis=0),
                "upper": np.quantile(R, hi, axis=0),
                "count_lower": np.quantile(ysim, lo, axis=0),
                "count_upper": np.quantile(ysim, hi, axis=0),
            },
            index=df.index,
        )

    def heldout_loglik(self, df: pd.DataFrame, mask: pd.DataFrame) -> dict[str, float]:
        """Poisson log-likelihood of held-out cells at the posterior mean rates.

        Parameters
        ----------
        df : pandas.DataFrame
            Held-out nonzero cells (coords and the value column); they must lie in ``mask``.
        mask : pandas.DataFrame
            The held-out region: rows of levels on a subset of the coords (whole slices).

        Returns
        -------
        dict
            ``total``, ``per_cell`` (total / number of cells in the region) and ``n_cells``.
        """
        y = _check_counts(df, self.value)
        index = self._index(df)
        mcols = [c for c in mask.columns if c in self.coords]
        mm = [self.coords.index(c) for c in mcols]
        rows = np.stack([_codes(mask[c].to_numpy(), self.levels[c], c) for c in mcols], 1)
        modes, region = pt.region_mask(self.spec, mm, rows)
        inside = region[tuple(index[:, k] for k in modes)] > 0
        if not inside.all():
            raise ValueError(f"{int((~inside).sum())} rows of df lie outside the held-out region")
        rspec = self.spec._replace(mask_modes=modes)
        free = [k for k in range(self.spec.K) if k not in modes]
        n_cells = float(region.sum()) * float(np.prod([self.spec.shape[k] for k in free]))
        R = self._draw_rates(index).mean(0)
        keys = [f"theta{g}" for g in range(len(self.spec.groups))] + ["core"]
        tot = jax.vmap(
            lambda z: pt.masked_rate(
                rspec, pt.mode_factors(rspec, z), z["core"], jnp.asarray(region)
            )
        )({k: jnp.asarray(self.draws[k]) for k in keys})
        total = float(np.sum(y * np.log(R) - special.gammaln(y + 1))) - float(np.mean(tot))
        return {"total": total, "per_cell": total / n_cells, "n_cells": n_cells}

    # -- reporting --------------------------------------------------------------------------

    def summary(self) -> str:
        """Text summary: data, options, fit, effective components (also printed)."""
        spec = self.spec
        eff = self.effective_components()
        lines = [
            f"Bayesian Poisson Tucker fit of {self.value!r} by {self.method}: "
            f"{int(np.sum(np.asarray(self._data.y)))} events in {self._data.y.shape[0]} "
            "nonzero cells",
        ]
        if self.method == "vi":
            lines.append(
                f"  {self.info['n_iter']} CAVI iterations, final ELBO {self.info['elbo'][-1]:.6g}"
            )
        else:
            lines.append(f"  {self.info['num_warmup']} warm-up + {self.info['num_samples']} sweeps")
        for k, c in enumerate(self.coords):
            lines.append(
                f"  mode {c!r}: {spec.shape[k]} levels, rank bound {spec.ranks[k]}, "
                f"{eff[c]} components carry 95 % of the counts"
            )
        if spec.pair is not None:
            a, b = spec.pair
            lines.append(
                f"  pair ({self.coords[a]!r}, {self.coords[b]!r}): share={spec.share}, "
                f"exclude_diagonal={spec.exclude_diagonal}, within_between={spec.within_between}"
            )
        text = "\n".join(lines)
        print(text)
        return text

    def plot_factors(self, normalize: bool = True):
        """Heatmap of each mode's posterior mean factor matrix (levels × components).

        Parameters
        ----------
        normalize : bool
            Scale each level's row to sum to one (memberships).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        K = self.spec.K
        fig, axes = plt.subplots(1, K, figsize=(3.2 * K, 4.0), squeeze=False)
        for ax, (c, f) in zip(axes[0], self.factors().items(), strict=True):
            m = f.to_numpy()
            if normalize:
                m = m / np.maximum(m.sum(1, keepdims=True), 1e-300)
            im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set(title=f"{c}", xlabel="component", ylabel=c)
            if len(f.index) <= 40:
                ax.set_yticks(np.arange(len(f.index)), [str(v) for v in f.index], fontsize=6)
            fig.colorbar(im, ax=ax, fraction=0.05)
        fig.tight_layout()
        return fig

    def plot_core(self):
        """Heatmaps of the core's expected-count mass between consecutive pairs of modes.

        Each panel shows ``Σ λ[r] Z[r]`` (the expected count carried by a core cell) summed
        over all modes but two.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        spec = self.spec
        z = _jnp(self.mean)
        _, Z = pt.exposures(spec, pt.mode_factors(spec, z), z["core"], self._data.mask)
        w = np.asarray(z["core"] * Z)
        pairs = [(k, k + 1) for k in range(spec.K - 1)] or [(0, 0)]
        fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 3.4), squeeze=False)
        for ax, (a, b) in zip(axes[0], pairs, strict=True):
            m = w.sum(axis=tuple(j for j in range(spec.K) if j not in (a, b)))
            m = m.reshape(spec.ranks[a], -1)
            im = ax.imshow(m / w.sum(), cmap="magma", interpolation="nearest")
            ax.set(xlabel=self.coords[b], ylabel=self.coords[a], title="core mass")
            fig.colorbar(im, ax=ax, fraction=0.05)
        fig.tight_layout()
        return fig

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save to one zip file: ``header.json`` (``kind: "poisson-tucker"``) + ``arrays.npz``.

        No pickle; :func:`bayestensor.load` reads it back.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path
        """
        levels = {}
        for c, lv in self.levels.items():
            vals = [v.item() if isinstance(v, np.generic) else v for v in lv]
            if not all(isinstance(v, str | int | float) for v in vals):
                raise ValueError(f"levels of {c!r} cannot be stored as JSON")
            levels[c] = vals
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": "poisson-tucker",
            "coords": self.coords,
            "value": self.value,
            "levels": levels,
            "spec": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.spec._asdict().items()
            },
            "info": {k: (list(map(float, v)) if k == "elbo" else v) for k, v in self.info.items()},
        }
        arrays = {f"mean/{k}": np.asarray(v) for k, v in self.mean.items()}
        arrays.update({f"draws/{k}": np.asarray(v) for k, v in self.draws.items()})
        arrays["data/index"] = np.asarray(self._data.index)
        arrays["data/y"] = np.asarray(self._data.y)
        if self._data.mask is not None:
            arrays["data/mask"] = np.asarray(self._data.mask)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path = Path(path)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("header.json", json.dumps(header))
            zf.writestr("arrays.npz", buf.getvalue())
        return path


def load_poisson(header: dict, arrays: Mapping[str, np.ndarray]) -> PoissonTuckerResult:
    """Rebuild a :class:`PoissonTuckerResult` from a saved header and arrays (see ``save``)."""
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"unknown Poisson Tucker format {header.get('format')!r} "
            f"version {header.get('version')!r}"
        )
    sd = header["spec"]
    spec = pt.PoissonTuckerSpec(
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in sd.items()}
    )
    mask = arrays.get("data/mask")
    data = pt.prepare_data(spec, arrays["data/index"], arrays["data/y"], mask)
    mean = {k[5:]: v for k, v in arrays.items() if k.startswith("mean/")}
    draws = {k[6:]: v for k, v in arrays.items() if k.startswith("draws/")}
    levels = []
    for c in header["coords"]:
        lv = np.empty(len(header["levels"][c]), dtype=object)
        lv[:] = header["levels"][c]
        levels.append(lv)
    return PoissonTuckerResult(
        spec, header["coords"], header["value"], levels, data, draws, mean, header["info"]
    )


def _jnp(d: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in d.items()}


def poisson_logpmf(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Poisson log-pmf (used by the benchmarks and tests)."""
    return stats.poisson.logpmf(y, mu)
