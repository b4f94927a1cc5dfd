"""Mean-field variational inference (CAVI) with the Gibbs sampler's sufficient statistics; the
shrinkage weights and ``ζ`` are point estimates, so the bound never decreases.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import digamma, gammaln

from bayestensor.models.poisson_tucker.gibbs import (
    group_counts,
    init_params_jit,
    others_shape,
    pair_matrices,
    shared_rows,
)
from bayestensor.models.poisson_tucker.rates import (
    cell_rates,
    core_shape,
    exposures,
    mode_factors,
    outer,
    total_rate,
    weight_vectors,
)
from bayestensor.models.poisson_tucker.spec import PoissonData, PoissonTuckerSpec, weight_names


class VIState(NamedTuple):
    """Variational parameters: gamma shape/rate per factor, core, ``b_g``, ``δ``; point weights."""

    theta_shape: tuple
    theta_rate: tuple
    b_shape: jax.Array
    b_rate: jax.Array
    core_shape: jax.Array
    core_rate: jax.Array
    delta_shape: jax.Array
    delta_rate: jax.Array
    weights: dict


def _gamma_entropy(a, b):
    return a - jnp.log(b) + gammaln(a) + (1.0 - a) * digamma(a)


def _elog(a, b):
    return digamma(a) - jnp.log(b)


def vi_point(spec: PoissonTuckerSpec, st: VIState) -> dict:
    """Posterior means in the parameter-dict layout (weights are point estimates)."""
    p = {f"theta{g}": st.theta_shape[g] / st.theta_rate[g] for g in range(len(spec.groups))}
    for g in range(len(spec.groups)):
        p[f"b{g}"] = st.b_shape[g] / st.b_rate[g]
    p.update(st.weights)
    p["core"] = st.core_shape / st.core_rate
    p["delta"] = st.delta_shape / st.delta_rate
    return p


def loglik_bound(spec, data, st: VIState):
    """``Σ_x y_x log Σ_r exp(E log λ_r + Σ_k E log θ^k[x_k, r_k])`` and the expected counts.

    Rows and the core are rescaled by their maxima before exponentiating (no underflow); the
    expected allocations are ``θ̃ ⊙ ∂F/∂θ̃`` and ``λ̃ ⊙ ∂F/∂λ̃``.
    """
    K = spec.K
    elt = [_elog(st.theta_shape[g], st.theta_rate[g]) for g in spec.group_of]
    elc = _elog(st.core_shape, st.core_rate)
    row_max = [jax.lax.stop_gradient(e.max(1)) for e in elt]
    c_max = jax.lax.stop_gradient(elc.max())
    tt = [jnp.exp(e - m[:, None]) for e, m in zip(elt, row_max, strict=True)]
    tc = jnp.exp(elc - c_max)
    offset = c_max + sum(row_max[k][data.index[:, k]] for k in range(K))

    def F(tt, tc):
        mu = cell_rates(spec, tt, tc, data.index)
        return jnp.sum(data.y * jnp.log(mu))

    val, (g_t, g_c) = jax.value_and_grad(F, argnums=(0, 1))(tt, tc)
    counts = [t * g for t, g in zip(tt, g_t, strict=True)]
    Ybar = tc * g_c
    return val + jnp.sum(data.y * offset), counts, Ybar


def elbo(spec: PoissonTuckerSpec, data: PoissonData, st: VIState) -> jax.Array:
    """Evidence lower bound at the optimal allocation distribution for ``st``."""
    F, _, _ = loglik_bound(spec, data, st)
    return _elbo_rest(spec, data, st, F)


def _elbo_rest(spec, data, st, F):
    p = vi_point(spec, st)
    factors = mode_factors(spec, p)
    out = F - jnp.sum(gammaln(data.y + 1.0)) - total_rate(spec, factors, p["core"], data.mask)
    a = spec.factor_shape
    for g in range(len(spec.groups)):
        A, B = st.theta_shape[g], st.theta_rate[g]
        eb, elb = st.b_shape[g] / st.b_rate[g], _elog(st.b_shape[g], st.b_rate[g])
        out += jnp.sum(a * elb + (a - 1) * _elog(A, B) - eb * A / B - gammaln(a))
        out += jnp.sum(_gamma_entropy(A, B))
        out += _gamma_logpdf_expect(spec.e0, spec.f0, st.b_shape[g], st.b_rate[g])
        out += _gamma_entropy(st.b_shape[g], st.b_rate[g])
    s = core_shape(spec, p)
    ed, eld = p["delta"], _elog(st.delta_shape, st.delta_rate)
    A, B = st.core_shape, st.core_rate
    # E log p(λ | s, δ) − E log q(λ), combined so that the huge ±ψ(α), log Γ terms of tiny
    # shapes cancel analytically (α = s exactly on cells without expected counts)
    out += jnp.sum(
        s * (eld - jnp.log(B)) - gammaln(s) + gammaln(A) + (s - A) * digamma(A) - ed * A / B + A
    )
    out += _gamma_logpdf_expect(spec.e0, spec.f0, st.delta_shape, st.delta_rate)
    out += _gamma_entropy(st.delta_shape, st.delta_rate)
    if spec.shrinkage:
        zeta = p["zeta"]
        out += dist.Gamma(spec.e0, spec.f0).log_prob(zeta)
        for name, R in weight_names(spec):
            out += jnp.sum(dist.Gamma(spec.gamma0 / R, zeta).log_prob(p[name]))
    return out


def _gamma_logpdf_expect(e, f, A, B):
    """E_q[log Gamma(x | e, f)] for q = Gamma(A, B)."""
    return e * jnp.log(f) + (e - 1) * _elog(A, B) - f * A / B - gammaln(e)


def _maximise_weight(t, elog_core, eld, g0, zeta, lo=-30.0, hi=30.0, iters=60):
    """Maximise ``Σ_r [s_r (E log δ + E log λ_r) − log Γ(s_r)] + (g0−1) log w − ζ w`` in w.

    ``s_r = w t_r`` (``t`` and ``elog_core`` have a leading axis per weight, cells after it).
    The objective is concave in w, so the root of ``w f'(w)`` is bracketed and bisected in log w.
    """

    def dlog(u):
        w = jnp.exp(u)
        s = w[:, None] * t
        safe = jnp.where(t > 0, s, 1.0)
        term = jnp.where(t > 0, safe * (eld + elog_core - digamma(safe)), 0.0)
        return jnp.sum(term, axis=1) + (g0 - 1) - zeta * w

    lo = jnp.full(t.shape[0], lo, dtype=t.dtype)
    hi = jnp.full(t.shape[0], hi, dtype=t.dtype)

    def body(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        pos = dlog(mid) > 0
        return jnp.where(pos, mid, lo), jnp.where(pos, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.exp(0.5 * (lo + hi))


def _moveaxis_flat(x, k):
    """(R_k, rest) view of a K-way tensor with axis k first."""
    return jnp.moveaxis(x, k, 0).reshape(x.shape[k], -1)


def _update_weights_vi(spec, p, st_core_elog, eld):
    p = dict(p)
    for k in spec.weight_modes:
        t = _moveaxis_flat(others_shape(spec, p, k), k)
        el = _moveaxis_flat(st_core_elog, k)
        p[f"w{k}"] = _maximise_weight(t, el, eld, spec.gamma0 / spec.ranks[k], p["zeta"])
    if spec.within_between:
        a, b = spec.pair
        R = spec.ranks[a]
        g0 = spec.gamma0 / R
        rest = outer(weight_vectors(spec, p))
        eye = jnp.eye(R, dtype=bool)
        # cells of the pair moved to the front: (R, R, rest)
        rest_ab = jnp.moveaxis(rest, (a, b), (0, 1)).reshape(R, R, -1)
        el_ab = jnp.moveaxis(st_core_elog, (a, b), (0, 1)).reshape(R, R, -1)
        diag_t = jnp.stack([rest_ab[c, c] for c in range(R)])
        diag_el = jnp.stack([el_ab[c, c] for c in range(R)])
        p["eta_within"] = _maximise_weight(diag_t, diag_el, eld, g0, p["zeta"])
        off = ~eye

        def step(c, eta):
            # cells (c, d) and (d, c), d ≠ c: s = η_c · η_d · rest
            t_row = jnp.where(off[c][:, None], eta[:, None] * rest_ab[c], 0.0)
            t_col = jnp.where(off[:, c][:, None], eta[:, None] * rest_ab[:, c], 0.0)
            t = jnp.concatenate([t_row.reshape(-1), t_col.reshape(-1)])[None]
            el = jnp.concatenate([el_ab[c].reshape(-1), el_ab[:, c].reshape(-1)])[None]
            return eta.at[c].set(_maximise_weight(t, el, eld, g0, p["zeta"])[0])

        p["eta_between"] = jax.lax.fori_loop(0, R, step, p["eta_between"])
    names = weight_names(spec)
    total_w = sum(p[n].sum() for n, _ in names)
    shape_sum = spec.gamma0 * len(names)
    p["zeta"] = jnp.maximum(spec.e0 - 1 + shape_sum, 1e-12) / (spec.f0 + total_w)
    return p


def vi_init(spec: PoissonTuckerSpec, data: PoissonData, key: jax.Array) -> VIState:
    """Start the variational parameters at a random Gibbs-style initial point."""
    p = init_params_jit(spec, data, key)
    G = len(spec.groups)
    dtype = data.y.dtype
    one = jnp.asarray(1.0, dtype)
    weights = {n: p[n] for n, _ in weight_names(spec)}
    if spec.shrinkage:
        weights["zeta"] = p["zeta"]
    return VIState(
        theta_shape=tuple(jnp.ones_like(p[f"theta{g}"]) for g in range(G)),
        theta_rate=tuple(1.0 / p[f"theta{g}"] for g in range(G)),
        b_shape=jnp.ones(G, dtype),
        b_rate=jnp.ones(G, dtype),
        core_shape=jnp.ones_like(p["core"]),
        core_rate=1.0 / p["core"],
        delta_shape=one,
        delta_rate=one,
        weights=weights,
    )


def cavi_step(spec: PoissonTuckerSpec, data: PoissonData, st: VIState):
    """One CAVI iteration; returns the new state and the ELBO of the *incoming* state.

    Order: allocations (expected counts) → each factor (shared rows one at a time) and its
    ``b_g`` → core → δ → weights and ζ (exact 1-D maximisation). Every step maximises the
    bound in its block, so the ELBO never decreases.
    """
    F, counts, Ybar = loglik_bound(spec, data, st)
    bound = _elbo_rest(spec, data, st, F)
    a = spec.factor_shape
    ts, tr = list(st.theta_shape), list(st.theta_rate)
    b_shape, b_rate = st.b_shape, st.b_rate
    for g, modes in enumerate(spec.groups):
        p = vi_point(
            spec,
            st._replace(
                theta_shape=tuple(ts), theta_rate=tuple(tr), b_shape=b_shape, b_rate=b_rate
            ),
        )
        shape = a + group_counts(spec, counts, g)
        eb = b_shape[g] / b_rate[g]
        factors = mode_factors(spec, p)
        if len(modes) == 1:
            E, _ = exposures(spec, factors, p["core"], data.mask)
            rate = eb + E[modes[0]]
        else:
            A, L, M = pair_matrices(spec, factors, p["core"], data.mask)
            _, rate = shared_rows(
                spec, p[f"theta{g}"], shape, eb, A, L, M, lambda i, sh, rate: sh / rate
            )
        ts[g], tr[g] = shape, rate
        b_shape = b_shape.at[g].set(spec.e0 + a * shape.size)
        b_rate = b_rate.at[g].set(spec.f0 + jnp.sum(shape / rate))
    st = st._replace(theta_shape=tuple(ts), theta_rate=tuple(tr), b_shape=b_shape, b_rate=b_rate)
    p = vi_point(spec, st)
    _, Z = exposures(spec, mode_factors(spec, p), p["core"], data.mask)
    s = core_shape(spec, p)
    st = st._replace(core_shape=s + Ybar, core_rate=p["delta"] + Z)
    st = st._replace(
        delta_shape=spec.e0 + jnp.sum(s), delta_rate=spec.f0 + jnp.sum(st.core_shape / st.core_rate)
    )
    if spec.shrinkage:
        p = vi_point(spec, st)
        p = _update_weights_vi(
            spec, p, _elog(st.core_shape, st.core_rate), _elog(st.delta_shape, st.delta_rate)
        )
        st = st._replace(weights={n: p[n] for n in st.weights})
        # the core and δ depend on s: update them again at the new weights (exact block maxima)
        s = core_shape(spec, p)
        st = st._replace(core_shape=s + Ybar, core_rate=p["delta"] + Z)
        st = st._replace(
            delta_shape=spec.e0 + jnp.sum(s),
            delta_rate=spec.f0 + jnp.sum(st.core_shape / st.core_rate),
        )
    return st, bound
