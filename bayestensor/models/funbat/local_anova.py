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
maximise the exact marginal likelihood (L-BFGS-B in box bounds, from two starts, its gradient in
closed form) of at most :data:`FIT_ROWS` rows (a seeded random subset of more); all of it in
NumPy, with nothing to compile. Prediction is the exact posterior given every row, in chunks of
:data:`QUERY_ROWS` rows. Cost O(n³): for at most :data:`MAX_ROWS` rows.

The leave-one-out errors that the local stage compares are exact for this GP:
``(y_i − m_i) / (1 − v_i / σ²)`` with ``m_i, v_i`` the posterior of ``f`` at row ``i`` given
every row (:func:`~.local_tails.loo_errors`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.linalg.lapack import dtrtri

from bayestensor.models.funbat.local_neighbours import _lbfgs, split_columns

__all__ = ["AnovaGP", "FIT_ROWS", "MAX_ROWS"]

#: The exact GP on the values is the local stage's candidate up to this many training rows
#: (from there the neighbour GP is): its posterior given every row costs one O(n³)
#: factorisation and the inverse of its triangle, about 1.7 s at 4,500 rows on this 2-core
#: machine (``docs/benchmarks.md``).
MAX_ROWS = 5000
#: Its hyperparameters maximise the likelihood of at most this many rows (a random subset, seed
#: 0, of more): the fit costs O(n³) a step, some 70 steps (measured 1.3 s in all at 250 rows, 10 s
#: at 500; ``docs/benchmarks.md``).
FIT_ROWS = 256
#: Predictions are computed this many query rows at a time (memory: rows × training rows).
QUERY_ROWS = 4096


def _kernel_parts(theta, Xa, ga, Xb, gb, n_cont: int, slopes: bool = True):
    """Each coordinate's kernel between rows ``(Xa, ga)`` and ``(Xb, gb)`` (continuous
    coordinates ``X``, category codes ``g``), and each continuous one's derivative in its
    log lengthscale (Matérn-3/2: ``z² e^{−z}``; an empty list without ``slopes``)."""
    ell = np.exp(theta[:n_cont])
    parts, out = [], []
    for d in range(n_cont):
        z = np.sqrt(3.0) * np.abs(Xa[:, None, d] - Xb[None, :, d]) / ell[d]
        e = np.exp(-z)
        if slopes:
            out.append(z * z * e)
        z += 1.0
        z *= e
        parts.append(z)
    for d in range(ga.shape[1]):
        parts.append((ga[:, None, d] == gb[None, :, d]).astype(np.float64))
    return parts, out


def _variances(theta, n_cont: int, D: int):
    """``s_d²`` (D), ``s²``, ``c`` and the noise variance from ``theta``."""
    v = np.exp(theta[n_cont:])
    return v[:D], v[D], v[D + 1], v[D + 2]


def _combined(theta, parts, n_cont: int):
    """``c + Σ_d s_d² κ_d + s² Π_d κ_d`` from the coordinates' kernels ``parts``."""
    main, prod_var, const, _ = _variances(theta, n_cont, len(parts))
    return const + prod_var * np.prod(parts, axis=0) + np.tensordot(main, parts, axes=1)


#: :func:`_gram` assembles the kernel this many entries at a time (rows of ``Xa`` times all of
#: ``Xb``): its three work arrays then stay in the processor's cache.
GRAM_BLOCK = 1 << 16


def _gram(theta, Xa, ga, Xb, gb, n_cont: int):
    """The kernel between rows ``(Xa, ga)`` and ``(Xb, gb)``, ``theta`` as
    :attr:`AnovaGP.theta` lays it out: :func:`_combined` of :func:`_kernel_parts`, assembled in
    place, in blocks of rows (the posterior's kernels have up to ``MAX_ROWS²`` entries; passes
    over arrays that large took as long as the factorisation on this 2-core machine)."""
    D = n_cont + ga.shape[1]
    main, prod_var, const, _ = _variances(theta, n_cont, D)
    scale = np.sqrt(3.0) / np.exp(theta[:n_cont])
    K = np.empty((len(Xa), len(Xb)))
    step = max(1, GRAM_BLOCK // max(len(Xb), 1))
    z, e, prod = (np.empty((step, len(Xb))) for _ in range(3))
    for lo in range(0, len(Xa), step):
        at = slice(lo, lo + step)
        out, n = K[at], len(K[at])
        z, e, prod = z[:n], e[:n], prod[:n]
        out.fill(const)
        prod.fill(prod_var)
        for d in range(n_cont):  # Matérn-3/2: (1 + z) e^{−z}, z = √3 |Δ| / ℓ
            np.subtract.outer(Xa[at, d], Xb[:, d], out=z)
            np.abs(z, out=z)
            z *= scale[d]
            np.negative(z, out=e)
            np.exp(e, out=e)
            z += 1.0
            z *= e
            prod *= z
            z *= main[d]
            out += z
        for d in range(ga.shape[1]):  # 1[same category]
            same = np.equal.outer(ga[at, d], gb[:, d])
            prod *= same
            np.add(out, main[n_cont + d], out=out, where=same)
        out += prod
    return K


def _factor(theta, X, g, mask, n_cont, slopes: bool = True):
    """The training rows' covariance with the noise, its Cholesky factor, and the kernel's
    parts and slopes (empty lists without ``slopes``); padding rows (``mask`` 0) decoupled,
    with unit variance (they add nothing to the likelihood; callers may pad to shapes of their
    own)."""
    noise = np.exp(theta[-1])
    if slopes:  # (the likelihood's gradient needs the parts)
        parts, slopes = _kernel_parts(theta, X, g, X, g, n_cont)
        C = _combined(theta, parts, n_cont)
    else:  # (the posterior: only the covariance, assembled in place)
        parts, slopes, C = [], [], _gram(theta, X, g, X, g, n_cont)
    if not np.all(mask == 1.0):
        C *= mask[:, None]
        C *= mask[None, :]
    # (no jitter: the noise's lower bound, 1e-6 of the values' mean square, keeps it definite)
    C[np.diag_indices_from(C)] += mask * noise + (1.0 - mask)
    return cho_factor(C, lower=True, overwrite_a=True), parts, slopes


def _anova_vg(theta, X, g, r, mask, n_cont):
    """The negative log marginal likelihood of the real rows (``mask`` 1) and its gradient in
    ``theta``: ``½ rᵀ C⁻¹ r + ½ log |C| + ½ n log 2π``, and ``−½ tr((α αᵀ − C⁻¹) ∂C)``; an
    infinite value where ``C`` is not positive definite in floating point (L-BFGS-B steps back)."""
    theta, X, g, r, mask = (np.asarray(a, np.float64) for a in (theta, X, g, r, mask))
    r = r * mask
    try:
        factor, parts, slopes = _factor(theta, X, g, mask, n_cont)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    main, prod_var, const, noise = _variances(theta, n_cont, len(parts))
    alpha = cho_solve(factor, r)
    logdet = 2.0 * np.sum(np.log(np.diag(factor[0])))
    nll = 0.5 * r @ alpha + 0.5 * logdet + 0.5 * np.sum(mask) * np.log(2.0 * np.pi)
    W = np.outer(alpha, alpha) - cho_solve(factor, np.eye(len(r)))
    W *= mask[:, None] * mask[None, :]  # (padding rows' entries of C are constants)
    prod = np.prod(parts, axis=0)
    grad = []
    for d in range(n_cont):  # ∂K/∂ log ℓ_d: the main effect's and the product's
        others = np.prod([p for e, p in enumerate(parts) if e != d], axis=0)
        grad.append(np.sum(W * (main[d] + prod_var * others) * slopes[d]))
    grad += [main[d] * np.sum(W * p) for d, p in enumerate(parts)]
    grad += [prod_var * np.sum(W * prod), const * np.sum(W), noise * np.sum(np.diag(W) * mask)]
    return float(nll), -0.5 * np.asarray(grad)


def _anova_post(theta, Xq, gq, X, g, r, mask, n_cont):
    """Posterior mean and variance of ``f`` at the query rows."""
    theta = np.asarray(theta, np.float64)
    factor, _, _ = _factor(theta, X, g, mask, n_cont, slopes=False)
    alpha = cho_solve(factor, r * mask)
    Kq = _gram(theta, Xq, gq, X, g, n_cont) * mask[None, :]
    V = solve_triangular(factor[0], Kq.T, lower=True)
    prior = np.sum(np.exp(theta[n_cont:-1]))  # k(x, x): every variance but the noise
    return Kq @ alpha, prior - np.sum(V * V, axis=0)


def _anova_post_rows(theta, X, g, r, n_cont):
    """Posterior mean and variance of ``f`` at the training rows themselves, from one
    factorisation and the inverse of its triangle (no cross-covariance: with ``C = K + σ² I``,
    ``K C⁻¹ r = r − σ² α`` and ``k − (K C⁻¹ K)_{ii} = σ² − σ⁴ (C⁻¹)_{ii}``); about half the
    work of :func:`_anova_post` with the training rows as queries."""
    theta = np.asarray(theta, np.float64)
    (L, _), _, _ = _factor(theta, X, g, np.ones(len(r)), n_cont, slopes=False)
    noise = float(np.exp(theta[-1]))
    alpha = cho_solve((L, True), r)
    inv, info = dtrtri(L, lower=1, overwrite_c=1)  # L⁻¹ (L is not used after this)
    if info != 0:
        raise np.linalg.LinAlgError(f"the Cholesky factor is singular (LAPACK info {info})")
    inv = np.tril(inv)  # (the upper triangle holds what the factorisation left there)
    inv_diag = np.einsum("ij,ij->j", inv, inv)  # (C⁻¹)_ii: the squares of L⁻¹'s columns
    return r - noise * alpha, noise - noise * noise * inv_diag


#: The compiled programs (for :func:`bayestensor.driver.bound_compiled`): none, the GP is
#: computed in NumPy (it used to compile its likelihood and posterior: 1.5–2 s of a cold fit).
PROGRAMS = ()


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
        "continuous"|"categorical"}``; by default numeric columns are continuous): the
        hyperparameters to at most :data:`FIT_ROWS` of them (a random subset, seed 0, of more;
        ``nll`` is theirs), the posterior to all."""
        t = time.perf_counter()
        self.continuous, self.categorical = split_columns(df, coords, kinds)
        r_all = np.asarray(r, dtype=np.float64)
        if len(r_all) > MAX_ROWS:
            raise ValueError(f"AnovaGP is exact: at most {MAX_ROWS} rows, got {len(r_all)}")
        sub = np.arange(len(r_all))
        if len(sub) > FIT_ROWS:
            sub = np.sort(np.random.default_rng(0).choice(len(sub), FIT_ROWS, replace=False))
        X, g = self._features(df.iloc[sub])
        r = r_all[sub]
        n_cont, D = X.shape[1], X.shape[1] + g.shape[1]
        span = np.ptp(X, axis=0) if len(r) else np.ones(n_cont)
        span = np.where(span > 0, span, 1.0)
        v = float(np.mean(r**2)) or 1.0
        # bounds: lengthscales, then the D + 2 variances and the noise (relative to the values)
        lo = np.concatenate([np.log(span * 1e-3), np.full(D + 3, np.log(1e-6 * v))])
        hi = np.concatenate([np.log(span * 1e2), np.full(D + 3, np.log(10 * v))])
        mask = np.ones(len(r))
        best = None
        for frac in (0.2, 1.0):  # two starts: short and long lengthscales
            start = np.concatenate(
                [
                    np.log(frac * span),
                    np.full(D, np.log(0.3 * v / D)),
                    np.log([0.3 * v, 0.1 * v, noise0]),
                ]
            )
            vg = lambda th: _anova_vg(th, X, g, r, mask, n_cont=n_cont)  # noqa: E731
            theta, nll = _lbfgs(vg, start, lo, hi, self.maxiter)
            if best is None or nll < best[1]:
                best = (theta, nll)
        self.theta, self.nll = best[0], float(best[1])
        self._restore(df, r_all)
        self.seconds = time.perf_counter() - t
        return self

    def _restore(self, train: pd.DataFrame, r: np.ndarray) -> AnovaGP:
        """Set the training rows and values (fit and load; ``theta``, ``continuous`` and
        ``categorical`` already set)."""
        self._train = train[self.continuous + self.categorical].reset_index(drop=True)
        self._X, self._g = self._features(self._train)
        self._r = np.asarray(r, dtype=np.float64)
        self._at_rows = None  # the posterior at these rows, once asked for
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
        n_cont = len(self.continuous)
        if new is None:  # (once: the local stage asks for it more than once)
            if self._at_rows is None:
                self._at_rows = _anova_post_rows(self.theta, self._X, self._g, self._r, n_cont)
            mean, var = self._at_rows
            return mean.copy(), np.maximum(var, 0.0)
        Xq, gq = self._features(new)
        mask = np.ones(len(self._r))
        mean, var = np.zeros(len(Xq)), np.zeros(len(Xq))
        for lo in range(0, len(Xq), QUERY_ROWS):
            at = slice(lo, lo + QUERY_ROWS)
            train = (self._X, self._g, self._r, mask)
            mean[at], var[at] = _anova_post(self.theta, Xq[at], gq[at], *train, n_cont=n_cont)
        return mean, np.maximum(var, 0.0)
