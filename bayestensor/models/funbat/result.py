"""A fitted FunBaT model: prediction, factor summaries, plots, and saving (no pickle)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
from scipy import stats

from bayestensor import io, plotting
from bayestensor.checks import CONTINUOUS, check_finite_result, check_level
from bayestensor.data import Mode, encode_new
from bayestensor.models.funbat.estimator import ESTIMATOR_PARAMS, FunBaT
from bayestensor.models.funbat.inference import init_state
from bayestensor.models.funbat.state import FunBaTConfig
from bayestensor.results import Result, prediction_frame
from bayestensor.ssm import gaps


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
    ranks : tuple of int
        ``R_k`` per mode.
    kernel : str
        Matérn kernel of the continuous modes.
    estimator : FunBaT
        The fitted estimator (its ``state_`` holds the posterior in z-scored units).
    """

    kind = "funbat"

    def __init__(self, estimator: FunBaT, value: str):
        self.estimator = estimator
        self.value = value
        self.modes = tuple(estimator.modes_)
        self.model = estimator.cfg_.model
        self.ranks = tuple(estimator.cfg_.ranks)
        self.kernel = estimator.cfg_.kernel

    # -- fitted quantities -----------------------------------------------------------------

    @property
    def coords(self) -> dict[str, str]:
        """``{column: "continuous" | "categorical"}`` of the fit."""
        return {m.name: m.kind for m in self.modes}

    @property
    def noise_sd(self) -> float:
        """Posterior-mean noise standard deviation ``E[τ]^{-1/2}``, in the value's units."""
        return self.estimator.noise_sd_

    @property
    def core(self) -> np.ndarray:
        """Posterior mean of the core ``W`` (shape ``ranks``; superdiagonal ones for CP)."""
        core = self.estimator.state_.core
        if core is None:
            W = np.zeros(self.ranks)
            idx = np.arange(min(self.ranks))
            W[(idx,) * len(self.ranks)] = 1.0
            return W
        return np.asarray(core.mean)

    @property
    def hyperparameters(self) -> pd.DataFrame:
        """Learned lengthscale ℓ_k and variance σ²_k per continuous mode."""
        rows = []
        for mode, th in zip(self.modes, self.estimator.state_.log_hyper, strict=True):
            if th is not None:
                ell, var = np.exp(np.asarray(th))
                rows.append({"mode": mode.name, "lengthscale": ell, "variance": var})
        return pd.DataFrame(rows, columns=["mode", "lengthscale", "variance"])

    @property
    def history(self) -> pd.DataFrame:
        """Per-sweep diagnostics: training RMSE, noise sd, change (noise sds), hyperparameters."""
        return pd.DataFrame(self.estimator.history_).rename_axis("sweep")

    @property
    def converged(self) -> bool:
        """Whether the sweeps stopped on the tolerance (rather than ``max_sweeps``)."""
        return bool(self.estimator.converged_)

    # -- prediction ------------------------------------------------------------------------

    def predict(self, df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
        """Predictive distribution at the rows of ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Must contain the coordinate columns; continuous coordinates may be unseen (the GP
            posterior is interpolated exactly), categories must have been seen in training.
        level : float
            Probability of the central intervals.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``df``: ``mean`` (of y and f), ``sd``, ``lower``, ``upper`` (a new
            noisy observation y), ``sd_f``, ``lower_f``, ``upper_f`` (the latent f).
        """
        level = check_level(level)
        new = encode_new(df, self.modes)
        mean, sd_f, sd_y = self.estimator.predict(new)
        check_finite_result("the prediction", mean, sd_y)
        z = stats.norm.ppf(0.5 + level / 2)
        return prediction_frame(
            df.index,
            mean=mean,
            sd=sd_y,
            lower=mean - z * sd_y,
            upper=mean + z * sd_y,
            sd_f=sd_f,
            lower_f=mean - z * sd_f,
            upper_f=mean + z * sd_f,
        )

    def factors(self) -> pd.DataFrame:
        """Posterior mean and sd of every latent function ``u^k_r`` at its mode's coordinates.

        Returns
        -------
        pandas.DataFrame
            Long format: ``mode``, ``coordinate``, ``component``, ``mean``, ``sd``.
        """
        frames = []
        for k, mode in enumerate(self.modes):
            mean, sd = self.estimator.factor_moments(k)
            N, R = mean.shape
            frames.append(
                pd.DataFrame(
                    {
                        "mode": mode.name,
                        "coordinate": np.repeat(mode.values, R),
                        "component": np.tile(np.arange(R), N),
                        "mean": mean.ravel(),
                        "sd": sd.ravel(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    # -- reporting -------------------------------------------------------------------------

    def title(self) -> str:
        """One line: model, value, sweeps, convergence, training RMSE and noise sd."""
        est = self.estimator
        state = "converged" if self.converged else "stopped at max_sweeps"
        return (
            f"FunBaT-{self.model} fit of {self.value!r} ({self.kernel}): "
            f"{len(est.history_)} sweeps, {state}; training RMSE "
            f"{est.history_[-1]['rmse']:.4g}, noise sd {self.noise_sd:.4g}"
        )

    def summary(self) -> pd.DataFrame:
        """One row per mode: kind, unique values, rank, learned lengthscale and variance."""
        hyper = self.hyperparameters.set_index("mode")
        rows = []
        for mode, R in zip(self.modes, self.ranks, strict=True):
            learned = mode.name in hyper.index
            rows.append(
                {
                    "mode": mode.name,
                    "kind": mode.kind,
                    "size": mode.size,
                    "rank": R,
                    "lengthscale": hyper.loc[mode.name, "lengthscale"] if learned else np.nan,
                    "variance": hyper.loc[mode.name, "variance"] if learned else np.nan,
                }
            )
        return pd.DataFrame(rows).set_index("mode")

    def plot_factors(self, level: float = 0.95, max_components: int | None = None):
        """Every latent function with its posterior band, one panel per mode.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`bayestensor.plotting.plot_factors`.
        """
        return plotting.plot_factors(
            self.factors(), level=level, kinds=self.coords, max_components=max_components
        )

    def plot_fit(self, df: pd.DataFrame, level: float = 0.95):
        """Observed values against predictive means at the rows of ``df``, with intervals.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`bayestensor.plotting.plot_observed_vs_predicted`.
        """
        pred = self.predict(df, level=level)
        return plotting.plot_observed_vs_predicted(
            df[self.value].to_numpy(dtype=float),
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
        return header, io.tree_to_arrays(est.state_, "state")

    @classmethod
    def _from_record(cls, header: dict, arrays: dict[str, np.ndarray]) -> FitResult:
        modes = tuple(Mode.from_dict(d) for d in header["modes"])
        cfg = FunBaTConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in header["config"].items()}
        )
        if len(cfg.ranks) != len(modes) or tuple(m.size for m in modes) != tuple(cfg.sizes):
            raise ValueError("the saved config does not match the saved modes")
        est = FunBaT(**header["estimator"])
        # the state's layout follows from the config; the saved arrays fill it by name
        dts = tuple(gaps(m.values) if m.kind == CONTINUOUS else None for m in modes)
        hyper0 = [1.0 if m.kind == CONTINUOUS else None for m in modes]
        template = init_state(cfg, dts, hyper0, hyper0, jax.random.key(0), 1.0, 1.0)
        est.state_ = io.arrays_to_tree(template, arrays, "state")
        est.cfg_ = cfg
        est.modes_ = modes
        est.y_mean_ = float(header["y_mean"])
        est.y_scale_ = float(header["y_scale"])
        est.history_ = list(header["history"])
        est.n_sweeps_ = len(est.history_)
        est.converged_ = bool(header["converged"])
        return cls(est, header["value"])
