"""The front door of the GP-HM solver: :func:`solve` and the :class:`PDESolution` it returns."""

from __future__ import annotations

import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

try:  # a declared dependency; without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from bayestensor.pde.problems import Problem
from bayestensor.pde.solver import (
    FitTrace,
    GPHMConfig,
    GPHMParams,
    all_factors,
    cross_kernel,
    fit,
    resolve_config,
    solution_weights,
)
from bayestensor.tensor import multi_mode_dot

#: Accepted spellings of the kernel families.
KERNELS = {"gaussian": "gaussian", "student-t": "student_t", "student_t": "student_t"}


@dataclass(frozen=True)
class PDESolution:
    """A solved problem: the GP mean on the grid and anywhere in the box, and the fit's record.

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

    def _weights(self):
        factors = all_factors(self.params.kernels, self.problem, self.config)
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

    def plot(self, path=None):
        """Solution, exact solution (if known), error and the optimisation history.

        Parameters
        ----------
        path : str or Path, optional
            Also save the figure there.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        D = len(self.problem.shape)
        has_exact = self.problem.exact is not None
        coords = self.test_grid()
        mean = self.on_grid(*coords)
        exact = self.exact_on(coords) if has_exact else None
        if D == 1:
            fig, axes = plt.subplots(3, 1, figsize=(8, 7.5))
            ax = axes[0]
            ax.plot(coords[0], mean, lw=0.8, label="GP mean")
            if has_exact:
                ax.plot(coords[0], exact, "--", lw=0.8, label="exact")
            ax.plot(self.grid[0], self.values, ".", ms=2, label="grid values")
            ax.set_xlabel(self.problem.variables[0])
            ax.legend(loc="upper right", fontsize=8)
            ax.set_title("solution")
            err_ax = axes[1]
            if has_exact:
                err_ax.semilogy(coords[0], np.abs(mean - exact) + 1e-300, lw=0.8)
                err_ax.set_title(f"|error| (relative L2 {self.relative_l2():.2e})")
            err_ax.set_xlabel(self.problem.variables[0])
            hist_ax = axes[2]
        else:
            if D != 2:
                raise ValueError("plot() draws 1-D and 2-D problems only")
            ncol = 3 if has_exact else 1
            fig = plt.figure(figsize=(4 * ncol, 7))
            ext = [*self.problem.box[1], *self.problem.box[0]]
            panels = [("GP mean", mean)]
            if has_exact:
                panels += [("exact", exact), ("|error|", np.abs(mean - exact))]
            for i, (title, img) in enumerate(panels):
                ax = fig.add_subplot(2, ncol, i + 1)
                im = ax.imshow(img, extent=ext, origin="lower", aspect="auto")
                ax.set_title(title)
                ax.set_xlabel(self.problem.variables[1])
                ax.set_ylabel(self.problem.variables[0])
                fig.colorbar(im, ax=ax)
            hist_ax = fig.add_subplot(2, 1, 2)
        hist_ax.semilogy(self.residual_history, label="midpoint residual (relative)")
        hist_ax.axvline(self.trace.best_step, color="k", lw=0.5, label="returned step")
        hist_ax.set_xlabel("optimiser step")
        hist_ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def solve(
    problem: Problem,
    kernel: str = "gaussian",
    n_components: int = 30,
    steps: int = 100,
    *,
    grid: int | Sequence[int] | None = None,
    max_freq: float | Sequence[float] | None = None,
    learning_rate: float = 1e-2,
    precision: float = 1e6,
    lbfgs_steps: int = 0,
    patience: int = 30,
    method: str = "auto",
    nu: float = 2.5,
    jitter: float = 1e-10,
    blas_threads: int | None = 1,
) -> PDESolution:
    """Solve ``L[u] = f`` with Dirichlet data by GP-HM (see :mod:`bayestensor.pde.solver`).

    Parameters
    ----------
    problem : Problem
        E.g. ``bt.pde.problems.benchmark("poisson_1d_sin100")`` or
        ``bt.pde.Problem.manufactured(...)``.
    kernel : {"gaussian", "student-t"}, default "gaussian"
        Spectral mixture family per dimension (Gaussian mixture, or Student-t mixture = Matérn-ν
        envelope × cosine).
    n_components : int, default 30
        Mixture components per dimension, frequencies initialised on an even grid up to
        ``max_freq``.
    steps : int, default 100
        Maximum Adam steps on the kernel parameters (0: keep the initial kernels and just solve).
    grid : int or sequence of int, optional
        Re-discretise a manufactured problem with this many points per dimension.
    max_freq : float or sequence of float, optional
        Highest initial frequency per dimension (cycles per unit); default 0.6 × the grid's
        Nyquist frequency.
    learning_rate : float, default 1e-2
        Adam step size.
    precision : float, default 1e6
        w: residual and boundary are fitted to about 1/w of their RMS (:class:`GPHMConfig`).
    lbfgs_steps : int, default 0
        L-BFGS steps after Adam.
    patience : int, default 30
        Early stopping: steps without improvement of the midpoint residual.
    method : {"auto", "dense", "kron"}, default "auto"
        ``U``-step solver (:mod:`bayestensor.pde.solver`).
    nu : float, default 2.5
        Matérn smoothness of the Student-t mixture.
    jitter : float, default 1e-10
        Relative diagonal jitter of each ``K_d``.
    blas_threads : int or None, default 1
        Threads for LAPACK/BLAS during the solve (``None``: leave as is). One thread is much
        faster on a busy machine: OpenBLAS's spinning threads slow a 400 × 400 Cholesky from
        ~2 ms to ~500 ms when the cores are oversubscribed.

    Returns
    -------
    PDESolution

    Raises
    ------
    ValueError
        For an unknown kernel, a bad setting, or ``grid`` on a problem without exact solution.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a bayestensor.pde.Problem, got {type(problem)}")
    if grid is not None:
        if problem.exact is None:
            raise ValueError("grid= re-discretises manufactured problems only (problem.exact)")
        problem = Problem.manufactured(
            problem.operator, problem.exact, problem.box, grid, problem.variables
        )
    if max_freq is not None and not np.isscalar(max_freq):
        max_freq = tuple(float(m) for m in max_freq)
    config = GPHMConfig(
        spectrum=KERNELS[kernel],
        nu=nu,
        n_components=int(n_components),
        max_freq=max_freq,
        jitter=jitter,
        precision=precision,
        learning_rate=learning_rate,
        n_steps=int(steps),
        patience=int(patience),
        lbfgs_steps=int(lbfgs_steps),
        method=method,
    )
    config = resolve_config(problem, config)
    start = time.perf_counter()
    if blas_threads is None or threadpool_limits is None:
        params, trace = fit(problem, config)
    else:
        with threadpool_limits(limits=int(blas_threads)):
            params, trace = fit(problem, config)
            jax.block_until_ready(params)
    return PDESolution(problem, config, params, trace, time.perf_counter() - start)
