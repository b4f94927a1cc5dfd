"""The nearest-neighbour residual GP of ``bt.fit(..., local="neighbours")`` (see
:mod:`bayestensor.models.funbat.local`), and the L-BFGS-B driver the local processes share.

``g`` has a product Matérn-3/2 kernel over every continuous coordinate, independent across the
categorical ones. The likelihood is Vecchia's approximation (each row conditioned on its ``m``
nearest predecessors in a random order, in the lengthscale-scaled metric), prediction is kriging
from the ``m`` nearest training rows. Cost O(n m³), in batched NumPy algebra (nothing to
compile: a cold fit of small data spent some 2 s compiling the JAX programs this replaced).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["NeighbourGP", "vecchia_neighbours"]

#: L-BFGS-B stops once a step lowers the negative log likelihood by less than this fraction
#: (scipy's default, 2.2e-9, spent about a sixth of us_temp's local-stage evaluations, 32 of
#: 188, on changes of a few hundredths of a nat; fold 0's held-out RMSE unchanged to 4 digits).
LBFGS_FTOL = 1e-7


def _lbfgs(vg, theta0, lo, hi, maxiter):
    """Minimise with L-BFGS-B in box bounds; ``vg(theta)`` (a float64 NumPy array) returns the
    value and gradient."""
    from scipy.optimize import minimize

    def f(th):
        v, g = vg(th)
        return float(v), np.asarray(g, dtype=np.float64)

    theta0 = np.clip(theta0, lo, hi)
    out = minimize(
        f,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lo, hi, strict=True)),
        options={"maxiter": maxiter, "ftol": LBFGS_FTOL},
    )
    return out.x, float(out.fun)


#: Rows per block of the neighbour GP's batched algebra (memory: rows × m² × dimensions).
BLOCK_ROWS = 4096


def _product_matern32(z):
    """``Π_d (1 + z_d) e^{−z_d}`` over the last axis (``z``: scaled distances)."""
    return np.prod((1.0 + z) * np.exp(-z), axis=-1)


def _conditionals(theta, Xq, gq, X, g, r, nb, grad=False):
    """Mean and variance of ``g`` at the rows ``Xq, gq`` given the noisy residuals ``r`` at
    their neighbours ``nb`` (rows of ``X, g, r``; ``-1`` pads), by batched dense algebra; with
    ``grad``, also their derivatives in ``theta = (log ℓ, log σ², log noise)`` (rows × D + 2).

    A factor ``(1 + z) e^{-z}`` of the kernel has derivative ``z² e^{-z}`` in ``log ℓ``, so
    ``∂K/∂log ℓ_d = K z_d² / (1 + z_d)``; with ``α = K⁻¹ r_N``, ``β = K⁻¹ k``:
    ``∂μ = ∂kᵀα − βᵀ∂Kα`` and ``∂v = ∂σ² − 2∂kᵀβ + βᵀ∂Kβ``."""
    theta = np.asarray(theta, dtype=np.float64)
    D = X.shape[1]
    ell, var, noise = np.exp(theta[:D]), np.exp(theta[D]), np.exp(theta[D + 1])
    mask = nb >= 0
    idx = np.maximum(nb, 0)
    xN, gN, rN = X[idx], g[idx], np.where(mask, r[idx], 0.0)
    m = nb.shape[1]
    diag = np.arange(m)
    zK = np.sqrt(3.0) * np.abs(xN[:, :, None, :] - xN[:, None, :, :]) / ell
    same = (gN[:, :, None] == gN[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    Kk = np.where(same, var * _product_matern32(zK), 0.0)
    K = Kk.copy()
    K[:, diag, diag] += np.where(mask, noise, 1.0)
    zk = np.sqrt(3.0) * np.abs(Xq[:, None, :] - xN) / ell
    k = np.where(mask & (gN == gq[:, None]), var * _product_matern32(zk), 0.0)
    sol = np.linalg.solve(K, np.stack([rN, k], axis=-1))
    a, b = sol[..., 0], sol[..., 1]
    mu, v = np.sum(k * a, -1), var - np.sum(k * b, -1)
    if not grad:
        return mu, v
    dK = Kk[..., None] * (zK**2 / (1.0 + zK))  # ∂K/∂log ℓ_d (rows × m × m × D)
    dk = k[..., None] * (zk**2 / (1.0 + zk))
    bKa, bKb = (np.einsum("ni,nijd,nj->nd", b, dK, c) for c in (a, b))
    dmu = np.column_stack(
        [
            np.einsum("nid,ni->nd", dk, a) - bKa,
            mu - np.einsum("ni,nij,nj->n", b, Kk, a),  # log σ²: ∂K = K, ∂k = k
            -noise * np.sum(b * a * mask, -1),  # log noise: ∂K = noise I on the neighbours
        ]
    )
    dv = np.column_stack(
        [
            bKb - 2.0 * np.einsum("nid,ni->nd", dk, b),
            var - 2.0 * np.sum(k * b, -1) + np.einsum("ni,nij,nj->n", b, Kk, b),
            noise * np.sum(b * b * mask, -1),
        ]
    )
    return mu, v, dmu, dv


def _nll_vg(theta, X, g, r, nb, rows=None, grad=True):
    """Vecchia negative log likelihood (and its gradient in ``theta``) of the rows ``X, g, r``,
    each conditioned on its neighbours ``nb``; with ``rows`` (positions), the conditionals of
    those rows only, their neighbours read from every row. ``inf`` (and a zero gradient) where a
    neighbour set's covariance is singular or a predictive variance comes out non-positive in
    floating point (L-BFGS-B steps back)."""
    theta = np.asarray(theta, dtype=np.float64)
    noise = np.exp(theta[-1])
    rows = np.arange(len(r)) if rows is None else np.asarray(rows)
    value, gradient = 0.0, np.zeros(len(theta))
    for s in range(0, len(rows), BLOCK_ROWS):
        q = rows[s : s + BLOCK_ROWS]
        try:
            out = _conditionals(theta, X[q], g[q], X, g, r, nb[q], grad)
        except np.linalg.LinAlgError:  # a singular set
            out = None
        s2 = None if out is None else out[1] + noise
        if s2 is None or not np.all(np.isfinite(s2) & (s2 > 0)):  # or an indefinite one
            return (np.inf, np.zeros(len(theta))) if grad else np.inf
        e = r[q] - out[0]
        value += 0.5 * np.sum(np.log(2 * np.pi * s2) + e**2 / s2)
        if grad:
            ds2 = out[3].copy()
            ds2[:, -1] += noise
            gradient += 0.5 * np.sum(
                ds2 / s2[:, None]
                - 2 * e[:, None] * out[2] / s2[:, None]
                - (e**2 / s2**2)[:, None] * ds2,
                axis=0,
            )
    return (value, gradient) if grad else value


#: the neighbour GP computes in NumPy: nothing to compile (``local`` bounds the others)
PROGRAMS = ()


#: The neighbour searches scale the coordinates by the lengthscales rounded to this step in
#: log space (1 %). On gridded data many neighbours are equally far, and which of them a search
#: returns turned on the last digits of the lengthscales: residuals changed by 1e-15 (relative)
#: moved seals' predictions by 2.6 % of the residuals' sd, and its hyperparameters by 1 %
#: through the next round's neighbours. Rounded, they move by 1e-13 (``docs/benchmarks.md``).
METRIC_STEP = 0.01


def _scaled(X, g, ell, far=None):
    """Rows in the lengthscale-scaled metric (``ell`` rounded to :data:`METRIC_STEP` in log
    space, so that ties between equally far neighbours fall the same way for lengthscales that
    differ in their last digits), categorical groups pushed ``far`` apart."""
    ell = np.exp(np.round(np.log(ell) / METRIC_STEP) * METRIC_STEP)
    Z = X / ell
    if far is None:
        far = 10.0 * (float(np.ptp(Z, axis=0).max()) if len(Z) and Z.size else 1.0) + 1.0
    return np.column_stack([Z, g * far]), far


def vecchia_neighbours(Z: np.ndarray, m: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Conditioning sets of a Vecchia approximation (rows in the order given).

    Row ``i ≤ m`` conditions on all earlier rows (so ``m ≥ n − 1`` gives the exact
    likelihood); a later row ``i ∈ [2^j s, 2^{j+1} s)`` on its ``m`` nearest among the first
    ``2^j s`` rows (``s = m + 1``), a subset of its predecessors, so the approximation stays a
    valid density. ``-1`` pads. With ``rows`` (sorted positions) only those rows' sets are
    searched (the others stay ``-1``): the same sets, for the likelihood of a subset.
    """
    from scipy.spatial import cKDTree

    n = len(Z)
    nb = -np.ones((n, m), np.int64)
    for i in range(1, min(n, m + 1)):
        nb[i, :i] = np.arange(i)
    start = m + 1
    while start < n:
        stop = min(n, 2 * start)
        todo = np.arange(start, stop) if rows is None else rows[(rows >= start) & (rows < stop)]
        if len(todo):
            _, idx = cKDTree(Z[:start]).query(Z[todo], k=m)
            nb[todo] = idx
        start = stop
    return nb


def split_columns(df: pd.DataFrame, coords: list[str], kinds: dict[str, str] | None):
    """``(continuous, categorical)`` column names of ``coords`` by ``kinds`` (``{column:
    "continuous"|"categorical"}``; None: the numeric columns of ``df`` are continuous)."""
    if kinds is None:
        kinds = {
            c: "continuous" if pd.api.types.is_numeric_dtype(df[c]) else "categorical"
            for c in coords
        }
    return [c for c in coords if kinds[c] == "continuous"], [
        c for c in coords if kinds[c] != "continuous"
    ]


@dataclass
class NeighbourGP:
    """Residual GP with a product Matérn-3/2 kernel, nearest-neighbour likelihood and kriging.

    ``m`` neighbours for prediction, ``m_fit`` in the likelihood, ``rounds`` re-selections of
    the neighbours as the lengthscales move. The hyperparameters are learned on the
    conditionals of a random ``max_fit`` rows (None: all rows), each given its neighbours among
    every earlier row in a random order (not a subsample of the rows: at its lower density the
    short-range correlation would not show); ``nll`` is then the likelihood of all rows (with
    ``full_nll``; else that of the learning conditionals, a saving where it is not compared).
    """

    m: int = 16
    m_fit: int = 8
    rounds: int = 2
    maxiter: int = 30
    max_fit: int | None = 2048
    seed: int = 0
    full_nll: bool = True
    theta: np.ndarray | None = None
    nll: float = np.nan
    seconds: float = np.nan
    start: np.ndarray | None = None  # hyperparameters to start from (else from the data)
    continuous: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

    def _features(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        X = df[self.continuous].to_numpy(dtype=np.float64)
        if self.categorical:
            # one tuple of labels per row (a row-wise pandas apply took 4 s on 21k rows)
            keys = zip(*(df[c].astype(str).to_numpy() for c in self.categorical), strict=True)
            g = np.array([self._groups.setdefault(k, len(self._groups)) for k in keys], np.int64)
        else:
            g = np.zeros(len(df), np.int64)
        return X, g

    def fit(
        self,
        df: pd.DataFrame,
        coords: list[str],
        r: np.ndarray,
        noise0: float,
        kinds: dict[str, str] | None = None,
    ) -> NeighbourGP:
        """``kinds``: ``{column: "continuous"|"categorical"}`` (default: numeric columns are
        continuous)."""
        t = time.perf_counter()
        self.continuous, self.categorical = split_columns(df, coords, kinds)
        self._groups = {}
        X, g = self._features(df)
        r = np.asarray(r, dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(r))
        Xo, go, ro = X[order], g[order], r[order]
        # learn on the conditionals of max_fit random rows, each given its neighbours among
        # every earlier row (a subsample of rows would hide the short-range correlation)
        rows = None
        if self.max_fit and self.max_fit < len(r):
            rows = np.sort(rng.choice(len(r), self.max_fit, replace=False))
        D = X.shape[1]
        span = np.ptp(X, axis=0)
        span = np.where(span > 0, span, 1.0)
        v = float(np.var(r)) or 1.0
        theta = np.concatenate([np.log(0.05 * span), np.log([max(v - noise0, 0.1 * v), noise0])])
        theta = theta if self.start is None else np.asarray(self.start, np.float64)
        lo = np.concatenate([np.log(span * 1e-4), np.log([1e-6 * v, 1e-6 * v])])
        hi = np.concatenate([np.log(span * 1e2), np.log([10 * v, 10 * v])])
        for _ in range(self.rounds):
            nb = vecchia_neighbours(_scaled(Xo, go, np.exp(theta[:D]))[0], self.m_fit, rows)
            theta, self.nll = _lbfgs(
                lambda th, nb=nb: _nll_vg(th, Xo, go, ro, nb, rows), theta, lo, hi, self.maxiter
            )
        if rows is not None and self.full_nll:  # every row's likelihood at the learned θ
            nb = vecchia_neighbours(_scaled(Xo, go, np.exp(theta[:D]))[0], self.m_fit)
            self.nll = float(_nll_vg(theta, Xo, go, ro, nb, grad=False))
        self.theta = theta
        self._restore(df, r)
        self.seconds = time.perf_counter() - t
        return self

    def _restore(self, train: pd.DataFrame, r: np.ndarray) -> NeighbourGP:
        """Set the training rows and residuals and build the neighbour search (fit and load;
        ``theta``, ``continuous`` and ``categorical`` already set)."""
        from scipy.spatial import cKDTree

        self._groups = {}
        self._train = train[self.continuous + self.categorical].reset_index(drop=True)
        X, g = self._features(self._train)
        self._X, self._g, self._r = X, g, np.asarray(r, dtype=np.float64)
        Z, self._far = _scaled(X, g, np.exp(self.theta[: X.shape[1]]))
        self._tree = cKDTree(Z)
        return self

    @property
    def hyperparameters(self) -> dict:
        D = len(self.continuous)
        out = {
            f"lengthscale[{c}]": float(np.exp(self.theta[k])) for k, c in enumerate(self.continuous)
        }
        out["variance"] = float(np.exp(self.theta[D]))
        out["noise"] = float(np.exp(self.theta[D + 1]))
        return out

    def posterior(self, new: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``g`` at the rows of ``new`` (the training rows if None)."""
        X, g = (self._X, self._g) if new is None else self._features(new)
        D = X.shape[1]
        Z, _ = _scaled(X, g, np.exp(self.theta[:D]), self._far)
        _, nb = self._tree.query(Z, k=min(self.m, len(self._r)))
        nb = np.asarray(nb).reshape(len(Z), -1)
        mean, var = np.empty(len(Z)), np.empty(len(Z))
        for s in range(0, len(Z), BLOCK_ROWS):
            q = slice(s, s + BLOCK_ROWS)
            mean[q], var[q] = _conditionals(
                self.theta, X[q], g[q], self._X, self._g, self._r, nb[q]
            )
        return mean, np.maximum(var, 0.0)
