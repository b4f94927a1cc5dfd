"""An exact GP on the values with an ANOVA kernel, for the local stage on small data.

The local stage (:mod:`.local`) compares the low-rank part with a GP on the values alone
(:mod:`.local_cavity`). On large data that GP is the nearest-neighbour one
(:class:`~.local_neighbours.NeighbourGP`: a product kernel, independent across the categories).
On small data the rows are few enough for an exact GP, and a product kernel misses what panels
of few rows per unit mostly hold: a curve shared by every unit plus a unit's own offset. Its
kernel here is a sum over the coordinates plus their product,

.. math:: k(x, x') = c + \\sum_d s_d^2 κ_d(x_d, x'_d) + s^2 \\prod_d κ_d(x_d, x'_d),

``κ_d`` a Matérn-3/2 kernel in the coordinate's units for a continuous coordinate and
``1[x_d = x'_d]`` for a categorical one: main effects (each unit's offset, a shared curve)
beside the interaction. The hyperparameters (lengthscales, ``s_d²``, ``s²``, ``c``, the noise)
maximise the exact marginal likelihood (L-BFGS-B in box bounds, from two starts); the rows are
padded to a bucket of sizes so that fits of similar size share one compiled program.
Prediction is the exact posterior. Cost O(n³): for at most :data:`MAX_ROWS` rows.

The leave-one-out errors that the local stage compares are exact for this GP:
``(y_i − m_i) / (1 − v_i / σ²)`` with ``m_i, v_i`` the posterior of ``f`` at row ``i`` given
every row (:func:`~.local_tails.loo_errors`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayestensor._export import CachedJit
from bayestensor.driver import precision
from bayestensor.models.funbat.local_neighbours import _lbfgs, _pad, split_columns
from bayestensor.models.funbat.stream import bucket

__all__ = ["AnovaGP", "MAX_ROWS"]

#: The exact GP on the values is the local stage's candidate up to this many training rows.
#: Its fit costs O(n³) a step: measured 0.25 s at 120 rows, 1.3 s at 250, 10 s at 500 and 25 s
#: at 1,000 (three coordinates, after the compile; ``docs/benchmarks.md``).
MAX_ROWS = 256
#: Fits pad their rows to a bucket of sizes from this one up (shared compiled programs).
MIN_BUCKET = 32


def _gram(theta, Xa, ga, Xb, gb, n_cont: int):
    """The kernel between rows ``(Xa, ga)`` and ``(Xb, gb)`` (continuous coordinates ``X``,
    category codes ``g``), ``theta`` as :attr:`AnovaGP.theta` lays it out."""
    ell = jnp.exp(theta[:n_cont])
    D = n_cont + ga.shape[1]
    main = jnp.exp(theta[n_cont : n_cont + D])
    prod_var, const = jnp.exp(theta[n_cont + D]), jnp.exp(theta[n_cont + D + 1])
    parts = []
    for d in range(n_cont):
        z = jnp.sqrt(3.0) * jnp.abs(Xa[:, None, d] - Xb[None, :, d]) / ell[d]
        parts.append((1.0 + z) * jnp.exp(-z))
    for d in range(ga.shape[1]):
        parts.append((ga[:, None, d] == gb[None, :, d]).astype(Xa.dtype))
    total = const + prod_var * jnp.prod(jnp.stack(parts), axis=0)
    for d, p in enumerate(parts):
        total = total + main[d] * p
    return total


def _prior_variance(theta, n_cont: int):
    """``k(x, x)``: the sum of the main effects', the product's and the constant's variances."""
    return jnp.sum(jnp.exp(theta[n_cont:-1]))


def _padded_gram(theta, X, g, mask, n_cont):
    """The training rows' covariance with the noise; padding rows (``mask`` 0) decoupled, with
    unit variance (they add nothing to the likelihood)."""
    noise = jnp.exp(theta[-1])
    K = _gram(theta, X, g, X, g, n_cont) * mask[:, None] * mask[None, :]
    # (no jitter: the noise's lower bound, 1e-6 of the values' mean square, keeps it definite)
    diag = mask * noise + (1.0 - mask)
    return K + jnp.diag(diag)


def _nll(theta, X, g, r, mask, n_cont):
    """The negative log marginal likelihood of the real rows."""
    L = jnp.linalg.cholesky(_padded_gram(theta, X, g, mask, n_cont))
    a = jax.scipy.linalg.solve_triangular(L, r * mask, lower=True)
    n = jnp.sum(mask)
    return 0.5 * a @ a + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * n * jnp.log(2.0 * jnp.pi)


def _nll_value_grad(theta, X, g, r, mask, n_cont):
    return jax.value_and_grad(_nll)(theta, X, g, r, mask, n_cont)


def _posterior_rows(theta, Xq, gq, X, g, r, mask, n_cont):
    """Posterior mean and variance of ``f`` at the query rows."""
    L = jnp.linalg.cholesky(_padded_gram(theta, X, g, mask, n_cont))
    alpha = jax.scipy.linalg.cho_solve((L, True), r * mask)
    Kq = _gram(theta, Xq, gq, X, g, n_cont) * mask[None, :]
    V = jax.scipy.linalg.solve_triangular(L, Kq.T, lower=True)
    return Kq @ alpha, _prior_variance(theta, n_cont) - jnp.sum(V * V, axis=0)


_anova_vg = CachedJit(_nll_value_grad, static_argnames=("n_cont",))
_anova_post = CachedJit(_posterior_rows, static_argnames=("n_cont",), per_fit=2)
#: The compiled programs (for :func:`bayestensor.driver.bound_compiled`).
PROGRAMS = (_anova_vg, _anova_post)


@dataclass
class AnovaGP:
    """Exact GP with the kernel of the module docstring; the interface of
    :class:`~.local_neighbours.NeighbourGP` (``fit``, ``posterior``, ``hyperparameters``,
    ``theta``, ``nll``, and ``_restore`` for loading and updates).

    ``theta``: log lengthscales of the continuous coordinates, log ``s_d²`` of every coordinate
    (continuous first, then categorical), log ``s²``, log ``c``, log noise variance.
    """

    maxiter: int = 100
    theta: np.ndarray | None = None
    nll: float = np.nan
    seconds: float = np.nan
    continuous: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

    def _features(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        X = df[self.continuous].to_numpy(dtype=np.float64)
        g = df[self.categorical].to_numpy(dtype=np.float64)  # category codes (floats)
        return X, g

    def fit(
        self,
        df: pd.DataFrame,
        coords: list[str],
        r: np.ndarray,
        noise0: float,
        kinds: dict[str, str] | None = None,
    ) -> AnovaGP:
        """Fit to the values ``r`` at the rows of ``df`` (``kinds``: ``{column:
        "continuous"|"categorical"}``; by default numeric columns are continuous)."""
        t = time.perf_counter()
        self.continuous, self.categorical = split_columns(df, coords, kinds)
        X, g = self._features(df)
        r = np.asarray(r, dtype=np.float64)
        if len(r) > MAX_ROWS:
            raise ValueError(f"AnovaGP is exact: at most {MAX_ROWS} rows, got {len(r)}")
        n_cont, D = X.shape[1], X.shape[1] + g.shape[1]
        span = np.ptp(X, axis=0) if len(r) else np.ones(n_cont)
        span = np.where(span > 0, span, 1.0)
        v = float(np.mean(r**2)) or 1.0
        # bounds: lengthscales, then the D + 2 variances and the noise (relative to the values)
        lo = np.concatenate([np.log(span * 1e-3), np.full(D + 3, np.log(1e-6 * v))])
        hi = np.concatenate([np.log(span * 1e2), np.full(D + 3, np.log(10 * v))])
        n = bucket(len(r), MIN_BUCKET)
        args = tuple(jax.device_put(a) for a in (_pad(X, n), _pad(g, n), _pad(r, n)))
        mask = jax.device_put(_pad(np.ones(len(r)), n))
        best = None
        with precision("float64"):
            for frac in (0.2, 1.0):  # two starts: short and long lengthscales
                start = np.concatenate(
                    [
                        np.log(frac * span),
                        np.full(D, np.log(0.3 * v / D)),
                        np.log([0.3 * v, 0.1 * v, noise0]),
                    ]
                )
                theta, nll = _lbfgs(
                    lambda th: _anova_vg(th, *args, mask, n_cont=n_cont),
                    start,
                    lo,
                    hi,
                    self.maxiter,
                )
                if best is None or nll < best[1]:
                    best = (theta, nll)
        self.theta, self.nll = best[0], float(best[1])
        self._restore(df, r)
        self.seconds = time.perf_counter() - t
        return self

    def _restore(self, train: pd.DataFrame, r: np.ndarray) -> AnovaGP:
        """Set the training rows and values (fit and load; ``theta``, ``continuous`` and
        ``categorical`` already set)."""
        self._train = train[self.continuous + self.categorical].reset_index(drop=True)
        self._X, self._g = self._features(self._train)
        self._r = np.asarray(r, dtype=np.float64)
        return self

    @property
    def hyperparameters(self) -> dict:
        """``lengthscale[<column>]``, ``variance[<column>]`` (main effects), ``variance`` (the
        product), ``constant`` and ``noise``."""
        th, n_cont = np.exp(self.theta), len(self.continuous)
        names = self.continuous + self.categorical
        out = {f"lengthscale[{c}]": float(th[k]) for k, c in enumerate(self.continuous)}
        out |= {f"variance[{c}]": float(th[n_cont + k]) for k, c in enumerate(names)}
        out["variance"] = float(th[n_cont + len(names)])
        out["constant"] = float(th[n_cont + len(names) + 1])
        out["noise"] = float(th[-1])
        return out

    def posterior(self, new: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``f`` at the rows of ``new`` (the training rows if None)."""
        Xq, gq = (self._X, self._g) if new is None else self._features(new)
        n, q = bucket(len(self._r), MIN_BUCKET), bucket(len(Xq), MIN_BUCKET)
        with precision("float64"):
            mean, var = _anova_post(
                jax.device_put(self.theta),
                *(jax.device_put(_pad(a, q)) for a in (Xq, gq)),
                *(jax.device_put(_pad(a, n)) for a in (self._X, self._g, self._r)),
                jax.device_put(_pad(np.ones(len(self._r)), n)),
                n_cont=len(self.continuous),
            )
        k = len(Xq)
        return np.asarray(mean)[:k], np.maximum(np.asarray(var)[:k], 0.0)
