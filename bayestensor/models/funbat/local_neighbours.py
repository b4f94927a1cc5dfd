"""The nearest-neighbour residual GP of ``bt.fit(..., local="neighbours")`` (see
:mod:`bayestensor.models.funbat.local`), and the helpers both local processes share: shape
buckets (so that problems of nearby sizes share one compiled program) and the L-BFGS-B driver.

``g`` has a product Matérn-3/2 kernel over every continuous coordinate, independent across the
categorical ones. The likelihood is Vecchia's approximation (each row conditioned on its ``m``
nearest predecessors in a random order, in the lengthscale-scaled metric), prediction is kriging
from the ``m`` nearest training rows. Cost O(n m³).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from bayestensor._export import CachedJit
from bayestensor.driver import precision
from bayestensor.models.funbat.stream import bucket

#: The smallest shape bucket of the local processes' arrays (rows, fibres; a fibre's steps
#: have their own rule, see ``local_fibre._fibre_arrays``).
MIN_BUCKET = 64

__all__ = ["NeighbourGP", "padded_local", "vecchia_neighbours"]

#: The rows whose shapes the local processes pad their arrays to (:func:`padded_local`).
_FLOOR: contextvars.ContextVar[pd.DataFrame | None] = contextvars.ContextVar(
    "local_floor", default=None
)


@contextmanager
def padded_local(rows: pd.DataFrame) -> Iterator[None]:
    """Within this block, the local processes fitted pad their arrays to at least the shapes
    that ``rows`` (a frame of the coordinate columns) would give them: the fibre GP along a
    column, likelihood and posterior, to the fibres of ``rows`` and their most coordinates
    (``local_fibre``); the neighbour GP's kriging to ``len(rows)`` rows, queries and pool. A
    process keeps the floor for its predictions. (Not the neighbour GP's likelihood: L-BFGS-B
    evaluates it some 70 times a fit, each on twice the rows costs twice as much, and that
    outweighed the one compile saved: seals' fit again took 3.6 s against 1.6 s.)

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


def _pad(a: np.ndarray, n: int, value=0) -> np.ndarray:
    """``a`` padded along its first axis to ``n`` rows of ``value``."""
    if len(a) == n:
        return a
    pad = np.full((n - len(a), *a.shape[1:]), value, dtype=a.dtype)
    return np.concatenate([a, pad])


#: L-BFGS-B stops once a step lowers the negative log likelihood by less than this fraction
#: (scipy's default, 2.2e-9, spent about a sixth of us_temp's local-stage evaluations, 32 of
#: 188, on changes of a few hundredths of a nat; fold 0's held-out RMSE unchanged to 4 digits).
LBFGS_FTOL = 1e-7


def _lbfgs(vg, theta0, lo, hi, maxiter):
    """Minimise with L-BFGS-B in box bounds; ``vg(theta)`` returns the value and gradient."""
    from scipy.optimize import minimize

    def f(th):
        v, g = vg(jax.device_put(th))
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


def _kernel(a, b, ell, var):
    """Product Matérn-3/2 kernel over the last axis."""
    z = jnp.sqrt(3.0) * jnp.abs(a - b) / ell
    return var * jnp.prod((1.0 + z) * jnp.exp(-z), axis=-1)


def _lower_solve(K, B):
    """``L⁻¹ B`` for ``K = L Lᵀ`` (``K``: m × m positive definite, ``B``: m × p) in plain array
    operations: no LAPACK custom call, whose batched form can deadlock XLA's CPU thread pool
    when two run at once (see :mod:`bayestensor._xla`). For the small ``m`` of a neighbour set
    (8–16) this costs about what the LAPACK call does."""
    m = K.shape[0]
    idx = jnp.arange(m)

    def column(j, L):  # left-looking Cholesky: column j from the columns before it
        v = K[:, j] - L @ jnp.where(idx < j, L[j], 0.0)
        return L.at[:, j].set(jnp.where(idx >= j, v / jnp.sqrt(v[j]), 0.0))

    L = lax.fori_loop(0, m, column, jnp.zeros_like(K))

    def row(i, X):  # forward substitution
        return X.at[i].set((B[i] - jnp.where(idx < i, L[i], 0.0) @ X) / L[i, i])

    return lax.fori_loop(0, m, row, jnp.zeros_like(B))


def _conditional(xi, gi, xN, gN, rN, mask, ell, var, noise):
    """Mean and variance of ``g(xi)`` given noisy residuals ``rN`` at the neighbours ``xN``."""
    same = (gN[:, None] == gN[None, :]) & mask[:, None] & mask[None, :]
    K = jnp.where(same, _kernel(xN[:, None, :], xN[None, :, :], ell, var), 0.0)
    K = K + jnp.diag(jnp.where(mask, noise, 1.0))
    k = jnp.where(mask & (gN == gi), _kernel(xi[None, :], xN, ell, var), 0.0)
    ab = _lower_solve(K, jnp.stack([k, jnp.where(mask, rN, 0.0)], axis=1))
    a, b = ab[:, 0], ab[:, 1]
    return a @ b, var - a @ a


def _batched(theta, Xq, gq, X, g, r, nb):
    D = X.shape[1]
    ell, var, noise = jnp.exp(theta[:D]), jnp.exp(theta[D]), jnp.exp(theta[D + 1])
    mask = nb >= 0
    idx = jnp.maximum(nb, 0)
    fn = jax.vmap(_conditional, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))
    return fn(Xq, gq, X[idx], g[idx], r[idx], mask, ell, var, noise), noise


def _nll(theta, X, g, r, nb, w=None, pool=None):
    """Vecchia negative log likelihood of the rows ``X, g, r`` (weighted by ``w``: 0 pads), each
    conditioned on its neighbours ``nb``: rows of ``pool = (X, g, r)`` of every row when given
    (a subset of the conditionals), else of these rows."""
    (mu, v), noise = _batched(theta, X, g, *((X, g, r) if pool is None else pool), nb)
    s2 = v + noise
    terms = jnp.log(2 * jnp.pi * s2) + (r - mu) ** 2 / s2
    return 0.5 * jnp.sum(terms if w is None else w * terms)


def _nll_value_grad(theta, X, g, r, nb, w=None, pool=None):
    return jax.value_and_grad(_nll)(theta, X, g, r, nb, w, pool)


def _krige_rows(theta, Xq, gq, X, g, r, nb):
    return _batched(theta, Xq, gq, X, g, r, nb)[0]


# traced programs kept on disk with the compiled ones (bayestensor._export)
_vecchia_nll = CachedJit(_nll)
_vecchia_vg = CachedJit(_nll_value_grad)
_krige = CachedJit(_krige_rows, per_fit=2)  # at the training rows and at new rows
#: the neighbour GP's compiled programs (bounded with the fibre GP's by ``local``)
PROGRAMS = (_vecchia_nll, _vecchia_vg, _krige)


def _padded(X, g, r, nb, rows=None):
    """The likelihood's arrays padded to a shape bucket (pad rows: no neighbours, weight 0);
    with ``rows`` (positions), the conditionals of those rows only, their neighbours read from
    every row (the pool, padded to its own bucket)."""
    if rows is None:
        n = bucket(len(r), 512)
        w = _pad(np.ones(len(r)), n)
        return tuple(jax.device_put((_pad(X, n), _pad(g, n), _pad(r, n), _pad(nb, n, -1), w)))
    query = _padded(X[rows], g[rows], r[rows], nb[rows])
    n = bucket(len(r), 512)
    return (*query, tuple(jax.device_put((_pad(X, n), _pad(g, n), _pad(r, n)))))


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
        with precision("float64"):
            for _ in range(self.rounds):
                nb = vecchia_neighbours(_scaled(Xo, go, np.exp(theta[:D]))[0], self.m_fit, rows)
                args = _padded(Xo, go, ro, nb, rows)
                theta, self.nll = _lbfgs(
                    lambda th, a=args: _vecchia_vg(th, *a), theta, lo, hi, self.maxiter
                )
            if rows is not None and self.full_nll:  # every row's likelihood at the learned θ
                nb = vecchia_neighbours(_scaled(Xo, go, np.exp(theta[:D]))[0], self.m_fit)
                self.nll = float(_vecchia_nll(jax.device_put(theta), *_padded(Xo, go, ro, nb)))
        self.theta = theta
        self._restore(df, r)
        self._floor = 0 if (rows := floor_rows()) is None else len(rows)  # (for its kriging)
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
        self._floor = 0  # the rows of padded_local, where fitted inside one
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
        q, n = (bucket(max(k, self._floor), MIN_BUCKET) for k in (len(Z), len(self._r)))
        with precision("float64"):
            mean, var = _krige(
                jax.device_put(self.theta),
                *(jax.device_put(_pad(a, q)) for a in (X, g)),
                *(jax.device_put(_pad(a, n)) for a in (self._X, self._g, self._r)),
                jax.device_put(_pad(nb, q)),
            )
        k = len(Z)
        return np.asarray(mean)[:k], np.maximum(np.asarray(var)[:k], 0.0)
