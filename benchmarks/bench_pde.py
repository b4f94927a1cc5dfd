"""GP-HM on the issue-5 benchmark problems, beside Chebyshev and finite-difference solvers.

For every problem in ``bt.pde.BENCHMARKS``: the GP-HM solve (Gaussian spectral mixture, Q = 30,
default settings, ``--steps`` Adam steps on the kernels for 1-D problems and ``--steps-2d`` for
2-D ones), its relative L2 error on a finer test grid (4× in 1-D, 2× per dimension in 2-D), wall
time (compilation included) and time per Adam step. For the linear problems the same script runs
what a numerical analyst would use on the same number of points:

* Chebyshev spectral collocation (Chebyshev–Gauss–Lobatto points, Dirichlet rows replaced;
  2-D Poisson by fast diagonalisation of the 1-D second-derivative matrices, advection by a dense
  solve), error on the same test grid through barycentric interpolation;
* second-order finite differences on the same uniform grid (sparse LU), error at the grid nodes
  (no interpolation error added).

Run: ``python benchmarks/bench_pde.py`` (all problems) or ``--only poisson_1d_sin100 ...``.
Prints a markdown table. BLAS/LAPACK run single-threaded (see ``bt.pde.solve(blas_threads=)``).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

import bayestensor as bt  # sets the XLA flag before JAX's backend starts

jax.config.update("jax_enable_x64", True)

LINEAR = {"poisson", "advection"}


def cheb(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev–Gauss–Lobatto points on [−1, 1] (descending) and the differentiation matrix."""
    N = n - 1
    x = np.cos(np.pi * np.arange(n) / N)
    c = np.ones(n)
    c[0] = c[-1] = 2.0
    c *= (-1.0) ** np.arange(n)
    X = np.tile(x, (n, 1)).T
    dX = X - X.T
    D = np.outer(c, 1.0 / c) / (dX + np.eye(n))
    D -= np.diag(D.sum(axis=1))
    return x, D


def bary_matrix(xn: np.ndarray, xt: np.ndarray) -> np.ndarray:
    """Barycentric interpolation matrix from Chebyshev–Lobatto nodes ``xn`` to points ``xt``."""
    n = len(xn)
    w = (-1.0) ** np.arange(n)
    w[0] *= 0.5
    w[-1] *= 0.5
    d = xt[:, None] - xn[None, :]
    exact = np.isclose(d, 0.0, atol=1e-15)
    d[exact] = 1.0
    M = w / d
    M /= M.sum(axis=1, keepdims=True)
    rows = exact.any(axis=1)
    M[rows] = exact[rows].astype(float)
    return M


def _mapped(n: int, a: float, b: float):
    x, D = cheb(n)
    s = 2.0 / (b - a)
    return a + (x + 1.0) * (b - a) / 2.0, D * s


def chebyshev_solve(name: str, prob, test_coords):
    """Chebyshev collocation on the problem's point count; values on the test grid."""
    op_kind = name.split("_")[0]
    exact = prob.exact
    if len(prob.shape) == 1:
        (a, b), n = prob.box[0], prob.shape[0]
        x, D = _mapped(n, a, b)
        A = D @ D
        f = np.array(prob.source_fn(jnp.asarray(x)))
        A[[0, -1]] = np.eye(n)[[0, -1]]
        f[[0, -1]] = np.asarray(jax.vmap(exact)(jnp.asarray(x[[0, -1]])))
        u = np.linalg.solve(A, f)
        return bary_matrix(x, test_coords[0]) @ u
    (ax, bx), (ay, by) = prob.box
    nx, ny = prob.shape
    x, Dx = _mapped(nx, ax, bx)
    y, Dy = _mapped(ny, ay, by)
    X, Y = np.meshgrid(x, y, indexing="ij")
    F = np.asarray(prob.source_fn(jnp.asarray(X), jnp.asarray(Y)))
    G = np.asarray(jax.vmap(exact)(jnp.asarray(X.ravel()), jnp.asarray(Y.ravel()))).reshape(X.shape)
    U = G.copy()
    if op_kind == "poisson":
        # interior: Ax U + U Ayᵀ = F − (boundary terms); fast diagonalisation of Ax, Ay
        Ax, Ay = Dx @ Dx, Dy @ Dy
        Ub = np.zeros_like(G)
        Ub[[0, -1], :] = G[[0, -1], :]
        Ub[:, [0, -1]] = G[:, [0, -1]]
        R = (F - Ax @ Ub - Ub @ Ay.T)[1:-1, 1:-1]
        lx, Vx = np.linalg.eig(Ax[1:-1, 1:-1])
        ly, Vy = np.linalg.eig(Ay[1:-1, 1:-1])
        W = np.linalg.solve(Vx, R) @ np.linalg.inv(Vy).T
        W /= lx[:, None] + ly[None, :]
        U[1:-1, 1:-1] = (Vx @ W @ Vy.T).real
    else:  # advection 200 u_x + u_y = 0, dense square interior system
        beta = 200.0
        A = beta * np.kron(Dx, np.eye(ny)) + np.kron(np.eye(nx), Dy)
        mask = np.zeros((nx, ny), bool)
        mask[[0, -1], :] = mask[:, [0, -1]] = True
        m = mask.ravel()
        A[m] = np.eye(nx * ny)[m]
        rhs = np.where(m, G.ravel(), F.ravel())
        U = np.linalg.solve(A, rhs).reshape(nx, ny)
    Mx, My = bary_matrix(x, test_coords[0]), bary_matrix(y, test_coords[1])
    return Mx @ U @ My.T


def fd_solve(name: str, prob):
    """Second-order finite differences on the problem's uniform grid; values at the nodes."""
    op_kind = name.split("_")[0]
    grid = [np.asarray(g) for g in prob.grid]
    f = np.asarray(prob.source)
    mask = prob.boundary_mask
    g_full = np.zeros(prob.shape)
    g_full[mask] = np.asarray(prob.boundary_values)

    def d2(n, h):
        return sp.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)) / h**2

    def d1(n, h):
        return sp.diags([-1.0, 1.0], [-1, 1], shape=(n, n)) / (2 * h)

    hs = [g[1] - g[0] for g in grid]
    ns = prob.shape
    if len(ns) == 1:
        A = d2(ns[0], hs[0])
    elif op_kind == "poisson":
        A = sp.kron(d2(ns[0], hs[0]), sp.eye(ns[1])) + sp.kron(sp.eye(ns[0]), d2(ns[1], hs[1]))
    else:
        A = 200.0 * sp.kron(d1(ns[0], hs[0]), sp.eye(ns[1])) + sp.kron(
            sp.eye(ns[0]), d1(ns[1], hs[1])
        )
    A = sp.csr_matrix(A)
    m = mask.ravel()
    interior = np.flatnonzero(~m)
    rhs = f.ravel()[interior] - A[interior][:, np.flatnonzero(m)] @ g_full.ravel()[m]
    u = g_full.ravel().copy()
    u[interior] = spla.spsolve(sp.csc_matrix(A[interior][:, interior]), rhs)
    return u.reshape(prob.shape)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", nargs="*", help="problem names (default: all)")
    p.add_argument("--steps", type=int, default=30, help="Adam steps, 1-D problems")
    p.add_argument("--steps-2d", type=int, default=0, help="Adam steps, 2-D problems")
    p.add_argument("--kernel", default="gaussian", choices=["gaussian", "student-t"])
    opts = p.parse_args(argv)
    names = opts.only or list(bt.pde.BENCHMARKS)
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    rows = []
    for name in names:
        prob = bt.pde.benchmark(name)
        D = len(prob.shape)
        steps = opts.steps if D == 1 else opts.steps_2d
        sol = bt.pde.solve(prob, kernel=opts.kernel, steps=steps)
        coords = sol.test_grid()
        exact = sol.exact_on(coords)
        gp = rel(sol.on_grid(*coords), exact)
        row = {
            "name": name,
            "grid": "×".join(map(str, prob.shape)),
            "gp": gp,
            "wall": sol.wall_time,
            "step": sol.trace.step_time,
            "n": sol.trace.n_adam,
            "cheb": None,
            "fd": None,
        }
        if name.split("_")[0] in LINEAR:
            with threadpool_limits(1):
                t = time.perf_counter()
                u_cheb = chebyshev_solve(name, prob, coords)
                row["cheb_t"] = time.perf_counter() - t
                row["cheb"] = rel(u_cheb, exact)
                t = time.perf_counter()
                u_fd = fd_solve(name, prob)
                row["fd_t"] = time.perf_counter() - t
                row["fd"] = rel(u_fd, np.asarray(prob.exact_on_grid()))
        rows.append(row)
        print(row, flush=True)

    def fmt(v, spec=".1e"):
        return "–" if v is None or not np.isfinite(v) else format(v, spec)

    print()
    print(
        "| problem | grid | GP-HM rel L2 | wall time | time / Adam step | Adam steps "
        "| Chebyshev rel L2 (time) | FD-2 rel L2 at nodes (time) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cheb = "–" if r["cheb"] is None else f"{r['cheb']:.1e} ({r['cheb_t']:.2f} s)"
        fd = "–" if r["fd"] is None else f"{r['fd']:.1e} ({r['fd_t']:.2f} s)"
        step = "–" if not np.isfinite(r["step"]) else f"{r['step'] * 1e3:.0f} ms"
        print(
            f"| {r['name']} | {r['grid']} | {fmt(r['gp'])} | {r['wall']:.1f} s | {step} "
            f"| {r['n']} | {cheb} | {fd} |"
        )
    print(f"\nload average at end: {os.getloadavg()[0]:.1f} (2 cores)")
    return rows


if __name__ == "__main__":
    main()
