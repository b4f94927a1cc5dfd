"""A fitted Bayesian Poisson Tucker model: rates, predictions, held-out likelihood, plots."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import special

from bayestensor import io
from bayestensor.checks import (
    CATEGORICAL,
    check_bool,
    check_counts,
    check_frame,
    check_int,
    check_level,
)
from bayestensor.data import category_codes
from bayestensor.models.poisson_tucker.rates import (
    cell_rates,
    component_mass,
    exposures,
    masked_rate,
    mixture_quantiles,
    mode_factors,
)
from bayestensor.models.poisson_tucker.spec import (
    PoissonTuckerSpec,
    make_spec,
    prepare_data,
    region_mask,
    with_exact_counts,
)
from bayestensor.results import PREDICTION_COLUMNS, Result, prediction_frame
from bayestensor.xr import GRID_CHUNK, grid_axes, grid_dataset, require_xarray

#: Posterior draws kept for prediction intervals.
MAX_DRAWS = 200


class PoissonTuckerResult(Result):
    """A fitted Bayesian Poisson Tucker model (returned by ``bt.fit(..., model="poisson-tucker")``).

    The rate of cell ``i`` is ``μ[i] = Σ_r λ[r] Π_k θ^k[i_k, r_k]``. Factors and core are
    identified only up to per-component rescaling; rates, predictions and the component mass
    shares are identified.

    Attributes
    ----------
    coords : dict of str to str
        ``{column: "categorical"}`` in mode order.
    value : str
    levels : dict of str to numpy.ndarray
        Levels of each mode (union over the two columns of a pair).
    spec : PoissonTuckerSpec
    method : str
    info : dict
        ``elbo`` trace (VI) or the numbers of sweeps (Gibbs).
    data : PoissonData
        The nonzero cells the model was fitted to: ``y`` their exact counts (int64 numpy).
    draws, mean : dict of str to numpy.ndarray
        Kept posterior draws (or draws from ``q``) and posterior means of the parameters.
    """

    kind = "poisson-tucker"

    def __init__(self, spec, coords, value, levels, data, draws, mean, info):
        self.spec = spec
        self.coords = {c: CATEGORICAL for c in coords}
        self.value = value
        self.levels = {c: lv for c, lv in zip(coords, levels, strict=True)}
        self.data = data
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
        check_bool("draws", draws)
        n = len(next(iter(self.draws.values())))
        per = [
            component_mass(
                self.spec, {k: jnp.asarray(v[j]) for k, v in self.draws.items()}, self.data.mask
            )
            for j in range(n)
        ]
        out = {c: np.stack([p[k] for p in per]) for k, c in enumerate(self.coords)}
        return out if draws else {c: m.mean(0) for c, m in out.items()}

    def effective_components(self, level: float = 0.95) -> dict[str, int]:
        """Per mode, the fewest components carrying ``level`` of the expected total count.

        Computed per posterior draw (largest shares first) and summarised by the median.
        ``level`` must lie in (0, 1).
        """
        level = check_level(level)
        out = {}
        for c, m in self.component_mass(draws=True).items():
            cum = np.cumsum(np.sort(m, axis=1)[:, ::-1], axis=1)
            need = (cum < level * cum[:, -1:]).sum(1) + 1
            out[c] = int(np.median(need))
        return out

    # -- prediction -------------------------------------------------------------------------

    def _index(self, df: pd.DataFrame, empty_ok: bool = False) -> np.ndarray:
        """Level codes (n, K) of the rows of ``df``; an empty ``df`` only if ``empty_ok``."""
        if not (empty_ok and isinstance(df, pd.DataFrame)):
            check_frame(df)
        for c in self.coords:
            if c not in df.columns:
                raise ValueError(f"column {c!r} not found in the DataFrame")
        return np.stack(
            [category_codes(df[c].to_numpy(), self.levels[c], c) for c in self.coords], 1
        )

    def _draw_rates(self, index: np.ndarray) -> np.ndarray:
        """Rates at the cells for every kept draw, shape (draws, n). The jitted function is
        built once per result (it compiled anew on every call: 0.1 s a prediction)."""
        spec = self.spec
        if getattr(self, "_rates_jit", None) is None:

            def rates(z, index):
                return cell_rates(spec, mode_factors(spec, z), z["core"], index)

            self._rates_jit = jax.jit(jax.vmap(rates, in_axes=(0, None)))
        keys = [f"theta{g}" for g in range(len(spec.groups))] + ["core"]
        draws = {k: jnp.asarray(self.draws[k]) for k in keys}
        return np.asarray(self._rates_jit(draws, jnp.asarray(index)))

    def rates(self, df: pd.DataFrame) -> np.ndarray:
        """Posterior mean rate ``E[μ]`` at the rows of ``df`` (from the posterior mean draws).

        Raises
        ------
        ValueError
            If ``df`` is not a non-empty DataFrame, lacks a coordinate column or has unseen
            levels.
        """
        return self._draw_rates(self._index(df)).mean(0)

    def predict(self, df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
        """Expected counts with intervals at the cells of ``df``.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``df``: ``mean`` (posterior mean rate, the expected count), ``sd``,
            ``lower``, ``upper`` (posterior predictive sd and central interval of a new
            count), ``sd_f``, ``lower_f``, ``upper_f`` (posterior sd and central interval of
            the rate).

        Raises
        ------
        ValueError
            If ``df`` is not a non-empty DataFrame, lacks a coordinate column or has unseen
            levels, or ``level`` is not in (0, 1).
        """
        level = check_level(level)
        R = self._draw_rates(self._index(df))
        lo, hi = (1 - level) / 2, (1 + level) / 2
        mean = R.mean(0)
        return prediction_frame(
            df.index,
            mean=mean,
            sd=np.sqrt(mean + R.var(0)),
            lower=mixture_quantiles(R, lo),  # exact: the same whichever cells share a call
            upper=mixture_quantiles(R, hi),
            sd_f=R.std(0),
            lower_f=np.quantile(R, lo, axis=0),
            upper_f=np.quantile(R, hi, axis=0),
        )

    def predict_grid(self, coords=None, level: float = 0.95, chunk: int = GRID_CHUNK):
        """:meth:`predict` on every cell of a grid of levels, as an :class:`xarray.Dataset`.

        ``coords``: per mode the levels to predict (seen in training); modes left out take
        all their fitted levels, the default for all. ``chunk``: cells predicted at a time.
        Dimensions: the modes, in order; variables as :meth:`predict`'s columns (float64), each
        equal to :meth:`predict` at that cell.

        Raises
        ------
        ValueError
            For an unknown mode, levels that are not a non-empty 1-D array, hold missing
            values or were not seen in training, or ``level`` not in (0, 1).
        ImportError
            If xarray is not installed.
        """
        level = check_level(level)
        chunk = check_int("chunk", chunk)
        require_xarray()
        axes = grid_axes(coords, self.levels)
        attrs = {"value": self.value, "level": level, "model": f"poisson-tucker ({self.method})"}
        columns = [c for c in PREDICTION_COLUMNS if c != "nu"]
        return grid_dataset(
            axes, lambda cells: self.predict(cells, level), columns, chunk=chunk, attrs=attrs
        )

    def heldout_loglik(self, df: pd.DataFrame, mask: pd.DataFrame) -> dict[str, float]:
        """Poisson log-likelihood of held-out cells at the posterior mean rates.

        Parameters
        ----------
        df : pandas.DataFrame
            Held-out nonzero cells (coords and the value column); they must lie in ``mask``.
            It may have no rows: a region without events (the likelihood is then ``-Σ μ``).
        mask : pandas.DataFrame
            The held-out region: rows of levels on a subset of the coords (whole slices).

        Returns
        -------
        dict
            ``total``, ``per_cell`` (total / number of cells in the region) and ``n_cells``.

        Raises
        ------
        ValueError
            If ``df`` is not a DataFrame, has bad counts or rows outside the region, or
            ``mask`` is not a non-empty DataFrame with coordinate columns.
        """
        index = self._index(df, empty_ok=True)
        y = check_counts(df, self.value)
        check_frame(mask, "mask")
        mcols = [c for c in mask.columns if c in self.coords]
        if not mcols:
            raise ValueError(
                f"mask must have columns among the coords {list(self.coords)}; got "
                f"{list(mask.columns)}"
            )
        mm = [list(self.coords).index(c) for c in mcols]
        rows = np.stack([category_codes(mask[c].to_numpy(), self.levels[c], c) for c in mcols], 1)
        modes, region = region_mask(self.spec, mm, rows)
        inside = region[tuple(index[:, k] for k in modes)] > 0
        if not inside.all():
            raise ValueError(f"{int((~inside).sum())} rows of df lie outside the held-out region")
        rspec = self.spec._replace(mask_modes=modes)
        free = [k for k in range(self.spec.K) if k not in modes]
        n_cells = float(region.sum()) * float(np.prod([self.spec.shape[k] for k in free]))
        R = self._draw_rates(index).mean(0)
        keys = [f"theta{g}" for g in range(len(self.spec.groups))] + ["core"]
        tot = jax.vmap(
            lambda z: masked_rate(rspec, mode_factors(rspec, z), z["core"], jnp.asarray(region))
        )({k: jnp.asarray(self.draws[k]) for k in keys})
        total = float(np.sum(y * np.log(R) - special.gammaln(y + 1))) - float(np.mean(tot))
        return {"total": total, "per_cell": total / n_cells, "n_cells": n_cells}

    def to_inference_data(self, draws: int | None = None, seed: int = 0):
        """The kept posterior draws as :class:`arviz.InferenceData`.

        Gibbs: the kept (thinned) sweeps of the chain; CAVI: the draws from ``q`` made at the
        fit (of the factors and the core; the other parameters are point values there and
        are left out).

        Parameters
        ----------
        draws : int, optional
            Keep this many of the stored draws, evenly spaced (default: all of them).
        seed : int
            Accepted for the signature shared with FunBaT; the draws are the stored ones.

        Returns
        -------
        arviz.InferenceData
            ``posterior`` (one chain): ``theta_<mode>`` (``theta_<a>_<b>`` for a pair of
            modes sharing factors) on ``(<mode>, <mode>_component)`` with the levels as
            coordinates, ``core`` on the component dimensions, and with Gibbs the
            shrinkage weights ``w_<mode>``, rates ``b_<mode>``, ``delta`` …;
            ``observed_data``: the nonzero counts ``y`` on ``cell``, each cell's levels as
            coordinates named after the columns.

        Raises
        ------
        ValueError
            If ``draws`` is not a positive int or exceeds the stored draws.
        ImportError
            If arviz is not installed.
        """
        from bayestensor.checks import check_seed
        from bayestensor.inference_data import poisson_inference_data

        check_seed(seed)
        return poisson_inference_data(self, draws=draws)

    # -- reporting --------------------------------------------------------------------------

    def title(self) -> str:
        """One line: method, events, nonzero cells, iterations or sweeps."""
        n_events = int(np.sum(np.asarray(self.data.y, dtype=np.int64)))
        text = (
            f"Bayesian Poisson Tucker fit of {self.value!r} by {self.method}: {n_events} events "
            f"in {self.data.y.shape[0]} nonzero cells; "
        )
        if self.method == "vi":
            return text + (
                f"{self.info['n_iter']} CAVI iterations, final ELBO {self.info['elbo'][-1]:.6g}"
            )
        return text + f"{self.info['num_warmup']} warm-up + {self.info['num_samples']} sweeps"

    def summary(self) -> pd.DataFrame:
        """One row per mode: levels, rank bound, components carrying 95 % of the counts.

        A pair of modes (``pair=``) is marked in the ``pair`` column.
        """
        spec = self.spec
        eff = self.effective_components()
        names = list(self.coords)
        paired = set() if spec.pair is None else {names[k] for k in spec.pair}
        rows = [
            {
                "mode": c,
                "levels": spec.shape[k],
                "rank": spec.ranks[k],
                "components_95": eff[c],
                "pair": c in paired,
            }
            for k, c in enumerate(names)
        ]
        return pd.DataFrame(rows).set_index("mode")

    def plot_factors(self, normalize: bool = True):
        """Heatmap of each mode's posterior mean factor matrix (levels × components).

        Columns are ordered by the component's share of the expected total count (at the
        posterior mean, as :meth:`component_mass`), largest first, and labelled
        ``component: share``.

        Parameters
        ----------
        normalize : bool
            Scale each level's row to sum to one (memberships).

        Returns
        -------
        matplotlib.figure.Figure
        """
        check_bool("normalize", normalize)
        z = {k: jnp.asarray(v) for k, v in self.mean.items()}
        mass = component_mass(self.spec, z, self.data.mask)
        mats, labels, columns = {}, {}, {}
        for (c, f), share in zip(self.factors().items(), mass, strict=True):
            m = f.to_numpy()
            if normalize:
                m = m / np.maximum(m.sum(1, keepdims=True), 1e-300)
            order = np.argsort(-share, kind="stable")
            mats[c] = m[:, order]
            columns[c] = [f"{r}: {share[r]:.0%}" for r in order]
            labels[c] = [str(v) for v in f.index] if len(f.index) <= 40 else None
        row_labels = {c: lv for c, lv in labels.items() if lv is not None}
        from bayestensor import plotting

        return plotting.plot_heatmaps(
            mats,
            row_labels=row_labels or None,
            col_labels=columns,
            xlabel="component: share of the expected count",
            ylabel={c: c for c in mats},
            cbar_label="membership (row sums to 1)" if normalize else "factor value",
        )

    def plot_core(self):
        """Heatmaps of the core's expected-count mass between consecutive pairs of modes.

        Each panel shows ``Σ λ[r] Z[r]`` (the expected count carried by a core cell) summed
        over all modes but two, as a share of the total.

        Returns
        -------
        matplotlib.figure.Figure
        """
        spec = self.spec
        z = {k: jnp.asarray(v) for k, v in self.mean.items()}
        _, Z = exposures(spec, mode_factors(spec, z), z["core"], self.data.mask)
        w = np.asarray(z["core"] * Z)
        names = list(self.coords)
        pairs = [(k, k + 1) for k in range(spec.K - 1)] or [(0, 0)]
        mats, axis_labels = {}, []
        for a, b in pairs:
            m = w.sum(axis=tuple(j for j in range(spec.K) if j not in (a, b)))
            mats[f"core mass: {names[a]} × {names[b]}"] = m.reshape(spec.ranks[a], -1) / w.sum()
            axis_labels.append((f"{names[b]} component", f"{names[a]} component"))
        from bayestensor import plotting

        return plotting.plot_heatmaps(
            mats,
            cmap="magma",
            xlabel={t: xl for t, (xl, _) in zip(mats, axis_labels, strict=True)},
            ylabel={t: yl for t, (_, yl) in zip(mats, axis_labels, strict=True)},
            cbar_label="share of the expected count",
        )

    # -- persistence -----------------------------------------------------------------------

    def _record(self) -> tuple[dict, dict[str, np.ndarray]]:
        levels = {}
        for c, lv in self.levels.items():
            vals = [v.item() if isinstance(v, np.generic) else v for v in lv]
            if not all(isinstance(v, str | int | float) for v in vals):
                raise ValueError(f"levels of {c!r} cannot be stored as JSON")
            levels[c] = vals
        header = {
            "coords": list(self.coords),
            "value": self.value,
            "levels": levels,
            "spec": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.spec._asdict().items()
            },
            "info": {k: (list(map(float, v)) if k == "elbo" else v) for k, v in self.info.items()},
        }
        arrays = {f"mean/{k}": np.asarray(v) for k, v in self.mean.items()}
        arrays.update({f"draws/{k}": np.asarray(v) for k, v in self.draws.items()})
        arrays["data/index"] = np.asarray(self.data.index)
        arrays["data/y"] = np.asarray(self.data.y, dtype=np.float64)  # exact up to 2**53
        if self.data.mask is not None:
            arrays["data/mask"] = np.asarray(self.data.mask)
        return header, arrays

    @classmethod
    def _from_record(cls, header: dict, arrays: dict[str, np.ndarray]) -> PoissonTuckerResult:
        io.check_fields(header, (*io.BASE_FIELDS, *_HEADER))
        h = {k: io.field(header, k, tp) for k, tp in _HEADER.items()}
        spec = io.record(PoissonTuckerSpec, h["spec"], "spec")
        _check_spec(spec)
        coords, levels = _coords_levels(spec, h["coords"], h["levels"])
        info = _info(h["info"])
        checked = io.check_arrays(arrays, _layout(spec, info, arrays))
        for k, v in checked.items():
            if k.startswith(("mean/", "draws/")) and np.any(v < 0):
                raise ValueError(f"saved array {k!r} must be non-negative (gamma variables)")
        try:
            y = checked["data/y"]
            data = prepare_data(
                spec, checked["data/index"], y, checked.get("data/mask"), allocation=False
            )
            data = with_exact_counts(data, y)
        except ValueError as err:
            raise ValueError(f"saved arrays data/*: {err}") from None
        mean = {k[5:]: v for k, v in checked.items() if k.startswith("mean/")}
        draws = {k[6:]: v for k, v in checked.items() if k.startswith("draws/")}
        return cls(spec, coords, h["value"], levels, data, draws, mean, info)


#: Fields of a saved Poisson Tucker header (besides format, version, kind) and their JSON types.
_HEADER = {
    "coords": list[str],
    "value": str,
    "levels": dict[str, list[str | int | float | bool]],
    "spec": dict,
    "info": dict,
}


def _check_spec(spec: PoissonTuckerSpec) -> None:
    """The saved spec is one :func:`make_spec` accepts (the sampling order may differ)."""
    K = len(spec.shape)
    opts = {f: getattr(spec, f) for f in spec._fields if f not in ("shape", "ranks", "perm")}
    try:
        made = make_spec(spec.shape, spec.ranks, **opts)
    except ValueError as err:
        raise ValueError(f"saved field spec: {err}") from None
    if any(getattr(made, f) != getattr(spec, f) for f in spec._fields if f not in _FREE):
        raise ValueError("saved field spec is not one that make_spec builds (pair, options)")
    if any(n < 1 for n in spec.shape):
        raise ValueError(f"saved field spec.shape must be positive, got {spec.shape}")
    if sorted(spec.perm) != list(range(K)):
        raise ValueError(f"saved field spec.perm must order the modes 0..{K - 1}: {spec.perm}")
    if sorted(set(spec.mask_modes)) != list(spec.mask_modes) or any(
        not 0 <= k < K for k in spec.mask_modes
    ):
        raise ValueError(f"saved field spec.mask_modes must be sorted modes: {spec.mask_modes}")


#: Spec fields :func:`make_spec` does not decide (set by the estimator or derived).
_FREE = ("perm", "mask_modes")


def _coords_levels(spec: PoissonTuckerSpec, coords: list, levels: dict) -> tuple[list, list]:
    """The saved columns and their levels, one level per factor row of each mode."""
    if len(coords) != spec.K or len(set(coords)) != len(coords):
        raise ValueError(
            f"saved field coords must name {spec.K} distinct columns (spec.shape), got {coords}"
        )
    io.check_fields(levels, coords, "levels")
    out = []
    for k, c in enumerate(coords):
        lv = io.field(levels, c, list, "levels")
        if len(lv) != spec.shape[k]:
            raise ValueError(
                f"saved field levels.{c} has {len(lv)} levels; spec.shape[{k}] is {spec.shape[k]}"
            )
        if len(pd.unique(np.asarray(lv, dtype=object))) != len(lv):
            raise ValueError(f"saved field levels.{c} repeats a level")
        arr = np.empty(len(lv), dtype=object)
        arr[:] = lv
        out.append(arr)
    return coords, out


def _info(info: dict) -> dict:
    """The saved fit record: ELBO trace (VI) or numbers of sweeps (Gibbs)."""
    method = io.field(info, "method", str, "info")
    if method == "vi":
        io.check_fields(info, ("method", "elbo", "n_iter"), "info")
        elbo = io.field(info, "elbo", list[float], "info")
        if not elbo or io.field(info, "n_iter", int, "info") != len(elbo):
            raise ValueError("saved field info.n_iter must count the (non-empty) info.elbo")
    elif method == "gibbs":
        io.check_fields(info, ("method", "num_warmup", "num_samples"), "info")
        if io.field(info, "num_warmup", int, "info") < 0:
            raise ValueError("saved field info.num_warmup must be ≥ 0")
        if io.field(info, "num_samples", int, "info") < 1:
            raise ValueError("saved field info.num_samples must be ≥ 1")
    else:
        raise ValueError(f"saved field info.method must be 'vi' or 'gibbs', got {method!r}")
    return dict(info)


def _param_shapes(spec: PoissonTuckerSpec) -> dict[str, tuple[int, ...]]:
    """Shapes of the parameter dict (the layout of :func:`gibbs.init_params` and ``vi_point``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for g, modes in enumerate(spec.groups):
        shapes[f"theta{g}"] = (spec.shape[modes[0]], spec.ranks[modes[0]])
        shapes[f"b{g}"] = ()
    if spec.shrinkage:
        shapes["zeta"] = ()
        for k in spec.weight_modes:
            shapes[f"w{k}"] = (spec.ranks[k],)
        if spec.within_between:
            R = spec.ranks[spec.pair[0]]
            shapes["eta_within"] = shapes["eta_between"] = (R,)
    shapes["delta"] = ()
    shapes["core"] = tuple(spec.ranks)
    return shapes


def _layout(spec: PoissonTuckerSpec, info: dict, arrays) -> dict[str, io.Expect]:
    """Every array the spec implies; numbers of cells and draws bounded before any is read."""
    n = (io.declared_shape(arrays, "data/y") or (0,))[:1] or (0,)
    if n[0] > math.prod(spec.shape):
        raise ValueError(f"saved array 'data/y' lists {n[0]} cells; spec.shape has fewer")
    S = (io.declared_shape(arrays, "draws/core") or (1,))[:1] or (1,)
    most = info["num_samples"] if info["method"] == "gibbs" else 2 * MAX_DRAWS
    if not 1 <= S[0] <= min(most, 2 * MAX_DRAWS):
        raise ValueError(f"saved arrays 'draws/*' hold {S[0]} draws; expected 1..{most}")
    out = {}
    for k, shape in _param_shapes(spec).items():
        out[f"mean/{k}"] = io.Expect(shape)
        out[f"draws/{k}"] = io.Expect((S[0], *shape))
    out["data/index"] = io.Expect((n[0], spec.K), "i")
    out["data/y"] = io.Expect(n)
    if spec.mask_modes:
        out["data/mask"] = io.Expect(tuple(spec.shape[k] for k in spec.mask_modes))
    return out
