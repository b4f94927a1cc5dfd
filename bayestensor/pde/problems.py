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
    """

    box: tuple[tuple[float, float], ...]
    grid: tuple[Float[Array, " n_d"], ...]
    operator: Operator
    source: Float[Array, "*shape"]
    boundary_values: Float[Array, " n_boundary"]
    variables: tuple[str, ...]
    exact: Callable[..., Array] | None = None

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

        def u(p):
            return exact_u(*p)

        def derivs(p):
            g = jax.grad(u)
            out = {"u": u(p)}
            for d, v in enumerate(variables):
                out[f"u_{v}"] = g(p)[d]
                out[f"u_{v}{v}"] = jax.grad(lambda q, d=d: g(q)[d])(p)[d]
            return out

        pts = _grid_points(coords)
        grids = {k: a.reshape(sizes) for k, a in jax.vmap(derivs)(pts).items()}
        source = operator(grids)
        boundary_values = grids["u"][boundary_mask(sizes)]
        return cls(box, coords, operator, source, boundary_values, variables, exact_u)


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
    return Problem.manufactured(lambda g: g["u_xx"], exact_u, [box], grid)
