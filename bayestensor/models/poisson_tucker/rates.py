"""Deterministic pieces of the Poisson Tucker model: core shapes, the total observed rate in
closed form, exposures, cell rates and the contraction tables of the allocation step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor.models.poisson_tucker.spec import LETTERS, UPPER, PoissonTuckerSpec


def mode_factors(spec: PoissonTuckerSpec, params: dict) -> list[jax.Array]:
    """The factor matrix of every mode (shared modes get the same array)."""
    return [params[f"theta{g}"] for g in spec.group_of]


def weight_vectors(spec: PoissonTuckerSpec, params: dict, skip: int | None = None):
    """Per mode, the shrinkage vector entering ``s`` (ones for ``skip`` and pair modes)."""
    out = []
    for k in range(spec.K):
        if k in spec.weight_modes and k != skip:
            out.append(params[f"w{k}"])
        else:
            out.append(jnp.ones(spec.ranks[k], dtype=params["core"].dtype))
    return out


def outer(vectors: Sequence[jax.Array]) -> jax.Array:
    """Outer product of K vectors as a K-way tensor."""
    out = vectors[0]
    for v in vectors[1:]:
        out = out[..., None] * v
    return out


def pair_term(spec: PoissonTuckerSpec, eta_w: jax.Array, eta_b: jax.Array) -> jax.Array:
    """BPTD's within/between factor over the pair: η↻_c on c = d, η↔_c η↔_d off it, broadcast."""
    R = eta_w.shape[0]
    eye = jnp.eye(R, dtype=bool)
    m = jnp.where(eye, eta_w[:, None] * jnp.ones(R, dtype=eta_w.dtype), jnp.outer(eta_b, eta_b))
    sh = [1] * spec.K
    a, b = spec.pair
    sh[a], sh[b] = R, R
    return m.reshape(sh)


def core_shape(spec: PoissonTuckerSpec, params: dict) -> jax.Array:
    """Gamma shapes ``s[r]`` of the core: product of weights (or ``core_shape`` constant)."""
    if not spec.shrinkage:
        return jnp.full(spec.ranks, spec.core_shape, dtype=params["core"].dtype)
    s = outer(weight_vectors(spec, params))
    if spec.within_between:
        s = s * pair_term(spec, params["eta_within"], params["eta_between"])
    return s


def contract(core: jax.Array, ops: Sequence[tuple[jax.Array, str]], out: str = "") -> jax.Array:
    """einsum of the core (subscripts a, b, c…) with operands given with their subscripts."""
    K = core.ndim
    terms = [LETTERS[:K]] + [s for _, s in ops]
    return jnp.einsum(",".join(terms) + "->" + out, core, *[op for op, _ in ops])


def total_rate(
    spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array, mask=None
) -> jax.Array:
    """Total rate over the observed cells, ``Λ = Σ_{observed i} μ[i]``, in closed form.

    ``Λ = Σ_r λ[r] Π_k S^k[r_k]`` (``S^k = Σ_i θ^k[i, :]``) minus the excluded diagonal
    ``Σ_r λ[r] D[r_a, r_b] Π_{k∉pair} S^k[r_k]`` (``D = Σ_i θ^a[i]⊗θ^b[i]``) minus the masked
    cells ``Σ_x M[x] Σ_r λ[r] Π_{k∈mask} θ^k[x_k, r_k] Π_{k∉mask} S^k[r_k]``. It is multilinear
    in the factors, so its gradient gives the exposures (:func:`exposures`) and ``∂Λ/∂λ`` the
    core's exposure ``Z``. No dense tensor is formed.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    factors : list of (N_k, R_k) arrays
        One per mode (the same array twice for a shared pair).
    core : array of shape ``spec.ranks``
    mask : array over ``spec.mask_modes``, optional

    Returns
    -------
    scalar array
    """
    K = spec.K
    S = [f.sum(0) for f in factors]
    out = contract(core, [(S[k], LETTERS[k]) for k in range(K)])
    if spec.exclude_diagonal:
        a, b = spec.pair
        D = factors[a].T @ factors[b]
        ops = [(D, LETTERS[a] + LETTERS[b])]
        ops += [(S[k], LETTERS[k]) for k in range(K) if k not in (a, b)]
        out = out - contract(core, ops)
    if mask is not None:
        out = out - masked_rate(spec, factors, core, mask)
    return out


def masked_rate(
    spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array, mask: jax.Array
) -> jax.Array:
    """Total rate of the cells in a mask, ``Σ_x M[x] Σ_r λ[r] Π_{k∈mask} θ^k[x_k, r_k] Π S``.

    ``mask`` is a dense 0/1 array over ``spec.mask_modes`` (as made by :func:`prepare_data`,
    diagonal already removed); the modes outside it are summed through their column sums.
    """
    K = spec.K
    S = [f.sum(0) for f in factors]
    mm = spec.mask_modes
    ops = [(mask, "".join(UPPER[k] for k in mm))]
    ops += [(factors[k], UPPER[k] + LETTERS[k]) for k in mm]
    ops += [(S[k], LETTERS[k]) for k in range(K) if k not in mm]
    return contract(core, ops)


def exposures(
    spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array, mask=None
) -> tuple[list[jax.Array], jax.Array]:
    """Gradients of :func:`total_rate`: per-mode exposures ``∂Λ/∂θ^k`` and ``Z = ∂Λ/∂λ``.

    ``∂Λ/∂θ^k[i, c]`` is the summed rate of the observed cells with ``i_k = i`` that a unit of
    ``θ^k[i, c]`` would carry (the gamma rate increment of the conditional of ``θ^k[i, c]``).
    Factors are differentiated as separate arguments even when shared.
    """
    grads = jax.grad(lambda fs, c: total_rate(spec, fs, c, mask), argnums=(0, 1))(
        list(factors), core
    )
    return list(grads[0]), grads[1]


def allocation_tables(spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array):
    """Contraction tables of compositional allocation, one per sampling stage.

    With sampling order π, stage s draws ``r_{π_s}`` given ``r_{π_<s}``; its unnormalised
    probabilities are ``θ^{π_s}[x, :] * B_s[f_s(x), prefix, :]`` where
    ``B_s[x_{>s}, r_{<s}, r_s] = Σ_{r_{>s}} λ[r] Π_{j>s} θ^{π_j}[x_{π_j}, r_{π_j}]`` is
    tabulated densely over the levels of the later modes (no per-token enumeration).
    Returned as 2-D arrays ``(X_s · P_s, R_s)``.
    """
    K = spec.K
    perm = spec.perm
    cur = jnp.transpose(core, perm)
    tabs: list[jax.Array] = [None] * K  # type: ignore[list-item]
    X = 1
    for s in range(K - 1, -1, -1):
        Rs = spec.ranks[perm[s]]
        P = math.prod(spec.ranks[perm[j]] for j in range(s))
        cur = cur.reshape(X, P, Rs)
        tabs[s] = cur.reshape(X * P, Rs)
        if s > 0:
            # contract r_{π_s} with θ^{π_s}: the levels of π_s become the leading table index
            cur = jnp.einsum("xpr,nr->nxp", cur, factors[perm[s]])
            X = X * spec.shape[perm[s]]
    return tabs


def cell_rates(
    spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array, index
) -> jax.Array:
    """Rates ``μ`` at the listed cells ``index`` (n, K), from the stage-0 table."""
    index = jnp.asarray(index)
    tab = allocation_tables(spec, factors, core)[0]
    f0 = jnp.zeros(index.shape[0], dtype=jnp.int32)
    X = 1
    for s in range(spec.K - 1, 0, -1):
        k = spec.perm[s]
        f0 = index[:, k].astype(jnp.int32) * X + f0
        X *= spec.shape[k]
    k0 = spec.perm[0]
    return jnp.sum(factors[k0][index[:, k0]] * tab[f0], axis=1)


def component_mass(spec: PoissonTuckerSpec, params: dict, mask=None) -> list[np.ndarray]:
    """Share of the expected total count carried by each component of each mode.

    ``m_k[c] ∝ Σ_{r: r_k = c} λ[r] Z[r]`` with ``Z = ∂Λ/∂λ`` (the observed cells' factor
    products), which is invariant to the scale trade-off between factors and core.
    """
    factors = mode_factors(spec, params)
    _, Z = exposures(spec, factors, params["core"], mask)
    w = np.asarray(params["core"] * Z, dtype=np.float64)
    w = w / w.sum()
    return [w.sum(axis=tuple(j for j in range(spec.K) if j != k)) for k in range(spec.K)]


#: The quantile of a new count is exact where the predictive sd is under 2 /
#: QUANTILE_RESOLUTION (200), and at most QUANTILE_RESOLUTION of the sd above it beyond (the
#: bisection stops there: each step evaluates the Poisson CDF at every draw).
QUANTILE_RESOLUTION = 0.01


def _below(y: np.ndarray, rates: np.ndarray, q: float) -> np.ndarray:
    """Per cell, whether ``mean_s P(Poisson(μ_s) ≤ y) < q`` (True for ``y < 0``)."""
    from scipy import special

    return (y < 0) | (special.pdtr(np.maximum(y, 0.0), rates).mean(0) < q)


def mixture_quantiles(rates: np.ndarray, q: float) -> np.ndarray:
    """The ``q``-quantile of a new count at each cell: the smallest integer ``y`` with
    ``mean_s P(Y ≤ y | μ_s) ≥ q``, ``Y ~ Poisson(μ_s)`` over the draws ``s``. Not simulated:
    a cell's interval is the same whichever cells share the call (800 simulated counts a
    cell missed the tail quantiles by up to half a predictive sd).

    It starts at the quantile of a negative binomial with the mixture's mean and variance,
    gallops (steps of 5 % of the predictive sd, doubling) to a bracket and bisects it: exact
    where the predictive sd is under 200, beyond that at most 1 % of the sd above the exact
    quantile (:data:`QUANTILE_RESOLUTION`).

    Parameters
    ----------
    rates : numpy.ndarray
        ``(draws, cells)`` rates ``μ_s`` (non-negative).
    q : float
        A probability in (0, 1).

    Returns
    -------
    numpy.ndarray
        ``(cells,)`` float64 integers.

    Raises
    ------
    ValueError
        If a rate is NaN or infinite.
    """
    from scipy import stats

    rates = np.asarray(rates, dtype=np.float64)
    if not np.isfinite(rates).all():  # (the search would gallop to inf and return it)
        raise ValueError("the rate draws hold NaN or inf; the fit cannot give intervals")
    mean, extra = rates.mean(0), rates.var(0)  # the draws' own spread: overdispersion
    with np.errstate(divide="ignore", invalid="ignore"):
        start = np.where(
            extra > 1e-9 * mean,
            stats.nbinom.ppf(q, mean * mean / extra, mean / (mean + extra)),
            stats.poisson.ppf(q, mean),
        )
    y = np.maximum(np.nan_to_num(start, nan=0.0, posinf=0.0), 0.0)
    up = _below(y, rates, q)  # the quantile lies above the start
    lo, hi = np.where(up, y, -1.0), np.where(up, np.inf, y)  # F(lo) < q ≤ F(hi) when closed
    sd = np.sqrt(mean + extra)
    step = np.maximum(1.0, np.floor(5 * QUANTILE_RESOLUTION * sd))
    resolution = np.maximum(1.0, np.floor(QUANTILE_RESOLUTION * sd))
    open_ = up | (y > 0)
    while open_.any():  # gallop away from the start until the bracket closes
        i = np.flatnonzero(open_)
        probe = np.where(up[i], lo[i] + step[i], np.maximum(hi[i] - step[i], -1.0))
        below = _below(probe, rates[:, i], q)
        lo[i] = np.where(below, probe, lo[i])
        hi[i] = np.where(below, hi[i], probe)
        open_[i[np.where(up[i], ~below, below)]] = False
        step[i] *= 2
    while True:  # bisect, only the cells not yet resolved
        i = np.flatnonzero(hi - lo > resolution)
        if i.size == 0:
            return hi
        mid = np.floor((lo[i] + hi[i]) / 2)
        below = _below(mid, rates[:, i], q)
        lo[i] = np.where(below, mid, lo[i])
        hi[i] = np.where(below, hi[i], mid)
