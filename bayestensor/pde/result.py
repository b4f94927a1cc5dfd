"""The solution of a PDE problem: the GP mean on the grid and anywhere in the box, the fit's
record, and the shared result contract (repr, summary, save / load).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float

from bayestensor import io, plotting
from bayestensor.checks import check_column, check_finite, check_frame
from bayestensor.pde.config import FitTrace, GPHMConfig, GPHMParams, init_params
from bayestensor.pde.factors import dimension_factors, solution_weights
from bayestensor.pde.inference import cross_kernel
from bayestensor.pde.problems import Problem
from bayestensor.results import Result, prediction_frame
from bayestensor.tensor import multi_mode_dot


@dataclass(frozen=True, repr=False)
class PDESolution(Result):
    """A solved problem: the GP mean on the grid and anywhere in the box, and the fit's record.

    A solution read back by :func:`bayestensor.load` has the problem's grid, source and
    boundary values but not its Python functions (``operator``, ``exact``, ``source_fn`` are
    ``None``): the GP mean, :meth:`predict`, :meth:`summary` and plots work; re-solving needs
    the original problem.

    Attributes
    ----------
    problem : Problem
    config : GPHMConfig
        The settings used (``max_freq`` and ``method`` resolved).
    params : GPHMParams
        Grid values ``U`` and the learned kernels.
    trace : FitTrace
        Loss and midpoint-residual history, the chosen step, Adam steps run.
    wall_time : float
        Seconds spent in :func:`solve` (compilation included).
    """

    problem: Problem
    config: GPHMConfig
    params: GPHMParams
    trace: FitTrace
    wall_time: float

    @property
    def grid(self) -> tuple[np.ndarray, ...]:
        """Collocation coordinates per dimension."""
        return tuple(np.asarray(x) for x in self.problem.grid)

    @property
    def coords(self) -> dict[str, str]:
        """``{variable: "continuous"}``: the columns :meth:`predict` reads."""
        return {v: "continuous" for v in self.problem.variables}

    @property
    def values(self) -> np.ndarray:
        """The solution on the collocation grid, shape ``problem.shape``."""
        return np.asarray(self.params.U)

    @property
    def loss_history(self) -> np.ndarray:
        """``𝒥`` at every optimiser step."""
        return self.trace.losses

    @property
    def residual_history(self) -> np.ndarray:
        """Relative PDE residual between the collocation points at every step."""
        return self.trace.residuals

    kind = "pde"

    def _weights(self):
        # only the Cholesky factors enter K⁻¹U: no derivative matrices (and no operator) needed
        factors = [
            dimension_factors(k, x, self.config, orders=())
            for k, x in zip(self.params.kernels, self.problem.grid, strict=True)
        ]
        return solution_weights(self.params.U, factors)

    def on_grid(self, *coords: Float[Array, " m_d"]) -> np.ndarray:
        """GP mean on the tensor grid ``coords[0] × coords[1] × ⋯``.

        .. math:: \\bar u(X^*) = A \\times_1 k_1(x^*_1, X_1) \\cdots \\times_D k_D(x^*_D, X_D),
            \\qquad \\mathrm{vec}(A) = K^{-1} \\mathrm{vec}(U).

        Parameters
        ----------
        *coords : array
            One 1-D coordinate array per dimension.

        Returns
        -------
        np.ndarray
            Shape ``(len(coords[0]), …)``.
        """
        if len(coords) != len(self.problem.shape):
            raise ValueError(
                f"coords must give {len(self.problem.shape)} coordinate arrays, got {len(coords)}"
            )
        A = self._weights()
        mats = [
            cross_kernel(k, jnp.asarray(c, A.dtype).ravel(), x, self.config)
            for k, c, x in zip(self.params.kernels, coords, self.problem.grid, strict=True)
        ]
        return np.asarray(multi_mode_dot(A, mats))

    def __call__(self, *xs: Float[Array, "*shape"]) -> np.ndarray:
        """GP mean at scattered points: ``sol(x)`` in 1-D, ``sol(x, y)`` in 2-D (broadcast).

        Parameters
        ----------
        *xs : array
            One coordinate array per dimension; they broadcast against each other.

        Returns
        -------
        np.ndarray
            The mean, with the broadcast shape of ``xs``.
        """
        D = len(self.problem.shape)
        if len(xs) != D:
            raise ValueError(f"give {D} coordinate arrays (one per dimension), got {len(xs)}")
        A = self._weights()
        pts = np.broadcast_arrays(*(np.asarray(x, float) for x in xs))
        shape = pts[0].shape
        mats = [
            cross_kernel(k, jnp.asarray(p.ravel(), A.dtype), x, self.config)
            for k, p, x in zip(self.params.kernels, pts, self.problem.grid, strict=True)
        ]
        idx = string.ascii_lowercase[:D]
        spec = ",".join(f"z{c}" for c in idx) + f",{idx}->z"
        return np.asarray(jnp.einsum(spec, *mats, A)).reshape(shape)

    def test_grid(self, factor: int | None = None) -> tuple[np.ndarray, ...]:
        """A finer tensor grid: ``factor · (n_d − 1) + 1`` points per dimension (default 4 in
        1-D, 2 otherwise)."""
        factor = (4 if len(self.problem.shape) == 1 else 2) if factor is None else int(factor)
        return tuple(
            np.linspace(a, b, factor * (n - 1) + 1)
            for (a, b), n in zip(self.problem.box, self.problem.shape, strict=True)
        )

    def exact_on(self, coords: Sequence[np.ndarray]) -> np.ndarray:
        """The exact solution on a tensor grid (needs ``problem.exact``)."""
        if self.problem.exact is None:
            raise ValueError("this problem has no exact solution")
        mesh = np.meshgrid(*coords, indexing="ij")
        flat = [jnp.asarray(m.ravel()) for m in mesh]
        return np.asarray(jax.vmap(self.problem.exact)(*flat)).reshape(mesh[0].shape)

    def relative_l2(self, factor: int | None = None) -> float:
        """``‖ū − u⋆‖ / ‖u⋆‖`` on :meth:`test_grid` (needs ``problem.exact``)."""
        coords = self.test_grid(factor)
        exact = self.exact_on(coords)
        return float(np.linalg.norm(self.on_grid(*coords) - exact) / np.linalg.norm(exact))

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """The GP mean of u at the rows of ``df`` (one column per variable of the problem).

        Returns
        -------
        pandas.DataFrame
            Indexed like ``df``, column ``mean``.
        """
        check_frame(df)
        cols = []
        for v in self.problem.variables:
            check_column(df, v, role="coordinate column")
            check_finite(df[v], v, "continuous")
            cols.append(df[v].to_numpy(dtype=np.float64))
        return prediction_frame(df.index, mean=self(*cols))

    def title(self) -> str:
        """One line: dimension, grid, solver, steps, midpoint residual, wall time."""
        t = self.trace
        grid = " × ".join(str(n) for n in self.problem.shape)
        grid = f"{grid}-point" if len(self.problem.shape) == 1 else grid
        return (
            f"GP-HM solution on a {grid} grid ({self.config.method}, {self.config.spectrum} "
            f"mixture): {t.n_adam} Adam steps, returned step {t.best_step}, midpoint residual "
            f"{t.residuals[t.best_step]:.3g}, {self.wall_time:.3g} s"
        )

    def summary(self) -> pd.DataFrame:
        """One row per dimension: points, interval, mixture components, initial top frequency."""
        rows = [
            {
                "variable": v,
                "points": n,
                "lower": a,
                "upper": b,
                "components": self.config.n_components,
                "max_freq": mf,
            }
            for v, n, (a, b), mf in zip(
                self.problem.variables,
                self.problem.shape,
                self.problem.box,
                self.config.max_freq,
                strict=True,
            )
        ]
        return pd.DataFrame(rows).set_index("variable")

    def plot(self, path=None):
        """Solution, exact solution (if known), error and the optimisation history.

        Parameters
        ----------
        path : str or Path, optional
            Also save the figure there.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`bayestensor.plotting.plot_pde_fit`.
        """
        fig = plotting.plot_pde_fit(self)
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def _record(self) -> tuple[dict, dict[str, np.ndarray]]:
        prob = self.problem
        header = {
            "box": [list(map(float, b)) for b in prob.box],
            "variables": list(prob.variables),
            "config": self.config._asdict(),
            "best_step": int(self.trace.best_step),
            "n_adam": int(self.trace.n_adam),
            "step_time": float(self.trace.step_time),
            "wall_time": float(self.wall_time),
        }
        arrays = {f"grid/{d}": np.asarray(x) for d, x in enumerate(prob.grid)}
        arrays["source"] = np.asarray(prob.source)
        arrays["boundary_values"] = np.asarray(prob.boundary_values)
        arrays["trace/losses"] = np.asarray(self.trace.losses)
        arrays["trace/residuals"] = np.asarray(self.trace.residuals)
        arrays.update(io.tree_to_arrays(self.params, "params"))
        return header, arrays

    @classmethod
    def _from_record(cls, header: dict, arrays: dict[str, np.ndarray]) -> PDESolution:
        D = len(header["variables"])
        problem = Problem(
            box=tuple(tuple(float(v) for v in b) for b in header["box"]),
            grid=tuple(jnp.asarray(arrays[f"grid/{d}"]) for d in range(D)),
            operator=None,
            source=jnp.asarray(arrays["source"]),
            boundary_values=jnp.asarray(arrays["boundary_values"]),
            variables=tuple(header["variables"]),
        )
        config = GPHMConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in header["config"].items()}
        )
        params = io.arrays_to_tree(init_params(problem, config), arrays, "params")
        trace = FitTrace(
            arrays["trace/losses"],
            arrays["trace/residuals"],
            int(header["best_step"]),
            int(header["n_adam"]),
            float(header["step_time"]),
        )
        return cls(problem, config, params, trace, float(header["wall_time"]))
