"""A fitted FunBaT model: prediction, factor summaries, plots, and saving (no pickle)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import pandas as pd

from bayestensor import io
from bayestensor.checks import (
    CONTINUOUS,
    check_bool,
    check_finite_result,
    check_int,
    check_level,
    observed_values,
)
from bayestensor.data import encode_new
from bayestensor.driver import precision
from bayestensor.metrics import normal_quantile
from bayestensor.models.funbat.ard import ard_record, diagonal_core_view
from bayestensor.models.funbat.estimator import ESTIMATOR_PARAMS, FunBaT
from bayestensor.models.funbat.inference import init_state
from bayestensor.models.funbat.local_record import local_from_record, local_layout, local_record
from bayestensor.models.funbat.refit_check import rank_check_from_record
from bayestensor.models.funbat.saved import (
    HEADER_FIELDS,
    check_saved_config,
    check_saved_covariances,
    is_number,
    saved_estimator,
    saved_modes,
)
from bayestensor.models.funbat.state import FunBaTConfig
from bayestensor.models.funbat.update import update as _update
from bayestensor.results import PREDICTION_COLUMNS, Result, prediction_frame
from bayestensor.ssm import gaps
from bayestensor.xr import GRID_CHUNK, factors_dataset, grid_axes, grid_dataset, require_xarray


class FitResult(Result):
    """A fitted functional Tucker / CP model (returned by :func:`bayestensor.fit`).

    The noise-free function is ``f(x₁,…,x_K) = Σ W[r₁…r_K] Π_k u^k_{r_k}(x_k)`` and
    observations are ``y = f + ε``, ``ε ~ N(0, noise_sd²)``. The factors ``u^k`` are identifiable
    only up to invertible transforms absorbed by the core; ``f`` and predictions are identifiable.

    Attributes
    ----------
    value : str
        Name of the value column.
    modes : tuple of Mode
        Per mode: column name, kind and the training coordinates / categories.
    model : str
        ``"tucker"`` or ``"cp"``.
    ranks, max_ranks : tuple of int
        ``R_k`` per mode (with ``rank="auto"``, the kept components), and the ranks the sweeps
        ran with (the upper bounds with ``rank="auto"``).
    active : tuple of numpy.ndarray
        Per mode, which of the fit's components are component ``0 … R_k − 1`` of
        :meth:`factors`, :attr:`core` and the plots (by decreasing share; CP: indices among the
        ``max_ranks``; Tucker: the leading singular directions, see
        :func:`~bayestensor.models.funbat.ard.prune_fit`); ``arange(R_k)`` for a fixed rank.
    auto_rank : bool
        Whether the ranks were learned (``rank="auto"``).
    kernels : dict
        ``{column: kernel name}`` of the continuous modes.
    kernel : str or dict
        The kernel name when every continuous mode has the same one, else ``kernels``.
    estimator : FunBaT
        The fitted estimator (its ``state_`` holds the posterior in z-scored units).
    n_missing : int
        Cells of gridded (xarray) input that were NaN and so left out of the fit.
    rank_check : RankCheck or None
        Where ``rank="auto"`` checked rank 1 by refits (small data with a residual process,
        :mod:`~bayestensor.models.funbat.refit_check`): the learned ranks, both candidates'
        median absolute errors and whether rank 1 was taken (this result is then the
        ``rank=1`` fit: ``auto_rank`` is False, ``summary()`` shows the learned ranks).
    """

    kind = "funbat"

    def __init__(self, estimator: FunBaT, value: str, n_missing: int = 0):
        self.estimator = estimator
        self.value = value
        self.n_missing = int(n_missing)
        self.modes = tuple(estimator.modes_)
        self.model = estimator.cfg_.model
        self.ranks = tuple(estimator.cfg_.ranks)
        self.max_ranks = tuple(getattr(estimator, "max_ranks_", self.ranks))
        self.active = tuple(
            np.asarray(a) for a in getattr(estimator, "active_", [np.arange(R) for R in self.ranks])
        )
        self.auto_rank = bool(estimator.cfg_.ard)
        cfg = estimator.cfg_
        self.kernels = {
            m.name: cfg.mode_kernel(k) for k, m in enumerate(self.modes) if cfg.continuous[k]
        }
        names = set(self.kernels.values())
        self.kernel = names.pop() if len(names) == 1 else dict(self.kernels)
        self.local = None  # a LocalFit with bt.fit(..., local=...): see funbat.local
        self.rank_check = None  # a refit_check.RankCheck where rank="auto" checked rank 1

    # -- fitted quantities -----------------------------------------------------------------
    @property
    def coords(self) -> dict[str, str]:
        """``{column: "continuous" | "categorical"}`` of the fit."""
        return {m.name: m.kind for m in self.modes}

    @property
    def log_coords(self) -> tuple[str, ...]:
        """The coordinates modelled on the log scale (``bt.fit(..., log_coords=...)``): their
        latent functions and lengthscales are in ``log x``, their coordinates reported in ``x``."""
        return tuple(m.name for m in self.modes if m.log)

    @property
    def noise_sd(self) -> float:
        """Posterior-mean noise standard deviation ``E[τ]^{-1/2}``, in the value's units."""
        return self.estimator.noise_sd_

    @property
    def core(self) -> np.ndarray:
        """Posterior mean of the core ``W`` (shape ``ranks``; CP: superdiagonal ones, or with
        ``rank="auto"`` the learned component weights on the superdiagonal)."""
        core = self.estimator.state_.core
        if core is None or self.model == "cp":
            W = np.zeros(self.ranks)
            idx = np.arange(min(self.ranks))
            W[(idx,) * len(self.ranks)] = 1.0 if core is None else np.asarray(core.mean)
            return W
        return np.asarray(core.mean)

    @property
    def hyperparameters(self) -> pd.DataFrame:
        """Learned hyperparameters per continuous mode: lengthscale ℓ_k and variance σ²_k, and
        with a (quasi-)periodic mode also ``period`` and ``envelope`` (NaN where the mode's
        kernel has none). A periodic ℓ is relative to the period."""
        cfg = self.estimator.cfg_
        rows, columns = [], ["mode", "lengthscale", "variance"]
        for k, (mode, th) in enumerate(
            zip(self.modes, self.estimator.state_.log_hyper, strict=True)
        ):
            if th is not None:
                names = cfg.hyper_names(k)
                rows.append(
                    {"mode": mode.name, **dict(zip(names, np.exp(np.asarray(th)), strict=True))}
                )
                columns += [n for n in names if n not in columns]
        return pd.DataFrame(rows, columns=columns)

    @property
    def history(self) -> pd.DataFrame:
        """Per-sweep diagnostics: training RMSE, noise sd, change (noise sds), hyperparameters."""
        return pd.DataFrame(self.estimator.history_).rename_axis("sweep")

    @property
    def converged(self) -> bool:
        """Whether the sweeps stopped on the tolerance (rather than ``max_sweeps``)."""
        return bool(self.estimator.converged_)

    # -- prediction ------------------------------------------------------------------------
    def predict(self, df: pd.DataFrame, level: float = 0.95, local: bool = True) -> pd.DataFrame:
        """Predictive distribution at the rows of ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Must contain the coordinate columns; continuous coordinates may be unseen (the GP
            posterior is interpolated exactly), categories must have been seen in training.
        level : float
            Probability of the central intervals.
        local : bool
            With a local residual process (``bt.fit(..., local=...)``): add it (default) or
            give the low-rank part alone.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``df``: ``mean`` (of y and f), ``sd``, ``lower``, ``upper`` (a new
            noisy observation y), ``sd_f``, ``lower_f``, ``upper_f`` (the latent f): Gaussian,
            ``sd`` its standard deviation; where the local stage found heavy-tailed residuals,
            also ``nu``: the predictive is then a Student-t with ``nu`` degrees of freedom,
            scale ``sd`` (or ``sd_f``) and quantiles ``lower``, ``upper``. Where the local
            stage found errors that grow with the level (``self.local.level``), ``sd`` and
            ``sd_f`` grow with the predicted mean (:func:`~.local_tails.level_factor`).
        """
        level = check_level(level)
        check_bool("local", local)
        new = encode_new(df, self.modes)
        mean, sd_f, sd_y = self.estimator.predict(new)
        z = normal_quantile(level)
        check_finite_result("the prediction", mean - z * sd_y, mean + z * sd_y)
        pred = prediction_frame(
            df.index,
            mean=mean,
            sd=sd_y,
            lower=mean - z * sd_y,
            upper=mean + z * sd_y,
            sd_f=sd_f,
            lower_f=mean - z * sd_f,
            upper_f=mean + z * sd_f,
        )
        return self.local.combine(df, pred, level) if local and self.local is not None else pred

    def predict_grid(
        self,
        coords: Mapping[str, Any] | None = None,
        level: float = 0.95,
        chunk: int = GRID_CHUNK,
    ):
        """Predictions on every cell of a grid, as an :class:`xarray.Dataset`.

        Parameters
        ----------
        coords : dict of str to 1-D array-like, optional
            Coordinates per mode (continuous ones anywhere, times as times; categories seen
            in training). Modes left out take their fitted coordinates (unique training
            values; times as times), which is also the default for all.
        level : float
            Probability of the central intervals.
        chunk : int
            Grid cells predicted at a time: the working memory is bounded by the chunk, not
            by the grid (the output holds one float64 per cell and variable).

        Returns
        -------
        xarray.Dataset
            Dimensions: the modes, in order; float64 variables ``mean``, ``sd``, ``lower``,
            ``upper`` (a new observation) and ``sd_f``, ``lower_f``, ``upper_f`` (the latent
            f), and ``nu`` where :meth:`predict` has it, each equal to :meth:`predict` at that
            cell.

        Raises
        ------
        ValueError
            For an unknown mode, coordinates that are not a non-empty 1-D array or hold
            missing values (NaN, NaT, None, inf), or a category not seen in training.
        ImportError
            If xarray is not installed.
        """
        level = check_level(level)
        chunk = check_int("chunk", chunk)
        require_xarray()
        axes = grid_axes(coords, {m.name: m.coordinates() for m in self.modes})
        attrs = {"value": self.value, "level": level, "model": f"FunBaT-{self.model}"}
        tails = self.local is not None and np.isfinite(self.local.nu)
        return grid_dataset(
            axes,
            lambda cells: self.predict(cells, level=level),
            [c for c in PREDICTION_COLUMNS if c != "nu" or tails],
            chunk=chunk,
            attrs=attrs,
        )

    def to_inference_data(
        self, df: pd.DataFrame | None = None, draws: int = 1000, chains: int = 4, seed: int = 0
    ):
        """Draws from the fitted posterior as :class:`arviz.InferenceData`.

        FunBaT's posterior is the mean-field ``q``: every factor row ``u^k(x)`` Gaussian
        (one per coordinate; draws are independent across coordinates and modes), the Tucker
        core ``vec W`` Gaussian, the noise precision ``τ`` Gamma. Factors and core are in the
        model's z-scored units (and, like them, identifiable only up to transforms absorbed by
        the core); ``noise_sd`` and ``f`` are in the value's units.

        Parameters
        ----------
        df : pandas.DataFrame, optional
            Rows (e.g. the training frame) at which to add draws of
            ``f = Σ W Π u`` (group ``posterior``, dimension ``obs`` labelled by ``df``'s
            index) computed from the same factor and core draws, and, if ``df`` has the value
            column, the observations (group ``observed_data``). Continuous coordinates must
            be training coordinates (:meth:`predict` covers the others).
        draws : int
            Draws per chain.
        chains : int
            Number of chains: the draws are independent, so chains are only a split of them
            that lets arviz compute its between-chain diagnostics (r_hat near 1).
        seed : int
            Seeds the draws.

        Returns
        -------
        arviz.InferenceData
            ``posterior``: ``u_<mode>`` with dimensions ``(<mode>, <mode>_component)`` and the
            mode's coordinates (times as times), ``W`` (Tucker only) on the component
            dimensions, ``noise_sd``, and ``f`` when ``df`` is given.

        Raises
        ------
        ValueError
            For a bad ``draws`` or ``seed``, or ``df`` rows off the training coordinates.
        ImportError
            If arviz is not installed.
        """
        from bayestensor.inference_data import funbat_inference_data

        view = self if self.model == "tucker" else diagonal_core_view(self)  # CP weights
        return funbat_inference_data(view, df, draws=draws, chains=chains, seed=seed)

    def factors(self, as_xarray: bool = False):
        """Posterior mean and sd of every latent function ``u^k_r`` at its mode's coordinates.

        Returns
        -------
        pandas.DataFrame or xarray.Dataset
            Long format: ``mode``, ``coordinate``, ``component``, ``mean``, ``sd`` (times again
            for a datetime mode); ``as_xarray=True``: :func:`bayestensor.xr.factors_dataset`.
        """
        check_bool("as_xarray", as_xarray)
        frames = []
        for k, mode in enumerate(self.modes):
            mean, sd = self.estimator.factor_moments(k)
            N, R = mean.shape
            coords = mode.coordinates()  # (a time mode's: a pandas Index, keeping its zone)
            coords = np.repeat(coords, R) if mode.time is None else coords.repeat(R)
            frames.append(
                pd.DataFrame(
                    {
                        "mode": mode.name,
                        "coordinate": coords,
                        "component": np.tile(np.arange(R), N),
                        "mean": mean.ravel(),
                        "sd": sd.ravel(),
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        return factors_dataset(out) if as_xarray else out

    def update(self, df: pd.DataFrame, sweeps: int | None = None, scope="new") -> FitResult:
        """A new result with the rows of ``df`` added: see :func:`.funbat.update.update`."""
        return _update(self, df, sweeps, scope)

    # -- reporting -------------------------------------------------------------------------
    def title(self) -> str:
        """One line: model, value, sweeps, convergence, training RMSE and noise sd."""
        est = self.estimator
        state = "converged" if self.converged else "stopped at max_sweeps"
        kernel = (
            self.kernel
            if isinstance(self.kernel, str)
            else ", ".join(f"{c}: {k}" for c, k in self.kernels.items())
        )
        kernel = f"{kernel}; " if kernel else ""  # (none: no continuous mode)
        missing = f" ({self.n_missing} missing cells left out)" if self.n_missing else ""
        ranks = self.ranks[0] if self.model == "cp" else self.ranks
        learned = (
            f", learned of at most {self.max_ranks[0] if self.model == 'cp' else self.max_ranks}"
        )
        ranks = f"rank {ranks}{learned if self.auto_rank else ''}"
        if self.rank_check is not None:
            ranks += f", {self.rank_check.describe()}"
        last = est.history_[-1]  # (after update(..., scope="new"): over the new rows)
        rows = "RMSE on the update's new rows" if last.get("rows") == "new" else "training RMSE"
        return (
            f"FunBaT-{self.model} fit of {self.value!r}{missing} ({kernel}{ranks}): "
            f"{len(est.history_)} sweeps, {state}; {rows} "
            f"{last['rmse']:.4g}, noise sd {self.noise_sd:.4g}"
        ) + self._local_title()

    def _local_title(self) -> str:
        if self.local is None:
            return ""
        loc = self.local
        tails = f", Student-t predictive (nu {loc.nu:.3g})" if np.isfinite(loc.nu) else ""
        if loc.level is not None:  # (the factor at the lowest and highest level it saw)
            b, _, _, lo, hi, _ = loc.level
            low, high = sorted(np.exp([b * lo, b * hi]))
            tails += f", its scale ×{low:.2g}–×{high:.2g} with the level"
        if not loc.kept_any:
            return "; no local process kept (none beat iid noise)" + tails
        return f"; local process {loc.label}{tails}"

    def summary(self) -> pd.DataFrame:
        """One row per mode: kind, unique values, rank (with ``rank="auto"`` also the upper
        bound ``max_rank``; where the refit check took rank 1, the ARD's ``learned_rank`` and
        its ``max_rank``), kernel and learned hyperparameters (those of
        :attr:`hyperparameters`; NaN where a mode has none); with ``local=``, the column
        ``local``: the residual process kept (``"fibre:<column>"``, ``"neighbours"`` or
        ``"none"``); with coordinates on the log scale, the column ``scale`` (``"log"`` or
        ``"linear"``; None for a categorical mode)."""
        check = self.rank_check if self.rank_check is not None and self.rank_check.taken else None
        hyper = self.hyperparameters.set_index("mode")
        rows = []
        for k, (mode, R, Rmax) in enumerate(
            zip(self.modes, self.ranks, self.max_ranks, strict=True)
        ):
            learned = mode.name in hyper.index
            row = {"mode": mode.name, "kind": mode.kind, "size": mode.size, "rank": R}
            if self.auto_rank:
                row["max_rank"] = Rmax
            elif check is not None:
                row["learned_rank"], row["max_rank"] = check.learned[k], check.max_ranks[k]
            if not isinstance(self.kernel, str) and self.kernels:  # (per mode, where mixed)
                row["kernel"] = self.kernels.get(mode.name)
            if self.log_coords:
                linear = "linear" if mode.kind == "continuous" else None
                row["scale"] = "log" if mode.log else linear
            for name in hyper.columns:
                row[name] = hyper.loc[mode.name, name] if learned else np.nan
            rows.append(row if self.local is None else {**row, "local": self.local.label})
        return pd.DataFrame(rows).set_index("mode")

    def plot_factors(
        self,
        level: float = 0.95,
        max_components: int | None = None,
        minor: float = 0.05,
        per_panel: int = 4,
        units: Mapping[str, str] | None = None,
    ):
        """Every latent function with its posterior band, ordered by its share of the fit.

        The shares are :func:`bayestensor.plotting.component_shares` (each component's share
        of the energy of the fitted f); components below ``minor`` are faded, without bands,
        and a mode with more than ``per_panel`` components gets several panels (its minor
        components together in the last). ``units``: ``{column: unit}`` for axis labels.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`bayestensor.plotting.plot_factors`; a datetime mode's axis shows dates,
            a timedelta mode's its time unit, a log-scale mode's is logarithmic.
        """
        from bayestensor import plotting

        return plotting.plot_factors(
            self.factors(),
            level=level,
            kinds=self.coords,
            max_components=max_components,
            shares=plotting.component_shares(self),
            minor=minor,
            per_panel=per_panel,
            units=units,
            time_units={m.name: m.time.unit for m in self.modes if m.time is not None},
            log_axes=self.log_coords,
        )

    def plot_fit(self, df: pd.DataFrame, level: float = 0.95):
        """Observed values against predictive means at the rows of ``df``, with intervals.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`bayestensor.plotting.plot_observed_vs_predicted`.
        """
        if not isinstance(df, pd.DataFrame) or self.value not in df.columns:
            raise ValueError(
                f"plot_fit needs rows with the value column {self.value!r} (observed values to "
                "plot against the predictions)"
            )
        pred = self.predict(df, level=level)
        from bayestensor import plotting

        return plotting.plot_observed_vs_predicted(
            observed_values(df, self.value),
            pred["mean"],
            pred["lower"],
            pred["upper"],
            label=self.value,
        )

    # -- persistence -----------------------------------------------------------------------
    def _record(self) -> tuple[dict, dict[str, np.ndarray]]:
        est = self.estimator
        header = {
            "value": self.value,
            "modes": [m.to_dict() for m in self.modes],
            "config": est.cfg_._asdict(),
            "estimator": {n: getattr(est, n) for n in ESTIMATOR_PARAMS},
            "y_mean": est.y_mean_,
            "y_scale": est.y_scale_,
            "history": est.history_,
            "converged": bool(est.converged_),
        }
        if self.n_missing:
            header["n_missing"] = self.n_missing
        if self.auto_rank:
            header["ard"] = {
                "max_ranks": list(self.max_ranks),
                "active": [[int(i) for i in a] for a in self.active],
                "shares": [[float(v) for v in s] for s in est.shares_],
            }
        if self.rank_check is not None:
            header["rank_check"] = self.rank_check._asdict()
        arrays = io.tree_to_arrays(est.state_, "state")
        if self.local is not None:
            header["local"], more = local_record(self.local)
            arrays.update(more)
        return header, arrays

    @classmethod
    def _from_record(cls, header: dict, arrays: dict[str, np.ndarray]) -> FitResult:
        optional = ("n_missing", "ard", "local", "rank_check")
        io.check_fields(header, (*io.BASE_FIELDS, *HEADER_FIELDS, *optional))
        h = {k: io.field(header, k, tp) for k, tp in HEADER_FIELDS.items()}
        n_missing = io.field(header, "n_missing", int) if "n_missing" in header else 0
        if n_missing < 0:
            raise ValueError(f"saved field header.n_missing must be ≥ 0, got {n_missing}")
        modes = saved_modes(h["modes"])
        check = header.get("rank_check")
        check = None if check is None else rank_check_from_record(check, len(modes))
        cfg = io.record(FunBaTConfig, h["config"], "config")
        check_saved_config(cfg, modes)
        est = saved_estimator(h["estimator"], cfg, modes)
        if not (np.isfinite(h["y_mean"]) and np.isfinite(h["y_scale"]) and h["y_scale"] > 0):
            raise ValueError("saved fields y_mean, y_scale must be finite, y_scale positive")
        if not h["history"] or not all(is_number(e.get("rmse")) for e in h["history"]):
            raise ValueError("saved field header.history must list every sweep with its rmse")
        # the state's layout follows from the config (shapes only: nothing of the saved size is
        # allocated before the arrays' declared shapes are checked against it)
        dts = tuple(gaps(m.values) if m.kind == CONTINUOUS else None for m in modes)
        hyper0 = [1.0 if m.kind == CONTINUOUS else None for m in modes]
        template = jax.eval_shape(
            lambda: init_state(cfg, dts, hyper0, hyper0, jax.random.key(0), 1.0, 1.0)
        )
        layout = {**io.tree_layout(template, "state"), **local_layout(header.get("local"))}
        checked = io.check_arrays(arrays, layout)
        check_saved_covariances(checked)
        if not (checked["state/noise/shape"] > 0 and checked["state/noise/rate"] > 0):
            raise ValueError("saved arrays state/noise/shape and rate must be positive")
        # in the fit's precision, as the fit made it: outside JAX's x64 mode a float64 state
        # would otherwise come back as float32 and predictions would change after loading
        with precision(est.dtype):
            est.state_ = io.tree_from_arrays(template, checked, "state")
        est.cfg_ = cfg
        est.modes_ = modes
        est.y_mean_ = float(h["y_mean"])
        est.y_scale_ = float(h["y_scale"])
        est.history_ = list(h["history"])
        est.n_sweeps_ = len(est.history_)
        est.converged_ = h["converged"]
        est.max_ranks_, est.active_, est.shares_ = ard_record(header, cfg)
        res = cls(est, h["value"], n_missing=n_missing)
        res.rank_check = check
        if "local" in header:
            res.local = local_from_record(res, header["local"], checked)
        return res
