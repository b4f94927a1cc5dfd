"""The scales of a problem: its solution's (linear problems are solved at O(1)) and its
coordinates' (a box far from 0 that float32 cannot resolve).

GP-HM's priors and initial kernels assume values of order 1 (unit prior variance, boundary
precision relative to ``max(RMS of g, 1)``): the same 1-D Poisson problem is solved to 2e-5
with its solution multiplied by anything from 1e-3 to 1e3, but to 0.44 and 0.14 relative error
at 1e-6 and 1e6. A solution ``u`` of ``L[u] = f``, ``u = g`` is ``c v`` where ``v`` solves

.. math:: \\tfrac1c\\, \\mathcal L[c\\, v] = f / c, \\qquad v = g / c,

for any ``c``; for a linear operator the left side is the same operator (plus ``L[0]/c``), so
:func:`solve <bayestensor.pde.solve>` solves linear problems for ``v`` with ``c`` their
solution's scale, a power of two (exact in floating point), estimated by second-order finite
differences on the collocation grid (:func:`solution_scale`). A nonlinear operator changes
with ``c`` (``u³`` becomes ``c² v³``): the solver leaves those as they are, and the
reliability check names the scale as the likely cause when it warns
(:func:`~bayestensor.pde.reliability.likely_cause`).
"""

from __future__ import annotations

import math

import numpy as np

from bayestensor.pde.problems import Problem
from bayestensor.pde.reliability import solution_scale

#: Linear problems whose estimated solution RMS lies in this range are solved as they are
#: (every benchmark does, so their results are unchanged); outside it, at scale 1.
RESCALE_RANGE = (1e-2, 1e2)


def rescale_factor(problem: Problem) -> float:
    """``c`` for :func:`rescaled`: 1 inside :data:`RESCALE_RANGE` (or for a zero or failed
    scale estimate), else the power of two nearest the solution's scale."""
    scale = solution_scale(problem)
    if not (math.isfinite(scale) and scale > 0) or RESCALE_RANGE[0] <= scale <= RESCALE_RANGE[1]:
        return 1.0
    return float(2.0 ** round(math.log2(scale)))


def rescaled(problem: Problem, c: float) -> Problem:
    """The problem for ``v = u / c``: operator ``L[c ·] / c``, source, boundary values,
    ``source_fn`` and ``exact`` divided by ``c`` (module docstring)."""
    operator, source_fn, exact = problem.operator, problem.source_fn, problem.exact

    def op(grids):
        return operator({k: c * g for k, g in grids.items()}) / c

    return problem._replace(
        operator=op,
        source=problem.source / c,
        boundary_values=problem.boundary_values / c,
        source_fn=None if source_fn is None else (lambda *xs: source_fn(*xs) / c),
        exact=None if exact is None else (lambda *xs: exact(*xs) / c),
    )


def offset_message(d: int, a: float, b: float, n: int, dtype) -> str | None:
    """Why ``n`` equally spaced ``dtype`` coordinates cannot span ``[a, b]`` (None if they can)."""
    x = np.linspace(a, b, n).astype(dtype)
    if np.all(np.diff(x) > 0):
        return None
    name, ulp = np.dtype(dtype).name, float(np.spacing(np.asarray(max(abs(a), abs(b)), dtype)))
    return (
        f"grid[{d}]: {name} numbers near {max(abs(a), abs(b)):.3g} are {ulp:.2g} apart, "
        f"coarser than the grid's spacing {(b - a) / (n - 1):.2g}: the box's offset is too "
        f"large for {name} relative to its width {b - a:.3g}. Shift the coordinates (e.g. "
        f"x − {a:g}) or build the problem in float64"
    )


def check_coordinates(problem: Problem, dtype: str) -> None:
    """A ValueError (:func:`offset_message`) unless ``problem``'s grid, in ``dtype``, is
    strictly increasing."""
    for d, ((a, b), x) in enumerate(zip(problem.box, problem.grid, strict=True)):
        if not np.all(np.diff(np.asarray(x)) > 0):
            raise ValueError(
                offset_message(d, a, b, len(x), dtype) or f"grid[{d}] is not increasing"
            )
