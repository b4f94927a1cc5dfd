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

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

#: Default names of the input dimensions, in order.
VARIABLES = ("x", "y", "z", "t")

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
        """
        box = tuple((float(a), float(b)) for a, b in box)
        D = len(box)
        sizes = (int(grid),) * D if np.isscalar(grid) else tuple(int(n) for n in grid)
        if len(sizes) != D:
            raise ValueError(f"grid gives {len(sizes)} sizes for a box of dimension {D}")
        if any(n < 3 for n in sizes):
            raise ValueError(f"need at least 3 points per dimension, got {sizes}")
        variables = VARIABLES[:D] if variables is None else tuple(variables)
        if len(variables) != D:
            raise ValueError(f"need {D} variable names, got {variables}")
        coords = tuple(jnp.linspace(a, b, n) for (a, b), n in zip(box, sizes, strict=True))

        def derivs(p):
            return _point_derivatives(exact_u, variables, p)

        def source_fn(*xs):
            p = jnp.stack(jnp.broadcast_arrays(*(jnp.asarray(x, float) for x in xs)), -1)
            flat = p.reshape(-1, D)
            out = operator(jax.vmap(derivs)(flat))
            return out.reshape(p.shape[:-1])

        pts = _grid_points(coords)
        grids = {k: a.reshape(sizes) for k, a in jax.vmap(derivs)(pts).items()}
        source = operator(grids)
        boundary_values = grids["u"][boundary_mask(sizes)]
        return cls(box, coords, operator, source, boundary_values, variables, exact_u, source_fn)


def laplacian(grids: dict[str, Array]) -> Array:
    """``Σ_v u_vv``, the Laplacian, from the derivative grids (any dimension)."""
    return sum(a for k, a in grids.items() if len(k) == 4 and k[2] == k[3])


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
