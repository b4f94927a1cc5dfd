"""The fibre residual process of ``bt.fit(..., local="fibre")`` (see
:mod:`bayestensor.models.funbat.local`): a GP along one continuous mode, independent across the
fibres of the tensor (each combination of the other coordinates), with one lengthscale,
variance and noise shared by all fibres. Every fibre is one Kalman filter + RTS smoother over
its sorted coordinates (:func:`bayestensor.kernels.kernel_sde`), all fibres in one vmapped scan;
the log marginal likelihood is exact. Cost O(n + F·L) for F fibres padded to length L. Small
Matérn layouts are computed by dense algebra in NumPy instead, with nothing to compile
(:mod:`.local_fibre_dense`; the same likelihood, gradient and posterior to round-off).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from bayestensor._export import CachedJit
from bayestensor.driver import precision
from bayestensor.kernels import kernel_sde
from bayestensor.models.funbat.local_fibre_dense import (
    dense_layout,
    dense_nll_grad,
    dense_posterior,
)
from bayestensor.models.funbat.local_neighbours import _lbfgs
from bayestensor.models.funbat.stream import bucket

#: The smallest shape bucket of the compiled arrays' fibres (a fibre's steps have their own
#: rule, see :func:`_fibre_arrays`).
MIN_BUCKET = 64

__all__ = ["FibreGP", "fibre_layout", "padded_local"]

#: The rows whose shapes the fibre GPs pad their arrays to (:func:`padded_local`).
_FLOOR: contextvars.ContextVar[pd.DataFrame | None] = contextvars.ContextVar(
    "local_floor", default=None
)


@contextmanager
def padded_local(rows: pd.DataFrame) -> Iterator[None]:
    """Within this block, the fibre GPs fitted along a column pad the arrays of their compiled
    likelihood and posterior to at least the fibres of ``rows`` (a frame of the coordinate
    columns) and their most coordinates, and keep the floor for their predictions. (The
    neighbour GP and the exact GP compute in NumPy and need no floor.)

    The check refits of :func:`bayestensor.fit` on small data fit subsets of one frame's rows
    and predict others of its rows; inside this block, with the frame, they share those
    programs with the fit of all rows. Padded rows, fibres and steps carry no messages, so
    they change nothing but rounding."""
    if not isinstance(rows, pd.DataFrame) or rows.empty:
        raise ValueError(f"rows must be a non-empty pandas DataFrame, got {type(rows).__name__}")
    token = _FLOOR.set(rows)
    try:
        yield
    finally:
        _FLOOR.reset(token)


def floor_rows() -> pd.DataFrame | None:
    """The rows of the enclosing :func:`padded_local` block (None outside one)."""
    return _FLOOR.get()


def fibre_layout(others: pd.DataFrame, x: np.ndarray, n_obs: int, r: np.ndarray) -> dict:
    """Fibres of the rows (``others``: the other coordinates; ``x``: the fibre coordinate).

    The first ``n_obs`` rows carry the residuals ``r`` (their messages); the rest only ask for
    predictions. Returns the padded gaps ``dt`` (F, L) (padding repeats the last coordinate:
    gap 0, no message), per-cell counts and sums of residuals, and each row's (fibre, position).
    """
    if others.shape[1]:
        fibre = others.groupby(list(others.columns), sort=False, dropna=False).ngroup().to_numpy()
    else:
        fibre = np.zeros(len(x), np.int64)
    cells = pd.DataFrame({"f": fibre, "x": x})
    uniq = cells.drop_duplicates().sort_values(["f", "x"]).reset_index(drop=True)
    uniq["pos"] = uniq.groupby("f").cumcount()
    F, L = int(uniq["f"].max()) + 1, int(uniq["pos"].max()) + 1
    grid = np.full((F, L), np.nan)
    grid[uniq["f"].to_numpy(), uniq["pos"].to_numpy()] = uniq["x"].to_numpy()
    grid = pd.DataFrame(grid).ffill(axis=1).to_numpy()
    dt = np.concatenate([np.zeros((F, 1)), np.diff(grid, axis=1)], axis=1)
    pos = cells.merge(uniq, on=["f", "x"], how="left")["pos"].to_numpy()
    cnt = np.zeros((F, L))
    tot = np.zeros((F, L))
    np.add.at(cnt, (fibre[:n_obs], pos[:n_obs]), 1.0)
    np.add.at(tot, (fibre[:n_obs], pos[:n_obs]), r)
    return {"dt": dt, "cnt": cnt, "sum": tot, "fibre": fibre, "pos": pos, "grid": grid}


def _fibre_pass(theta, kernel, dt, cnt, tot, smooth):
    """Kalman filter (+ RTS smoother) of one fibre; observations ``r ~ N(g, σ²_n)``.

    Returns the log normaliser of the messages (filter) or the smoothed means and variances.
    """
    ell, var, noise = jnp.exp(theta[0]), jnp.exp(theta[1]), jnp.exp(theta[2])
    sde = kernel_sde(kernel, ell, var)
    H = sde.H[0]
    lam_all, eta_all = cnt / noise, tot / noise
    d = sde.Pinf.shape[0]

    def step(carry, inp):
        m, P, logz = carry
        gap, lam, eta = inp
        A, Q = sde.transition(gap)
        mp = A @ m
        Pp = A @ P @ A.T + Q
        mu, S, PH = H @ mp, H @ Pp @ H, Pp @ H
        den = 1.0 + lam * S
        mf = mp + PH * (eta - lam * mu) / den
        Pf = Pp - jnp.outer(PH, PH) * (lam / den)
        # log ∫ N(g | μ, S) exp(−½ λ g² + η g) dg
        logz = logz - 0.5 * jnp.log(den) + (eta**2 * S + 2 * eta * mu - lam * mu**2) / (2 * den)
        return (mf, 0.5 * (Pf + Pf.T), logz), (mp, Pp, mf, Pf)

    init = (jnp.zeros(d, sde.Pinf.dtype), sde.Pinf, jnp.zeros((), sde.Pinf.dtype))
    (_, _, logz), (mp, Pp, mf, Pf) = lax.scan(step, init, (dt, lam_all, eta_all))
    if not smooth:
        return logz

    def back(carry, inp):
        ms_next, Ps_next = carry
        gap_next, mf_t, Pf_t, mp_next, Pp_next = inp
        A, _ = sde.transition(gap_next)
        # padding steps have gap 0 (A = I, Q = 0): Pp_next = Pf_t, J = I
        J = jnp.linalg.solve(Pp_next, A @ Pf_t).T
        ms = mf_t + J @ (ms_next - mp_next)
        Ps = Pf_t + J @ (Ps_next - Pp_next) @ J.T
        return (ms, 0.5 * (Ps + Ps.T)), (ms, Ps)

    _, (ms, Ps) = lax.scan(
        back, (mf[-1], Pf[-1]), (dt[1:], mf[:-1], Pf[:-1], mp[1:], Pp[1:]), reverse=True
    )
    ms = jnp.concatenate([ms, mf[-1][None]])
    Ps = jnp.concatenate([Ps, Pf[-1][None]])
    return ms @ H, jnp.einsum("i,tij,j->t", H, Ps, H)


def _fibre_nll(theta, kernel, dt, cnt, tot, ss, n):
    logz = jax.vmap(lambda a, b, c: _fibre_pass(theta, kernel, a, b, c, False))(dt, cnt, tot)
    noise = jnp.exp(theta[2])
    return -(jnp.sum(logz) - 0.5 * n * jnp.log(2 * jnp.pi * noise) - 0.5 * ss / noise)


def _fibre_post(theta, kernel, dt, cnt, tot):
    return jax.vmap(lambda a, b, c: _fibre_pass(theta, kernel, a, b, c, True))(dt, cnt, tot)


def _fibre_value_grad(theta, kernel, dt, cnt, tot, ss, n):
    return jax.value_and_grad(_fibre_nll)(theta, kernel, dt, cnt, tot, ss, n)


# traced programs kept on disk with the compiled ones (bayestensor._export): a fresh process
# neither retraces nor recompiles them
_fibre_vg = CachedJit(_fibre_value_grad, static_argnames=("kernel",), per_fit="mode")
_fibre_post_jit = CachedJit(_fibre_post, static_argnames=("kernel",), per_fit="mode")


def _fibre_arrays(lay: dict, floor: tuple[int, int] = (0, 0)) -> tuple:
    """``dt, cnt, sum`` of a layout padded to a shape bucket of at least ``floor`` fibres and
    steps: extra fibres and extra steps at the end of a fibre have gap 0 and no messages, so
    they add nothing to the likelihood."""
    F, L = (int(v) for v in np.maximum(lay["dt"].shape, floor))
    # the scan runs over the L steps of every fibre at once, so padding costs in proportion: up
    # to 8 steps the length is kept (us_temp's 5-step latitude fibres: 45 ms per likelihood and
    # gradient padded to 8, 18 ms at 5), up to 16 rounded up to a multiple of 4, then bucketed
    Fb = bucket(F, MIN_BUCKET)
    Lb = L if L <= 8 else -(-L // 4) * 4 if L < 16 else bucket(L, 16)
    out = []
    for k in ("dt", "cnt", "sum"):
        a = np.pad(lay[k], ((0, Fb - lay[k].shape[0]), (0, Lb - lay[k].shape[1])))
        out.append(jax.device_put(a))
    return tuple(out)


def _floor_shape(mode: str, coords: list[str]) -> tuple[int, int]:
    """The fibres along ``mode`` of :func:`padded_local`'s rows and their most coordinates
    (``(0, 0)`` outside one, or where its rows lack a column of ``coords``): the rows of a fit
    inside it and the rows it predicts are some of those rows, so their layouts fit in this
    shape."""
    rows = floor_rows()
    if rows is None or not set(coords) <= set(rows.columns):
        return (0, 0)
    x = pd.factorize(rows[mode])[0].astype(np.float64)  # distinct coordinates are all it needs
    others = rows[[c for c in coords if c != mode]].reset_index(drop=True)
    return fibre_layout(others, x, 0, np.zeros(0))["dt"].shape


@dataclass
class FibreGP:
    """Residual GP along ``mode``, independent per fibre (see the module docstring).

    Attributes set by :meth:`fit`: ``theta`` (log lengthscale, log variance, log noise),
    ``nll`` (negative log marginal likelihood of the residuals, nats), ``seconds``.
    """

    mode: str
    kernel: str = "matern32"
    maxiter: int = 100
    theta: np.ndarray | None = None
    nll: float = np.nan
    seconds: float = np.nan
    start: np.ndarray | None = None  # hyperparameters to start from (else from the data)

    def fit(self, df: pd.DataFrame, coords: list[str], r: np.ndarray, noise0: float) -> FibreGP:
        t = time.perf_counter()
        r = np.asarray(r, dtype=np.float64)
        self._restore(df[coords], r)
        self._floor = _floor_shape(self.mode, coords)
        lay = self._layout(None)
        gaps = lay["dt"][lay["dt"] > 0]
        gap = float(np.median(gaps)) if gaps.size else 1.0
        span = float(np.nanmax(lay["grid"]) - np.nanmin(lay["grid"])) or 1.0
        v = float(np.var(r)) or 1.0
        lo = np.log([gap / 20, 1e-6 * v, 1e-6 * v])
        hi = np.log([20 * span, 10 * v, 10 * v])
        theta0 = np.log([2 * gap, max(v - noise0, 0.1 * v), noise0])
        theta0 = theta0 if self.start is None else np.asarray(self.start, np.float64)
        ss, n = float(np.sum(r**2)), float(len(r))
        with precision("float64"):
            if dense_layout(lay, self.kernel):
                vg = lambda th: dense_nll_grad(th, self.kernel, lay, ss, n)  # noqa: E731
            else:
                args = _fibre_arrays(lay, self._floor)
                vg = lambda th: _fibre_vg(jax.device_put(th), self.kernel, *args, ss, n)  # noqa: E731
            self.theta, self.nll = _lbfgs(vg, theta0, lo, hi, self.maxiter)
        self.seconds = time.perf_counter() - t
        return self

    def _restore(self, train: pd.DataFrame, r: np.ndarray) -> FibreGP:
        """Set the training rows (their coordinate columns) and residuals (fit and load)."""
        self._coords, self._train, self._r = list(train.columns), train.reset_index(drop=True), r
        self._floor = (0, 0)  # padded_local's shape, where fitted inside one
        return self

    def _layout(self, new: pd.DataFrame | None) -> dict:
        rows = (
            self._train
            if new is None
            else pd.concat(
                [self._train, new[self._coords].reset_index(drop=True)], ignore_index=True
            )
        )
        others = rows[[c for c in self._coords if c != self.mode]]
        x = rows[self.mode].to_numpy(dtype=np.float64)
        return fibre_layout(others, x, len(self._train), self._r)

    @property
    def hyperparameters(self) -> dict:
        ell, var, noise = np.exp(self.theta)
        return {"lengthscale": ell, "variance": var, "noise": noise}

    def posterior(self, new: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``g`` at the rows of ``new`` (the training rows if None)."""
        lay = self._layout(new)
        if dense_layout(lay, self.kernel):
            mean, var = dense_posterior(self.theta, self.kernel, lay)
        else:
            with precision("float64"):
                theta = jax.device_put(self.theta)
                arrays = _fibre_arrays(lay, self._floor)
                mean, var = _fibre_post_jit(theta, self.kernel, *arrays)
        rows = slice(0, len(self._train)) if new is None else slice(len(self._train), None)
        f, p = lay["fibre"][rows], lay["pos"][rows]
        return np.asarray(mean)[f, p], np.maximum(np.asarray(var)[f, p], 0.0)
