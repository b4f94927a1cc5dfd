"""Checks of a PDE problem's inputs (:mod:`bayestensor.pde.problems`): the box, the grid sizes
and coordinates, the variable names and the user's functions, each a ``ValueError`` naming the
argument and what was expected."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from bayestensor.checks import is_int

#: Default names of the input dimensions, in order.
VARIABLES = ("x", "y", "z", "t")


def check_box(box: object) -> tuple[tuple[float, float], ...]:
    """``box`` as ``((a_1, b_1), …)`` of floats, or a ValueError naming what is wrong.

    Every bound must be finite and every lower bound below its upper bound.
    """
    expected = (
        "a non-empty list of (lower, upper) pairs, one per dimension "
        "(for one dimension write [(a, b)])"
    )
    try:
        pairs = [tuple(b) for b in box]  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(f"box must be {expected}, got {box!r}") from None
    if not pairs or isinstance(box, str) or any(len(p) != 2 for p in pairs):
        raise ValueError(f"box must be {expected}, got {box!r}")
    out = []
    for d, pair in enumerate(pairs):
        try:
            a, b = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise ValueError(f"box bounds must be numbers, got {pair!r} in dimension {d}") from None
        if not (np.isfinite(a) and np.isfinite(b)):
            raise ValueError(f"box bounds must be finite, got {pair!r} in dimension {d}")
        if not a < b:
            raise ValueError(
                f"box: lower bound must be below upper bound, got {pair!r} in dimension {d}"
            )
        out.append((a, b))
    return tuple(out)


def check_grid_sizes(grid: object, D: int) -> tuple[int, ...]:
    """Points per dimension from ``grid`` (one int for all or one per dimension), each ≥ 3."""
    expected = f"an int ≥ 3 or one int ≥ 3 per dimension ({D})"
    if is_int(grid):
        sizes = (int(grid),) * D  # type: ignore[call-overload]
    else:
        try:
            entries = [] if isinstance(grid, str) else list(grid)  # type: ignore[call-overload]
        except TypeError:
            entries = []
        if not entries or not all(is_int(n) for n in entries):
            raise ValueError(f"grid must be {expected}, got {grid!r}")
        sizes = tuple(int(n) for n in entries)
    if len(sizes) != D:
        raise ValueError(f"grid gives {len(sizes)} sizes for a box of dimension {D}")
    if any(n < 3 for n in sizes):
        raise ValueError(f"grid needs at least 3 points per dimension, got {sizes}")
    return sizes


def _check_variables(variables: Sequence[str] | None, D: int) -> tuple[str, ...]:
    """Names of the ``D`` dimensions: the default ones, or ``D`` distinct strings."""
    names = VARIABLES[:D] if variables is None else tuple(variables)
    if len(names) != D or not all(isinstance(v, str) and v for v in names):
        raise ValueError(f"variables must be {D} names (str), one per dimension, got {names}")
    if len(set(names)) != D:
        raise ValueError(f"variables must be distinct, got {names}")
    owners: dict[str, list[str]] = {}
    for v in names:
        for k, what in ((f"u_{v}", f"∂u/∂{v}"), (f"u_{v}{v}", f"∂²u/∂{v}²")):
            owners.setdefault(k, []).append(what)
    clashes = {k: w for k, w in owners.items() if len(w) > 1}
    if clashes:
        k, w = next(iter(clashes.items()))
        raise ValueError(
            f"variables {names} give colliding derivative keys: {k!r} would be both "
            f"{' and '.join(w)}; rename them (e.g. so that no name is another one doubled)"
        )
    return names


def variables_of(keys: Sequence[str]) -> tuple[str, ...]:
    """The variables whose derivative grids have exactly ``keys`` (see :func:`derivative_keys`).

    A key ``u_s`` with the shortest unassigned ``s`` can only be a first derivative (a second
    derivative ``u_vv`` has a shorter ``u_v`` that was already paired with it), so the names are
    recovered uniquely for variables without colliding keys (:func:`_check_variables`).

    Raises
    ------
    ValueError
        If ``keys`` are not the derivative grids of any variables.
    """
    if "u" not in keys:
        raise ValueError(f"derivative grids must hold 'u', got keys {sorted(keys)}")
    rest = {k[2:] for k in keys if k != "u" and k.startswith("u_")}
    if len(rest) != len(keys) - 1:
        raise ValueError(f"derivative grid keys must be 'u', 'u_v', 'u_vv', got {sorted(keys)}")
    out = []
    for s in sorted(rest, key=len):
        if s not in rest:
            continue
        if s + s not in rest:
            raise ValueError(
                f"derivative grid keys {sorted(keys)} are not 'u', 'u_v', 'u_vv' for any names v"
            )
        rest -= {s, s + s}
        out.append(s)
    return tuple(out)


#: Coordinates this fraction of the box's width past a bound, plus a few units of round-off
#: at the box's size, count as on it (a float32 grid's last point lies past a float64 2π).
EDGE_TOLERANCE = 1e-6


def edge_tolerance(a: float, b: float, dtype=np.float32) -> float:
    """How far past the interval ``[a, b]`` a coordinate of ``dtype`` still counts as on its
    edge: :data:`EDGE_TOLERANCE` of the width plus four units of round-off at its size."""
    return EDGE_TOLERANCE * (b - a) + 4 * float(np.finfo(dtype).eps) * max(abs(a), abs(b))


def check_grid_spans_box(
    box: Sequence[tuple[float, float]], coords: Sequence[np.ndarray], name: str = "grid"
) -> None:
    """A ValueError unless each ``coords[d]`` starts at ``box[d][0]`` and ends at ``box[d][1]``.

    The tolerance is :func:`edge_tolerance` in the coordinates' precision.
    """
    for d, ((a, b), c) in enumerate(zip(box, coords, strict=True)):
        c = np.asarray(c)
        dtype = c.dtype if np.issubdtype(c.dtype, np.floating) else np.float64
        tol = edge_tolerance(a, b, dtype)
        first, last = float(c[0]), float(c[-1])
        if abs(first - a) > tol or abs(last - b) > tol:
            raise ValueError(
                f"{name}[{d}] must run from the box's lower to its upper bound ({a!r}, {b!r}) "
                f"in dimension {d}, got {first!r} … {last!r}"
            )


def _check_source_fn(source_fn: Callable[..., Array], grid: Sequence[Array]) -> None:
    """A ValueError unless ``source_fn`` gives a finite value per cell midpoint (where the solver
    and the reliability check call it)."""
    mids = [0.5 * (jnp.asarray(x)[1:] + jnp.asarray(x)[:-1]) for x in grid]
    mesh = jnp.meshgrid(*mids, indexing="ij")
    shape = tuple(len(m) for m in mids)
    expected = (
        f"a JAX function f(x_1, …, x_D) of coordinate arrays returning an array of their "
        f"broadcast shape (here {shape}, the cell midpoints)"
    )
    try:
        out = source_fn(*mesh)
        got = tuple(np.shape(out))
    except Exception as e:
        raise ValueError(
            f"source_fn must be {expected}; it failed on the midpoint mesh: {type(e).__name__}: {e}"
        ) from e
    try:
        fits = np.broadcast_shapes(got, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"source_fn must be {expected}, got shape {got}")
    if not np.issubdtype(np.asarray(out).dtype, np.number) or np.iscomplexobj(out):
        raise ValueError(f"source_fn must return real numbers, got dtype {np.asarray(out).dtype}")
    n_bad = _count_bad(out)
    if n_bad:
        raise ValueError(f"source_fn is NaN or inf at {n_bad} of {np.size(out)} cell midpoints")


def _check_callable(name: str, fn: object, what: str) -> None:
    if not callable(fn):
        raise ValueError(f"{name} must be {what}, got {fn!r}")


def _count_bad(a: object) -> int:
    """Number of NaN or inf entries of an array."""
    return int(np.size(a) - np.count_nonzero(np.isfinite(np.asarray(a))))
