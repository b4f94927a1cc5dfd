"""FunBaT inference as pure functions: initialisation, one sweep, prediction.

:func:`init_state` / :func:`spectral_init` build the first :class:`FunBaTState`; :func:`sweep`
updates every mode (messages → hyperparameters → Kalman smoother), the core and the noise;
:func:`predict_moments` gives the posterior mean and variance of ``f`` at new rows. Each is
traceable and jitted by the estimator with the config static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bayestensor.models.funbat.ard import ard_update, init_ard, prior_precision
from bayestensor.models.funbat.grid import grid_noise, grid_second, mode_messages, plan
from bayestensor.models.funbat.moments import (
    Grouping,
    categorical_posterior,
    core_from_sums,
    core_update,
    expected_f,
    expected_mean,
    gather,
    grouping,
    linear_sum,
    noise_update,
    second_moment,
    weight_update,
)
from bayestensor.models.funbat.padded import kept_core
from bayestensor.models.funbat.state import (
    CategoricalPosterior,
    CorePosterior,
    FunBaTConfig,
    FunBaTState,
    Messages,
    NoisePosterior,
    WeightPosterior,
    auto_chunk,
)
from bayestensor.ssm import (
    Posterior,
    interpolate,
    kalman_filter,
    rts_smoother,
    smooth,
    stacked_sde,
)

#: Offsets (in units of the current step) of the candidate grid of the hyperparameter search.
_SEARCH_OFFSETS = (-1.0, 0.0, 1.0)
#: Bounds on the per-parameter step of the search (natural-log units).
_SEARCH_STEP_BOUNDS = (1e-7, 4.0)
#: Initial and largest step of the search on ``log p`` (a local search around the initial
#: period: multiples and fractions of the period are other maxima of the evidence).
PERIOD_STEP = 0.02
PERIOD_STEP_MAX = 0.1
#: Admissible dimensionless lengthscale ℓ of the (quasi-)periodic kernels: with 7 harmonics the
#: truncated series is within 5e-4 σ² of the kernel at the lower end (see
#: :func:`bayestensor.periodic.periodic_sde`); beyond the upper end it is a constant plus a pure
#: cosine whose amplitude vanishes.
PERIODIC_LENGTHSCALE_BOX = (0.5, 10.0)


def mode_sde(cfg: FunBaTConfig, k: int, theta):
    """The stacked state-space prior of mode ``k``'s ``R_k`` functions at ``θ = log_hyper[k]``."""
    hyper = tuple(jnp.exp(theta[i]) for i in range(theta.shape[0]))
    return stacked_sde(cfg.mode_kernel(k), hyper, cfg.ranks[k], cfg.harmonics)


def _search_pattern(cfg: FunBaTConfig, k: int, dtype):
    """Candidate offsets of the search: the 3 × 3 grid on ``(log ℓ, log σ²)`` (centre at row
    4), then ``∓1`` along each further learned hyperparameter (period, envelope)."""
    offsets = jnp.asarray(_SEARCH_OFFSETS, dtype)
    n = len(cfg.hyper_names(k))
    grid_i, grid_j = jnp.meshgrid(offsets, offsets, indexing="ij")
    pairs = jnp.stack([grid_i.ravel(), grid_j.ravel()], axis=1)  # (9, 2)
    pairs = jnp.concatenate([pairs, jnp.zeros((pairs.shape[0], n - 2), dtype)], axis=1)
    learned = cfg.learned(k)
    extra = [jnp.eye(n, dtype=dtype)[i] * o for i in range(2, n) if learned[i] for o in (-1, 1)]
    if extra:
        pairs = jnp.concatenate([pairs, jnp.stack(extra)], axis=0)
    return pairs, offsets.shape[0] ** 2 // 2


def _search_box(cfg: FunBaTConfig, k: int, dt):
    """Admissible box of ``log_hyper[k]`` and the largest search step per hyperparameter.

    A Matérn lengthscale or quasi-periodic envelope lies between a twentieth of the smallest
    gap and twenty spans (beyond either end the evidence is flat to rounding and the search
    would drift), σ² in 1e±6, a periodic ℓ in :data:`PERIODIC_LENGTHSCALE_BOX`, a period
    between twice the smallest gap and ten times (span + smallest gap).
    """
    positive = jnp.where(dt > 0, dt, jnp.inf)
    min_gap = jnp.where(jnp.isfinite(jnp.min(positive)), jnp.min(positive), 1.0)
    span = jnp.maximum(jnp.sum(dt), min_gap)
    log10 = np.log(10.0)
    periodic = cfg.mode_kernel(k) in ("periodic", "quasiperiodic")
    box = {
        "lengthscale": (
            [np.log(b) for b in PERIODIC_LENGTHSCALE_BOX]
            if periodic
            else [jnp.log(min_gap / 20.0), jnp.log(20.0 * span)]
        ),
        "variance": [-6.0 * log10, 6.0 * log10],
        "period": [jnp.log(2.0 * min_gap), jnp.log(10.0 * (span + min_gap))],
        "envelope": [jnp.log(min_gap / 20.0), jnp.log(20.0 * span)],
    }
    names = cfg.hyper_names(k)
    lower = jnp.stack([jnp.asarray(box[n][0], dt.dtype) for n in names])
    upper = jnp.stack([jnp.asarray(box[n][1], dt.dtype) for n in names])
    max_step = jnp.asarray(
        [PERIOD_STEP_MAX if n == "period" else _SEARCH_STEP_BOUNDS[1] for n in names], dt.dtype
    )
    return lower, upper, max_step


def hyper_search(cfg: FunBaTConfig, k: int, dt, msg: Messages, theta, step):
    """Pattern search on mode ``k``'s ``θ = log_hyper[k]`` maximising ``log Z`` of the current
    messages, then the smoothed posterior at the chosen ``θ``.

    Each iteration evaluates the Kalman evidence on the 3 × 3 grid ``θ + (i δ₁, j δ₂)``,
    ``i, j ∈ {−1, 0, 1}`` on ``(log ℓ, log σ²)``, plus ``θ ∓ δ_i`` along each further learned
    hyperparameter (the period, the quasi-periodic envelope), in one vmapped forward filter
    (no gradients through the scan), and moves to the best point if it beats the centre. Per
    parameter, the step ``δ`` halves when the best point's offset along it is 0 and doubles when
    it is ±1 (the optimum is probably further out), so it crosses orders of magnitude in a few
    sweeps and then refines to ``δ → 0``; the period's step starts at :data:`PERIOD_STEP` and
    never exceeds :data:`PERIOD_STEP_MAX` (a local search). Candidates outside an admissible
    box (:func:`_search_box`) are not taken. The evidence of the current messages never
    decreases, the search is as cheap to compile as a forward filter, and the last iteration's
    filter pass at the chosen ``θ`` is reused by the RTS smoother (no separate filter).

    Parameters
    ----------
    cfg : FunBaTConfig
        Static settings (the mode's kernel, rank, which hyperparameters are learned).
    k : int
        The mode.
    dt : Float[Array, "N"]
        Gaps of the mode's sorted unique coordinates.
    msg : Messages
        The mode's current messages.
    theta, step : Float[Array, "h"]
        Current ``log_hyper[k]`` and search steps.

    Returns
    -------
    posterior : Posterior
        ``q(U^k)`` at the new hyperparameters.
    theta, step : Float[Array, "h"]
    """
    pairs, centre = _search_pattern(cfg, k, theta.dtype)
    lower, upper, max_step = _search_box(cfg, k, dt)

    def _sde(th):
        return mode_sde(cfg, k, th)

    def _filter(th):
        return kalman_filter(_sde(th), dt, msg.prec, msg.shift)

    def _choose(th, st, values):
        candidates = th + pairs * st
        inside = jnp.all((candidates >= lower) & (candidates <= upper), axis=1)
        values = jnp.where(jnp.isfinite(values) & (inside | (pairs == 0).all(1)), values, -jnp.inf)
        best = jnp.argmax(values)
        best = jnp.where(values[best] > values[centre], best, centre)
        moved = th + pairs[best] * st
        grow = jnp.where(pairs[best] == 0.0, 0.5, 2.0)
        return best, moved, jnp.clip(grow * st, _SEARCH_STEP_BOUNDS[0], max_step)

    def _iteration(carry, _):
        th, st = carry
        values = jax.vmap(lambda c: _filter(c).log_marginal)(th + pairs * st)
        _, th, st = _choose(th, st, values)
        return (th, st), None

    if cfg.hyper_steps > 1:
        (theta, step), _ = jax.lax.scan(_iteration, (theta, step), None, cfg.hyper_steps - 1)
    filts = jax.vmap(_filter)(theta + pairs * step)
    best, theta, step = _choose(theta, step, filts.log_marginal)
    filt = jax.tree.map(lambda a: a[best], filts)
    return rts_smoother(_sde(theta), dt, filt), theta, step


def sweep(
    state: FunBaTState,
    index: Int[Array, "n K"],
    y: Float[Array, " n"],
    dts: tuple,
    cfg: FunBaTConfig,
    mask: Float[Array, " n"] | None = None,
    kept: Float[Array, " P"] | None = None,
) -> tuple[FunBaTState, Float[Array, " n"]]:
    """One full update: every mode (messages → hyperparameters → posterior), core, noise.

    For each mode ``k`` in turn: gather the other modes' moments, form the messages
    (:func:`expected_contraction`, :func:`message_sums`), damp them,
    ``msg = ρ·new + (1 − ρ)·old``, take ``hyper_steps`` pattern-search steps on the hyperparameters
    (continuous modes, if learned) and recompute ``q(U^k)`` by Kalman smoothing (continuous) or
    the per-category closed form. Then update ``q(W)`` (Tucker; :func:`core_update`) or the CP
    weights ``q(w)`` (with ARD; :func:`weight_update`), the ARD precisions ``q(λ)``
    (:func:`~bayestensor.models.funbat.ard.ard_update`, with ``cfg.ard``) and ``q(τ)``
    (:func:`noise_update`). Pure and traceable: jit it with ``cfg`` static.

    Parameters
    ----------
    state : FunBaTState
        Current posterior.
    index : Int[Array, "n K"]
        Coordinate index of every observation along every mode.
    y : Float[Array, "n"]
        Observations (z-scored).
    dts : tuple
        Per mode, the gaps of its sorted unique coordinates (continuous) or ``None``.
    cfg : FunBaTConfig
        Static settings.
    mask : Float[Array, "n"], optional
        1 on real rows, 0 on padding rows (sharded fits, :mod:`bayestensor.sharding`), which
        then send no message and add nothing to the core and noise statistics; ``None``: every
        row is real.
    kept : Float[Array, "P"], optional
        Tucker: 0 on the core entries held at zero (:mod:`~.funbat.padded`), else 1.

    Returns
    -------
    state : FunBaTState
        Updated posterior.
    Ef : Float[Array, "n"]
        Posterior mean of ``f`` at the training observations after the update.
    """
    K = len(cfg.ranks)
    factors = list(state.factors)
    messages = list(state.messages)
    log_hyper = list(state.log_hyper)
    opt_state = list(state.opt_state)
    tau = state.noise.mean
    for k in range(K):
        means, seconds = gather(tuple(factors), index)
        group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
        new = mode_messages(
            k, y, tau, means, seconds, state.core, index, group, cfg.sizes, cfg.chunk, mask
        )
        messages[k], factors[k], log_hyper[k], opt_state[k] = update_mode(
            cfg, k, new, messages[k], log_hyper[k], opt_state[k], dts[k]
        )
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
    core, ard = state.core, state.ard
    prior = None if ard is None else prior_precision(cfg, ard)
    c = plan(cfg.sizes, cfg.ranks, y.shape[0]) if cfg.model == "tucker" else None
    if c is not None:  # the Gram sum over the grid of unique coordinates (funbat.grid)
        G = grid_second(group, cfg.sizes, c, weight=mask)
        core = core_from_sums(G, linear_sum(y, means, cfg.chunk), tau, prior)
    elif cfg.model == "tucker":
        core = core_update(y, tau, means, _masked(seconds, mask), cfg.chunk, prior)
    elif core is not None:  # CP weights (ARD)
        core = weight_update(y, tau, means, _masked(seconds, mask), prior)
    if cfg.model == "tucker":
        core = kept_core(core, kept)
    if ard is not None:
        ard = ard_update(cfg, core, ard)
    if c is not None:
        Ef = expected_mean(means, core, cfg.chunk)
        noise = grid_noise(
            y, Ef, core, G, tuple(factors), group, cfg.sizes, c, cfg.a0, cfg.b0, mask
        )
    else:
        Ef, Ef2 = expected_f(means, seconds, core, cfg.chunk, group)
        noise = _masked_noise(y, Ef, Ef2, cfg, mask)
    new_state = FunBaTState(
        tuple(factors), tuple(messages), core, noise, tuple(log_hyper), tuple(opt_state), ard
    )
    return new_state, Ef


def update_mode(cfg: FunBaTConfig, k: int, new: Messages, old: Messages, theta, step, dt):
    """Mode ``k``'s step of a sweep given its new message sums: damping
    ``msg = ρ·new + (1 − ρ)·old``, then the hyperparameter search and Kalman smoothing
    (continuous; smoothing alone without ``learn_hyper``) or the categorical closed form.
    Returns the damped messages, the posterior, ``log_hyper[k]`` and its search steps."""
    rho = cfg.damping
    msg = jax.tree.map(lambda a, b: rho * a + (1.0 - rho) * b, new, old)
    if not cfg.continuous[k]:
        return msg, categorical_posterior(msg), theta, step
    if cfg.learn_hyper:
        post, theta, step = hyper_search(cfg, k, dt, msg, theta, step)
        return msg, post, theta, step
    return msg, smooth(mode_sde(cfg, k, theta), dt, msg.prec, msg.shift), theta, step


def _masked(seconds: list, mask) -> list:
    """The gathered second moments with the last mode's zeroed on padding rows: every product
    over the modes (the core's Gram sums, also the grouped form, which reads the last mode's
    rows per observation) then drops those rows; the core's ``h`` drops them through ``y = 0``."""
    if mask is None:
        return seconds
    return list(seconds[:-1]) + [seconds[-1] * mask[:, None, None]]


def _masked_noise(y, Ef, Ef2, cfg: FunBaTConfig, mask) -> NoisePosterior:
    """:func:`noise_update` over the real rows only (padding rows have ``y = 0``)."""
    if mask is None:
        return noise_update(y, Ef, Ef2, cfg.a0, cfg.b0)
    noise = noise_update(y, Ef * mask, Ef2 * mask, cfg.a0, cfg.b0)
    return noise._replace(shape=(cfg.a0 + 0.5 * jnp.sum(mask)).astype(y.dtype))


def spectral_init(
    index: np.ndarray,
    y: np.ndarray,
    sizes: tuple[int, ...],
    ranks: tuple[int, ...],
    seed: int = 0,
    iters: int = 30,
) -> list[np.ndarray]:
    """Data-driven initial factor means: leading left singular vectors of each unfolding.

    The mode-``k`` unfolding of the (z-scored) observations, with unobserved entries at zero, is
    a sparse ``N_k × (number of distinct other-mode index tuples)`` matrix ``Y_(k)``; a few
    subspace iterations ``Q ← orth(Y_(k) Y_(k)ᵀ Q)`` from a seeded random start give its leading
    ``R_k`` left singular vectors (the HOSVD subspaces), scaled by ``√N_k`` to rows of unit
    size. A data-driven start, so the fit hardly depends on the seed, and usually fewer sweeps.
    Cost ``O(iters · n · R_k)`` per mode.

    Parameters
    ----------
    index : numpy.ndarray
        ``(n, K)`` coordinate indices.
    y : numpy.ndarray
        ``(n,)`` z-scored observations.
    sizes, ranks : tuple of int
        ``N_k`` and ``R_k`` per mode.
    seed : int
        Seeds the random start of the iterations.
    iters : int
        Number of subspace iterations.

    Returns
    -------
    list of numpy.ndarray
        Per mode, an ``(N_k, R_k)`` array.
    """
    import scipy.sparse

    rng = np.random.default_rng(seed)
    K = index.shape[1]
    means = []
    for k in range(K):
        N, R = sizes[k], ranks[k]
        others = [j for j in range(K) if j != k]
        if others:
            _, cols = np.unique(index[:, others], axis=0, return_inverse=True)
            cols = cols.reshape(-1)
        else:
            cols = np.zeros(index.shape[0], dtype=np.int64)
        Y = scipy.sparse.csr_matrix((y, (index[:, k], cols)), shape=(N, int(cols.max()) + 1))
        m = min(N, R)  # a rank above N_k gets random extra columns
        Q = np.linalg.qr(rng.normal(size=(N, m)))[0]
        for _ in range(iters):
            Q = np.linalg.qr(Y @ (Y.T @ Q) + 1e-12 * Q)[0]
        means.append(np.concatenate([np.sqrt(N) * Q, rng.normal(size=(N, R - m))], axis=1))
    return means


def init_state(
    cfg: FunBaTConfig,
    dts: tuple,
    init_lengthscales,
    init_variances,
    key,
    mean_scale: float = 1.0,
    cov_scale: float = 0.01,
    init_means: list | None = None,
    noise_sd: float = 0.1,
    init_periods=None,
    init_envelopes=None,
) -> FunBaTState:
    """Initial posterior: random factor and core means, shrunken prior covariances (with ARD,
    CP weights of one and ``E[λ] = 1``).

    Parameters
    ----------
    cfg : FunBaTConfig
        Static settings.
    dts : tuple
        Per mode, the gaps of the sorted unique coordinates (continuous) or ``None``.
    init_lengthscales, init_variances : sequence
        Per mode, the initial ℓ_k and σ²_k (continuous) or ``None`` (categorical).
    key : jax.random key
        Seeds the factor means (``mean_scale · N(0, 1)``) and the core mean (``N(0, 1)``).
    mean_scale : float
        Scale of the random factor means.
    cov_scale : float
        Initial covariances are ``cov_scale`` times the prior ones (``I`` for factor rows and
        core). With the full prior covariance the first sweeps see factors that are mostly
        noise and shrink weak components until the mean-field updates switch them off (a
        rank-deficient local optimum); a small value makes the first sweep close to
        alternating least squares.
    init_means : list of Float[Array, "N_k R_k"], optional
        Initial factor means (e.g. from :func:`spectral_init`) instead of random ones.
    noise_sd : float
        ``E[τ]^{-1/2}`` used by the first sweep (z-scored units). A pessimistic (large) value
        shrinks weak components so hard in the first sweeps that mean-field updates switch them
        off for good (a rank-deficient local optimum); 0.1 makes the first sweep close to
        alternating least squares, and ``q(τ)`` adapts from the second sweep on.
    init_periods, init_envelopes : sequence, optional
        Per mode, the initial period p_k of a (quasi-)periodic kernel and the envelope
        lengthscale of a quasi-periodic one (entries of other modes are ignored; default 1).

    Returns
    -------
    FunBaTState
    """
    K = len(cfg.ranks)
    dtype = jnp.result_type(float)
    keys = jax.random.split(key, K + 1)
    factors, messages, log_hyper, opt_state = [], [], [], []
    for k in range(K):
        N, R = cfg.sizes[k], cfg.ranks[k]
        if init_means is None:
            mean = mean_scale * jax.random.normal(keys[k], (N, R), dtype)
        else:
            mean = jnp.asarray(init_means[k], dtype)
        if cfg.continuous[k]:
            post = _prior_posterior(cfg, k, dts[k], mean, cov_scale * init_variances[k])
            factors.append(post)
        else:
            cov = jnp.broadcast_to(cov_scale * jnp.eye(R, dtype=dtype), (N, R, R))
            factors.append(CategoricalPosterior(mean, cov))
        messages.append(Messages(jnp.zeros((N, R, R), dtype), jnp.zeros((N, R), dtype)))
        if cfg.continuous[k]:
            initial = {
                "lengthscale": init_lengthscales[k],
                "variance": init_variances[k],
                "period": 1.0 if init_periods is None else init_periods[k],
                "envelope": 1.0 if init_envelopes is None else init_envelopes[k],
            }
            names = cfg.hyper_names(k)
            theta = jnp.log(jnp.stack([jnp.asarray(initial[n]) for n in names])).astype(dtype)
            log_hyper.append(theta)
            steps = [PERIOD_STEP if n == "period" else cfg.hyper_step for n in names]
            opt_state.append(jnp.asarray(steps, dtype))
        else:
            log_hyper.append(None)
            opt_state.append(None)
    core = None
    if cfg.model == "tucker":
        P = int(np.prod(cfg.ranks))
        core_mean = jax.random.normal(keys[K], cfg.ranks, dtype)
        core = CorePosterior(core_mean, cov_scale * jnp.eye(P, dtype=dtype))
    elif cfg.ard:  # CP weights start at the superdiagonal of ones
        R = cfg.ranks[0]
        core = WeightPosterior(jnp.ones(R, dtype), cov_scale * jnp.eye(R, dtype=dtype))
    ard = init_ard(cfg, dtype) if cfg.ard else None
    # E[τ] = 1 / noise_sd² on z-scored values until the first update
    noise = NoisePosterior(jnp.full((), 1.0, dtype), jnp.full((), noise_sd**2, dtype))
    return FunBaTState(
        tuple(factors), tuple(messages), core, noise, tuple(log_hyper), tuple(opt_state), ard
    )


def initial_state(
    cfg,
    dts,
    ell0,
    var0,
    key,
    mean_scale,
    cov_scale,
    init_means,
    noise_sd,
    index,
    y,
    period0=None,
    envelope0=None,
    mask=None,
    kept=None,
):
    """:func:`init_state`, then (Tucker with given initial means) the core that best explains
    the data given the initial factors; one compiled call instead of many small ones.
    ``mask`` and ``kept``: as in :func:`sweep`."""
    state = init_state(
        cfg, dts, ell0, var0, key, mean_scale, cov_scale, init_means, noise_sd, period0, envelope0
    )
    if init_means is not None and cfg.model == "tucker":
        means, seconds = gather(state.factors, index)
        core = core_update(y, state.noise.mean, means, _masked(seconds, mask), cfg.chunk)
        state = state._replace(core=kept_core(core, kept))
    return state


def _prior_posterior(
    cfg: FunBaTConfig, k: int, dt, mean: Float[Array, "N R"], cov_scale
) -> Posterior:
    """Smoother-shaped posterior of a continuous mode with ``mean`` and covariance ``cov_scale I``.

    The first sweep reads only ``mean`` and ``cov``; the other fields are zeros with the shapes
    :func:`bayestensor.ssm.smooth` returns (found by ``jax.eval_shape``, nothing is compiled), so
    every sweep sees the same pytree layout.
    """
    N, R = mean.shape
    sde = mode_sde(cfg, k, jnp.zeros((len(cfg.hyper_names(k)),), mean.dtype))
    zeros = Messages(jnp.zeros((N, R, R), mean.dtype), jnp.zeros((N, R), mean.dtype))
    shapes = jax.eval_shape(smooth, sde, dt, zeros.prec, zeros.shift)
    post = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    cov = jnp.broadcast_to(cov_scale * jnp.eye(R, dtype=mean.dtype), (N, R, R))
    return post._replace(mean=mean, cov=cov)


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------


def mode_marginals(
    state: FunBaTState, cfg: FunBaTConfig, k: int, loc
) -> tuple[Float[Array, "M R"], Float[Array, "M R R"]]:
    """Posterior means and second moments ``E[u uᵀ]`` of mode ``k``'s functions at ``loc``.

    Continuous: the SDE bridge (:func:`bayestensor.ssm.interpolate`) at a
    :class:`~bayestensor.ssm.Location`; categorical: the rows at an integer index array.
    """
    return factor_marginals(state.factors[k], state.log_hyper[k], cfg, k, loc)


def factor_marginals(
    f, theta, cfg: FunBaTConfig, k: int, loc
) -> tuple[Float[Array, "M R"], Float[Array, "M R R"]]:
    """:func:`mode_marginals` from mode ``k``'s posterior ``f`` and log hyperparameters
    ``theta`` alone (what the estimator compiles: fits whose other parts differ, such as the
    ARD's pruned fit and a refit at its ranks, share the program)."""
    if cfg.continuous[k]:
        m, P = interpolate(mode_sde(cfg, k, theta), f, loc)
    else:
        m, P = f.mean[loc], f.cov[loc]
    return m, second_moment(m, P)


def row_moments(
    core: CorePosterior | None,
    cfg: FunBaTConfig,
    means: list,
    seconds: list,
    index: Int[Array, "M K"] | None = None,
) -> tuple[Float[Array, " M"], Float[Array, " M"]]:
    """``E[f*]`` and ``Var[f*]`` of rows from per-mode means and second moments.

    With ``index`` the per-mode arrays are tables (e.g. on the unique new coordinates) and row
    ``n`` reads entry ``index[n, k]`` of mode ``k``'s table; Tucker then forms ``E[f*²]``
    through mode 0's table (:class:`~bayestensor.models.funbat.moments.Grouping`). Without it
    they are already per row.
    """
    group = None
    if index is not None:
        # the grouped form costs one pass over mode 0's table per call: worth it only when
        # that table is no longer than the rows
        tucker = isinstance(core, CorePosterior)
        if tucker and len(means) > 1 and seconds[0].shape[0] <= index.shape[0]:
            group = Grouping(index, [seconds[0]] + [None] * (len(seconds) - 1))
        means = [m[index[:, k]] for k, m in enumerate(means)]
        seconds = [s[index[:, k]] for k, s in enumerate(seconds)]
    # the training-size block may be too large for many new rows
    chunk = auto_chunk(means[0].shape[0], cfg.ranks, cfg.model)
    if cfg.chunk is not None:
        chunk = cfg.chunk if chunk is None else min(cfg.chunk, chunk)
    Ef, Ef2 = expected_f(means, seconds, core, chunk, group)
    return Ef, jnp.maximum(Ef2 - Ef**2, 0.0)


def predict_moments(
    state: FunBaTState,
    cfg: FunBaTConfig,
    locs: list,
) -> tuple[Float[Array, " M"], Float[Array, " M"]]:
    """Posterior mean and variance of ``f`` at new rows, row by row.

    For a continuous mode the marginal ``q(u^k(x*))`` comes from the SDE bridge
    (:func:`bayestensor.ssm.interpolate`); a categorical mode reads its rows by index. Then
    ``E[f*]``, ``E[f*²]`` by :func:`expected_f` and ``Var[f*] = E[f*²] − E[f*]²``. The
    estimator computes the same through :func:`mode_marginals` on each mode's unique new
    coordinates and :func:`row_moments` with an index, in blocks of rows.

    Parameters
    ----------
    state : FunBaTState
        Fitted posterior.
    cfg : FunBaTConfig
        Static settings.
    locs : list
        Per mode, a :class:`bayestensor.ssm.Location` (continuous) or an integer index array.

    Returns
    -------
    mean, var : Float[Array, "M"]
    """
    marginals = [mode_marginals(state, cfg, k, locs[k]) for k in range(len(cfg.ranks))]
    return row_moments(state.core, cfg, [m for m, _ in marginals], [s for _, s in marginals])
