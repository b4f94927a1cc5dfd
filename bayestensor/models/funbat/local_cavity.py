"""Leave-one-out predictions of a fitted low-rank part at its own training rows (cavities).

The local stage (:mod:`.local`) compares a residual process on top of the low-rank fit with a
GP on the values alone: a nearest-neighbour GP on large data, an exact GP with main effects
(:mod:`.local_anova`) on small data. The GP's leave-one-out errors are honest
(closed form, :mod:`.local_tails`); the low-rank part's in-sample residuals are not: it saw those
rows (on ``beijing_pm25`` fold 0 its training RMSE is 0.22, held out 0.31). This module gives the
low-rank part's prediction at each training row with that row's own evidence removed.

For every mode ``k`` the observation messages of the fitted posterior (``Λ_n = E[τ] E[a aᵀ]``,
``η_n = E[τ] y_n E[a]``, :func:`~.moments.expected_contraction`) are formed once more from the
final posterior and the mode's posterior recomputed from them (Kalman smoothing with the fitted
hyperparameters, or the categorical closed form), so that the posterior and its sites agree.
Row ``n``'s site touches one coordinate of mode ``k`` only, so dividing it out of that
coordinate's marginal gives the marginal of the posterior without it, exactly:
``P_c⁻¹ = P⁻¹ − Λ_n``, ``m_c = P_c (P⁻¹ m − η_n)`` (the cavity of expectation propagation).
The row's prediction then takes every mode's cavity together with the fitted core (mean field):
the other rows' effect through the core and the noise is not undone, so the errors are still
slightly optimistic. A cavity that is not positive definite (rounding) keeps the posterior.
Cost: about one sweep. A Matérn mode with at most :data:`DENSE_MAX_STATES` coordinates × functions
has its posterior recomputed by dense algebra in NumPy (:func:`dense_posterior`, the same
posterior as the smoother's to round-off) instead of a compiled Kalman smoother: on small data
compiling the smoother was most of the comparison's first-call cost.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bayestensor._export import CachedJit
from bayestensor.driver import precision
from bayestensor.kernels import MATERN_NU
from bayestensor.models.funbat import local_anova
from bayestensor.models.funbat.grid import mode_messages
from bayestensor.models.funbat.local_anova import MAX_ROWS as ANOVA_MAX_ROWS
from bayestensor.models.funbat.local_anova import AnovaGP
from bayestensor.models.funbat.local_fibre_dense import matern_gram
from bayestensor.models.funbat.local_neighbours import NeighbourGP
from bayestensor.models.funbat.local_tails import (
    choose,
    fit_student_t,
    loo_errors,
    loo_scores,
    loo_variance,
)
from bayestensor.models.funbat.moments import (
    expected_contraction,
    expected_f,
    gather,
    grouping,
    second_moment,
)
from bayestensor.models.funbat.stream import _posterior
from bayestensor.ssm import gaps

__all__ = [
    "VALUES",
    "VALUES_MARGIN",
    "VALUES_MIN_ROWS",
    "DENSE_MAX_STATES",
    "SMALL_MAX_WEIGHT",
    "STRUCTURED_LOO",
    "blend_weight",
    "cavity_predictions",
    "dense_posterior",
    "mostly_structure",
    "rescaled",
    "values_alone",
]

#: The label of the neighbour GP on the values alone (the low-rank part left out).
VALUES = "neighbours:values"
#: The neighbour GP on the values alone enters the predictions (blended with the low-rank part,
#: or in its place) only if its leave-one-out mean squared error is below the low-rank part's by
#: this fraction (and by one standard error).
#: Leave-one-out estimates scatter by about this much against held-out errors (measured on the
#: battery's tuning splits), so a smaller gain is not one to trust.
VALUES_MARGIN = 0.1
#: The comparison with the neighbour GP runs only with at least this many training rows. On
#: seals (925 rows) both switches on splits it had not seen were worse held out. (Set after
#: that check; gapminder, 8,396 rows, still switches: one better, one worse there.) Up to
#: :data:`~.local_anova.MAX_ROWS` rows the GP on the values is the exact one with main effects
#: (:class:`~.local_anova.AnovaGP`) instead (between the two bounds, were they apart, no
#: comparison would be made).
VALUES_MIN_ROWS = 5000
#: On small data (the exact GP on the values) the blend's weight is at most this: leave-one-out
#: errors of a few dozen rows choose a weight loosely, and an even blend hedges both ways.
#: Measured on the 31 small check sets (``docs/benchmarks.md``): chosen freely, the weight
#: replaced the low-rank part on 19 of 62 splits, and 7 sets lost more than 1 %; capped at 0.5,
#: 4 sets did (on the splits it was set on; on fresh ones none of 31).
SMALL_MAX_WEIGHT = 0.5
#: ... on data of at most this many training rows (the exact GP's hyperparameters fitted to
#: every row). On more, leave-one-out errors of hundreds of rows choose the weight well:
#: uncapped from 257 rows, seals and 17 check sets of 256-2,048 rows went to 0.977 of the
#: capped blend's held-out RMSE at the seed this was set on (7 better by more than 1 %, 1
#: worse); with the exact GP to 5,000 rows, they and three sets of 2,048-5,000 rows went to
#: 0.983 at a fresh seed (none worse), faithfuld (4,500 rows, the GP 24 times better left out)
#: to a sixth (``docs/benchmarks.md``).
SMALL_MAX_ROWS = local_anova.FIT_ROWS
#: The comparison's leave-one-out errors are taken at this many random rows at most.
LOO_ROWS = 8192
#: A local stage whose best residual process leaves less than this fraction of the residuals'
#: mean square unpredicted (leave-one-out) found them to be mostly structure, not noise
#: (:func:`mostly_structure`). Measured: 0.02-0.03 on elecdemand and 0.07 on its temperatures,
#: where the strict pruning cut too much; 0.495-0.88 on the beijing sets, where it did not (at
#: 0.5, beijing_pm10 fold 1, 0.495, took the lenient fit and lost 6 %), 0.76-0.85 on gapminder.
STRUCTURED_LOO = 0.2
#: A Matérn mode's posterior is recomputed densely (:func:`dense_posterior`, O((S R)³) in NumPy)
#: where its coordinates times functions ``S R`` are at most this; beyond, by the compiled
#: smoother. Measured on a 48-row fit (``docs/benchmarks.md``): the comparison's first
#: leave-one-out predictions took 2.0 s instead of 3.8 s, the same to 5e-13.
DENSE_MAX_STATES = 512


def mostly_structure(loc) -> bool:
    """Whether the local stage ``loc`` (a :class:`~.local.LocalFit` of ``"auto"``) had a
    residual process that predicts most of the residuals: its leave-one-out mean squared error
    below :data:`STRUCTURED_LOO` of their mean square (at least 80 % predicted; non-finite
    errors are skipped). The low-rank fit's noise variance then
    counts structure as noise, and pruning against it (``ard.PRUNE_NOISE_LOCAL``) cut too
    much; :func:`bayestensor.api.fit` then checks the leniently pruned fit as well."""
    residual = [v for k, v in loc.loo.items() if k not in ("low-rank", VALUES) and np.isfinite(v)]
    return bool(residual) and min(residual) < STRUCTURED_LOO


def rescaled(gp: NeighbourGP | AnovaGP, c: float, X, r) -> NeighbourGP | AnovaGP:
    """``gp`` (fitted to ``r / c``) as the fit to ``r`` at the rows ``X``: the same lengthscales,
    variance and noise times ``c²``, the likelihood ``n log c`` higher for its ``n``
    conditionals. The fit is equivariant in the units (its start, bounds and likelihood scale
    with them), so fitting ``r`` again lands near this (L-BFGS-B stops elsewhere: its rule is
    relative to the likelihood's size), at the cost of a whole fit (0.6-0.9 s of an elecdemand
    or electemp fit's 7-8 s, measured; ``docs/benchmarks.md``)."""
    out = copy.copy(gp)
    D = len(gp.continuous)  # (the log lengthscales; every entry after them is a variance)
    out.theta = np.asarray(gp.theta, np.float64).copy()
    out.theta[D:] += 2.0 * np.log(c)
    exact = isinstance(gp, AnovaGP)
    if exact:  # the likelihood of the rows its hyperparameters were fitted to
        n = min(len(r), local_anova.FIT_ROWS)
    else:
        n = len(r) if not gp.max_fit or gp.max_fit >= len(r) or gp.full_nll else gp.max_fit
    out.nll = float(gp.nll) + n * float(np.log(c))
    out._restore(X, r)
    if exact and gp._at_rows is not None and _same_rows(out, gp, c):
        m, v = gp._at_rows  # (its posterior at these rows, in the new units)
        out._at_rows = (m * c, v * c * c)
    return out


def _same_rows(new: AnovaGP, old: AnovaGP, c: float) -> bool:
    """Whether ``new`` holds ``old``'s training rows and ``c`` times its values."""
    same = np.array_equal(new._X, old._X) and np.array_equal(new._g, old._g)
    return same and np.allclose(new._r, c * old._r, rtol=1e-12, atol=0.0)


def mode_cavities(
    state, index, y, dts, cfg, k: int, means, seconds, group=None, rows=None, post=None
):
    """Mode ``k``'s posterior recomputed from the final posterior's messages, and each row's
    cavity there: means ``(n, R_k)`` and covariances ``(n, R_k, R_k)`` of ``u^k(x_nk)`` without
    row ``n``'s site (the posterior's where the cavity is not positive definite). With ``rows``
    (indices), the cavities of those rows only; the messages are every row's. ``post``: that
    posterior already recomputed (``.mean``, ``.cov``; :func:`dense_posterior`)."""
    tau = state.noise.mean
    if post is None:
        msg = mode_messages(
            k, y, tau, means, seconds, state.core, index, group, cfg.sizes, cfg.chunk
        )
        post = _posterior(cfg, k, msg, state.log_hyper[k], dts[k])
    if rows is not None:
        index, y = index[rows], y[rows]
        means, seconds = [m[rows] for m in means], [s[rows] for s in seconds]
        group = None if group is None else group._replace(index=index)
    Ea, Eaa = expected_contraction(k, means, seconds, state.core, cfg.chunk, group)
    P, m = post.cov[index[:, k]], post.mean[index[:, k]]
    eye = jnp.eye(P.shape[-1], dtype=P.dtype)
    prec = jax.vmap(lambda A: _spd_inverse(A, eye)[0])(P)
    lam = prec - tau * Eaa
    eta = jnp.einsum("nij,nj->ni", prec, m) - (tau * y)[:, None] * Ea
    Pc, ok = jax.vmap(lambda A: _spd_inverse(0.5 * (A + A.T), eye))(lam)
    Pc = jnp.where(ok[:, None, None], 0.5 * (Pc + jnp.swapaxes(Pc, -1, -2)), P)
    mc = jnp.where(ok[:, None], jnp.einsum("nij,nj->ni", Pc, eta), m)
    return mc, Pc


def _lower_solve(K, B):
    """``L⁻¹ B`` for ``K = L Lᵀ`` (``K``: m × m positive definite, ``B``: m × p) in plain array
    operations: no LAPACK custom call, whose batched form can deadlock XLA's CPU thread pool
    when two run at once (see :mod:`bayestensor._xla`). For the small ``m`` here this
    costs about what the LAPACK call does."""
    m = K.shape[0]
    idx = jnp.arange(m)

    def column(j, L):  # left-looking Cholesky: column j from the columns before it
        v = K[:, j] - L @ jnp.where(idx < j, L[j], 0.0)
        return L.at[:, j].set(jnp.where(idx >= j, v / jnp.sqrt(v[j]), 0.0))

    L = lax.fori_loop(0, m, column, jnp.zeros_like(K))

    def row(i, X):  # forward substitution
        return X.at[i].set((B[i] - jnp.where(idx < i, L[i], 0.0) @ X) / L[i, i])

    return lax.fori_loop(0, m, row, jnp.zeros_like(B))


def _spd_inverse(A, eye):
    """``A⁻¹`` of a small symmetric positive definite matrix and whether ``A`` was one, in plain
    array operations (a left-looking Cholesky, :func:`_lower_solve`): batched
    LAPACK calls, several in one program, can deadlock XLA's CPU thread pool on 2 cores (they
    did here; see :mod:`bayestensor._xla`)."""
    Linv = _lower_solve(A, eye)
    ok = jnp.all(jnp.isfinite(Linv))
    return Linv.T @ Linv, ok


class _Given(NamedTuple):
    """A mode's posterior marginals: means ``(S, R)`` and covariances ``(S, R, R)``."""

    mean: jax.Array
    cov: jax.Array


def _mode_moments(state, index, y, dts, cfg, k: int, rows, post=None):
    """Mode ``k``'s cavity means and second moments ``E[u uᵀ]`` at the rows ``rows`` (``post``:
    the mode's posterior recomputed, as :func:`mode_cavities` takes it)."""
    means, seconds, group = _at_rows(state, index, cfg)
    mc, Pc = mode_cavities(state, index, y, dts, cfg, k, means, seconds, group, rows, post)
    return mc, second_moment(mc, Pc)


def _dense_moments(state, index, y, cfg, k: int, rows, mean, cov):
    """:func:`_mode_moments` with the mode's posterior given (``mean``, ``cov``)."""
    return _mode_moments(state, index, y, None, cfg, k, rows, _Given(mean, cov))


def _messages(state, index, y, cfg, k: int):
    """Mode ``k``'s message sums from every row at the final posterior."""
    means, seconds, group = _at_rows(state, index, cfg)
    tau = state.noise.mean
    return mode_messages(k, y, tau, means, seconds, state.core, index, group, cfg.sizes, cfg.chunk)


def _at_rows(state, index, cfg):
    """Every mode's posterior moments at the rows, and their grouping (Tucker)."""
    means, seconds = gather(state.factors, index)
    return means, seconds, grouping(state.factors, index) if cfg.model == "tucker" else None


def dense_mode(cfg, k: int) -> bool:
    """Whether mode ``k``'s posterior is recomputed densely: a continuous Matérn mode with at
    most :data:`DENSE_MAX_STATES` coordinates × functions."""
    return (
        bool(cfg.continuous[k])
        and cfg.mode_kernel(k) in MATERN_NU
        and cfg.sizes[k] * cfg.ranks[k] <= DENSE_MAX_STATES
    )


def dense_posterior(x, kernel: str, theta, R: int, msg) -> _Given:
    """The posterior marginals of ``R`` independent Matérn GPs at the sorted coordinates ``x``
    (hyperparameters ``exp(theta)``: lengthscale and variance, shared or one per function)
    given natural-parameter messages ``msg`` (``prec (S, R, R)``, ``shift (S, R)``), by dense
    algebra: with ``K`` the prior covariance and ``B`` the block-diagonal symmetric square
    root of the message precisions, ``Σ = K − K B (I + B K B)⁻¹ B K`` (no inverse of ``K``,
    which smooth kernels leave near-singular) and ``m = Σ η``. The smoother's posterior
    (:func:`bayestensor.ssm.smooth`) to round-off."""
    x = np.asarray(x, np.float64)
    h = np.exp(np.asarray(theta, np.float64))
    ell, var = (np.broadcast_to(h[i], (R,)) for i in (0, 1))
    S = len(x)
    K = np.zeros((S, R, S, R))
    for r in range(R):
        K[:, r, :, r] = matern_gram(np.log([ell[r], var[r]]), kernel, x[None])[0][0]
    K = K.reshape(S * R, S * R)
    prec = np.asarray(msg.prec, np.float64)
    w, V = np.linalg.eigh(0.5 * (prec + np.swapaxes(prec, -1, -2)))
    roots = np.einsum("sij,sj,skj->sik", V, np.sqrt(np.clip(w, 0.0, None)), V)
    B = np.zeros((S, R, S, R))
    B[np.arange(S), :, np.arange(S), :] = roots  # block-diagonal, one block per coordinate
    B = B.reshape(S * R, S * R)
    KB = K @ B
    G = np.linalg.solve(np.linalg.cholesky(np.eye(S * R) + B @ KB), KB.T)  # L⁻¹ B K
    cov = K - G.T @ G
    mean = cov @ np.asarray(msg.shift, np.float64).reshape(-1)
    blocks = cov.reshape(S, R, S, R)[np.arange(S), :, np.arange(S), :]
    return _Given(jnp.asarray(mean.reshape(S, R)), jnp.asarray(blocks))


def _row_moments(means, seconds, core, cfg):
    """``E[f_n]`` and ``Var[f_n]`` from every mode's cavity moments at row ``n``."""
    Ef, Ef2 = expected_f(list(means), list(seconds), core, cfg.chunk)
    return Ef, jnp.maximum(Ef2 - Ef**2, 0.0)


# one program per mode, run one after the other: the modes' smoothers side by side in one
# program could fill XLA's CPU thread pool with batched LAPACK calls (bayestensor._xla)
_mode_jit = CachedJit(_mode_moments, static_argnames=("cfg", "k"), per_fit="mode")
_rows_jit = CachedJit(_row_moments, static_argnames=("cfg",))
_messages_jit = CachedJit(_messages, static_argnames=("cfg", "k"), per_fit="mode")
_dense_jit = CachedJit(_dense_moments, static_argnames=("cfg", "k"), per_fit="mode")
#: the compiled programs of this module (bounded with the local processes' by ``local``)
PROGRAMS = (_mode_jit, _rows_jit, _messages_jit, _dense_jit)


def cavity_predictions(result, rows=None) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and sd of the low-rank part at each training row, that row left out (in the
    value's units, in the order of the fitted rows; with ``rows``, at those rows only); None
    when the fit's training rows are not at hand (a loaded result)."""
    est = result.estimator
    enc = getattr(est, "train_", None)
    if enc is None:
        return None
    cfg = est.cfg_
    y = (np.asarray(enc.y, dtype=np.float64) - est.y_mean_) / est.y_scale_
    with precision("float64"):

        def f64(a):
            floating = hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
            return jnp.asarray(a, jnp.float64) if floating else a

        state = jax.tree.map(f64, jax.device_get(est.state_))
        dts = tuple(
            jnp.asarray(gaps(m.values), jnp.float64) if cfg.continuous[k] else None
            for k, m in enumerate(est.modes_)
        )
        index, yz = jnp.asarray(enc.index), jnp.asarray(y)
        at = jnp.arange(len(y)) if rows is None else jnp.asarray(rows)
        moments = []
        for k in range(len(cfg.ranks)):  # each waited for before the next starts
            if dense_mode(cfg, k):
                msg = _messages_jit(state, index, yz, cfg, k)
                x, kernel = est.modes_[k].values, cfg.mode_kernel(k)
                post = dense_posterior(x, kernel, state.log_hyper[k], cfg.ranks[k], msg)
                out = _dense_jit(state, index, yz, cfg, k, at, post.mean, post.cov)
            else:
                out = _mode_jit(state, index, yz, dts, cfg, k, at)
            moments.append(jax.block_until_ready(out))
        Ef, var = _rows_jit(
            tuple(m for m, _ in moments), tuple(s for _, s in moments), state.core, cfg
        )
    mean = np.asarray(Ef, dtype=np.float64) * est.y_scale_ + est.y_mean_
    return mean, np.sqrt(np.asarray(var, dtype=np.float64)) * est.y_scale_


def blend_weight(e_low, e_values) -> float:
    """The ``w`` in [0, 1] that minimises ``Σ (w e_values + (1 − w) e_low)²``: the weight of
    the GP on the values in the blend of two predictions with these left-out errors (0 when
    they are the same)."""
    d = np.asarray(e_low, np.float64) - np.asarray(e_values, np.float64)
    dd = float(np.sum(d * d))
    return float(np.clip(np.sum(e_low * d) / dd, 0.0, 1.0)) if dd > 0 else 0.0


def values_alone(result, X, y, rs, scale, kept, fitted=None) -> dict | None:
    """The GP on the values alone against the low-rank part with the kept process, both by
    leave-one-out errors in units of ``scale``: the low-rank part's from its cavities
    (:mod:`.local_cavity`), so that its in-sample fit does not flatter it.

    ``kept``: ``(errors, variances)`` per training row, the kept process's leave-one-out errors
    and the variance of a left-out row's prediction but for the low-rank part's (none kept:
    the residuals and FunBaT's noise variance).

    The GP is the exact one with main effects (:class:`~.local_anova.AnovaGP`) up to
    :data:`~.local_anova.MAX_ROWS` rows (its weight in a blend at most
    :data:`SMALL_MAX_WEIGHT` up to :data:`SMALL_MAX_ROWS` rows), and the neighbour GP from
    :data:`VALUES_MIN_ROWS` rows.
    Returns None (no comparison) in between or when the fit's training rows are not at hand;
    else a dict with ``loo`` (both mean squared errors),
    ``better`` (the GP's is smaller by more than one standard error of the paired differences,
    the rule of :func:`choose`, and by at least :data:`VALUES_MARGIN` of the low-rank part's),
    ``weight`` (the blend ``w · GP + (1 − w) · low-rank part`` with the smallest leave-one-out
    mean squared error, ``w`` in [0, 1], capped as above), the GP (``process``, ``offset``:
    the values' mean it is fitted around), and the Student-t tails of the GP alone (``tails``)
    and of that blend (``blend_tails``: its left-out errors over the same blend of the two
    predictive sds), and ``levels``: for each of ``"low-rank"``, the GP alone and ``"blend"``,
    the standardised left-out errors and the left-out predictions in the values' units (for
    :func:`~.local_tails.fit_level_scale`).

    ``fitted``: ``(process, scale)``, this GP as another fit's local stage fitted it to the same
    rows, in that fit's units; it is rescaled (:func:`rescaled`) instead of fitted again."""
    exact = len(rs) <= ANOVA_MAX_ROWS
    if len(rs) < VALUES_MIN_ROWS and not exact:
        return None
    # both compared on at most LOO_ROWS random rows (the GP's kriging is most of the cost)
    rows = np.arange(len(rs))
    if len(rows) > LOO_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(len(rs), LOO_ROWS, replace=False))
    cav = cavity_predictions(result, rows)
    if cav is None or len(rs) != len(result.estimator.train_.y):
        return None
    y = np.asarray(y, dtype=np.float64)
    base = (y - rs * scale)[rows]  # the in-sample prediction of the low-rank part
    shift = (base - cav[0]) / scale  # how far leaving a row out moves its prediction
    # the kept process's left-out error (the residual itself without one) plus the shift
    e_low = shift + kept[0][rows]
    sd_low = np.sqrt((cav[1] / scale) ** 2 + kept[1][rows])
    offset = float(np.mean(y))
    yv = (y - offset) / scale
    # the noise starts at a tenth of the values' variance: started at the low-rank fit's (a
    # few per cent), the lengthscales can collapse to their lower bound (no correlation left)
    noise0 = 0.1 * float(np.mean(yv**2))
    if fitted is None or fitted[0] is None or isinstance(fitted[0], AnovaGP) != exact:
        gp = AnovaGP() if exact else NeighbourGP(full_nll=False)
        gp = gp.fit(X, list(result.coords), yv, noise0, result.coords)
    else:
        gp = rescaled(fitted[0], fitted[1] / scale, X, yv)
    # (the exact GP at all its training rows: their own route, kept with the GP for reuse)
    whole = exact and len(rows) == len(rs)
    m, v = gp.posterior(None) if whole else gp.posterior(X.iloc[rows])
    own = gp.hyperparameters["noise"]
    e_values = loo_errors(yv[rows], m, v, own)
    sd_values = np.sqrt(loo_variance(v, own))
    low_rank, values = e_low**2, e_values**2
    better = choose({"low-rank": 1.0, VALUES: 0.0}, {"low-rank": low_rank, VALUES: values})
    clear = np.mean(values) < (1.0 - VALUES_MARGIN) * np.mean(low_rank)
    w = blend_weight(e_low, e_values)
    w = min(w, SMALL_MAX_WEIGHT) if len(rs) <= SMALL_MAX_ROWS else w
    e_blend = w * e_values + (1 - w) * e_low
    blend = e_blend / (w * sd_values + (1 - w) * sd_low)
    y_rows = y[rows]
    return {
        "levels": {
            "low-rank": (e_low / sd_low, y_rows - scale * e_low),
            VALUES: (e_values / sd_values, y_rows - scale * e_values),
            "blend": (blend, y_rows - scale * e_blend),
        },
        "loo": {"low-rank": float(np.mean(low_rank)), VALUES: float(np.mean(values))},
        "better": bool(better == VALUES and clear),
        "weight": w,
        "process": gp,
        "offset": offset,
        "tails": fit_student_t(loo_scores(yv[rows], m, v, own, 1.0, np.zeros(len(rows)))),
        "blend_tails": fit_student_t(blend),
    }
