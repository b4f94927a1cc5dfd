"""The compiled Gibbs sampler: allocation of every token, conjugate gamma updates, CRT
augmentation of the shrinkage weights, and :class:`PoissonTuckerGibbs`, the NumPyro MCMC
kernel that runs one sweep per step (the same object tested against NUTS and run by users).

Data parallel over the devices of one host: :func:`shard_tokens` splits the tokens over a 1-D
mesh, the allocation and the CRT positions run on each device's share, their integer counts are
summed across devices, and the gamma updates run on the small replicated arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.infer.mcmc import MCMCKernel

from bayestensor.models.poisson_tucker.exact import (  # noqa: F401 (re-exported)
    BIG_BLOCK,
    CRT_HEAD,
    allocate_big,
    crt_big,
)
from bayestensor.models.poisson_tucker.model import poisson_tucker_model
from bayestensor.models.poisson_tucker.rates import (
    allocation_tables,
    contract,
    core_shape,
    exposures,
    mode_factors,
    outer,
    pair_term,
    total_rate,
    weight_vectors,
)
from bayestensor.models.poisson_tucker.spec import (
    LETTERS,
    UPPER,
    PoissonData,
    PoissonTuckerSpec,
    weight_names,
)
from bayestensor.sharding import ROW_AXIS, padded_size, resolve_devices, row_mesh

#: Above this ``d = a − 1/3`` the Marsaglia–Tsang acceptance bound is computed as ``3 d h(cz)``.
_GAMMA_SERIES_SHAPE = 100.0


def _log1p_tail(t: jax.Array) -> jax.Array:
    """``h(t) = log(1 + t) − t + t²/2 − t³/3`` without cancellation (series for |t| < 1/4)."""
    direct = jnp.log1p(t) - t + t * t / 2 - t * t * t / 3
    ts = jnp.where(jnp.abs(t) < 0.25, t, 0.0)
    series = jnp.zeros_like(t)
    for j in range(16, 3, -1):  # Σ_{j≥4} (−1)^{j+1} t^j / j, Horner form; 0.25¹⁶ ≪ float eps
        series = (series + (-1.0) ** (j + 1) / j) * ts
    series = series * ts * ts * ts
    return jnp.where(jnp.abs(t) < 0.25, series, direct)


def gamma_draw(key: jax.Array, shape: jax.Array, dtype=None) -> jax.Array:
    """Standard gamma variates ``Gamma(shape, 1)`` (Marsaglia–Tsang with a vectorised loop).

    Shapes below one are boosted: ``G(a) = G(a + 1) · U^{1/a}``, computed in log space so
    that tiny shapes give tiny (possibly zero) values rather than NaN. Exact (a rejection
    loop that stops when every entry is accepted); compiles much faster than
    ``jax.random.gamma`` so the sweep, which draws about ten gamma blocks, compiles quickly.
    For large shapes (counts in the millions) the acceptance bound
    ``z²/2 + d − d v + d log v`` cancels catastrophically (in float32 from ``d ≈ 10⁴``); since
    ``d c² = 1/9`` it equals ``3 d h(c z)`` with ``h`` from :func:`_log1p_tail`, used there.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    a = jnp.asarray(shape, dtype)
    small = a < 1
    ab = jnp.where(small, a + 1, a)
    d = ab - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    k_boost, k_loop = jax.random.split(key)

    def cond(carry):
        return ~jnp.all(carry[1])

    big = d > _GAMMA_SERIES_SHAPE

    def body(carry):
        x_out, done, i = carry
        kn, ku = jax.random.split(jax.random.fold_in(k_loop, i))
        z = jax.random.normal(kn, a.shape, dtype)
        u = jax.random.uniform(ku, a.shape, dtype, minval=jnp.finfo(dtype).tiny)
        v = (1.0 + c * z) ** 3
        vpos = jnp.where(v > 0, v, 1.0)
        direct = 0.5 * z * z + d - d * vpos + d * jnp.log(vpos)
        # large shapes: the same bound without cancellation, 3 d h(c z) (see _log1p_tail)
        ok = (v > 0) & (jnp.log(u) < jnp.where(big, 3.0 * d * _log1p_tail(c * z), direct))
        new = ok & ~done
        return jnp.where(new, d * vpos, x_out), done | ok, i + 1

    x, _, _ = jax.lax.while_loop(
        cond, body, (jnp.ones_like(a), jnp.zeros(a.shape, bool), jnp.asarray(0))
    )
    u = jax.random.uniform(k_boost, a.shape, dtype, minval=jnp.finfo(dtype).tiny)
    log_boost = jnp.where(small, jnp.log(u) / jnp.where(small, a, 1.0), 0.0)
    return x * jnp.exp(log_boost)


def init_params(spec: PoissonTuckerSpec, data: PoissonData, key: jax.Array, dtype=None) -> dict:
    """A random starting point: Gamma(1, 1) factors, core scaled to the total count."""
    dtype = data.y.dtype if dtype is None else dtype
    keys = jax.random.split(key, len(spec.groups) + 1)
    p: dict = {}
    for g, modes in enumerate(spec.groups):
        k = modes[0]
        p[f"theta{g}"] = gamma_draw(keys[g], jnp.ones((spec.shape[k], spec.ranks[k])), dtype)
        p[f"b{g}"] = jnp.asarray(1.0, dtype)
    if spec.shrinkage:
        p["zeta"] = jnp.asarray(1.0, dtype)
        for k in spec.weight_modes:
            p[f"w{k}"] = jnp.full(spec.ranks[k], 1.0, dtype)
        if spec.within_between:
            R = spec.ranks[spec.pair[0]]
            p["eta_within"] = jnp.full(R, 1.0, dtype)
            p["eta_between"] = jnp.full(R, 1.0, dtype)
    p["delta"] = jnp.asarray(1.0, dtype)
    core = gamma_draw(keys[-1], jnp.ones(spec.ranks), dtype)
    total = total_rate(spec, mode_factors(spec, {**p, "core": core}), core, data.mask)
    p["core"] = core * jnp.maximum(jnp.sum(data.y), 1.0) / total
    return p


def _categorical(u: jax.Array, w: jax.Array) -> jax.Array:
    """Inverse-CDF draw per row of unnormalised weights ``w`` (T, R) with uniforms ``u`` (T,)."""
    cw = jnp.cumsum(w, axis=1)
    idx = jnp.sum(cw < (u * cw[:, -1])[:, None], axis=1)
    return jnp.minimum(idx, w.shape[1] - 1).astype(jnp.int32)


def allocate(
    spec: PoissonTuckerSpec, data: PoissonData, factors, core, key, mesh: Mesh | None = None
) -> tuple[jax.Array, list[jax.Array]]:
    """Allocate every event to a core cell; return the sufficient statistics.

    Tokens (cells with small counts) are allocated one by one, compositionally: each token of
    a nonzero cell ``x`` draws ``r_{π_0}``, then ``r_{π_1} | r_{π_0}``, …, each a categorical
    over ``R_{π_s}`` values ``θ^{π_s}[x, ·] · B_s[…]`` (see :func:`allocation_tables`), so the
    joint draw is from ``p(r | x) ∝ λ[r] Π_k θ^k[x_k, r_k]`` and the cost is
    O(tokens · Σ_k R_k) plus the tables. The ``y`` events of each large cell
    (``data.big``) are allocated at once, ``Multinomial(y, p(· | x))`` over the core cells
    (:func:`allocate_big`), which has the same law as ``y`` independent tokens.

    Token ``t`` draws its stage-``s`` uniform at entry ``(t, s)`` of one ``(T, K)`` block, and
    JAX's partitionable threefry (``jax_threefry_partitionable``, the default) makes an entry
    depend on its position only: padding tokens appended for a sharded run
    (:func:`shard_tokens`; weight ``data.tok_w`` = 0, counted nowhere) leave the real tokens'
    draws as they are, and with ``mesh`` (the tokens' 1-D device mesh) each device draws its
    own tokens' uniforms.

    Returns
    -------
    Y : array of shape ``spec.ranks`` (JAX's default int)
        Events per core cell.
    counts : list of (N_k, R_k) int arrays
        Events per (level, component) of each mode.
    """
    if not data.has_allocation:
        raise ValueError(
            "these data have no allocation arrays (prepare_data(..., allocation=False)); "
            "the Gibbs sampler needs prepare_data(..., allocation=True)"
        )
    k_tok, k_big = jax.random.split(key)
    K = spec.K
    perm = spec.perm
    int_dtype = jnp.zeros((), dtype=int).dtype
    tabs = allocation_tables(spec, factors, core)
    T = data.tok_x.shape[1]
    u = jax.random.uniform(k_tok if _has_big(data) else key, (T, K), dtype=core.dtype)
    u = _on_tokens(u, mesh)
    one = 1 if data.tok_w is None else data.tok_w.astype(int_dtype)
    prefix = jnp.zeros(T, dtype=jnp.int32)
    counts: list = [None] * K
    for s in range(K):
        k = perm[s]
        Rs = spec.ranks[k]
        P = math.prod(spec.ranks[perm[j]] for j in range(s))
        rows = data.tok_f[s] * P + prefix
        w = tabs[s][rows] * factors[k][data.tok_x[k]]
        r = _categorical(u[:, s], w)
        counts[k] = (
            jnp.zeros(spec.shape[k] * Rs, int_dtype)
            .at[data.tok_x[k] * Rs + r]
            .add(one)
            .reshape(spec.shape[k], Rs)
        )
        prefix = prefix * Rs + r
    Rp = tuple(spec.ranks[k] for k in perm)
    Y = jnp.zeros(math.prod(Rp), int_dtype).at[prefix].add(one).reshape(Rp)
    Y = jnp.transpose(Y, np.argsort(perm))
    if _has_big(data):
        Yb, cb = allocate_big(spec, data, factors, core, k_big)
        Y = Y + Yb
        counts = [c + d for c, d in zip(counts, cb, strict=True)]
    return Y, counts


def _has_big(data: PoissonData) -> bool:
    return data.big is not None and data.big.shape[0] > 0


def _on_tokens(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """``x`` with its first (token) axis split over ``mesh`` (unchanged without one)."""
    if mesh is None:
        return x
    spec = PartitionSpec(ROW_AXIS, *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def crt(
    key: jax.Array, Y: jax.Array, s: jax.Array, total: int, mesh: Mesh | None = None
) -> jax.Array:
    """Chinese-restaurant-table draws ``ℓ[r] ~ CRT(Y[r], s[r])`` for all cells at once.

    ``ℓ = Σ_{n=0}^{Y-1} Bernoulli(s / (s + n))``: the ``Σ Y`` Bernoullis are laid out in one
    flat array of ``total ≥ Σ Y`` positions (cell of position p found by ``searchsorted`` on
    ``cumsum(Y)``; positions past ``Σ Y`` count nowhere), so the cost is O(total) and exact for
    any shape. With ``mesh`` the positions are split over its devices; the draw at a position
    depends neither on ``total`` nor on the split (partitionable threefry).
    """
    Yf = Y.reshape(-1)
    sf = s.reshape(-1)
    if total == 0:
        return jnp.zeros_like(Yf).reshape(Y.shape)
    cum = jnp.cumsum(Yf)
    pos = _on_tokens(jnp.arange(total, dtype=cum.dtype), mesh)
    cell = jnp.searchsorted(cum, pos, side="right")
    n = pos - (cum[cell] - Yf[cell])
    sc = sf[cell]
    u = _on_tokens(jax.random.uniform(key, (total,), dtype=s.dtype), mesh)
    hit = u * (sc + n.astype(s.dtype)) < sc
    return jnp.zeros_like(Yf).at[cell].add(hit.astype(Yf.dtype), mode="drop").reshape(Y.shape)


def pair_matrices(spec, factors, core, mask):
    """For a shared pair: ``A = M₀ + M₀ᵀ`` (all-cells coupling) and the mask's ``L_x`` stack.

    ``Λ = Σ_{i≠j} Θ_iᵀ M₀ Θ_j − Σ_{i,j,x} mask[i,j,x] Θ_iᵀ L_x Θ_j`` with everything except Θ
    held fixed, so the exposure of row i is ``A (S − Θ_i) − Σ_x (L_x W_i[x] + L_xᵀ W'_i[x])``.
    """
    a, b = spec.pair
    K = spec.K
    S = [f.sum(0) for f in factors]
    pa = LETTERS[a] + LETTERS[b]
    M0 = contract(core, [(S[k], LETTERS[k]) for k in range(K) if k not in (a, b)], pa)
    A = M0 + M0.T
    if mask is None:
        return A, None, None
    mm = spec.mask_modes
    rest = [k for k in mm if k not in (a, b)]
    ops = [(factors[k], UPPER[k] + LETTERS[k]) for k in rest]
    ops += [(S[k], LETTERS[k]) for k in range(K) if k not in mm]
    L = contract(core, ops, "".join(UPPER[k] for k in rest) + pa)
    L = L.reshape(-1, *L.shape[-2:])
    order = [mm.index(a), mm.index(b)] + [mm.index(k) for k in rest]
    M = jnp.transpose(mask, order)
    M = M.reshape(M.shape[0], M.shape[1], -1)
    return A, L, M


def shared_rows(spec, theta, shape_rows, base_rate, A, L, M, draw):
    """Update the rows of a shared factor one at a time (exact Gauss–Seidel / Gibbs order).

    ``draw(i, shape_i, rate_i)`` returns the new row (a gamma draw for Gibbs, the mean for VI).
    Returns the new matrix and the rate of every row at the time it was updated.
    """

    def step(i, carry):
        th, S, rates = carry
        row = th[i]
        rate = base_rate + A @ (S - row)
        if L is not None:
            W = M[i].T @ th  # (X, R): Σ_j mask[i, j, x] Θ_j
            Wt = M[:, i].T @ th  # (X, R): Σ_j mask[j, i, x] Θ_j
            rate = rate - jnp.einsum("xcd,xd->c", L, W) - jnp.einsum("xcd,xc->d", L, Wt)
        rate = jnp.maximum(rate, jnp.finfo(th.dtype).tiny)
        new = draw(i, shape_rows[i], rate)
        return th.at[i].set(new), S - row + new, rates.at[i].set(rate)

    S = theta.sum(0)
    th, _, rates = jax.lax.fori_loop(0, theta.shape[0], step, (theta, S, jnp.zeros_like(theta)))
    return th, rates


def group_counts(spec, counts, g):
    return sum(counts[k] for k in spec.groups[g])


def gamma_many(key: jax.Array, shapes: Sequence, dtype) -> list[jax.Array]:
    """Standard gamma draws for several shape arrays with one :func:`gamma_draw` call."""
    shapes = [jnp.asarray(a, dtype) for a in shapes]
    flat = jnp.concatenate([a.reshape(-1) for a in shapes])
    draws = gamma_draw(key, flat, dtype)
    out, start = [], 0
    for a in shapes:
        out.append(draws[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


def _factor_shapes(spec, counts, dtype):
    """Gamma shapes of each factor matrix's conditional: ``a + tokens`` (summed over a pair)."""
    return [
        spec.factor_shape + group_counts(spec, counts, g).astype(dtype)
        for g in range(len(spec.groups))
    ]


def update_factors(spec, p, counts, mask, key):
    """Conjugate updates of every factor matrix (shared rows in order) and of its rate ``b_g``.

    All standard gamma variates are drawn at once (their shapes do not depend on the order);
    each matrix is then scaled by its rate computed from the current other factors.
    """
    p = dict(p)
    dtype = p["core"].dtype
    G_n = len(spec.groups)
    shapes = _factor_shapes(spec, counts, dtype)
    b_shapes = [spec.e0 + spec.factor_shape * p[f"theta{g}"].size for g in range(G_n)]
    draws = gamma_many(key, shapes + [jnp.asarray(b_shapes)], dtype)
    for g, modes in enumerate(spec.groups):
        G = draws[g]
        factors = mode_factors(spec, p)
        if len(modes) == 1:
            E, _ = exposures(spec, factors, p["core"], mask)
            theta = G / (p[f"b{g}"] + E[modes[0]])
        else:
            A, L, M = pair_matrices(spec, factors, p["core"], mask)
            theta, _ = shared_rows(
                spec, p[f"theta{g}"], shapes[g], p[f"b{g}"], A, L, M, lambda i, sh, r, G=G: G[i] / r
            )
        p[f"theta{g}"] = theta
        p[f"b{g}"] = draws[-1][g] / (spec.f0 + theta.sum())
    return p


def others_shape(spec, p, k):
    """``s[r] / w^k[r_k]`` computed without dividing (mode k's weights set to one)."""
    s = outer(weight_vectors(spec, p, skip=k))
    if spec.within_between:
        s = s * pair_term(spec, p["eta_within"], p["eta_between"])
    return s


def _sum_over_mode(x, k):
    """Sum a K-way tensor over every axis except k."""
    return jnp.sum(x, axis=tuple(j for j in range(x.ndim) if j != k))


def update_weights(spec, p, ell, q, key):
    """Gamma updates of the shrinkage weights given CRT counts ``ℓ`` and ``q = log(1 + Z/δ)``.

    Given ``ℓ``, ``ℓ[r] ~ Poisson(s[r] q[r])`` with ``s`` linear in each weight, so
    ``w^k_c | … ~ Gamma(γ₀/R_k + Σ_{r_k=c} ℓ[r], ζ + Σ_{r_k=c} (s[r]/w^k_c) q[r])``; modes are
    updated in turn, and the between-community η's one at a time (they multiply each other).
    """
    p = dict(p)
    dtype = p["core"].dtype
    ell = ell.astype(dtype)
    names = weight_names(spec)
    shapes = [spec.gamma0 / spec.ranks[k] + _sum_over_mode(ell, k) for k in spec.weight_modes]
    if spec.within_between:
        a, b = spec.pair
        R = spec.ranks[a]
        g0 = spec.gamma0 / R
        eye = jnp.eye(R, dtype=bool)
        ell2 = _sum_rest(ell, a, b)
        off_ell = jnp.where(eye, 0, ell2)
        shapes += [g0 + jnp.diagonal(ell2), g0 + off_ell.sum(0) + off_ell.sum(1)]
    shapes.append(jnp.asarray(spec.e0 + spec.gamma0 * len(names), dtype))
    draws = gamma_many(key, shapes, dtype)
    for j, k in enumerate(spec.weight_modes):
        t = others_shape(spec, p, k)
        p[f"w{k}"] = draws[j] / (p["zeta"] + _sum_over_mode(t * q, k))
    if spec.within_between:
        rest = outer(weight_vectors(spec, p))  # the pair's modes are ones here
        tq2 = _sum_rest(rest * q, a, b)
        p["eta_within"] = draws[-3] / (p["zeta"] + jnp.diagonal(tq2))
        off_tq = jnp.where(eye, 0, tq2)
        G = draws[-2]

        def step(c, eta):
            rate = p["zeta"] + off_tq[c] @ eta + off_tq[:, c] @ eta
            return eta.at[c].set(G[c] / rate)

        p["eta_between"] = jax.lax.fori_loop(0, R, step, p["eta_between"])
    total_w = sum(p[n].sum() for n, _ in names)
    p["zeta"] = draws[-1] / (spec.f0 + total_w)
    return p


def _sum_rest(x, a, b):
    """Sum a K-way tensor over all axes but a and b, returning an (R_a, R_b) matrix."""
    return jnp.sum(x, axis=tuple(j for j in range(x.ndim) if j not in (a, b)))


def gibbs_sweep(
    spec: PoissonTuckerSpec, data: PoissonData, p: dict, key: jax.Array, mesh: Mesh | None = None
):
    """One full Gibbs sweep. Returns the new parameters and the allocated core counts ``Y``.

    Order: allocation → factors (and their rates ``b_g``) → CRT counts and shrinkage weights
    (with λ integrated out) → core λ → δ. Drawing λ right after the collapsed weight block keeps
    the partially collapsed sampler exact.

    With ``mesh`` (the tokens split over its devices by :func:`shard_tokens`) the allocation and
    the CRT positions run on every device's share and their integer counts are summed across
    devices (exactly); the gamma updates run on the small, replicated arrays.
    """
    k_alloc, k_fac, k_crt, k_w, k_core = jax.random.split(key, 5)
    factors = mode_factors(spec, p)
    Y, counts = allocate(spec, data, factors, p["core"], k_alloc, mesh)
    p = update_factors(spec, p, counts, data.mask, k_fac)
    factors = mode_factors(spec, p)
    _, Z = exposures(spec, factors, p["core"], data.mask)
    if spec.shrinkage:
        s = core_shape(spec, p)
        if _has_big(data):
            ell = crt_big(k_crt, Y, s)
        else:
            ell = crt(k_crt, Y, s, int(data.tok_x.shape[1]), mesh)
        q = jnp.log1p(Z / p["delta"])
        p = update_weights(spec, p, ell, q, k_w)
    return update_core(spec, p, Y, Z, k_core), Y


def update_core(spec, p, Y, Z, key):
    """``λ[r] ~ Gamma(s[r] + Y[r], δ + Z[r])``, then ``δ ~ Gamma(e₀ + Σ s, f₀ + Σ λ)``."""
    dtype = p["core"].dtype
    s = core_shape(spec, p)
    G_core, G_delta = gamma_many(key, [s + Y.astype(dtype), spec.e0 + s.sum()], dtype)
    core = G_core / (p["delta"] + Z)
    p = dict(p, core=core)
    p["delta"] = G_delta / (spec.f0 + core.sum())
    return p


#: :func:`gibbs_sweep` compiled once per model specification.
gibbs_sweep_jit = jax.jit(gibbs_sweep, static_argnums=(0, 4))


def shard_tokens(data: PoissonData, devices: Sequence) -> PoissonData:
    """The Gibbs sampler's data with the tokens split over ``devices`` (unchanged for one).

    ``tok_x`` and ``tok_f`` (K, T) are padded along the token axis to a multiple of the device
    count, with tokens at level 0 and weight ``tok_w`` = 0 (they add nothing to any count), and
    split along that axis over a 1-D mesh (:func:`bayestensor.sharding.row_mesh`). The large
    cells, their counts and the mask stay whole: the large cells are allocated on the host
    (:func:`~bayestensor.models.poisson_tucker.exact.allocate_big`) whatever the devices.

    Raises
    ------
    ValueError
        If the data have no allocation arrays, or are already split.
    """
    devices = list(devices)
    if not data.has_allocation:
        raise ValueError("shard_tokens needs the allocation arrays (prepare_data(allocation=True))")
    if data.tok_w is not None:
        raise ValueError("these data are already split over devices (tok_w is set)")
    if len(devices) == 1:
        return data
    T = int(data.tok_x.shape[1])
    pad = padded_size(max(T, 1), len(devices)) - T
    sharding = NamedSharding(row_mesh(devices), PartitionSpec(None, ROW_AXIS))
    tok = [
        jax.device_put(np.pad(np.asarray(a), [(0, 0), (0, pad)]), sharding)
        for a in (data.tok_x, data.tok_f)
    ]
    w = np.concatenate([np.ones(T, np.int32), np.zeros(pad, np.int32)])
    tok_w = jax.device_put(w, NamedSharding(row_mesh(devices), PartitionSpec(ROW_AXIS)))
    return data._replace(tok_x=tok[0], tok_f=tok[1], tok_w=tok_w)


class GibbsState(NamedTuple):
    """State of :class:`PoissonTuckerGibbs`: sweep counter, parameters ``z``, key, core counts."""

    i: jax.Array
    z: dict
    rng_key: jax.Array
    Y: jax.Array


class PoissonTuckerGibbs(MCMCKernel):
    """Compiled Gibbs sampler for the Poisson Tucker model, as a NumPyro MCMC kernel.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    data : PoissonData
    devices : None, "auto", int or list of jax.Device
        Devices the tokens are split over (data parallel, one host; see
        :mod:`bayestensor.sharding` and :func:`shard_tokens`): ``1`` (default) the plain
        single-device sweep, ``None``/``"auto"`` every visible device, an int the first ``n``,
        or a list of devices. With partitionable threefry (JAX's default) a sharded run draws
        what the single-device run draws, token for token, from the same key.

    Examples
    --------
    >>> kernel = PoissonTuckerGibbs(spec, data)                         # doctest: +SKIP
    >>> mcmc = numpyro.infer.MCMC(kernel, num_warmup=200, num_samples=200)  # doctest: +SKIP
    >>> mcmc.run(jax.random.key(0)); arviz.from_numpyro(mcmc)           # doctest: +SKIP
    """

    sample_field = "z"

    def __init__(self, spec: PoissonTuckerSpec, data: PoissonData, devices=1):
        if not data.has_allocation:
            raise ValueError(
                "PoissonTuckerGibbs needs the allocation arrays: build the data with "
                "prepare_data(..., allocation=True)"
            )
        self.spec = spec
        self.data = data
        self.devices = resolve_devices(devices)
        mesh = row_mesh(self.devices) if len(self.devices) > 1 else None
        self._sweep_data = shard_tokens(data, self.devices)
        self._sweep = partial(gibbs_sweep_jit, spec, mesh=mesh)
        # several host CPU devices: sweeps dispatched ahead of their predecessors' collectives
        # deadlocked (jaxlib 0.10.2, 2 cores), so each sharded sweep is waited for
        self._wait = mesh is not None and any(d.platform == "cpu" for d in self.devices)

    @property
    def model(self) -> Callable:
        """The NumPyro model with this data bound (``arviz.from_numpyro`` traces it)."""
        return partial(poisson_tucker_model, self.spec, self.data)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        """Start from ``init_params`` (a parameter dict) or a random point."""
        k_init, rng_key = jax.random.split(rng_key)
        z = (
            init_params
            if init_params is not None
            else init_params_jit(self.spec, self.data, k_init)
        )
        Y = jnp.zeros(self.spec.ranks, jnp.zeros((), dtype=int).dtype)
        return GibbsState(jnp.asarray(0), z, rng_key, Y)

    def sample(self, state, model_args, model_kwargs):
        """One Gibbs sweep."""
        key, sub = jax.random.split(state.rng_key)
        z, Y = self._sweep(self._sweep_data, state.z, sub)
        if self._wait:  # a no-op under tracing (NumPyro's MCMC)
            z, Y = jax.block_until_ready((z, Y))
        return GibbsState(state.i + 1, z, key, Y)


@partial(jax.jit, static_argnums=0)
def init_params_jit(spec, data, key):
    return init_params(spec, data, key)
