"""Automatic rank determination (ARD) for FunBaT: Gamma-distributed precisions on the core
slices (Tucker) or the component weights (CP), their closed-form updates inside the sweep, and
the pruning of the components they switch off.

Tucker
    The core prior ``vec W ~ N(0, I)`` becomes

    .. math::

        W_{r_1 … r_K} \\sim \\mathcal N\\Big(0, \\prod_k (λ^k_{r_k})^{-1}\\Big), \\qquad
        λ^k_r \\sim \\mathrm{Gamma}(c_0, d_0),

    one precision per slice ``W[…, r, …]`` of mode ``k`` (Mørup & Hansen 2009). A large
    ``λ^k_r`` shrinks the whole slice, and with it component ``r`` of mode ``k``, to zero.
CP
    The fixed superdiagonal core becomes ``diag(w)`` with ``w_r ~ N(0, 1/λ_r)``,
    ``λ_r ~ Gamma(c_0, d_0)`` (one precision per component, shared by every mode, as in
    Bayesian CP with ARD, Zhao, Zhang & Cichocki 2015); ``q(w)`` is Gaussian
    (:func:`~bayestensor.models.funbat.moments.weight_update`).

The factor priors (state-space GPs, ``N(0, I)`` rows) are unchanged, so every mode keeps its
Kalman pass. Under the mean field ``q(λ)`` is Gamma with

.. math::

    \\text{Tucker: } q(λ^k_r) = \\mathrm{Gamma}\\Big(c_0 + \\tfrac12 \\prod_{j≠k} R_j,\\;
        d_0 + \\tfrac12 \\sum_{\\mathbf r: r_k = r} E[W_{\\mathbf r}^2]
        \\prod_{j≠k} E[λ^j_{r_j}]\\Big), \\qquad
    \\text{CP: } q(λ_r) = \\mathrm{Gamma}\\big(c_0 + \\tfrac12,\\; d_0 + \\tfrac12 E[w_r^2]\\big),

updated after the core in every sweep; the core update then uses the prior precision
``E[vec W]``'s diagonal ``Π_k E[λ^k_{r_k}]`` (CP: ``E[λ_r]``). A component the data do not need
has ``E[W²]`` shrinking with each update, so its precision grows without bound (where it
enters the prior, ``E[λ]`` is capped at :data:`MAX_PRECISION`, far past switching it off).

After the sweeps a component is *pruned* when its share of the fitted values is below
:data:`PRUNE_SHARE`: with ``f^{(k,r)}_n`` the part of ``E[f_n]`` that flows through component
``r`` of mode ``k``, the share is ``Σ_n (f^{(k,r)}_n)² / Σ_n E[f_n]²`` — and its root-mean-square
part of the fitted values is below :data:`PRUNE_NOISE` noise sds. The pruned components are
removed from the posterior (:func:`prune`), which then is an ordinary fit of the smaller ranks;
the kept ones are ordered by decreasing share.

With a local residual stage after the fit (``bt.fit(..., local=...)``, on by default) the rule is
stricter: a component is kept only when its root-mean-square part is at least
:data:`PRUNE_NOISE_LOCAL` noise sds (:func:`kept` with ``local=True``). On small data the ARD keeps
every component up to the bound, the small ones fitting short-range variation that the local
process then cannot see in the residuals; leaving it to the local process predicts better
(:func:`bayestensor.api.fit` falls back to the lenient rule when the local stage keeps no process,
and with ``local="auto"`` takes it when the residual process kept on the strict fit is still
needed on top of the lenient one: :func:`~bayestensor.models.funbat.local.still_needed`, or
when the strict fit's local stage kept the GP on the values where its residuals were mostly
structure (:func:`~bayestensor.models.funbat.local_cavity.mostly_structure`) or the data are not
:func:`scattered`, and the lenient fit's own local stage keeps a residual process; on small data
also where the lenient fit's refits predict better than the strict one's with its process:
:func:`~bayestensor.models.funbat.refit_check.lenient_by_refits`).

References
----------
.. [1] M. Mørup and L. K. Hansen, "Automatic relevance determination for multi-way models",
   J. Chemometrics 23, 2009.
.. [2] Q. Zhao, L. Zhang and A. Cichocki, "Bayesian CP factorization of incomplete tensors with
   automatic rank determination", IEEE TPAMI 37, 2015.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bayestensor import io
from bayestensor.checks import cap_ranks, check_ranks
from bayestensor.models.funbat.grid import plan
from bayestensor.models.funbat.moments import einsum_letters
from bayestensor.models.funbat.state import (
    ARDPosterior,
    CategoricalPosterior,
    CorePosterior,
    FunBaTConfig,
    FunBaTState,
    Messages,
    WeightPosterior,
    auto_chunk,
)

#: ``rank="auto"``: default upper bound of each Tucker rank (also at most the mode's number of
#: unique coordinates, and lowered on scattered data by :data:`AUTO_TUCKER_WORK`) and of the CP
#: rank (also at most what the data can identify, see :func:`bayestensor.checks.cap_ranks`).
#: Tucker's was 6 until the sweep's sums moved onto the grid of unique coordinates
#: (:mod:`~bayestensor.models.funbat.grid`); 8 predicts better on us_temp, ozone and txhousing
#: and the same elsewhere (``docs/benchmarks.md``).
AUTO_MAX_RANK = {"tucker": 8, "cp": 10}
#: ``rank="auto"`` with Tucker: the default bound R (the same on every mode) is lowered until
#: ``n · R^(2K)`` — the work of the core update per sweep, which holds an ``R^K × R^K`` second
#: moment per observation — is at most this (measured on 2 cores at n = 10⁶, K = 3: R = 3,
#: 7.3e8, takes 1.1 s a sweep; R = 6, 4.7e10, takes 47 s), and never below 2. Not on gridded
#: data, where the sweep forms those sums on the grid of unique coordinates
#: (:func:`bayestensor.models.funbat.grid.plan`) at a small part of that cost.
AUTO_TUCKER_WORK = 1e9
#: ``rank="auto"``, Tucker, under :data:`SMALL_ROWS` rows: the default bound is SMALL_MAX_RANK.
#: From 8 the ARD there often ends at rank 1 (many weak components' variance counted as noise);
#: from 2 it predicted better on 10 of the 18 sets it was chosen on and on 12 of 14 others, by
#: 5-7 % in the geometric mean, worse by up to 6 % elsewhere (``docs/benchmarks.md``).
SMALL_ROWS, SMALL_MAX_RANK = 200, 2
#: Gamma prior ``(c₀, d₀)`` of the ARD precisions: broad, as in Bayesian CP / Tucker with ARD.
ARD_A0 = 1e-6
ARD_B0 = 1e-6
#: Cap on ``E[λ]`` where it enters the core's prior precision (a component held to 1e-8 of its
#: prior variance is off; products of uncapped precisions could overflow float32).
MAX_PRECISION = 1e8
#: A component whose share of the fitted values' energy is below this is pruned (see the module
#: docstring; the components the ARD switches off fall to 1e-8 and below).
PRUNE_SHARE = 1e-4
#: ... unless its root-mean-square part of the fitted values is at least this fraction of the
#: noise sd: on precise data a direction of a small share can still be far above the noise
#: (switched-off components fall to ~1e-4 of the fitted values' scale and below).
PRUNE_NOISE = 0.01
#: With a local residual stage after the fit, a component is kept only when its root-mean-square
#: part of the fitted values is at least this many noise sds (chosen between 0.3 and 0.5 on the
#: battery's first splits, checked on fresh ones: ``docs/benchmarks.md``).
PRUNE_NOISE_LOCAL = 0.5
#: Data are *scattered* (:func:`scattered`) where some mode has fewer than this many training
#: rows per unique coordinate on average; the strict rule was set on such data (beijing: 10-39
#: rows per coordinate). On data with more in every mode (dslabs' diseases: 135-1,600), a
#: component at a fraction of a noise sd rests on hundreds of rows each: there
#: :func:`bayestensor.api.fit` checks the unpruned fit wherever the strict one ends with the GP on
#: the values (the strictly pruned part predicted worse than none), as where the residuals were
#: mostly structure (``docs/benchmarks.md``).
DENSE_ROWS = 100


def kept(
    shares: np.ndarray, mean_square: float, noise_var: float, local: bool = False
) -> np.ndarray:
    """Which components to keep: share ≥ :data:`PRUNE_SHARE`, or a root-mean-square part
    ``√(share · mean_square)`` of at least :data:`PRUNE_NOISE` noise sds (``mean_square``:
    the fitted values' mean square, ``noise_var``: the noise variance, both z-scored). With
    ``local``: a root-mean-square part of at least :data:`PRUNE_NOISE_LOCAL` noise sds."""
    shares = np.asarray(shares, dtype=np.float64)
    part = shares * mean_square
    if local:
        return part >= PRUNE_NOISE_LOCAL**2 * noise_var
    return (shares >= PRUNE_SHARE) | (part >= PRUNE_NOISE**2 * noise_var)


def check_rank_option(rank, max_rank, model: str) -> None:
    """Refuse a ``rank`` string other than ``"auto"``, a ``max_rank`` with a fixed rank, or a
    ``max_rank`` that is not a positive int or one per mode (CP: one int).

    Raises
    ------
    ValueError
        Naming ``rank`` or ``max_rank``.
    """
    if isinstance(rank, str) and rank != "auto":
        raise ValueError(f"rank must be a positive int, one per mode, or 'auto', got {rank!r}")
    if max_rank is None:
        return
    if not isinstance(rank, str):
        raise ValueError(f"max_rank is for rank='auto' only, got rank={rank!r}")
    if isinstance(max_rank, str) or (np.ndim(max_rank) == 0 and not np.isscalar(max_rank)):
        raise ValueError(f"max_rank must be a positive int or one per mode, got {max_rank!r}")
    try:
        check_ranks(max_rank, max(1, np.size(max_rank)), equal=model == "cp")
    except ValueError as err:
        raise ValueError(f"max_rank: {err}") from None


def auto_ranks(
    model: str, shape: tuple[int, ...], max_rank=None, n_obs: int | None = None
) -> tuple[int, ...]:
    """Upper bounds of the ranks with ``rank="auto"``: ``max_rank`` (checked against the number
    of modes, capped with a warning like a fixed rank) or :data:`AUTO_MAX_RANK` capped silently
    at what the data can identify (``N_k`` per Tucker mode; ``Π N_k / max N_k`` for CP) and,
    for Tucker with ``n_obs`` observations, at what a sweep can afford
    (:data:`AUTO_TUCKER_WORK`), and at :data:`SMALL_MAX_RANK` on fewer than :data:`SMALL_ROWS`."""
    K = len(shape)
    if max_rank is not None:
        try:
            ranks = check_ranks(max_rank, K, equal=model == "cp")
        except ValueError as err:
            raise ValueError(f"max_rank: {err}") from None
        return cap_ranks(ranks, shape, model)
    cap = AUTO_MAX_RANK[model]
    if model == "cp":
        bound = max(1, int(np.prod(shape)) // max(shape))
        return (min(cap, bound),) * K
    cap = SMALL_MAX_RANK if n_obs is not None and n_obs < SMALL_ROWS else cap
    if n_obs is not None:
        while (
            cap > 2
            and n_obs * float(cap) ** (2 * K) > AUTO_TUCKER_WORK
            and plan(shape, tuple(min(cap, N) for N in shape), n_obs) is None
        ):
            cap -= 1
    return tuple(min(cap, N) for N in shape)


def init_ard(cfg: FunBaTConfig, dtype, xp=jnp) -> tuple[ARDPosterior, ...]:
    """``q(λ)`` with ``E[λ] = 1`` (the ``N(0, I)`` prior of a fit without ARD): one per mode
    (Tucker) or a single one (CP); ``xp``: the array module (JAX or NumPy)."""
    ranks = cfg.ranks if cfg.model == "tucker" else cfg.ranks[:1]
    return tuple(ARDPosterior(xp.ones(R, dtype), xp.ones(R, dtype)) for R in ranks)


def _capped(a: ARDPosterior, xp=jnp) -> Array:
    """``E[λ]`` capped at :data:`MAX_PRECISION` (``xp``: the array module, JAX or NumPy)."""
    return xp.minimum(a.mean, MAX_PRECISION)


def prior_precision(cfg: FunBaTConfig, ard: tuple[ARDPosterior, ...]) -> Array:
    """Diagonal prior precision of the core: ``Π_k E[λ^k_{r_k}]`` with shape ``ranks``
    (Tucker), or ``E[λ]`` (CP weights), each ``E[λ]`` capped at :data:`MAX_PRECISION`."""
    if cfg.model == "cp":
        return _capped(ard[0])
    out = jnp.ones((), ard[0].shape.dtype)
    for k, a in enumerate(ard):
        shape = [1] * len(ard)
        shape[k] = -1
        out = out * _capped(a).reshape(shape)
    return out


def ard_update(
    cfg: FunBaTConfig,
    core: CorePosterior | WeightPosterior,
    ard: tuple[ARDPosterior, ...],
    xp=jnp,
) -> tuple[ARDPosterior, ...]:
    """Closed-form Gamma update of every ARD precision from the core's second moments (see the
    module docstring); Tucker modes in turn, each with the others' latest ``E[λ]``. ``xp``:
    the array module of the arguments (JAX inside the sweep, NumPy in :func:`rotate_tucker`)."""
    if cfg.model == "cp":
        second = core.mean**2 + xp.diagonal(core.cov)
        shape = xp.full_like(second, ARD_A0 + 0.5)
        return (ARDPosterior(shape, ARD_B0 + 0.5 * second),)
    ranks = cfg.ranks
    P = int(np.prod(ranks))
    second = (core.mean**2 + xp.diagonal(core.cov).reshape(ranks)).reshape(ranks)
    ard = list(ard)
    for k in range(len(ranks)):
        weight = xp.ones((), second.dtype)
        for j, a in enumerate(ard):
            if j != k:
                shape = [1] * len(ranks)
                shape[j] = -1
                weight = weight * _capped(a, xp).reshape(shape)
        axes = tuple(j for j in range(len(ranks)) if j != k)
        rate = ARD_B0 + 0.5 * xp.sum(second * weight, axis=axes)
        count = P // ranks[k]
        ard[k] = ARDPosterior(xp.full_like(rate, ARD_A0 + 0.5 * count), rate)
    return tuple(ard)


def component_shares(
    cfg: FunBaTConfig, state: FunBaTState, index: np.ndarray, mean_square: bool = False
):
    """Per mode, each component's share of the energy of the fitted values (with
    ``mean_square``, also the fitted values' mean square over the rows).

    ``share_{k,r} = Σ_n (f^{(k,r)}_n)² / Σ_n E[f_n]²`` with ``f^{(k,r)}_n`` the part of
    ``E[f_n] = Σ_r m_W[r] Π_k μ^k_{n r_k}`` whose mode-``k`` index is ``r`` (CP:
    ``m_{w,r} Π_k μ^k_{nr}``, the same for every mode).
    """
    K = len(cfg.ranks)
    means = [np.asarray(f.mean)[index[:, k]] for k, f in enumerate(state.factors)]
    core = state.core
    if cfg.model == "cp":
        prod = np.prod(np.stack(means), axis=0)
        if core is not None:
            prod = prod * np.asarray(core.mean)
        parts = [prod] * K
    else:
        r, _ = einsum_letters(K)
        W = np.asarray(core.mean)
        parts = [
            np.einsum(",".join([r] + [f"n{c}" for c in r]) + f"->n{r[k]}", W, *means)
            for k in range(K)
        ]
    total = float(np.sum(parts[0].sum(-1) ** 2))
    shares = [np.sum(p**2, axis=0) / (total if total > 0 else 1.0) for p in parts]
    return (shares, total / max(index.shape[0], 1)) if mean_square else shares


def active_components(
    cfg: FunBaTConfig,
    shares: list[np.ndarray],
    mean_square: float = 0.0,
    noise_var: float = 1.0,
    local: bool = False,
) -> tuple[np.ndarray, ...]:
    """Per mode, the indices of the kept components (:func:`kept`; at least the largest one),
    by decreasing share. CP keeps one set for every mode (by mode 0's shares, which are the
    same for all)."""
    keep = []
    for s in shares[:1] if cfg.model == "cp" else shares:
        order = np.argsort(-s, kind="stable")
        chosen = order[kept(s[order], mean_square, noise_var, local)]
        keep.append(order[:1] if chosen.size == 0 else chosen)
    if cfg.model == "cp":
        keep = keep * len(cfg.ranks)
    return tuple(np.asarray(k, dtype=np.int64) for k in keep)


def _slice_rows(a, keep: np.ndarray, axes: tuple[int, ...]):
    """``a`` restricted to ``keep`` along each of ``axes`` (on the host: no compile per shape)."""
    for ax in axes:
        a = np.take(np.asarray(a), keep, axis=ax)
    return jax.device_put(a)


def prune(
    state: FunBaTState, cfg: FunBaTConfig, keep: tuple[np.ndarray, ...]
) -> tuple[FunBaTState, FunBaTConfig]:
    """The posterior restricted to the components ``keep`` (per mode, in that order), and the
    config with the matching ranks.

    Factor means, covariances and messages keep the rows/columns of the kept components; a
    continuous mode's stacked state keeps their blocks (component ``r`` owns state entries
    ``r d … r d + d − 1``); the core keeps the sub-tensor ``W[keep_1, …, keep_K]`` and its
    covariance block (CP: the kept weights); the ARD posteriors their entries.
    """
    factors, messages = [], []
    for k, (f, msg) in enumerate(zip(state.factors, state.messages, strict=True)):
        kk = keep[k]
        mean = _slice_rows(f.mean, kk, (1,))
        cov = _slice_rows(f.cov, kk, (1, 2))
        if isinstance(f, CategoricalPosterior):
            factors.append(CategoricalPosterior(mean, cov))
        else:
            d = f.state_mean.shape[1] // cfg.ranks[k]
            idx = (kk[:, None] * d + np.arange(d)[None, :]).reshape(-1)
            factors.append(
                f._replace(
                    state_mean=_slice_rows(f.state_mean, idx, (1,)),
                    state_cov=_slice_rows(f.state_cov, idx, (1, 2)),
                    cross_cov=_slice_rows(f.cross_cov, idx, (1, 2)),
                    mean=mean,
                    cov=cov,
                )
            )
        prec = _slice_rows(msg.prec, kk, (1, 2))
        messages.append(Messages(prec, _slice_rows(msg.shift, kk, (1,))))
    core = state.core
    if isinstance(core, CorePosterior):
        flat = np.ravel_multi_index(np.ix_(*keep), cfg.ranks).reshape(-1)
        mean = core.mean[np.ix_(*keep)]
        core = CorePosterior(mean, _slice_rows(core.cov, flat, (0, 1)))
    elif isinstance(core, WeightPosterior):
        core = WeightPosterior(core.mean[keep[0]], _slice_rows(core.cov, keep[0], (0, 1)))
    ard = state.ard
    if ard is not None:
        sets = keep if cfg.model == "tucker" else keep[:1]
        ard = tuple(ARDPosterior(a.shape[kk], a.rate[kk]) for a, kk in zip(ard, sets, strict=True))
    new_cfg = cfg._replace(ranks=tuple(int(k.size) for k in keep))
    new_state = state._replace(factors=tuple(factors), messages=tuple(messages), core=core, ard=ard)
    return new_state, new_cfg


def _scale(a) -> float:
    """The largest absolute entry of ``a`` (1 where it is all zeros)."""
    top = float(np.max(np.abs(np.asarray(a, dtype=np.float64)), initial=0.0))
    return top if top > 0.0 else 1.0


def _psd_sqrt(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``G^{1/2}`` and ``G^{-1/2}`` of a symmetric PSD matrix (eigenvalues floored)."""
    w, V = np.linalg.eigh(0.5 * (G + G.T))
    w = np.maximum(w, 1e-12 * max(float(w.max()), 1e-300))
    return (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T


def tucker_rotations(cfg: FunBaTConfig, state: FunBaTState):
    """Per mode, the singular directions of the fitted mean tensor and their energy shares.

    With ``G_k = Σ_t μ^k_t μ^{k⊤}_t`` (the factor means' Gram matrix over the mode's unique
    coordinates), the mode-``k`` unfolding of the fitted tensor ``m_W ×_j U^j`` on the grid of
    unique coordinates has the singular values of the whitened core
    ``C = m_W ×_j G_j^{1/2}``'s unfolding ``C_(k) = V Σ Zᵀ``; ``share_{k,i} = σ_i² / Σ σ²``
    (rotation-invariant, unlike a component's own energy: Tucker components are free up to
    invertible transforms absorbed by the core, so one direction may be spread over several).
    The ``r`` leading directions are the components ``U^k M_r`` with ``M_r`` an orthonormal
    basis (QR) of ``G_k^{-1/2} V_r``, ``G_k^{-1/2} V_r = M_r T_r`` (the first ``r`` columns of
    the QR of ``G_k^{-1/2} V``: ``M_r = M[:, :r]``, ``T_r = T[:r, :r]``); then
    ``U^k M_r N_r = P_k V_r V_rᵀ G_k^{1/2}`` with ``N_r = T_r V_rᵀ G_k^{1/2}`` and
    ``P_k = U^k G_k^{-1/2}``, so the truncated mean tensor is the fitted one projected onto its
    ``r`` leading left singular vectors ``P_k V_r`` in mode ``k`` (the HOSVD truncation). The
    rows of ``T V ᵀG_k^{1/2}`` are not ``N_r`` for ``r < R_k``: ``T`` is upper triangular, and
    its block ``T[:r, r:]`` would mix the dropped directions (amplified by ``G_k^{-1/2}``, large
    when the fitted components are nearly collinear) back into the kept ones.

    Returns
    -------
    list of (shares, M_full, rotation)
        Per mode, the shares (length ``R_k``), ``M`` for all ``R_k`` directions and
        ``rotation(r)``: ``(M_r, N_r)`` for the ``r`` leading ones.
    """
    K = len(cfg.ranks)
    means = [np.asarray(f.mean, dtype=np.float64) for f in state.factors]
    # each mode's means in units of their largest entry: M and N_r do not depend on a mode's
    # scale, and a fit that switched everything off has means near 1e-150, whose Gram
    # matrices (and the core's scale) underflow; the scales come back in the energy only
    scales = [_scale(m) for m in means]
    Gs = [(m / s).T @ (m / s) for m, s in zip(means, scales, strict=True)]
    roots = [_psd_sqrt(G) for G in Gs]
    C = np.asarray(state.core.mean, dtype=np.float64)
    scales.append(_scale(C))
    C = C / scales[-1]
    for k in range(K):
        C = np.moveaxis(np.tensordot(roots[k][0], C, axes=(1, k)), 0, k)
    unit = float(np.prod(np.square(scales)))  # the fitted tensor's energy per scaled unit
    out = []
    for k in range(K):
        unfold = np.moveaxis(C, k, 0).reshape(cfg.ranks[k], -1)
        V, sv, _ = np.linalg.svd(unfold, full_matrices=True)
        energy = np.zeros(cfg.ranks[k])
        energy[: sv.size] = sv**2
        shares = energy / max(float(energy.sum()), 1e-300)
        # the fitted values' mean square on the grid of unique coordinates: ‖C‖² / Π n_j
        grid = float(np.prod([m.shape[0] for m in means]))
        mean_square = float(energy.sum()) * unit / grid
        M, T = np.linalg.qr(roots[k][1] @ V)
        VtG = V.T @ roots[k][0]

        def rotation(r, M=M, T=T, VtG=VtG):
            return M[:, :r], T[:r, :r] @ VtG[:r]

        out.append((shares, M, rotation, mean_square))
    return out


def rotate_tucker(
    state: FunBaTState, cfg: FunBaTConfig, keep: tuple[int, ...], rotations
) -> tuple[FunBaTState, FunBaTConfig]:
    """The Tucker posterior on ``keep[k]`` leading directions per mode (see
    :func:`tucker_rotations`): factor rows ``u' = Mᵀ u`` (means, covariances, the stacked
    state ``s' = (M ⊗ I_d)ᵀ s``, messages), core ``vec W' = (⊗_k N_k) vec W`` (mean and
    covariance), and the ARD posteriors recomputed from the new core. ``M`` has orthonormal
    columns, so the components stay iid under the GP prior.

    Computed in NumPy (float64) and put back on the device in the posterior's dtype: run once
    per fit on small arrays, where JAX's eager operations would each be a program to compile
    (or load from the cache) in every fresh process."""
    dtype = state.core.mean.dtype
    host = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    dev = lambda a: jax.device_put(np.asarray(a, dtype))  # noqa: E731
    sandwich = lambda T, a: np.einsum("ai,nab,bj->nij", T, host(a), T)  # noqa: E731
    factors, messages = [], []
    Ns = []
    for k, (f, msg) in enumerate(zip(state.factors, state.messages, strict=True)):
        M, N_r = rotations[k][2](keep[k])
        Ns.append(N_r)
        mean, cov = dev(host(f.mean) @ M), dev(sandwich(M, f.cov))
        if isinstance(f, CategoricalPosterior):
            factors.append(CategoricalPosterior(mean, cov))
        else:
            d = f.state_mean.shape[1] // cfg.ranks[k]
            T = np.kron(M, np.eye(d))
            factors.append(
                f._replace(
                    state_mean=dev(host(f.state_mean) @ T),
                    state_cov=dev(sandwich(T, f.state_cov)),
                    cross_cov=dev(sandwich(T, f.cross_cov)),
                    mean=mean,
                    cov=cov,
                )
            )
        messages.append(Messages(dev(sandwich(M, msg.prec)), dev(host(msg.shift) @ M)))
    N = Ns[0]
    for Nk in Ns[1:]:
        N = np.kron(N, Nk)
    new_cfg = cfg._replace(ranks=tuple(int(r) for r in keep))
    mean = (N @ host(state.core.mean).reshape(-1)).reshape(new_cfg.ranks)
    cov = N @ host(state.core.cov) @ N.T
    core = CorePosterior(mean, 0.5 * (cov + cov.T))
    ard = ard_update(new_cfg, core, init_ard(new_cfg, np.float64, xp=np), xp=np)
    ard = jax.tree.map(dev, ard)
    core = jax.tree.map(dev, core)
    new_state = state._replace(factors=tuple(factors), messages=tuple(messages), core=core, ard=ard)
    return new_state, new_cfg


def prune_fit(
    state: FunBaTState, cfg: FunBaTConfig, index: np.ndarray, rechunk: bool, local: bool = False
):
    """After the sweeps: the shares, the kept components and the pruned posterior and config
    (with ``rechunk``, the config's block size recomputed for the smaller ranks; with ``local``,
    :func:`kept`'s rule for a fit followed by a local residual stage).

    CP keeps the components whose share (:func:`component_shares`) passes :func:`kept`;
    Tucker keeps, per mode, the leading singular directions of the fitted tensor whose energy
    share passes :func:`kept`, as components (:func:`tucker_rotations`, :func:`rotate_tucker`).

    Returns
    -------
    state, cfg, active, shares
        ``active``: per mode the kept components' indices among the fit's (CP), or
        ``0 … r_k − 1`` (Tucker: the kept directions, by decreasing singular value).
    """
    noise_var = 1.0 / float(state.noise.mean)
    if cfg.model == "tucker":
        rotations = tucker_rotations(cfg, state)
        shares = tuple(r[0] for r in rotations)
        # shares decrease along each mode, so the kept ones are the leading ones
        keep = tuple(max(1, int(np.sum(kept(r[0], r[3], noise_var, local)))) for r in rotations)
        state, cfg = rotate_tucker(state, cfg, keep, rotations)
        active = tuple(np.arange(r) for r in keep)
    else:
        shares, mean_square = component_shares(cfg, state, index, mean_square=True)
        shares = tuple(shares)
        active = active_components(cfg, list(shares), mean_square, noise_var, local)
        state, cfg = prune(state, cfg, active)
    if rechunk:
        cfg = cfg._replace(chunk=auto_chunk(index.shape[0], cfg.ranks, cfg.model))
    return state, cfg, active, shares


def scattered(index: np.ndarray) -> bool:
    """Whether the training rows ``index`` (rows × modes, coordinate indices) leave some mode
    with fewer than :data:`DENSE_ROWS` rows per unique coordinate on average."""
    index = np.asarray(index)
    n = index.shape[0]
    return any(n < DENSE_ROWS * np.unique(index[:, k]).size for k in range(index.shape[1]))


def pruned_for_local(est, local: bool = True):
    """A copy of a ``rank="auto"`` FunBaT estimator pruned for a fit followed by a local residual
    stage (:func:`kept` with ``local=True``) from its sweeps' unpruned posterior; None when that
    keeps the same ranks, for a fixed rank, or with ``local=False`` (no local stage follows).
    Either way ``est`` releases the unpruned posterior it kept for this."""
    import copy

    from bayestensor.driver import precision

    unpruned, est._unpruned = getattr(est, "_unpruned", None), None
    if unpruned is None or not local:
        return None
    state, cfg, index = unpruned
    with precision(est.dtype):
        state, cfg, active, shares = prune_fit(state, cfg, index, est.chunk == "auto", local=True)
    if cfg.ranks == est.cfg_.ranks:
        return None
    out = copy.copy(est)
    out.state_, out.cfg_, out.active_, out.shares_ = state, cfg, active, shares
    return out


def ard_record(header: dict, cfg: FunBaTConfig) -> tuple:
    """``(max_ranks, active, shares)`` of a saved fit: from ``header["ard"]`` (``rank="auto"``),
    else the fixed ranks, every component kept, no shares (also files saved before ARD)."""
    K = len(cfg.ranks)
    if "ard" not in header:
        if cfg.ard:
            raise ValueError("saved config.ard is true but the header has no field 'ard'")
        return tuple(cfg.ranks), tuple(np.arange(R) for R in cfg.ranks), None
    raw = io.field(header, "ard", dict)
    io.check_fields(raw, ("max_ranks", "active", "shares"), "header.ard")
    max_ranks = io.field(raw, "max_ranks", tuple[int, ...], "header.ard")
    active = io.field(raw, "active", list[list[int]], "header.ard")
    shares = io.field(raw, "shares", list[list[float]], "header.ard")
    ok = cfg.ard and len(max_ranks) == len(active) == len(shares) == K
    for k in range(K if ok else 0):
        a = np.asarray(active[k], dtype=np.int64)
        ok = ok and a.size == cfg.ranks[k] and len(shares[k]) == max_ranks[k]
        ok = ok and a.size == np.unique(a).size and bool(np.all((a >= 0) & (a < max_ranks[k])))
    if not ok:
        raise ValueError(
            "saved field header.ard must give, per mode, max_ranks, the kept components "
            "(distinct indices below max_ranks, as many as config.ranks) and max_ranks shares"
        )
    return (
        tuple(int(r) for r in max_ranks),
        tuple(np.asarray(a, dtype=np.int64) for a in active),
        tuple(np.asarray(s, dtype=np.float64) for s in shares),
    )


def diagonal_core_view(result):
    """A shallow copy of a CP result whose learned weights ``w`` (``rank="auto"``) are the
    superdiagonal Tucker core ``W = diag(w)`` (mean and covariance), for code that reads a
    Tucker core (:func:`bayestensor.inference_data.funbat_inference_data`); the result itself
    when it has no weights."""
    import copy

    core = result.estimator.state_.core
    if not isinstance(core, WeightPosterior):
        return result
    R, K = result.ranks[0], len(result.ranks)
    if R**K > 4096:
        raise ValueError(
            f"CP rank {R} with {K} modes: the diagonal core of {R**K} cells is too large to draw"
        )
    diag = np.ravel_multi_index((np.arange(R),) * K, (R,) * K)
    # NumPy, in the fit's dtype: outside the fit's 64-bit scope jnp would truncate float64
    w_mean, w_cov = np.asarray(core.mean), np.asarray(core.cov)
    mean = np.zeros(R**K, w_mean.dtype)
    mean[diag] = w_mean
    cov = np.zeros((R**K, R**K), w_mean.dtype)
    cov[np.ix_(diag, diag)] = w_cov
    est = copy.copy(result.estimator)
    est.state_ = est.state_._replace(core=CorePosterior(mean.reshape((R,) * K), cov))
    view = copy.copy(result)
    view.estimator = est
    return view


def ard_precisions(state: FunBaTState, cfg: FunBaTConfig) -> list[Float[Array, " R"]] | None:
    """Per mode ``E[λ]`` (CP: the shared one repeated), or ``None`` without ARD."""
    if state.ard is None:
        return None
    if cfg.model == "cp":
        return [state.ard[0].mean] * len(cfg.ranks)
    return [a.mean for a in state.ard]
