"""Whether a nonlinear solve has another solution of the same PDE close by.

A nonlinear PDE with Dirichlet data can have more than one solution. Allen–Cahn
``Δu + u³ − u = f`` has infinitely many, of growing amplitude, and two of them can lie close
together where a fold of the solution branch is near. The solver returns one of them, and which
one depends on where its iteration started. A small residual cannot tell them apart, since
both solve the PDE.

:func:`nearby_solution` looks for a second solution near the GP mean ``ū``:

1. Newton's method on a fourth-order finite-difference discretisation of the PDE, started
   from ``ū`` on the fine grid, gives the discrete solution ``u*`` next to ``ū``.
2. The two eigenvectors of the linearisation ``L'[u*]`` whose eigenvalues are nearest zero
   point to where a fold partner would lie (a small eigenvalue means a fold is near).
3. Newton's method with **deflation** (Farrell, Birkisson & Funke 2015) is started from
   ``u* ± 0.05 ‖u*‖ v`` along each of them. Deflation multiplies the residual by
   ``‖u − u*‖⁻² + 1``, so the iteration cannot return to ``u*``. A root it reaches is
   another solution. The search is local: :data:`MAX_NEWTON` steps from each start, given up
   when an iterate strays beyond :data:`MAX_DISTANCE` ``‖u*‖``.

The relative distance ``‖w − u*‖ / ‖u*‖`` of the nearest root found is
:attr:`~bayestensor.pde.reliability.Reliability.other_solution`. When step 1 finds no
discrete solution next to ``ū`` it is ``0``: ``ū`` sits at a fold, where two solutions meet,
so that a change of the data as small as the discretisation error moves or removes it.
``solve`` warns when it is below :data:`NEAR_SOLUTION`. Only nonlinear problems are checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from bayestensor.pde.factors import grid_keys
from bayestensor.pde.inference import coefficients

#: ``solve`` warns when another solution lies closer than this (relative to ``‖ū‖``).
NEAR_SOLUTION = 0.5

#: Step from ``u*`` (relative to ``‖u*‖``) along each eigenvector where deflated Newton starts.
START_STEP = 0.05

#: Newton iterations allowed to each start.
MAX_NEWTON = 15

#: A deflated start is abandoned when an iterate strays farther than this from ``u*``
#: (relative to ``‖u*‖``): the search is for solutions near ``ū``, and each step costs a
#: sparse LU.
MAX_DISTANCE = 2.0

#: A root is accepted when its residual is below this times the problem's scale.
ROOT_TOL = 1e-9


def fornberg_weights(z: float, nodes: np.ndarray, order: int) -> np.ndarray:
    """Finite-difference weights of the ``order``-th derivative at ``z`` from ``nodes``.

    Fornberg's recurrence (Math. Comp. 51, 1988): exact for polynomials of degree below
    ``len(nodes)``.
    """
    n = nodes.shape[0]
    w = np.zeros((n, order + 1))
    w[0, 0] = 1.0
    c1, c4 = 1.0, nodes[0] - z
    for i in range(1, n):
        top = min(i, order)
        c2, c5, c4 = 1.0, c4, nodes[i] - z
        for j in range(i):
            c3 = nodes[i] - nodes[j]
            c2 *= c3
            if j == i - 1:
                for k in range(top, 0, -1):
                    w[i, k] = c1 * (k * w[i - 1, k - 1] - c5 * w[i - 1, k]) / c2
                w[i, 0] = -c1 * c5 * w[i - 1, 0] / c2
            for k in range(top, 0, -1):
                w[j, k] = (c4 * w[j, k] - k * w[j, k - 1]) / c3
            w[j, 0] = c4 * w[j, 0] / c3
        c1 = c2
    return w[:, order]


def fd4_matrices(x: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Fourth-order first and second derivative matrices on a (non-uniform) grid.

    Five nodes around each interior point, shifted inwards near the ends, where the second
    derivative takes a sixth node to stay fourth order. The rows of the two end points are
    zero (they are boundary rows of a Dirichlet solve).
    """
    n = x.shape[0]
    mats = []
    for order in (1, 2):
        rows, cols, vals = [], [], []
        for i in range(1, n - 1):
            lo = min(max(i - 2, 0), n - 5)
            idx = np.arange(lo, lo + 5)
            if order == 2 and lo != i - 2:
                idx = np.arange(0, 6) if lo == 0 else np.arange(n - 6, n)
            rows.append(np.full(idx.shape[0], i))
            cols.append(idx)
            vals.append(fornberg_weights(x[i], x[idx], order))
        entries = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
        mats.append(sp.csr_matrix(entries, shape=(n, n)))
    return mats[0], mats[1]


def along(mat: sp.spmatrix, d: int, shape: Sequence[int]) -> sp.csr_matrix:
    """``mat`` acting along dimension ``d`` of a row-major tensor of ``shape`` (sparse)."""
    out = sp.identity(1, format="csr")
    for e, n in enumerate(shape):
        out = sp.kron(out, mat if e == d else sp.identity(n), format="csr")
    return out


class _Discrete:
    """The PDE ``L[u] = f`` by fourth-order differences on a tensor grid, Dirichlet data fixed."""

    def __init__(self, operator, variables, coords, f: np.ndarray, scale: float):
        self.operator, self.shape, self.f, self.scale = operator, f.shape, f, scale
        self.mats = {"u": sp.identity(f.size, format="csr")}
        for d, x in enumerate(coords):
            d1, d2 = fd4_matrices(np.asarray(x, np.float64))
            v = variables[d]
            self.mats[f"u_{v}"] = along(d1, d, f.shape)
            self.mats[f"u_{v}{v}"] = along(d2, d, f.shape)
        self.keys = [k for k, _, _ in grid_keys(variables)]
        mask = np.zeros(f.shape, bool)
        mask[tuple(slice(1, -1) for _ in f.shape)] = True
        self.inner = np.flatnonzero(mask.ravel())

        ns = SimpleNamespace(operator=operator)
        # one compiled evaluation of L[u] and of its pointwise coefficients per Newton step
        self._eval = jax.jit(lambda g: (operator(g), coefficients(ns, g)))

    def _evaluate(self, u: np.ndarray):
        flat = u.ravel()
        with jax.enable_x64(True):
            grids = {k: jnp.asarray((self.mats[k] @ flat).reshape(self.shape)) for k in self.keys}
            value, coef = self._eval(grids)
            return np.asarray(value, np.float64), jax.tree.map(np.asarray, coef)

    def residual(self, u: np.ndarray) -> np.ndarray:
        """``L[u] − f`` at the interior points."""
        return (self._evaluate(u)[0] - self.f).ravel()[self.inner]

    def linearise(self, u: np.ndarray) -> tuple[np.ndarray, sp.csc_matrix]:
        """The interior residual and ``L'[u]`` restricted to the interior rows and columns."""
        value, coef = self._evaluate(u)
        J = sp.csr_matrix((u.size, u.size))
        for k in self.keys:
            c = np.asarray(coef[k], np.float64).ravel()
            if np.any(c):
                J = J + sp.diags(c) @ self.mats[k]
        return (value - self.f).ravel()[self.inner], J[self.inner][:, self.inner].tocsc()

    def converged(self, u: np.ndarray) -> bool:
        r = self.residual(u)
        return bool(np.all(np.isfinite(r)) and np.linalg.norm(r) <= ROOT_TOL * self.scale)

    def newton(self, u: np.ndarray, deflate: np.ndarray | None = None) -> np.ndarray | None:
        """A root from ``u`` (``deflate``: a known root it must not return to), or None."""
        with np.errstate(all="ignore"):  # a diverging start overflows: it is not a root
            return self._newton(u, deflate)

    def _newton(self, u: np.ndarray, deflate: np.ndarray | None) -> np.ndarray | None:
        u = np.array(u, np.float64)
        flat = u.reshape(-1)
        for _ in range(MAX_NEWTON):
            r, J = self.linearise(u)
            if not np.all(np.isfinite(r)):
                return None
            try:
                step = -spla.spsolve(J, r)
            except RuntimeError:  # singular Jacobian
                return None
            if deflate is not None:
                # Newton on m(u) (L[u] − f) with m = ‖u − u*‖⁻² + 1: the step is the plain
                # one scaled by 1 / (1 − ∇log m · step)
                diff = flat[self.inner] - deflate.reshape(-1)[self.inner]
                n2 = float(diff @ diff)
                if n2 == 0.0:  # on the known root itself: nothing new from here
                    return None
                grad_log_m = -2.0 * diff / (n2**2 * (1.0 / n2 + 1.0))
                step = step / (1.0 - float(grad_log_m @ step))
            if not np.all(np.isfinite(step)):
                return None
            flat[self.inner] += step
            if deflate is not None and np.linalg.norm(u - deflate) > MAX_DISTANCE * np.linalg.norm(
                deflate
            ):
                return None
            if np.linalg.norm(step) <= 1e-12 * max(np.linalg.norm(flat), 1.0):
                break
        return u if self.converged(u) else None


def nearby_solution(
    operator,
    variables: Sequence[str],
    coords: Sequence[np.ndarray],
    u: np.ndarray,
    f: np.ndarray,
    scale: float,
) -> float:
    """Relative distance from ``u`` to the nearest other solution found (module docstring).

    Parameters
    ----------
    operator : callable
        The problem's operator (derivative grids → ``L[u]``).
    variables : sequence of str
        Names of the grid dimensions.
    coords : sequence of ndarray
        The tensor grid's coordinates per dimension (at least 7 points each).
    u : ndarray
        The solution on that grid; its boundary values are the Dirichlet data.
    f : ndarray
        The source on the grid.
    scale : float
        Scale of the equation (``‖f‖`` or its largest term), for the root test.

    Returns
    -------
    float
        ``‖w − u*‖ / ‖u*‖`` for the nearest other root ``w``; ``inf`` when none was found;
        ``0.0`` when Newton's method does not converge from ``u`` itself (the discrete problem
        has no solution next to it: ``u`` lies at a fold, where two solutions meet); ``nan``
        when a dimension has fewer than 7 points or the eigenvalue solve fails.
    """
    if min(len(c) for c in coords) < 7:
        return math.nan
    disc = _Discrete(operator, variables, coords, np.asarray(f, np.float64), scale)
    root = disc.newton(u)
    if root is None:
        # no discrete solution next to u: u sits at (or next to) a fold, the limit where two
        # solutions meet, and a change of the data as small as the discretisation error
        # (1e-3 to 1e-2 relative here) moves it far or removes it
        return 0.0
    _, J = disc.linearise(root)
    try:
        _, vecs = spla.eigs(J, k=2, sigma=0.0)
    except (RuntimeError, spla.ArpackError):
        return math.nan
    # the scale of the starts and of the distance; a zero solution (Allen–Cahn with zero data)
    # takes unit RMS, so that its starts move and the distance stays finite
    norm = float(np.linalg.norm(root)) or math.sqrt(root.size)
    best = math.inf
    for v in np.real(vecs).T:
        full = np.zeros(root.size)
        full[disc.inner] = v / max(np.linalg.norm(v), np.finfo(float).tiny)
        for sign in (1.0, -1.0):
            start = root + sign * START_STEP * norm * full.reshape(root.shape)
            other = disc.newton(start, deflate=root)
            if other is not None:
                dist = float(np.linalg.norm(other - root)) / norm
                if dist > 1e-6:
                    best = min(best, dist)
    return best
