"""PDE problems on a tensor grid: operator, source and Dirichlet data.

A problem is :math:`\\mathcal L[u](x) = f(x)` on a box :math:`Ω = Π_d [a_d, b_d]` with
:math:`u = g` on :math:`∂Ω`, discretised on the tensor grid :math:`X = x^{(1)} × ⋯ × x^{(D)}`
(every coordinate vector includes both ends, so the boundary grid points are those with some
coordinate at an end). The operator is written as a function of a dict of *derivative grids* —
arrays of the grid shape holding u and its derivatives at every grid point:

``"u"``, and for each dimension named ``v`` (``"x"``, ``"y"``, ``"z"``, ``"t"``…): ``"u_v"`` (∂u/∂v)
and ``"u_vv"`` (∂²u/∂v²).

For example the 1-D Poisson equation :math:`u_{xx} = f` is ``lambda g: g["u_xx"]`` and
Allen–Cahn :math:`u_{xx} + u(u^2 - 1) = f` is ``lambda g: g["u_xx"] + g["u"] * (g["u"]**2 - 1)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from bayestensor.pde.checks import (
    _check_callable,
    _check_source_fn,
    _check_variables,
    _count_bad,
    check_box,
    check_grid_sizes,
    check_grid_spans_box,
    variables_of,
)

Operator = Callable[[dict[str, Array]], Array]


def derivative_keys(variables: Sequence[str]) -> tuple[str, ...]:
    """Keys of the derivative grids available to an operator: ``u``, ``u_v``, ``u_vv`` per ``v``."""
    return ("u",) + tuple(k for v in variables for k in (f"u_{v}", f"u_{v}{v}"))


def boundary_mask(shape: Sequence[int]) -> Bool[np.ndarray, "*shape"]:
    """Grid points with at least one coordinate at an end of its range.

    Parameters
    ----------
    shape : sequence of int
        Grid shape ``(n_1, …, n_D)``.

    Returns
    -------
    Bool[np.ndarray, "*shape"]
        True on the boundary of the grid (a NumPy array: static under ``jit``).
    """
    mask = np.zeros(tuple(shape), bool)
    for d, n in enumerate(shape):
        edge = [slice(None)] * len(shape)
        for i in (0, n - 1):
            edge[d] = i
            mask[tuple(edge)] = True
    return mask


def apply_operator(
    operator: Operator, grids: dict[str, Array], shape: tuple[int, ...]
) -> Float[Array, "*shape"]:
    """``operator(grids)`` on concrete grids, or a ValueError unless it gives one value per point.

    Run once before anything is traced, so that an operator with a wrong key, a wrong output
    shape (a scalar, a transposed grid) or another error is reported here.
    """
    try:
        out = operator(grids)
    except Exception as e:
        raise ValueError(
            f"operator failed on the derivative grids (keys {sorted(grids)}, shape {shape}): "
            f"{type(e).__name__}: {e}"
        ) from e
    if tuple(np.shape(out)) != tuple(shape):
        raise ValueError(
            f"operator must return an array of the grid shape {tuple(shape)} (one value per "
            f"grid point), got shape {tuple(np.shape(out))}"
        )
    out = jnp.asarray(out)
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise ValueError(
            f"operator must return real numbers (one per grid point), got dtype {out.dtype}"
        )
    return out


def _grid_points(grid: Sequence[Float[Array, " n_d"]]) -> Float[Array, "N D"]:
    """All grid points, row-major (C) order, as an ``(N, D)`` array."""
    mesh = jnp.meshgrid(*grid, indexing="ij")
    return jnp.stack([m.ravel() for m in mesh], axis=-1)


def _point_derivatives(
    exact_u: Callable[..., Array], variables: Sequence[str], p: Float[Array, " D"]
) -> dict[str, Float[Array, ""]]:
    """``u``, ``u_v`` and ``u_vv`` of ``exact_u`` at one point ``p`` by ``jax.grad``."""

    def u(q):
        return exact_u(*q)

    g = jax.grad(u)
    out = {"u": u(p)}
    for d, v in enumerate(variables):
        out[f"u_{v}"] = g(p)[d]
        out[f"u_{v}{v}"] = jax.grad(lambda q, d=d: g(q)[d])(p)[d]
    return out


class Problem(NamedTuple):
    """A PDE ``L[u] = f`` on a box with Dirichlet data, discretised on a tensor grid.

    Attributes
    ----------
    box : tuple of (float, float)
        ``((a_1, b_1), …, (a_D, b_D))``.
    grid : tuple of Float[Array, "n_d"]
        Sorted 1-D coordinates per dimension, including both ends.
    operator : callable
        ``operator(grids) -> Float[Array, "*shape"]``, the left-hand side ``L[u]`` from the dict
        of derivative grids (see the module docstring).
    source : Float[Array, "*shape"]
        ``f`` at every grid point.
    boundary_values : Float[Array, " n_boundary"]
        ``g`` at the boundary grid points, in the row-major order of :attr:`boundary_mask`.
    variables : tuple of str
        Names of the dimensions (keys of the derivative grids).
    exact : callable or None
        The exact solution ``u(x_1, …, x_D)`` (scalars in, scalar out) when known.
    source_fn : callable or None
        ``f(x_1, …, x_D)`` (scalars in, scalar out) when known; the solver then checks the PDE
        residual between the grid points (early stopping) without using the exact solution.
    """

    box: tuple[tuple[float, float], ...]
    grid: tuple[Float[Array, " n_d"], ...]
    operator: Operator
    source: Float[Array, "*shape"]
    boundary_values: Float[Array, " n_boundary"]
    variables: tuple[str, ...]
    exact: Callable[..., Array] | None = None
    source_fn: Callable[..., Array] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(n_1, …, n_D)``."""
        return tuple(int(g.shape[0]) for g in self.grid)

    @property
    def boundary_mask(self) -> Bool[np.ndarray, "*shape"]:
        """Boundary grid points (see :func:`boundary_mask`)."""
        return boundary_mask(self.shape)

    def exact_on_grid(self) -> Float[Array, "*shape"]:
        """The exact solution at every grid point (needs :attr:`exact`)."""
        if self.exact is None:
            raise ValueError("this problem has no exact solution")
        pts = _grid_points(self.grid)
        return jax.vmap(lambda p: self.exact(*p))(pts).reshape(self.shape)

    def validate(self) -> Problem:
        """Check a (possibly hand-built) problem before solving it; return it (unchanged but
        for grid coordinates given as lists, which are converted to arrays).

        Raises
        ------
        ValueError
            Naming the offending field: a bad box, grid coordinates that are not finite and
            increasing or do not run from the box's lower to its upper bound, bad (or colliding)
            variables, a non-callable operator or one that does not give one value per grid
            point, a source or boundary values of the wrong shape or with NaN or inf, or a
            ``source_fn`` that fails, gives the wrong shape or NaN / inf at the cell midpoints.
        """
        box = check_box(self.box)
        D = len(box)
        try:
            coords = [np.asarray(g) for g in self.grid]
        except TypeError:
            raise ValueError(f"grid must be {D} 1-D coordinate arrays, got {self.grid!r}") from None
        if len(coords) != D or any(c.ndim != 1 or c.shape[0] < 3 for c in coords):
            raise ValueError(
                f"grid must be {D} 1-D coordinate arrays (one per box dimension) of at least 3 "
                f"points, got shapes {[np.shape(c) for c in coords]}"
            )
        for d, c in enumerate(coords):
            if not np.issubdtype(c.dtype, np.number) or np.iscomplexobj(c):
                raise ValueError(f"grid[{d}] must hold real numbers, got dtype {c.dtype}")
            if not np.all(np.isfinite(c)) or not np.all(np.diff(c) > 0):
                from bayestensor.pde import scaling  # (it imports this module)

                floating = np.issubdtype(c.dtype, np.floating) and np.all(np.isfinite(c))
                why = floating and scaling.offset_message(d, *box[d], c.shape[0], c.dtype)
                raise ValueError(why or f"grid[{d}] must be finite and strictly increasing")
        check_grid_spans_box(box, coords)
        if not all(hasattr(g, "shape") for g in self.grid):
            self = self._replace(grid=tuple(jnp.asarray(c) for c in coords))
        _check_variables(self.variables, D)
        _check_callable(
            "operator", self.operator, "a function of the dict of derivative grids (e.g. laplacian)"
        )
        for name in ("exact", "source_fn"):
            if getattr(self, name) is not None:
                _check_callable(name, getattr(self, name), "a function of the coordinates or None")
        shape = self.shape
        if np.shape(self.source) != shape:
            raise ValueError(
                f"source must have the grid shape {shape}, got shape {np.shape(self.source)}"
            )
        n_bad = _count_bad(self.source)
        if n_bad:
            raise ValueError(f"source is NaN or inf at {n_bad} of {np.size(self.source)} points")
        n_edge = int(self.boundary_mask.sum())
        if np.shape(self.boundary_values) != (n_edge,):
            raise ValueError(
                f"boundary_values must hold one value per boundary grid point ({n_edge},), got "
                f"shape {np.shape(self.boundary_values)}"
            )
        n_bad = _count_bad(self.boundary_values)
        if n_bad:
            raise ValueError(
                f"boundary values (boundary_values) are NaN or inf at {n_bad} of {n_edge} "
                "boundary points"
            )
        dtype = jnp.asarray(self.source).dtype
        # float64 arrays (a float64 build in a float32 session) are checked in float64
        wide = any(np.asarray(a).dtype == np.float64 for a in (*self.grid, self.source))
        with jax.enable_x64(True) if wide else contextlib.nullcontext():
            with jax.ensure_compile_time_eval():
                zeros = {k: jnp.zeros(shape, dtype) for k in derivative_keys(self.variables)}
                apply_operator(self.operator, zeros, shape)
            if self.source_fn is not None:
                _check_source_fn(self.source_fn, self.grid)
        return self

    def astype(self, dtype: str) -> Problem:
        """The problem with its arrays in ``dtype`` (``"float64"`` or ``"float32"``).

        Call it where JAX computes in ``dtype`` (:func:`bayestensor.driver.precision`). A
        manufactured problem built while JAX was in float32 is rebuilt from its exact solution
        (grid, source and boundary values computed afresh in ``dtype``, not float32 values
        widened) when that reproduces its arrays; any other problem has its arrays converted.
        """
        target = jnp.dtype(dtype)
        arrays = (*self.grid, self.source, self.boundary_values)
        if all(jnp.asarray(a).dtype == target for a in arrays):
            return self
        if self.exact is not None and jnp.finfo(target).bits > _bits(arrays):
            again = Problem.manufactured(
                self.operator, self.exact, self.box, self.shape, self.variables
            )
            if _close(again, self):
                return again
        return self._replace(
            grid=tuple(jnp.asarray(np.asarray(x), target) for x in self.grid),
            source=jnp.asarray(np.asarray(self.source), target),
            boundary_values=jnp.asarray(np.asarray(self.boundary_values), target),
        )

    @classmethod
    def manufactured(
        cls,
        operator: Operator,
        exact_u: Callable[..., Array],
        box: Sequence[tuple[float, float]],
        grid: int | Sequence[int],
        variables: Sequence[str] | None = None,
    ) -> Problem:
        """Problem whose source and boundary data come from a known solution.

        .. math:: f = \\mathcal L[u^\\star] \\text{ on the grid}, \\qquad
            g = u^\\star \\text{ on the boundary grid points},

        with the derivatives of :math:`u^\\star` taken by ``jax.grad`` at each grid point.
        A source that is round-off of cancelling terms (a homogeneous equation) is set to zero.

        Parameters
        ----------
        operator : callable
            ``L`` as a function of the derivative grids.
        exact_u : callable
            ``u⋆(x_1, …, x_D)``, scalars in, scalar out, differentiable by JAX.
        box : sequence of (float, float)
            Bounds per dimension.
        grid : int or sequence of int
            Number of equally spaced points per dimension (a single int is used for all).
        variables : sequence of str, optional
            Names of the dimensions; default the first D of ``("x", "y", "z", "t")``.

        Returns
        -------
        Problem
            In JAX's default precision; in float64 where float32 numbers cannot resolve the
            grid (a box far from 0 relative to its width, e.g. ``[(1e6, 1e6 + 1)]``).

        Raises
        ------
        ValueError
            Before anything is traced, naming the argument: a non-callable ``operator`` or
            ``exact_u``, a bad ``box`` (not (lower, upper) pairs, non-finite, lower ≥ upper),
            ``grid`` not an int ≥ 3 or one per dimension, bad ``variables``, ``exact_u`` not
            scalar or NaN / inf on the grid, an operator that fails on the derivative grids or
            does not return the grid shape, or a source that is NaN / inf.
        """
        _check_callable(
            "operator", operator, "a function of the dict of derivative grids (e.g. laplacian)"
        )
        _check_callable(
            "exact_u", exact_u, "the exact solution u(x_1, …, x_D), scalars in, scalar out"
        )
        box = check_box(box)
        D = len(box)
        sizes = check_grid_sizes(grid, D)
        variables = _check_variables(variables, D)
        from bayestensor.pde import scaling  # (it imports this module)

        messages = [
            scaling.offset_message(d, *ab, n, jnp.result_type(float))
            for d, (ab, n) in enumerate(zip(box, sizes, strict=True))
        ]
        if any(messages) and jnp.result_type(float) != jnp.float64:  # built in float64 instead
            with jax.enable_x64(True):
                return cls.manufactured(operator, exact_u, box, sizes, variables)
        if any(messages):
            raise ValueError(next(m for m in messages if m))
        coords = tuple(jnp.linspace(a, b, n) for (a, b), n in zip(box, sizes, strict=True))
        mid = [0.5 * (a + b) for a, b in box]
        try:
            u_mid = exact_u(*mid)
        except Exception as e:
            raise ValueError(
                f"exact_u failed on the centre of the box, called with {D} scalar arguments: "
                f"{type(e).__name__}: {e}"
            ) from e
        if np.shape(u_mid) != ():
            raise ValueError(
                f"exact_u must return a scalar for scalar inputs, got shape {np.shape(u_mid)}"
            )

        def derivs(p):
            return _point_derivatives(exact_u, variables, p)

        def source_fn(*xs):
            p = jnp.stack(jnp.broadcast_arrays(*(jnp.asarray(x, float) for x in xs)), -1)
            flat = p.reshape(-1, D)
            out = operator(jax.vmap(derivs)(flat))
            return out.reshape(p.shape[:-1])

        pts = _grid_points(coords)
        expected = (
            "a JAX-traceable real function u(x_1, …, x_D) of the variables (written with jnp, "
            "not np or math), returning one real value per point"
        )
        try:
            derived = jax.vmap(derivs)(pts)
        except Exception as e:
            raise ValueError(
                f"exact_u must be {expected}; differentiating it by jax.grad failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        if any(not jnp.issubdtype(a.dtype, jnp.floating) for a in derived.values()):
            raise ValueError(f"exact_u must be {expected}, got dtype {derived['u'].dtype}")
        grids = {k: a.reshape(sizes) for k, a in derived.items()}
        mask = boundary_mask(sizes)
        n_bad = _count_bad(grids["u"])
        if n_bad:
            n_edge = _count_bad(grids["u"][mask])
            raise ValueError(
                f"exact_u is NaN or inf at {n_bad} of {mask.size} grid points ({n_edge} of them "
                "on the boundary, where they would be the boundary values)"
            )
        source = apply_operator(operator, grids, sizes)
        n_bad = _count_bad(source)
        if n_bad:
            raise ValueError(
                f"source (the operator applied to exact_u) is NaN or inf at {n_bad} of "
                f"{source.size} grid points; check the operator and exact_u's derivatives there"
            )
        source = _zero_round_off(operator, grids, source)
        boundary_values = grids["u"][mask]
        return cls(box, coords, operator, source, boundary_values, variables, exact_u, source_fn)


def _bits(arrays) -> int:
    """The widest floating-point width among ``arrays``."""
    return max(jnp.finfo(jnp.asarray(a).dtype).bits for a in arrays)


def _close(a: Problem, b: Problem, rtol: float = 1e-3) -> bool:
    """Whether two discretisations of one problem agree to ``rtol`` of each array's scale.

    Float32 rounding of the grid moves a high-frequency source by ~1e-4 of its scale; a source
    that does not come from ``exact`` at all is far outside this.
    """
    pairs = [*zip(a.grid, b.grid, strict=True), (a.source, b.source)]
    pairs.append((a.boundary_values, b.boundary_values))
    for x, y in pairs:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return False
        scale = 1.0 + max(np.max(np.abs(x), initial=0.0), np.max(np.abs(y), initial=0.0))
        if np.max(np.abs(x - y), initial=0.0) > rtol * scale:
            return False
    return True


#: A manufactured source below this many machine epsilons of the operator's largest term is
#: round-off of a homogeneous equation, and is set to zero.
ROUND_OFF_EPS = 1e3


def _zero_round_off(operator: Operator, grids: dict[str, Array], source: Array) -> Array:
    """``source``, or zeros where it is round-off of cancelling terms ``Σ_k |∂L/∂k · k|``
    (weighting the residual by its RMS made Bratu's solve diverge to 1e14)."""
    _, lin = jax.linearize(operator, grids)
    zeros = {k: jnp.zeros_like(a) for k, a in grids.items()}
    terms = sum(jnp.abs(lin({**zeros, k: a})) for k, a in grids.items())
    eps = float(jnp.finfo(source.dtype).eps)
    small = float(jnp.max(jnp.abs(source))) <= ROUND_OFF_EPS * eps * float(jnp.max(terms))
    return jnp.zeros_like(source) if small else source


def laplacian(grids: dict[str, Array]) -> Array:
    """``Σ_v u_vv``, the Laplacian, from the derivative grids (any dimension)."""
    return sum(grids[f"u_{v}{v}"] for v in variables_of(tuple(grids)))


def allen_cahn(grids: dict[str, Array]) -> Array:
    """``Δu + u(u² − 1)``, the (stationary) Allen–Cahn operator of the benchmarks."""
    u = grids["u"]
    return laplacian(grids) + u * (u**2 - 1.0)


def advection(beta: float = 200.0) -> Operator:
    """``β u_x + u_y`` (y plays time), the advection operator of the benchmarks."""

    def op(grids):
        return beta * grids["u_x"] + grids["u_y"]

    return op


def poisson_1d(
    exact_u: Callable[..., Array] | None = None,
    box: tuple[float, float] = (0.0, 2.0 * np.pi),
    grid: int = 100,
) -> Problem:
    """1-D Poisson problem ``u_xx = f`` manufactured from ``exact_u`` (default ``sin(6x)``).

    Parameters
    ----------
    exact_u : callable, optional
        The solution; default :math:`u(x) = \\sin(6x)`.
    box : (float, float), default (0, 2π)
        The interval.
    grid : int, default 100
        Number of collocation points, including both ends.

    Returns
    -------
    Problem
    """
    exact_u = (lambda x: jnp.sin(6.0 * x)) if exact_u is None else exact_u
    return Problem.manufactured(laplacian, exact_u, [box], grid)


def allen_cahn_1d(
    exact_u: Callable[..., Array],
    box: tuple[float, float] = (0.0, 2.0 * np.pi),
    grid: int = 400,
) -> Problem:
    """1-D Allen–Cahn problem ``u_xx + u(u² − 1) = f`` manufactured from ``exact_u``."""
    return Problem.manufactured(allen_cahn, exact_u, [box], grid)


def poisson_2d(
    exact_u: Callable[..., Array],
    box: tuple[float, float] = (0.0, 2.0 * np.pi),
    grid: int | Sequence[int] = 100,
) -> Problem:
    """2-D Poisson problem ``u_xx + u_yy = f`` on ``box × box`` manufactured from ``exact_u``."""
    return Problem.manufactured(laplacian, exact_u, [box, box], grid)


#: The benchmark problems of issue 5: name → (operator, exact solution, box, default grid).
#: Grids give about four or more points per period of the highest frequency.
BENCHMARKS: dict[str, tuple[Operator, Callable[..., Array], tuple, tuple[int, ...]]] = {
    "poisson_1d_sin100": (laplacian, lambda x: jnp.sin(100 * x), ((0.0, 2 * np.pi),), (400,)),
    "poisson_1d_sin6cos100": (
        laplacian,
        lambda x: jnp.sin(6 * x) * jnp.cos(100 * x),
        ((0.0, 2 * np.pi),),
        (400,),
    ),
    "poisson_1d_xsin200": (laplacian, lambda x: x * jnp.sin(200 * x), ((0.0, 2 * np.pi),), (800,)),
    "poisson_1d_multiscale": (
        laplacian,
        lambda x: jnp.sin(x) + 0.1 * jnp.sin(20 * x) + 0.05 * jnp.cos(100 * x),
        ((0.0, 1.0),),
        (400,),
    ),
    "poisson_1d_sin500": (
        laplacian,
        lambda x: jnp.sin(500 * x) - 2 * (x - 0.5) ** 2,
        ((0.0, 1.0),),
        (400,),
    ),
    "allen_cahn_1d_sin100": (allen_cahn, lambda x: jnp.sin(100 * x), ((0.0, 2 * np.pi),), (400,)),
    "allen_cahn_1d_sin6cos100": (
        allen_cahn,
        lambda x: jnp.sin(6 * x) * jnp.cos(100 * x),
        ((0.0, 2 * np.pi),),
        (400,),
    ),
    "poisson_2d_sin100": (
        laplacian,
        lambda x, y: jnp.sin(100 * x) * jnp.sin(100 * y),
        ((0.0, 2 * np.pi),) * 2,
        (400, 400),
    ),
    "poisson_2d_sin6cos20": (
        laplacian,
        lambda x, y: jnp.sin(6 * x) * jnp.cos(20 * x) + jnp.sin(6 * y) * jnp.cos(20 * y),
        ((0.0, 2 * np.pi),) * 2,
        (128, 128),
    ),
    "allen_cahn_2d": (
        allen_cahn,
        lambda x, y: (
            (jnp.sin(x) + 0.1 * jnp.sin(20 * x) + jnp.cos(100 * x))
            * (jnp.sin(y) + 0.1 * jnp.sin(20 * y) + jnp.cos(100 * y))
        ),
        ((0.0, 1.0),) * 2,
        (50, 50),  # ≈ 3 points per period of cos 100x; the dense solver keeps the GP prior
    ),
    "advection_2d": (
        advection(200.0),
        lambda x, y: jnp.sin(x - 200 * y),
        ((0.0, 1.0),) * 2,
        (32, 160),
    ),
}


def benchmark(name: str, grid: int | Sequence[int] | None = None) -> Problem:
    """A ready-made benchmark problem (see :data:`BENCHMARKS`).

    Parameters
    ----------
    name : str
        A key of :data:`BENCHMARKS`, e.g. ``"poisson_1d_sin100"``.
    grid : int or sequence of int, optional
        Points per dimension; default the problem's own grid.

    Returns
    -------
    Problem
        Manufactured from the exact solution (source and Dirichlet data on every edge).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"name must be one of {sorted(BENCHMARKS)}, got {name!r}")
    operator, exact_u, box, default_grid = BENCHMARKS[name]
    return Problem.manufactured(operator, exact_u, box, default_grid if grid is None else grid)


#: Names of the seeded random problem family, kept in :mod:`bayestensor.pde.family` and
#: reachable here too (``bt.pde.problems.random_problem``).
_FAMILY = ("RANDOM_KINDS", "POINTS_PER_PERIOD", "FREQUENCY_RANGE", "random_problem")


def __getattr__(name: str):
    if name in _FAMILY:
        from bayestensor.pde import family

        return getattr(family, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
