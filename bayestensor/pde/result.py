"""The solution of a PDE problem: the GP mean on the grid and anywhere in the box, the fit's
record, and the shared result contract (repr, summary, save / load).
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float

from bayestensor import io
from bayestensor.checks import check_column, check_finite, check_frame, is_int
from bayestensor.driver import DTYPES, precision
from bayestensor.pde.branches import NEAR_SOLUTION
from bayestensor.pde.checks import _check_variables, check_grid_spans_box, edge_tolerance
from bayestensor.pde.config import (
    FitTrace,
    GPHMConfig,
    GPHMParams,
    init_params,
    resolve_config,
)
from bayestensor.pde.factors import dimension_factors, solution_weights
from bayestensor.pde.inference import cross_kernel
from bayestensor.pde.problems import Problem
from bayestensor.pde.reliability import Reliability
from bayestensor.results import Result, prediction_frame
from bayestensor.tensor import multi_mode_dot


def _scoped(method):
    """Run a method of :class:`PDESolution` in the precision its solve ran in."""

    @functools.wraps(method)
    def inner(self, *args, **kwargs):
        with precision(self.config.dtype):
            return method(self, *args, **kwargs)

    return inner


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
    reliability : Reliability or None
        How far the solution can be trusted, measured without the exact solution
        (:mod:`bayestensor.pde.reliability`); ``None`` for :func:`bayestensor.pde.fit` results
        wrapped by hand.
    """

    problem: Problem
    config: GPHMConfig
    params: GPHMParams
    trace: FitTrace
    wall_time: float
    reliability: Reliability | None = None

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

    @_scoped
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

    @_scoped
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

        Raises
        ------
        ValueError
            For NaN or inf coordinates, or points outside the problem's box (beyond
            :func:`~bayestensor.pde.checks.edge_tolerance`): the GP mean decays to 0 away
            from the grid, so it is no extrapolation.
        """
        D = len(self.problem.shape)
        if len(xs) != D:
            raise ValueError(f"give {D} coordinate arrays (one per dimension), got {len(xs)}")
        try:
            pts = np.broadcast_arrays(*(np.asarray(x, float) for x in xs))
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"coordinates must be real numbers broadcasting against each other: {e}"
            ) from None
        _check_in_box(pts, self.problem.box, self.problem.variables)
        A = self._weights()
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
        1-D, 2 otherwise); ``factor`` must be a positive int (1 is the collocation grid)."""
        if factor is None:
            factor = 4 if len(self.problem.shape) == 1 else 2
        elif not is_int(factor) or factor < 1:
            raise ValueError(
                f"factor must be a positive int (points per grid cell of the test grid), "
                f"got {factor!r}"
            )
        return tuple(
            np.linspace(a, b, int(factor) * (n - 1) + 1)
            for (a, b), n in zip(self.problem.box, self.problem.shape, strict=True)
        )

    @_scoped
    def exact_on(self, coords: Sequence[np.ndarray]) -> np.ndarray:
        """The exact solution on a tensor grid (needs ``problem.exact``)."""
        if self.problem.exact is None:
            raise ValueError("this problem has no exact solution")
        mesh = np.meshgrid(*coords, indexing="ij")
        flat = [jnp.asarray(m.ravel()) for m in mesh]
        return np.asarray(jax.vmap(self.problem.exact)(*flat)).reshape(mesh[0].shape)

    def relative_l2(self, factor: int | None = None) -> float:
        """``‖ū − u⋆‖ / ‖u⋆‖`` on :meth:`test_grid` (needs ``problem.exact``).

        Parameters
        ----------
        factor : int, optional
            Refinement of the test grid (a positive int, see :meth:`test_grid`).
        """
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
        rel = self.reliability
        estimate = "" if rel is None else f", estimated error {rel.error_estimate:.2g}"
        if rel is not None and rel.other_solution < NEAR_SOLUTION:
            estimate += f", another solution {rel.other_solution:.0%} away"
        return (
            f"GP-HM solution on a {grid} grid ({self.config.method}, {self.config.spectrum} "
            f"mixture, {self.config.dtype}): {t.n_adam} Adam steps, returned step "
            f"{t.best_step}, midpoint residual {t.residuals[t.best_step]:.3g}{estimate}, "
            f"{self.wall_time:.3g} s"
        )

    def summary(self) -> pd.DataFrame:
        """One row per dimension: points, interval, mixture components, initial top frequency;
        then the reliability check (:mod:`bayestensor.pde.reliability`), the same on every row:
        ``error_estimate``, ``residual``, ``boundary``, ``high_frequency``, ``other_solution``,
        ``between_points``."""
        rel = self.reliability
        checks = dict.fromkeys(Reliability._fields, np.nan) if rel is None else rel._asdict()
        rows = [
            {
                "variable": v,
                "points": n,
                "lower": a,
                "upper": b,
                "components": self.config.n_components,
                "max_freq": mf,
                **checks,
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
        from bayestensor import plotting

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
            "reliability": None if self.reliability is None else self.reliability._asdict(),
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
        io.check_fields(header, (*io.BASE_FIELDS, *_HEADER, "reliability"))
        h = {k: io.field(header, k, tp) for k, tp in _HEADER.items()}
        rel = header.get("reliability")
        h["reliability"] = None if rel is None else io.record(Reliability, rel, "reliability")
        box, variables = _box(h["box"], h["variables"])
        config = io.record(GPHMConfig, h["config"], "config")
        if config.dtype not in DTYPES:
            raise ValueError(f"saved field config.dtype must be one of {DTYPES}")
        with precision(config.dtype):
            return cls._from_checked(h, box, variables, config, arrays)

    @classmethod
    def _from_checked(cls, h, box, variables, config, arrays) -> PDESolution:
        # shapes only until the arrays' declared shapes are checked against them
        D = len(variables)
        shape = tuple(_grid_length(arrays, d) for d in range(D))
        stub = Problem(
            box=box,
            grid=tuple(jax.ShapeDtypeStruct((n,), jnp.result_type(float)) for n in shape),
            operator=None,
            source=jax.ShapeDtypeStruct(shape, jnp.result_type(float)),
            boundary_values=None,
            variables=variables,
        )
        try:
            resolved = resolve_config(stub, config)
        except ValueError as err:
            raise ValueError(f"saved field config: {err}") from None
        if resolved != config:
            raise ValueError("saved field config is not resolved (max_freq, method) for its grid")
        template = jax.eval_shape(lambda: init_params(stub, config))
        L = (io.declared_shape(arrays, "trace/losses") or (0,))[:1] or (0,)
        if not 1 <= L[0] <= config.n_steps + config.lbfgs_steps + 1:
            raise ValueError(
                f"saved array 'trace/losses' has {L[0]} steps; config.n_steps and "
                "config.lbfgs_steps allow 1..n_steps + lbfgs_steps + 1"
            )
        inner = math.prod(max(n - 2, 0) for n in shape)
        expected = {f"grid/{d}": io.Expect((n,)) for d, n in enumerate(shape)}
        expected["source"] = io.Expect(shape)
        expected["boundary_values"] = io.Expect((math.prod(shape) - inner,))
        expected["trace/losses"] = io.Expect(L, finite=False)
        expected["trace/residuals"] = io.Expect(L, finite=False)
        expected.update(io.tree_layout(template, "params"))
        checked = io.check_arrays(arrays, expected)
        for d in range(D):
            if np.any(np.diff(checked[f"grid/{d}"]) <= 0):
                raise ValueError(f"saved array 'grid/{d}' must be strictly increasing")
        try:
            check_grid_spans_box(box, [checked[f"grid/{d}"] for d in range(D)])
        except ValueError as e:
            raise ValueError(f"saved field box and arrays 'grid/*' disagree: {e}") from None
        if not 0 <= h["best_step"] < L[0] or not 0 <= h["n_adam"] <= config.n_steps:
            raise ValueError("saved fields best_step, n_adam out of range of the saved trace")
        problem = Problem(
            box=box,
            grid=tuple(jnp.asarray(checked[f"grid/{d}"]) for d in range(D)),
            operator=None,
            source=jnp.asarray(checked["source"]),
            boundary_values=jnp.asarray(checked["boundary_values"]),
            variables=variables,
        )
        params = io.tree_from_arrays(template, checked, "params")
        trace = FitTrace(
            checked["trace/losses"],
            checked["trace/residuals"],
            h["best_step"],
            h["n_adam"],
            float(h["step_time"]),
        )
        return cls(problem, config, params, trace, float(h["wall_time"]), h["reliability"])


#: Fields of a saved PDE header (besides format, version, kind) and their JSON types.
_HEADER = {
    "box": list[tuple[float, float]],
    "variables": list[str],
    "config": dict,
    "best_step": int,
    "n_adam": int,
    "step_time": float,
    "wall_time": float,
}


def _box(box: tuple, variables: list) -> tuple[tuple, tuple]:
    """The saved box (finite, lower < upper) and its distinct variable names, one per dimension."""
    if not variables or len(set(variables)) != len(variables) or len(box) != len(variables):
        raise ValueError(
            f"saved fields box and variables must give one interval per distinct variable, "
            f"got {len(box)} intervals for {variables}"
        )
    try:
        _check_variables(variables, len(variables))
    except ValueError as e:
        raise ValueError(f"saved field variables: {e}") from None
    box = tuple((float(a), float(b)) for a, b in box)
    if not all(np.isfinite(a) and np.isfinite(b) and a < b for a, b in box):
        raise ValueError(f"saved field box must hold finite intervals lower < upper, got {box}")
    return box, tuple(variables)


def _check_in_box(
    pts: Sequence[np.ndarray], box: Sequence[tuple[float, float]], variables: Sequence[str]
) -> None:
    """A ValueError for NaN / inf coordinates or points outside ``box`` (naming the variable)."""
    for x, (a, b), v in zip(pts, box, variables, strict=True):
        n_bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if n_bad:
            raise ValueError(f"coordinate {v!r} has {n_bad} NaN or inf values")
        tol = edge_tolerance(a, b)  # (float32 round-off: points from any user's grid)
        outside = (x < a - tol) | (x > b + tol)
        if np.any(outside):
            raise ValueError(
                f"coordinate {v!r} has {int(outside.sum())} values outside the box "
                f"[{a!r}, {b!r}] (e.g. {float(x[outside].flat[0])!r}); the solution is defined "
                "on the box only"
            )


def _grid_length(arrays, d: int) -> int:
    """Declared length of ``grid/{d}`` (at least 2 points), before reading it."""
    shape = io.declared_shape(arrays, f"grid/{d}")
    if shape is None or len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"saved array 'grid/{d}' must be a 1-D grid of ≥ 2 points, got {shape}")
    return shape[0]
