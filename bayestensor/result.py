"""Fitted FunBaT models: prediction, factor summaries, plots, and saving without pickle."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from scipy import stats

from bayestensor.data import CONTINUOUS, Mode, encode_new
from bayestensor.models.funbat import FunBaT, FunBaTConfig, init_state
from bayestensor.ssm import gaps

FORMAT = "bayestensor-funbat"
FORMAT_VERSION = 1


class FitResult:
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
    """

    def __init__(self, estimator: FunBaT, value: str):
        self._est = estimator
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
        return float(self._est.y_scale_ / np.sqrt(float(self._est.state_.noise.mean)))

    @property
    def core(self) -> np.ndarray:
        """Posterior mean of the core ``W`` (shape ``ranks``; superdiagonal ones for CP)."""
        core = self._est.state_.core
        if core is None:
            return _superdiagonal(self.ranks)
        return np.asarray(core.mean)

    @property
    def hyperparameters(self) -> pd.DataFrame:
        """Learned lengthscale ℓ_k and variance σ²_k per continuous mode."""
        rows = []
        for mode, th in zip(self.modes, self._est.state_.log_hyper, strict=True):
            if th is not None:
                ell, var = np.exp(np.asarray(th))
                rows.append({"mode": mode.name, "lengthscale": ell, "variance": var})
        return pd.DataFrame(rows, columns=["mode", "lengthscale", "variance"])

    @property
    def history(self) -> pd.DataFrame:
        """Per-sweep diagnostics: training RMSE, noise sd, change (noise sds), hyperparameters."""
        return pd.DataFrame(self._est.history_).rename_axis("sweep")

    @property
    def converged(self) -> bool:
        """Whether the sweeps stopped on the tolerance (rather than ``max_sweeps``)."""
        return bool(self._est.converged_)

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
            noisy observation y), ``f_sd``, ``f_lower``, ``f_upper`` (the latent f).
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        new = encode_new(df, self.modes)
        mean, sd_f, sd_y = self._est.predict(new)
        z = stats.norm.ppf(0.5 + level / 2)
        return pd.DataFrame(
            {
                "mean": mean,
                "sd": sd_y,
                "lower": mean - z * sd_y,
                "upper": mean + z * sd_y,
                "f_sd": sd_f,
                "f_lower": mean - z * sd_f,
                "f_upper": mean + z * sd_f,
            },
            index=df.index,
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
            mean, sd = self._factor_moments(k)
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

    def _factor_moments(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and sds (N_k, R_k) of mode k's latent functions."""
        post = self._est.state_.factors[k]
        var = np.diagonal(np.asarray(post.cov), axis1=1, axis2=2)
        return np.asarray(post.mean), np.sqrt(np.clip(var, 0.0, None))

    def summary(self) -> str:
        """A short text summary of the data, the model and the fit (also printed)."""
        est = self._est
        lines = [
            f"FunBaT-{self.model} fit of {self.value!r}: {len(est.history_)} sweeps, "
            f"{'converged' if self.converged else 'stopped at max_sweeps'}",
            f"  kernel {self.kernel}, ranks {self.ranks}",
        ]
        hyper = self.hyperparameters.set_index("mode")
        for mode, R in zip(self.modes, self.ranks, strict=True):
            desc = f"  mode {mode.name!r}: {mode.kind}, {mode.size} unique values, rank {R}"
            if mode.name in hyper.index:
                h = hyper.loc[mode.name]
                desc += f", lengthscale {h['lengthscale']:.4g}, variance {h['variance']:.3g}"
            lines.append(desc)
        last = est.history_[-1]
        lines.append(f"  training RMSE {last['rmse']:.4g}, noise sd {self.noise_sd:.4g}")
        text = "\n".join(lines)
        print(text)
        return text

    def plot_factors(self, level: float = 0.95, max_components: int | None = None):
        """Plot every latent function with its posterior band (one panel per mode).

        Parameters
        ----------
        level : float
            Probability of the bands.
        max_components : int, optional
            Plot at most this many components per mode.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        z = stats.norm.ppf(0.5 + level / 2)
        K = len(self.modes)
        fig, axes = plt.subplots(1, K, figsize=(4.2 * K, 3.2), squeeze=False)
        for k, (ax, mode) in enumerate(zip(axes[0], self.modes, strict=True)):
            mean, sd = self._factor_moments(k)
            n_plot = mean.shape[1] if max_components is None else min(max_components, mean.shape[1])
            for r in range(n_plot):
                m, s = mean[:, r], sd[:, r]
                if mode.kind == CONTINUOUS:
                    (line,) = ax.plot(mode.values, m, lw=1.2, label=f"r = {r}")
                    ax.fill_between(
                        mode.values, m - z * s, m + z * s, alpha=0.2, color=line.get_color()
                    )
                else:
                    pos = np.arange(mode.size) + 0.1 * r
                    ax.errorbar(pos, m, yerr=z * s, fmt="o", ms=3, label=f"r = {r}")
            if mode.kind != CONTINUOUS:
                ax.set_xticks(np.arange(mode.size), [str(v) for v in mode.values], rotation=90)
            ax.set(title=f"mode {mode.name!r}", xlabel=mode.name, ylabel="u(x)")
            ax.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def plot_fit(self, df: pd.DataFrame, level: float = 0.95):
        """Observed against predicted values at the rows of ``df`` with predictive intervals.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        pred = self.predict(df, level=level)
        y = df[self.value].to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.errorbar(
            pred["mean"],
            y,
            xerr=[pred["mean"] - pred["lower"], pred["upper"] - pred["mean"]],
            fmt=".",
            ms=3,
            alpha=0.5,
            elinewidth=0.5,
        )
        lo, hi = (
            np.nanmin([y.min(), pred["lower"].min()]),
            np.nanmax([y.max(), pred["upper"].max()]),
        )
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlabel=f"predicted {self.value}", ylabel=f"observed {self.value}")
        fig.tight_layout()
        return fig

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save to a single ``.npz``-style zip file: arrays + a JSON header. No pickle.

        Parameters
        ----------
        path : str or Path
            Destination file.

        Returns
        -------
        Path
        """
        est = self._est
        leaves = jax.tree.leaves(est.state_)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "value": self.value,
            "modes": [m.to_dict() for m in self.modes],
            "config": est.cfg_._asdict(),
            "estimator": _estimator_params(est),
            "y_mean": est.y_mean_,
            "y_scale": est.y_scale_,
            "history": est.history_,
            "converged": bool(est.converged_),
            "n_leaves": len(leaves),
        }
        arrays = {f"leaf_{i:04d}": np.asarray(a) for i, a in enumerate(leaves)}
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("header.json", json.dumps(header, default=_json_default))
            zf.writestr("arrays.npz", buf.getvalue())
        return path


def load(path: str | Path) -> FitResult:
    """Load a model saved by :meth:`FitResult.save` (or ``PoissonTuckerResult.save``).

    Parameters
    ----------
    path : str or Path
        File written by ``save``.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        If the file is not a bayestensor model (or of an unknown version).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no saved model at {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            arrays = np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False)
            if header.get("kind") == "poisson-tucker":  # saved by PoissonTuckerResult.save
                from bayestensor.poisson_result import load_poisson

                return load_poisson(header, {k: arrays[k] for k in arrays.files})
            leaves = [arrays[f"leaf_{i:04d}"] for i in range(header["n_leaves"])]
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a saved bayestensor model ({err})") from None
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format {header.get('format')!r} version {header.get('version')!r};"
            f" this bayestensor reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    modes = tuple(Mode.from_dict(d) for d in header["modes"])
    cfg_dict = header["config"]
    cfg = FunBaTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()})
    est = FunBaT(**header["estimator"])
    # rebuild the state's tree structure from the config, then fill in the saved leaves
    dts = tuple(gaps(m.values) if m.kind == CONTINUOUS else None for m in modes)
    hyper0 = [1.0 if m.kind == CONTINUOUS else None for m in modes]
    template = init_state(cfg, dts, hyper0, hyper0, jax.random.key(0), 1.0, 1.0)
    treedef = jax.tree.structure(template)
    if treedef.num_leaves != len(leaves):
        raise ValueError(f"{str(path)!r} does not match this version's model layout")
    est.state_ = jax.tree.unflatten(treedef, [jax.numpy.asarray(a) for a in leaves])
    est.cfg_ = cfg
    est.modes_ = modes
    est.y_mean_ = header["y_mean"]
    est.y_scale_ = header["y_scale"]
    est.history_ = header["history"]
    est.n_sweeps_ = len(header["history"])
    est.converged_ = header["converged"]
    return FitResult(est, header["value"])


def _superdiagonal(ranks: tuple[int, ...]) -> np.ndarray:
    W = np.zeros(ranks)
    idx = np.arange(min(ranks))
    W[(idx,) * len(ranks)] = 1.0
    return W


def _estimator_params(est: FunBaT) -> dict[str, Any]:
    """The constructor arguments of a FunBaT estimator (JSON-safe)."""
    names = (
        "model rank kernel max_sweeps tol damping seed learn_hyper init init_scale "
        "init_cov_scale init_noise_sd lengthscale variance lengthscale_fraction hyper_steps "
        "hyper_step a0 b0 chunk"
    ).split()
    return {n: getattr(est, n) for n in names}


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a model header")
