"""A local residual process on top of a fitted FunBaT model: ``bt.fit(..., local=...)``.

The model is ``y = f(x) + g(x) + ε``: ``f`` the fitted low-rank (Tucker / CP) function and ``g``
a zero-mean GP for the short-range variation a low rank cannot carry. ``g`` is fitted
*stage-wise* to the training residuals ``r = y − E[f]`` of a converged fit, with its
hyperparameters (and a noise variance) chosen by the marginal likelihood, and every cost linear
in the rows. Two kinds:

``"fibre"`` (exact, state space)
    ``g`` varies along one continuous mode ``k`` and is independent across the *fibres* of the
    tensor (each combination of the other coordinates): ``Cov(g(x), g(x')) =
    κ_k(x_k, x'_k) · 1[x_{−k} = x'_{−k}]``, ``κ_k`` a Matérn kernel with one lengthscale and
    variance shared by all fibres. Every fibre is one Kalman filter + RTS smoother over its
    sorted coordinates (:func:`bayestensor.kernels.kernel_sde`), all fibres in one vmapped scan;
    the log marginal likelihood is exact. Cost O(n + F·L) for F fibres padded to length L.
``"neighbours"`` (nearest-neighbour GP)
    ``g`` has a product Matérn-3/2 kernel over every continuous coordinate, independent across
    the categorical ones. The likelihood is Vecchia's approximation (each row conditioned on its
    ``m`` nearest predecessors in a random order, in the lengthscale-scaled metric), prediction
    is kriging from the ``m`` nearest training rows. Cost O(n m³).

``local="auto"`` fits every candidate (fibres along each continuous mode that has at least two
training rows per fibre on average, and the neighbour GP) and keeps the one whose log-likelihood
of the residuals beats iid ``N(0, mean r²)`` by the most nats, if that gain exceeds the BIC
penalty ``½ p log n`` of its ``p`` hyperparameters (or ``min_gain`` nats per row); otherwise the
base predictions are returned unchanged. A process the data do not need also switches itself
off (its variance goes to the lower bound), so the rule mostly saves prediction time.

Prediction: ``E[y*] = E[f*] + E[g* | r]``, ``Var[f* + g*] = Var[f*] + Var[g* | r]`` (``f`` and
``g`` treated as independent), ``Var[y*] = Var[f* + g*] + c · σ²_g`` with ``σ²_g`` the residual
model's noise and ``c = σ²_FunBaT / mean(r²) ≥ 1``: training residuals of the low-rank fit are
shrunk (it saw those rows), and ``c`` is the shrinkage FunBaT's own noise estimate implies.

Usage::

    res = bt.fit(train, coords=["lat", "lon", "month"], value="ozone", local="auto")
    res.local.label, res.local.gains     # what was kept; every candidate's gain per row
    res.predict(test)                    # mean, sd, lower, upper, sd_f, lower_f, upper_f
    res.predict(test, local=False)       # the low-rank part alone
    fit_local(res0, train, "fibre:lon")  # the same stage on a fit made without local=

Saving and loading: :mod:`bayestensor.models.funbat.local_record`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from bayestensor.checks import check_finite_result
from bayestensor.driver import precision
from bayestensor.kernels import kernel_sde

__all__ = [
    "FibreGP",
    "NeighbourGP",
    "LocalFit",
    "fit_local",
    "fibre_layout",
    "vecchia_neighbours",
]


# --------------------------------------------------------------------------------------------
# fibre GP: one Kalman smoother per fibre, shared hyperparameters
# --------------------------------------------------------------------------------------------


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


_fibre_nll_jit = jax.jit(_fibre_nll, static_argnums=1)
_fibre_post_jit = jax.jit(_fibre_post, static_argnums=1)


def _lbfgs(fun, theta0, lo, hi, maxiter):
    from scipy.optimize import minimize

    vg = jax.value_and_grad(fun)

    def f(th):
        v, g = vg(jnp.asarray(th))
        return float(v), np.asarray(g, dtype=np.float64)

    theta0 = np.clip(theta0, lo, hi)
    out = minimize(
        f,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lo, hi, strict=True)),
        options={"maxiter": maxiter},
    )
    return out.x, float(out.fun)


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

    def fit(self, df: pd.DataFrame, coords: list[str], r: np.ndarray, noise0: float) -> FibreGP:
        t = time.perf_counter()
        r = np.asarray(r, dtype=np.float64)
        self._restore(df[coords], r)
        lay = self._layout(None)
        gaps = lay["dt"][lay["dt"] > 0]
        gap = float(np.median(gaps)) if gaps.size else 1.0
        span = float(np.nanmax(lay["grid"]) - np.nanmin(lay["grid"])) or 1.0
        v = float(np.var(r)) or 1.0
        lo = np.log([gap / 20, 1e-6 * v, 1e-6 * v])
        hi = np.log([20 * span, 10 * v, 10 * v])
        theta0 = np.log([2 * gap, max(v - noise0, 0.1 * v), noise0])
        with precision("float64"):
            args = tuple(jnp.asarray(lay[k]) for k in ("dt", "cnt", "sum"))
            ss, n = float(np.sum(r**2)), float(len(r))
            fun = lambda th: _fibre_nll_jit(th, self.kernel, *args, ss, n)  # noqa: E731
            self.theta, self.nll = _lbfgs(fun, theta0, lo, hi, self.maxiter)
        self.seconds = time.perf_counter() - t
        return self

    def _restore(self, train: pd.DataFrame, r: np.ndarray) -> FibreGP:
        """Set the training rows (their coordinate columns) and residuals (fit and load)."""
        self._coords, self._train, self._r = list(train.columns), train.reset_index(drop=True), r
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
        with precision("float64"):
            args = tuple(jnp.asarray(lay[k]) for k in ("dt", "cnt", "sum"))
            mean, var = _fibre_post_jit(jnp.asarray(self.theta), self.kernel, *args)
        rows = slice(0, len(self._train)) if new is None else slice(len(self._train), None)
        f, p = lay["fibre"][rows], lay["pos"][rows]
        return np.asarray(mean)[f, p], np.maximum(np.asarray(var)[f, p], 0.0)


# --------------------------------------------------------------------------------------------
# nearest-neighbour GP (Vecchia likelihood, kriging from the m nearest rows)
# --------------------------------------------------------------------------------------------


def _kernel(a, b, ell, var):
    """Product Matérn-3/2 kernel over the last axis."""
    z = jnp.sqrt(3.0) * jnp.abs(a - b) / ell
    return var * jnp.prod((1.0 + z) * jnp.exp(-z), axis=-1)


def _conditional(xi, gi, xN, gN, rN, mask, ell, var, noise):
    """Mean and variance of ``g(xi)`` given noisy residuals ``rN`` at the neighbours ``xN``."""
    same = (gN[:, None] == gN[None, :]) & mask[:, None] & mask[None, :]
    K = jnp.where(same, _kernel(xN[:, None, :], xN[None, :, :], ell, var), 0.0)
    K = K + jnp.diag(jnp.where(mask, noise, 1.0))
    k = jnp.where(mask & (gN == gi), _kernel(xi[None, :], xN, ell, var), 0.0)
    Lc = jnp.linalg.cholesky(K)
    a = jax.scipy.linalg.solve_triangular(Lc, k, lower=True)
    b = jax.scipy.linalg.solve_triangular(Lc, jnp.where(mask, rN, 0.0), lower=True)
    return a @ b, var - a @ a


def _batched(theta, Xq, gq, X, g, r, nb):
    D = X.shape[1]
    ell, var, noise = jnp.exp(theta[:D]), jnp.exp(theta[D]), jnp.exp(theta[D + 1])
    mask = nb >= 0
    idx = jnp.maximum(nb, 0)
    fn = jax.vmap(_conditional, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))
    return fn(Xq, gq, X[idx], g[idx], r[idx], mask, ell, var, noise), noise


@jax.jit
def _vecchia_nll(theta, X, g, r, nb):
    (mu, v), noise = _batched(theta, X, g, X, g, r, nb)
    s2 = v + noise
    return 0.5 * jnp.sum(jnp.log(2 * jnp.pi * s2) + (r - mu) ** 2 / s2)


@jax.jit
def _krige(theta, Xq, gq, X, g, r, nb):
    return _batched(theta, Xq, gq, X, g, r, nb)[0]


def _scaled(X, g, ell, far=None):
    """Rows in the lengthscale-scaled metric, categorical groups pushed ``far`` apart."""
    Z = X / ell
    if far is None:
        far = 10.0 * (float(np.ptp(Z, axis=0).max()) if len(Z) and Z.size else 1.0) + 1.0
    return np.column_stack([Z, g * far]), far


def vecchia_neighbours(Z: np.ndarray, m: int) -> np.ndarray:
    """Conditioning sets of a Vecchia approximation (rows in the order given).

    Row ``i ≤ m`` conditions on all earlier rows (so ``m ≥ n − 1`` gives the exact
    likelihood); a later row ``i ∈ [2^j s, 2^{j+1} s)`` on its ``m`` nearest among the first
    ``2^j s`` rows (``s = m + 1``), a subset of its predecessors, so the approximation stays a
    valid density. ``-1`` pads.
    """
    from scipy.spatial import cKDTree

    n = len(Z)
    nb = -np.ones((n, m), np.int64)
    for i in range(1, min(n, m + 1)):
        nb[i, :i] = np.arange(i)
    start = m + 1
    while start < n:
        stop = min(n, 2 * start)
        _, idx = cKDTree(Z[:start]).query(Z[start:stop], k=m)
        nb[start:stop] = idx
        start = stop
    return nb


@dataclass
class NeighbourGP:
    """Residual GP with a product Matérn-3/2 kernel, nearest-neighbour likelihood and kriging.

    ``m`` neighbours for prediction, ``m_fit`` in the likelihood, ``rounds`` re-selections of
    the neighbours as the lengthscales move; the hyperparameters are learned on a random
    ``max_fit`` rows (None: all), then ``nll`` is the likelihood of all rows at them.
    """

    m: int = 16
    m_fit: int = 8
    rounds: int = 2
    maxiter: int = 30
    max_fit: int | None = 4000
    seed: int = 0
    theta: np.ndarray | None = None
    nll: float = np.nan
    seconds: float = np.nan
    continuous: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

    def _features(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        X = df[self.continuous].to_numpy(dtype=np.float64)
        if self.categorical:
            key = df[self.categorical].astype(str).agg("\x1f".join, axis=1).to_numpy()
            g = np.array([self._groups.setdefault(k, len(self._groups)) for k in key])
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
        if kinds is None:
            kinds = {
                c: "continuous" if pd.api.types.is_numeric_dtype(df[c]) else "categorical"
                for c in coords
            }
        self.continuous = [c for c in coords if kinds[c] == "continuous"]
        self.categorical = [c for c in coords if kinds[c] != "continuous"]
        self._groups = {}
        X, g = self._features(df)
        r = np.asarray(r, dtype=np.float64)
        order = np.random.default_rng(self.seed).permutation(len(r))
        sub = order[: self.max_fit] if self.max_fit else order
        Xo, go, ro = X[sub], g[sub], r[sub]
        D = X.shape[1]
        span = np.ptp(X, axis=0)
        span = np.where(span > 0, span, 1.0)
        v = float(np.var(r)) or 1.0
        theta = np.concatenate([np.log(0.05 * span), np.log([max(v - noise0, 0.1 * v), noise0])])
        lo = np.concatenate([np.log(span * 1e-4), np.log([1e-6 * v, 1e-6 * v])])
        hi = np.concatenate([np.log(span * 1e2), np.log([10 * v, 10 * v])])
        with precision("float64"):
            for _ in range(self.rounds):
                nb = vecchia_neighbours(_scaled(Xo, go, np.exp(theta[:D]))[0], self.m_fit)
                args = tuple(jnp.asarray(a) for a in (Xo, go, ro, nb))
                theta, self.nll = _lbfgs(
                    lambda th, a=args: _vecchia_nll(th, *a), theta, lo, hi, self.maxiter
                )
            if len(sub) < len(r):  # the likelihood of every row at the learned hyperparameters
                Xa, ga, ra = X[order], g[order], r[order]
                nb = vecchia_neighbours(_scaled(Xa, ga, np.exp(theta[:D]))[0], self.m_fit)
                args = tuple(jnp.asarray(a) for a in (Xa, ga, ra, nb))
                self.nll = float(_vecchia_nll(jnp.asarray(theta), *args))
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
        with precision("float64"):
            mean, var = _krige(
                jnp.asarray(self.theta),
                *(jnp.asarray(a) for a in (X, g, self._X, self._g, self._r, nb)),
            )
        return np.asarray(mean), np.maximum(np.asarray(var), 0.0)


# --------------------------------------------------------------------------------------------
# the user-facing wrapper
# --------------------------------------------------------------------------------------------


def encoded(result, df: pd.DataFrame) -> pd.DataFrame:
    """The coordinates of ``df`` as the fit encodes them: floats per mode (continuous ones in
    the fit's units, times as floats in their time unit; categories as their codes)."""
    from bayestensor.data import encode_new

    enc = encode_new(df, result.modes)
    return pd.DataFrame({m.name: x for m, x in zip(result.modes, enc.x, strict=True)})


@dataclass
class LocalFit:
    """A local residual process fitted on top of a FunBaT result (or none, if ``"auto"``
    found no gain); ``result.local`` of ``bt.fit(..., local=...)``.

    Attributes
    ----------
    base : FitResult
        The low-rank fit.
    kind : str or None
        ``"fibre"``, ``"neighbours"`` or None (no local process kept).
    mode : str or None
        The fibre mode (``kind == "fibre"``).
    process : FibreGP or NeighbourGP or None
    gains : dict
        Every candidate's log-likelihood gain over iid noise, nats per training row.
    calibration : float
        ``c = σ²_FunBaT / mean(r²)`` (see the module docstring).
    asked : str
        The ``local=`` option it was fitted with.
    """

    base: object
    kind: str | None
    mode: str | None
    process: object
    gains: dict
    calibration: float
    seconds: float
    asked: str = "auto"

    @property
    def hyperparameters(self) -> dict:
        return {} if self.process is None else self.process.hyperparameters

    @property
    def label(self) -> str:
        """``"fibre:<column>"``, ``"neighbours"`` or ``"none"``."""
        return "none" if self.kind is None else self.kind + (f":{self.mode}" if self.mode else "")

    def predict(self, df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
        """``mean, sd, lower, upper, sd_f, lower_f, upper_f`` per row of ``df``."""
        return self.combine(df, self.base.predict(df, level=level, local=False), level)

    def combine(self, df: pd.DataFrame, pred: pd.DataFrame, level: float) -> pd.DataFrame:
        """The base prediction ``pred`` at the rows of ``df`` plus the local process."""
        from scipy import stats

        if self.process is None:
            return pred
        g_mean, g_var = self.process.posterior(encoded(self.base, df))
        noise = self.hyperparameters["noise"] * self.calibration
        mean = pred["mean"].to_numpy() + g_mean
        var_f = pred["sd_f"].to_numpy() ** 2 + g_var
        sd_f, sd = np.sqrt(var_f), np.sqrt(var_f + noise)
        check_finite_result("the prediction with the local process", mean, sd)
        z = stats.norm.ppf(0.5 + level / 2)
        return pd.DataFrame(
            {
                "mean": mean,
                "sd": sd,
                "lower": mean - z * sd,
                "upper": mean + z * sd,
                "sd_f": sd_f,
                "lower_f": mean - z * sd_f,
                "upper_f": mean + z * sd_f,
            },
            index=df.index,
        )


def fit_local(
    result,
    df: pd.DataFrame,
    local: str = "auto",
    *,
    kernel: str = "matern32",
    neighbours: int = 16,
    min_gain: float | None = None,
    min_per_fibre: float = 2.0,
) -> LocalFit:
    """Fit a local residual process to a FunBaT result's training rows ``df``.

    ``bt.fit(..., local=...)`` calls this and keeps the result as ``result.local``.

    Parameters
    ----------
    result : FitResult
        A FunBaT fit of ``df``.
    df : pandas.DataFrame
        The training rows (coordinates and value).
    local : {"auto", "fibre", "fibre:<column>", "neighbours"}
        Which process: ``"fibre"`` alone picks the best continuous mode by the evidence.
    kernel : str
        Matérn kernel of the fibre process.
    neighbours : int
        ``m`` of the neighbour GP.
    min_gain : float, optional
        ``auto`` keeps a process only if it gains at least this many nats per row; by default
        a BIC rule: the total gain must exceed ``½ p log n`` for ``p`` hyperparameters.
    min_per_fibre : float
        With ``"auto"``, a mode is a fibre candidate only with at least this many training
        rows per fibre.
    """
    t = time.perf_counter()
    coords = list(result.coords)
    y = df[result.value].to_numpy(dtype=np.float64)
    r = y - result.predict(df, local=False)["mean"].to_numpy()
    noise = float(result.noise_sd) ** 2
    ms = float(np.mean(r**2))
    iid = 0.5 * np.log(2 * np.pi * ms) + 0.5
    continuous = [c for c in coords if result.coords[c] == "continuous"]
    X = encoded(result, df)

    candidates: dict[str, object] = {}
    if local in ("auto", "fibre") or local.startswith("fibre:"):
        modes = [local.split(":", 1)[1]] if local.startswith("fibre:") else continuous
        for mode in modes:
            others = [c for c in coords if c != mode]
            n_fibres = len(X[others].drop_duplicates()) if others else 1
            if local != "auto" or len(X) / n_fibres >= min_per_fibre:
                candidates[f"fibre:{mode}"] = FibreGP(mode, kernel=kernel).fit(X, coords, r, noise)
    if local in ("auto", "neighbours"):
        gp = NeighbourGP(m=neighbours)
        candidates["neighbours"] = gp.fit(X, coords, r, noise, kinds=result.coords)
    if not candidates:
        raise ValueError(f"local={local!r}: no candidate process for these data")
    gains = {k: float(iid - p.nll / len(r)) for k, p in candidates.items()}
    # a candidate whose likelihood came out NaN is never kept (max() would stop at it)
    best = max(gains, key=lambda k: gains[k] if np.isfinite(gains[k]) else -np.inf)
    n_par = len(candidates[best].theta)
    threshold = min_gain if min_gain is not None else 0.5 * n_par * np.log(len(r)) / len(r)
    keep = local != "auto" or gains[best] >= threshold
    process = candidates[best] if keep else None
    kind = None if process is None else best.split(":")[0]
    mode = best.split(":", 1)[1] if kind == "fibre" else None
    calibration = max(noise / ms, 1.0)
    return LocalFit(
        result, kind, mode, process, gains, calibration, time.perf_counter() - t, asked=local
    )
