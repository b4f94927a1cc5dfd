"""Bayesian Poisson Tucker decomposition (BPTD): NumPyro model, compiled Gibbs sampler, CAVI.

Model (K modes, mode ``k`` of size ``N_k`` and rank bound ``R_k``)::

    y[i₁,…,i_K] ~ Poisson(μ[i]),   μ[i] = Σ_{r₁…r_K} λ[r₁,…,r_K] Π_k θ^k[i_k, r_k]
    θ^g[i, c]  ~ Gamma(a, b_g),     b_g ~ Gamma(e₀, f₀)          (one matrix per factor group g)
    λ[r]       ~ Gamma(s[r], δ),    δ ~ Gamma(e₀, f₀)
    s[r]       = Π_k w^k[r_k],      w^k_c ~ Gamma(γ₀ / R_k, ζ),   ζ ~ Gamma(e₀, f₀)

The weights ``w`` are the finite gamma-process shrinkage of Schein et al. (2016): the shapes
``γ₀/R_k`` are small, so components the data do not need get weights near zero and their core
cells collapse. Optional *pair* ``(a, b)`` of modes (sender, receiver) with

* ``share``: one factor matrix for both modes (the levels of the two modes are the same);
* ``exclude_diagonal``: cells with ``i_a = i_b`` are not observed (required with ``share``: on
  the diagonal a shared factor enters squared and the conditional is not conjugate);
* ``within_between``: BPTD's core prior, ``s = η↻_c`` on ``r_a = r_b = c`` and ``η↔_c η↔_d``
  off it (times the other modes' weights), in place of ``w^a_c w^b_d``.

A *mask* (dense 0/1 array over a subset of modes) marks missing slices: their cells are neither
zeros nor counts. Only the nonzero cells are ever listed; zero cells enter through the total
observed rate ``Λ = Σ_{observed cells} μ``, which is a multilinear function of the factors
computed in closed form from column sums, the diagonal term and the mask term
(:func:`total_rate`). Its gradient gives every exposure the conjugate updates need.

Inference

* :func:`poisson_tucker_model`: the NumPyro model (NUTS on tiny tensors, predictive checks).
* :class:`PoissonTuckerGibbs`: a :class:`numpyro.infer.mcmc.MCMCKernel` running one compiled
  Gibbs sweep per step: allocation of every token compositionally (``r_{π₁}``, then
  ``r_{π₂} | r_{π₁}``, …) from precomputed contraction tables, conjugate gamma updates (rows of a
  shared factor one at a time, exactly), CRT augmentation for the shrinkage weights.
* :func:`cavi_fit`: mean-field coordinate ascent with the same sufficient statistics; the
  weights and ``ζ`` are point estimates (exact 1-D maximisation), so the bound never decreases.

References
----------
Schein, Zhou, Blei, Wallach. "Bayesian Poisson Tucker Decomposition for Learning the Structure of
International Relations." ICML 2016.
Zhou, Carin. "Negative binomial process count and mixture modeling." IEEE TPAMI 2015 (CRT).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import digamma, gammaln
from numpyro.infer.mcmc import MCMCKernel

__all__ = [
    "GibbsState",
    "PoissonData",
    "PoissonTuckerGibbs",
    "PoissonTuckerSpec",
    "allocate",
    "cavi_fit",
    "cell_rates",
    "component_mass",
    "core_shape",
    "exposures",
    "gamma_draw",
    "init_params",
    "make_spec",
    "masked_rate",
    "poisson_tucker_model",
    "prepare_data",
    "region_mask",
    "total_rate",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --------------------------------------------------------------------------------------------
# specification
# --------------------------------------------------------------------------------------------


class PoissonTuckerSpec(NamedTuple):
    """Static description of a Poisson Tucker model (hashable; see :func:`make_spec`)."""

    shape: tuple[int, ...]
    ranks: tuple[int, ...]
    pair: tuple[int, int] | None = None
    share: bool = False
    exclude_diagonal: bool = False
    within_between: bool = False
    shrinkage: bool = True
    factor_shape: float = 1.0
    gamma0: float = 1.0
    core_shape: float = 1.0
    e0: float = 1.0
    f0: float = 1.0
    mask_modes: tuple[int, ...] = ()
    perm: tuple[int, ...] = ()

    @property
    def K(self) -> int:
        """Number of modes."""
        return len(self.shape)

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """Modes of each factor matrix (a shared pair is one group)."""
        out: list[tuple[int, ...]] = []
        for k in range(self.K):
            if self.share and self.pair is not None and k == self.pair[1]:
                continue
            if self.share and self.pair is not None and k == self.pair[0]:
                out.append(tuple(self.pair))
            else:
                out.append((k,))
        return tuple(out)

    @property
    def group_of(self) -> tuple[int, ...]:
        """Factor group of each mode."""
        g = [0] * self.K
        for j, modes in enumerate(self.groups):
            for k in modes:
                g[k] = j
        return tuple(g)

    @property
    def weight_modes(self) -> tuple[int, ...]:
        """Modes with their own shrinkage vector ``w{k}`` (the pair uses η's if within/between)."""
        if not self.shrinkage:
            return ()
        skip = set(self.pair) if (self.within_between and self.pair is not None) else set()
        return tuple(k for k in range(self.K) if k not in skip)


def _best_order(shape: Sequence[int], ranks: Sequence[int]) -> tuple[int, ...]:
    """Sampling order π minimising the total size of the contraction tables (see `_tables`)."""
    K = len(shape)

    def cost(perm):
        total = 0
        for s in range(K):
            X = math.prod(shape[perm[j]] for j in range(s + 1, K))
            P = math.prod(ranks[perm[j]] for j in range(s + 1))
            total += X * P
        return total

    if K <= 7:
        return min(itertools.permutations(range(K)), key=cost)
    return tuple(int(k) for k in np.argsort([-n for n in shape], kind="stable"))


def make_spec(
    shape: Sequence[int],
    ranks: Sequence[int],
    *,
    pair: tuple[int, int] | None = None,
    share: bool = False,
    exclude_diagonal: bool | None = None,
    within_between: bool = False,
    shrinkage: bool = True,
    factor_shape: float = 1.0,
    gamma0: float = 1.0,
    core_shape: float = 1.0,
    e0: float = 1.0,
    f0: float = 1.0,
    mask_modes: Sequence[int] = (),
) -> PoissonTuckerSpec:
    """Validate the options and build a :class:`PoissonTuckerSpec`.

    Parameters
    ----------
    shape, ranks : sequence of int
        Mode sizes ``N_k`` and rank upper bounds ``R_k``.
    pair : (int, int), optional
        Two modes with the same levels (sender, receiver).
    share : bool
        One factor matrix for both modes of ``pair``.
    exclude_diagonal : bool, optional
        Cells with equal ``pair`` levels are not observed. Defaults to ``share``; required by it.
    within_between : bool
        BPTD's within/between-community core prior on ``pair`` (needs equal ranks, shrinkage).
    shrinkage : bool
        Gamma-process weights on the core shapes; otherwise every ``s[r] = core_shape``.
    factor_shape, gamma0, core_shape, e0, f0 : float
        Hyperparameters ``a``, ``γ₀``, fixed core shape, and the shape/rate of the gamma
        hyperpriors on ``b_g``, ``δ`` and ``ζ``.
    mask_modes : sequence of int
        Modes of the dense missing-cell mask (sorted; see :func:`prepare_data`).

    Returns
    -------
    PoissonTuckerSpec

    Raises
    ------
    ValueError
        For inconsistent sizes, ranks or options.
    """
    shape = tuple(int(n) for n in shape)
    ranks = tuple(int(r) for r in ranks)
    K = len(shape)
    if K < 1 or len(ranks) != K:
        raise ValueError(f"ranks has {len(ranks)} entries but the tensor has {K} modes")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive integers, got {ranks}")
    if exclude_diagonal is None:
        exclude_diagonal = bool(share)
    if pair is not None:
        pair = (int(pair[0]), int(pair[1]))
        a, b = pair
        if not (0 <= a < K and 0 <= b < K) or a == b:
            raise ValueError(f"pair must name two different modes among 0..{K - 1}, got {pair}")
        if a > b:
            pair = (b, a)
        if shape[a] != shape[b]:
            raise ValueError(
                f"the pair's modes must have the same number of levels, got {shape[a]} and "
                f"{shape[b]}"
            )
    elif share or exclude_diagonal or within_between:
        raise ValueError("share, exclude_diagonal and within_between need a pair of modes")
    if share and not exclude_diagonal:
        raise ValueError(
            "a shared factor needs exclude_diagonal=True: on the diagonal the shared factor "
            "enters squared and its conditional is not gamma"
        )
    if share and ranks[pair[0]] != ranks[pair[1]]:
        raise ValueError(f"a shared pair needs equal ranks, got {ranks[pair[0]]}, {ranks[pair[1]]}")
    if within_between:
        if not shrinkage:
            raise ValueError("within_between is a shrinkage prior: it needs shrinkage=True")
        if ranks[pair[0]] != ranks[pair[1]]:
            raise ValueError("within_between needs equal ranks on the pair's modes")
    for name, v in [
        ("factor_shape", factor_shape),
        ("gamma0", gamma0),
        ("core_shape", core_shape),
        ("e0", e0),
        ("f0", f0),
    ]:
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    mask_modes = tuple(sorted(int(k) for k in mask_modes))
    return PoissonTuckerSpec(
        shape=shape,
        ranks=ranks,
        pair=pair,
        share=bool(share),
        exclude_diagonal=bool(exclude_diagonal),
        within_between=bool(within_between),
        shrinkage=bool(shrinkage),
        factor_shape=float(factor_shape),
        gamma0=float(gamma0),
        core_shape=float(core_shape),
        e0=float(e0),
        f0=float(f0),
        mask_modes=mask_modes,
        perm=_best_order(shape, ranks),
    )


# --------------------------------------------------------------------------------------------
# data: nonzero cells, tokens, mask
# --------------------------------------------------------------------------------------------


class PoissonData(NamedTuple):
    """Nonzero cells, their tokens and the missing-cell mask (arrays only; a pytree).

    ``index`` (n, K) and ``y`` (n,) are the nonzero cells. ``tok_x`` (K, T) holds each token's
    level per mode, ``tok_f`` (K, T) its row in the contraction table of each sampling stage
    (before adding the rank prefix), ``mask`` the dense 0/1 missing mask over
    ``spec.mask_modes`` (None without one).
    """

    index: jax.Array
    y: jax.Array
    tok_x: jax.Array
    tok_f: jax.Array
    mask: jax.Array | None


def _flat_rest(spec: PoissonTuckerSpec, index: np.ndarray) -> np.ndarray:
    """Per stage s, the flat index of the cell's levels on the modes sampled after s."""
    K = spec.K
    perm = spec.perm
    f = np.zeros((K, index.shape[0]), dtype=np.int64)
    X = 1
    acc = np.zeros(index.shape[0], dtype=np.int64)
    for s in range(K - 1, -1, -1):
        f[s] = acc
        k = perm[s]
        acc = index[:, k].astype(np.int64) * X + acc
        X *= spec.shape[k]
    return f


def region_mask(
    spec: PoissonTuckerSpec, modes: Sequence[int], rows: np.ndarray
) -> tuple[tuple[int, ...], np.ndarray]:
    """Dense 0/1 array of the cells matching any row of ``rows`` on ``modes``.

    With an excluded diagonal the array is extended to span both pair modes (broadcast) and the
    diagonal is removed, so that it never counts excluded cells.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    modes : sequence of int
        The modes the rows fix (the others are free: whole slices).
    rows : (n, len(modes)) int array
        Levels of each slice.

    Returns
    -------
    modes : tuple of int
        Sorted modes of the array (use as ``spec._replace(mask_modes=modes)``).
    mask : numpy.ndarray
    """
    modes = [int(k) for k in modes]
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(modes))
    full = sorted(set(modes) | (set(spec.pair) if spec.exclude_diagonal else set()))
    arr = np.zeros([spec.shape[k] for k in sorted(modes)], dtype=bool)
    order = np.argsort(modes)
    arr[tuple(rows[:, j] for j in order)] = True
    sm = sorted(modes)
    sh = [spec.shape[k] if k in sm else 1 for k in full]
    arr = np.broadcast_to(arr.reshape(sh), [spec.shape[k] for k in full]).copy()
    if spec.exclude_diagonal:
        a, b = spec.pair
        sh = [1] * len(full)
        sh[full.index(a)], sh[full.index(b)] = spec.shape[a], spec.shape[b]
        arr &= ~np.eye(spec.shape[a], dtype=bool).reshape(sh)
    return tuple(full), arr.astype(np.float64)


def prepare_data(
    spec: PoissonTuckerSpec,
    index: np.ndarray,
    counts: np.ndarray,
    mask: np.ndarray | None = None,
    dtype=None,
) -> PoissonData:
    """Check the cells and build the token arrays for the Gibbs sampler.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    index : (n, K) int array
        Levels of each listed cell. Zero counts are allowed and dropped.
    counts : (n,) array
        Non-negative integer counts.
    mask : array, optional
        Dense 0/1 array of shape ``[shape[k] for k in spec.mask_modes]``: 1 = missing.
    dtype : dtype, optional
        Floating dtype of ``y`` and ``mask`` (default: JAX's default float).

    Returns
    -------
    PoissonData

    Raises
    ------
    ValueError
        If indices are out of range, cells repeat, counts are negative or not integers, or a
        nonzero cell lies on an excluded diagonal or in a missing slice.
    """
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    index = np.asarray(index)
    counts = np.asarray(counts, dtype=np.float64)
    if index.ndim != 2 or index.shape[1] != spec.K:
        raise ValueError(f"index must have shape (n, {spec.K}), got {index.shape}")
    if counts.shape != (index.shape[0],):
        raise ValueError(f"counts must have shape ({index.shape[0]},), got {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError("counts must be non-negative integers")
    for k in range(spec.K):
        if index.shape[0] and (index[:, k].min() < 0 or index[:, k].max() >= spec.shape[k]):
            raise ValueError(f"index of mode {k} out of range 0..{spec.shape[k] - 1}")
    flat = np.ravel_multi_index(tuple(index.T.astype(np.int64)), spec.shape) if spec.K else None
    if np.unique(flat).size != flat.size:
        raise ValueError("cells must be listed once each (found repeated cells)")
    keep = counts > 0
    index, counts = index[keep].astype(np.int64), counts[keep]
    if spec.exclude_diagonal:
        a, b = spec.pair
        if np.any(index[:, a] == index[:, b]):
            raise ValueError("nonzero counts on the excluded diagonal (equal pair levels)")
    if mask is not None:
        want = tuple(spec.shape[k] for k in spec.mask_modes)
        mask = np.asarray(mask)
        if mask.shape != want:
            raise ValueError(f"mask must have shape {want}, got {mask.shape}")
        hit = mask[tuple(index[:, k] for k in spec.mask_modes)] != 0
        if np.any(hit):
            raise ValueError(f"{int(hit.sum())} nonzero cells lie in masked (missing) cells")
        if spec.exclude_diagonal:
            a, b = spec.pair
            if a not in spec.mask_modes or b not in spec.mask_modes:
                raise ValueError("with an excluded diagonal the mask must span both pair modes")
            ia, ib = spec.mask_modes.index(a), spec.mask_modes.index(b)
            eye = np.eye(spec.shape[a], dtype=bool)
            sh = [1] * mask.ndim
            sh[ia], sh[ib] = spec.shape[a], spec.shape[b]
            mask = np.where(eye.reshape(sh), 0, mask)
        mask = jnp.asarray(mask != 0, dtype=dtype)
    elif spec.mask_modes:
        raise ValueError("spec.mask_modes is set but no mask was given")
    reps = counts.astype(np.int64)
    tok_cells = np.repeat(np.arange(index.shape[0]), reps)
    tok_index = index[tok_cells]
    tok_x = tok_index.T.astype(np.int32)
    tok_f = _flat_rest(spec, tok_index).astype(np.int32)
    return PoissonData(
        index=jnp.asarray(index, dtype=jnp.int32),
        y=jnp.asarray(counts, dtype=dtype),
        tok_x=jnp.asarray(tok_x),
        tok_f=jnp.asarray(tok_f),
        mask=mask,
    )


# --------------------------------------------------------------------------------------------
# deterministic pieces: core shape, total rate, exposures, cell rates, tables
# --------------------------------------------------------------------------------------------


def mode_factors(spec: PoissonTuckerSpec, params: dict) -> list[jax.Array]:
    """The factor matrix of every mode (shared modes get the same array)."""
    return [params[f"theta{g}"] for g in spec.group_of]


def _weight_vectors(spec: PoissonTuckerSpec, params: dict, skip: int | None = None):
    """Per mode, the shrinkage vector entering ``s`` (ones for ``skip`` and pair modes)."""
    out = []
    for k in range(spec.K):
        if k in spec.weight_modes and k != skip:
            out.append(params[f"w{k}"])
        else:
            out.append(jnp.ones(spec.ranks[k], dtype=params["core"].dtype))
    return out


def _outer(vectors: Sequence[jax.Array]) -> jax.Array:
    """Outer product of K vectors as a K-way tensor."""
    out = vectors[0]
    for v in vectors[1:]:
        out = out[..., None] * v
    return out


def _pair_term(spec: PoissonTuckerSpec, eta_w: jax.Array, eta_b: jax.Array) -> jax.Array:
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
    s = _outer(_weight_vectors(spec, params))
    if spec.within_between:
        s = s * _pair_term(spec, params["eta_within"], params["eta_between"])
    return s


def _contract(core: jax.Array, ops: Sequence[tuple[jax.Array, str]], out: str = "") -> jax.Array:
    """einsum of the core (subscripts a, b, c…) with operands given with their subscripts."""
    K = core.ndim
    terms = [_LETTERS[:K]] + [s for _, s in ops]
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
    out = _contract(core, [(S[k], _LETTERS[k]) for k in range(K)])
    if spec.exclude_diagonal:
        a, b = spec.pair
        D = factors[a].T @ factors[b]
        ops = [(D, _LETTERS[a] + _LETTERS[b])]
        ops += [(S[k], _LETTERS[k]) for k in range(K) if k not in (a, b)]
        out = out - _contract(core, ops)
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
    ops = [(mask, "".join(_UPPER[k] for k in mm))]
    ops += [(factors[k], _UPPER[k] + _LETTERS[k]) for k in mm]
    ops += [(S[k], _LETTERS[k]) for k in range(K) if k not in mm]
    return _contract(core, ops)


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


def _tables(spec: PoissonTuckerSpec, factors: Sequence[jax.Array], core: jax.Array):
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
    tab = _tables(spec, factors, core)[0]
    f0 = jnp.zeros(index.shape[0], dtype=jnp.int32)
    X = 1
    for s in range(spec.K - 1, 0, -1):
        k = spec.perm[s]
        f0 = index[:, k].astype(jnp.int32) * X + f0
        X *= spec.shape[k]
    k0 = spec.perm[0]
    return jnp.sum(factors[k0][index[:, k0]] * tab[f0], axis=1)


# --------------------------------------------------------------------------------------------
# NumPyro model
# --------------------------------------------------------------------------------------------


def poisson_tucker_model(
    spec: PoissonTuckerSpec,
    data: PoissonData | None = None,
    cells=None,
    y=None,
):
    """The generative model as a NumPyro function.

    Sites: ``b{g}``, ``theta{g}`` per factor group; ``zeta``, ``w{k}`` (and ``eta_within``,
    ``eta_between`` for the BPTD pair prior) with shrinkage; ``delta``; ``core``.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    data : PoissonData, optional
        Sparse likelihood: ``Σ_nonzero (y log μ − log y!) − Λ`` as a factor site ``"loglik"``
        (any size; zeros enter through :func:`total_rate`).
    cells : (n, K) int array, optional
        Cells with a Poisson sample site ``"y"`` (dense list, for tiny tensors and predictive
        checks); rates come from the dense tensor ``einsum`` so this path is independent of the
        sparse one.
    y : (n,) array, optional
        Observed counts at ``cells`` (None: sample them).
    """
    e0, f0 = spec.e0, spec.f0
    params = {}
    for g, modes in enumerate(spec.groups):
        k = modes[0]
        b = numpyro.sample(f"b{g}", dist.Gamma(e0, f0))
        params[f"theta{g}"] = numpyro.sample(
            f"theta{g}",
            dist.Gamma(spec.factor_shape, b).expand((spec.shape[k], spec.ranks[k])).to_event(2),
        )
    if spec.shrinkage:
        zeta = numpyro.sample("zeta", dist.Gamma(e0, f0))
        for k in spec.weight_modes:
            params[f"w{k}"] = numpyro.sample(
                f"w{k}",
                dist.Gamma(spec.gamma0 / spec.ranks[k], zeta).expand((spec.ranks[k],)).to_event(1),
            )
        if spec.within_between:
            R = spec.ranks[spec.pair[0]]
            for name in ("eta_within", "eta_between"):
                params[name] = numpyro.sample(
                    name, dist.Gamma(spec.gamma0 / R, zeta).expand((R,)).to_event(1)
                )
    delta = numpyro.sample("delta", dist.Gamma(e0, f0))
    params["core"] = jnp.ones(spec.ranks)  # placeholder for core_shape's dtype
    s = core_shape(spec, params)
    core = numpyro.sample("core", dist.Gamma(s, delta).to_event(spec.K))
    params["core"] = core
    factors = mode_factors(spec, params)
    if data is not None:
        mu = cell_rates(spec, factors, core, data.index)
        ll = jnp.sum(data.y * jnp.log(mu) - gammaln(data.y + 1.0))
        numpyro.factor("loglik", ll - total_rate(spec, factors, core, data.mask))
    if cells is not None:
        cells = jnp.asarray(cells)
        letters = _LETTERS[: spec.K]
        dense = jnp.einsum(
            letters
            + ","
            + ",".join(f"{_UPPER[k]}{letters[k]}" for k in range(spec.K))
            + "->"
            + _UPPER[: spec.K],
            core,
            *factors,
        )
        rate = dense[tuple(cells[:, k] for k in range(spec.K))]
        with numpyro.plate("cells", cells.shape[0]):
            numpyro.sample("y", dist.Poisson(rate), obs=y)


# --------------------------------------------------------------------------------------------
# Gibbs sampler
# --------------------------------------------------------------------------------------------


def gamma_draw(key: jax.Array, shape: jax.Array, dtype=None) -> jax.Array:
    """Standard gamma variates ``Gamma(shape, 1)`` (Marsaglia–Tsang with a vectorised loop).

    Shapes below one are boosted: ``G(a) = G(a + 1) · U^{1/a}``, computed in log space so
    that tiny shapes give tiny (possibly zero) values rather than NaN. Exact (a rejection
    loop that stops when every entry is accepted); compiles much faster than
    ``jax.random.gamma`` so the sweep, which draws about ten gamma blocks, compiles quickly.
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

    def body(carry):
        x_out, done, i = carry
        kn, ku = jax.random.split(jax.random.fold_in(k_loop, i))
        z = jax.random.normal(kn, a.shape, dtype)
        u = jax.random.uniform(ku, a.shape, dtype, minval=jnp.finfo(dtype).tiny)
        v = (1.0 + c * z) ** 3
        vpos = jnp.where(v > 0, v, 1.0)
        ok = (v > 0) & (jnp.log(u) < 0.5 * z * z + d - d * vpos + d * jnp.log(vpos))
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
    spec: PoissonTuckerSpec, data: PoissonData, factors, core, key
) -> tuple[jax.Array, list[jax.Array]]:
    """Allocate every token to a core cell, compositionally; return the sufficient statistics.

    Each token of a nonzero cell ``x`` draws ``r_{π_0}``, then ``r_{π_1} | r_{π_0}``, …, each a
    categorical over ``R_{π_s}`` values ``θ^{π_s}[x, ·] · B_s[…]`` (see `_tables`), so the joint
    draw is from ``p(r | x) ∝ λ[r] Π_k θ^k[x_k, r_k]`` and the cost is O(tokens · Σ_k R_k) plus
    the tables.

    Returns
    -------
    Y : array of shape ``spec.ranks`` (int32)
        Tokens per core cell.
    counts : list of (N_k, R_k) int32 arrays
        Tokens per (level, component) of each mode.
    """
    K = spec.K
    perm = spec.perm
    tabs = _tables(spec, factors, core)
    T = data.tok_x.shape[1]
    u = jax.random.uniform(key, (K, T), dtype=core.dtype)
    prefix = jnp.zeros(T, dtype=jnp.int32)
    counts: list = [None] * K
    for s in range(K):
        k = perm[s]
        Rs = spec.ranks[k]
        P = math.prod(spec.ranks[perm[j]] for j in range(s))
        rows = data.tok_f[s] * P + prefix
        w = tabs[s][rows] * factors[k][data.tok_x[k]]
        r = _categorical(u[s], w)
        counts[k] = (
            jnp.zeros(spec.shape[k] * Rs, jnp.int32)
            .at[data.tok_x[k] * Rs + r]
            .add(1)
            .reshape(spec.shape[k], Rs)
        )
        prefix = prefix * Rs + r
    Rp = tuple(spec.ranks[k] for k in perm)
    Y = jnp.zeros(math.prod(Rp), jnp.int32).at[prefix].add(1).reshape(Rp)
    Y = jnp.transpose(Y, np.argsort(perm))
    return Y, counts


def crt(key: jax.Array, Y: jax.Array, s: jax.Array, total: int) -> jax.Array:
    """Chinese-restaurant-table draws ``ℓ[r] ~ CRT(Y[r], s[r])`` for all cells at once.

    ``ℓ = Σ_{n=0}^{Y-1} Bernoulli(s / (s + n))``: the ``Σ Y = total`` Bernoullis are laid out
    in one flat array (cell of position p found by ``searchsorted`` on ``cumsum(Y)``), so the
    cost is O(total) and exact for any shape.
    """
    Yf = Y.reshape(-1)
    sf = s.reshape(-1)
    if total == 0:
        return jnp.zeros_like(Yf).reshape(Y.shape)
    cum = jnp.cumsum(Yf)
    pos = jnp.arange(total, dtype=cum.dtype)
    cell = jnp.searchsorted(cum, pos, side="right")
    n = pos - (cum[cell] - Yf[cell])
    sc = sf[cell]
    hit = jax.random.uniform(key, (total,), dtype=s.dtype) * (sc + n.astype(s.dtype)) < sc
    return jnp.zeros_like(Yf).at[cell].add(hit.astype(Yf.dtype)).reshape(Y.shape)


def _pair_matrices(spec, factors, core, mask):
    """For a shared pair: ``A = M₀ + M₀ᵀ`` (all-cells coupling) and the mask's ``L_x`` stack.

    ``Λ = Σ_{i≠j} Θ_iᵀ M₀ Θ_j − Σ_{i,j,x} mask[i,j,x] Θ_iᵀ L_x Θ_j`` with everything except Θ
    held fixed, so the exposure of row i is ``A (S − Θ_i) − Σ_x (L_x W_i[x] + L_xᵀ W'_i[x])``.
    """
    a, b = spec.pair
    K = spec.K
    S = [f.sum(0) for f in factors]
    pa = _LETTERS[a] + _LETTERS[b]
    M0 = _contract(core, [(S[k], _LETTERS[k]) for k in range(K) if k not in (a, b)], pa)
    A = M0 + M0.T
    if mask is None:
        return A, None, None
    mm = spec.mask_modes
    rest = [k for k in mm if k not in (a, b)]
    ops = [(factors[k], _UPPER[k] + _LETTERS[k]) for k in rest]
    ops += [(S[k], _LETTERS[k]) for k in range(K) if k not in mm]
    L = _contract(core, ops, "".join(_UPPER[k] for k in rest) + pa)
    L = L.reshape(-1, *L.shape[-2:])
    order = [mm.index(a), mm.index(b)] + [mm.index(k) for k in rest]
    M = jnp.transpose(mask, order)
    M = M.reshape(M.shape[0], M.shape[1], -1)
    return A, L, M


def _shared_rows(spec, theta, shape_rows, base_rate, A, L, M, draw):
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


def _group_counts(spec, counts, g):
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
        spec.factor_shape + _group_counts(spec, counts, g).astype(dtype)
        for g in range(len(spec.groups))
    ]


def _update_factors_gibbs(spec, p, counts, mask, key):
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
            A, L, M = _pair_matrices(spec, factors, p["core"], mask)
            theta, _ = _shared_rows(
                spec, p[f"theta{g}"], shapes[g], p[f"b{g}"], A, L, M, lambda i, sh, r, G=G: G[i] / r
            )
        p[f"theta{g}"] = theta
        p[f"b{g}"] = draws[-1][g] / (spec.f0 + theta.sum())
    return p


def _others_shape(spec, p, k):
    """``s[r] / w^k[r_k]`` computed without dividing (mode k's weights set to one)."""
    s = _outer(_weight_vectors(spec, p, skip=k))
    if spec.within_between:
        s = s * _pair_term(spec, p["eta_within"], p["eta_between"])
    return s


def _sum_over_mode(x, k):
    """Sum a K-way tensor over every axis except k."""
    return jnp.sum(x, axis=tuple(j for j in range(x.ndim) if j != k))


def _update_weights_gibbs(spec, p, ell, q, key):
    """Gamma updates of the shrinkage weights given CRT counts ``ℓ`` and ``q = log(1 + Z/δ)``.

    Given ``ℓ``, ``ℓ[r] ~ Poisson(s[r] q[r])`` with ``s`` linear in each weight, so
    ``w^k_c | … ~ Gamma(γ₀/R_k + Σ_{r_k=c} ℓ[r], ζ + Σ_{r_k=c} (s[r]/w^k_c) q[r])``; modes are
    updated in turn, and the between-community η's one at a time (they multiply each other).
    """
    p = dict(p)
    dtype = p["core"].dtype
    ell = ell.astype(dtype)
    names = _weight_names(spec)
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
        t = _others_shape(spec, p, k)
        p[f"w{k}"] = draws[j] / (p["zeta"] + _sum_over_mode(t * q, k))
    if spec.within_between:
        rest = _outer(_weight_vectors(spec, p))  # the pair's modes are ones here
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


def gibbs_sweep(spec: PoissonTuckerSpec, data: PoissonData, p: dict, key: jax.Array):
    """One full Gibbs sweep. Returns the new parameters and the allocated core counts ``Y``.

    Order: allocation → factors (and their rates ``b_g``) → CRT counts and shrinkage weights
    (with λ integrated out) → core λ → δ. Drawing λ right after the collapsed weight block keeps
    the partially collapsed sampler exact.
    """
    k_alloc, k_fac, k_crt, k_w, k_core = jax.random.split(key, 5)
    factors = mode_factors(spec, p)
    Y, counts = allocate(spec, data, factors, p["core"], k_alloc)
    p = _update_factors_gibbs(spec, p, counts, data.mask, k_fac)
    factors = mode_factors(spec, p)
    _, Z = exposures(spec, factors, p["core"], data.mask)
    if spec.shrinkage:
        s = core_shape(spec, p)
        ell = crt(k_crt, Y, s, int(data.tok_x.shape[1]))
        q = jnp.log1p(Z / p["delta"])
        p = _update_weights_gibbs(spec, p, ell, q, k_w)
    return _update_core_gibbs(spec, p, Y, Z, k_core), Y


def _update_core_gibbs(spec, p, Y, Z, key):
    """``λ[r] ~ Gamma(s[r] + Y[r], δ + Z[r])``, then ``δ ~ Gamma(e₀ + Σ s, f₀ + Σ λ)``."""
    dtype = p["core"].dtype
    s = core_shape(spec, p)
    G_core, G_delta = gamma_many(key, [s + Y.astype(dtype), spec.e0 + s.sum()], dtype)
    core = G_core / (p["delta"] + Z)
    p = dict(p, core=core)
    p["delta"] = G_delta / (spec.f0 + core.sum())
    return p


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


#: :func:`gibbs_sweep` compiled once per model specification.
gibbs_sweep_jit = jax.jit(gibbs_sweep, static_argnums=0)


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

    Examples
    --------
    >>> kernel = PoissonTuckerGibbs(spec, data)                         # doctest: +SKIP
    >>> mcmc = numpyro.infer.MCMC(kernel, num_warmup=200, num_samples=200)  # doctest: +SKIP
    >>> mcmc.run(jax.random.key(0)); arviz.from_numpyro(mcmc)           # doctest: +SKIP
    """

    sample_field = "z"

    def __init__(self, spec: PoissonTuckerSpec, data: PoissonData):
        self.spec = spec
        self.data = data
        self._sweep = partial(gibbs_sweep_jit, spec)

    @property
    def model(self) -> Callable:
        """The NumPyro model with this data bound (``arviz.from_numpyro`` traces it)."""
        return partial(poisson_tucker_model, self.spec, self.data)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        """Start from ``init_params`` (a parameter dict) or a random point."""
        k_init, rng_key = jax.random.split(rng_key)
        z = init_params if init_params is not None else _init_jit(self.spec, self.data, k_init)
        Y = jnp.zeros(self.spec.ranks, jnp.int32)
        return GibbsState(jnp.asarray(0), z, rng_key, Y)

    def sample(self, state, model_args, model_kwargs):
        """One Gibbs sweep."""
        key, sub = jax.random.split(state.rng_key)
        z, Y = self._sweep(self.data, state.z, sub)
        return GibbsState(state.i + 1, z, key, Y)


@partial(jax.jit, static_argnums=0)
def _init_jit(spec, data, key):
    return init_params(spec, data, key)


# --------------------------------------------------------------------------------------------
# mean-field variational inference (CAVI)
# --------------------------------------------------------------------------------------------


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


def _vi_point(spec: PoissonTuckerSpec, st: VIState) -> dict:
    """Posterior means in the parameter-dict layout (weights are point estimates)."""
    p = {f"theta{g}": st.theta_shape[g] / st.theta_rate[g] for g in range(len(spec.groups))}
    for g in range(len(spec.groups)):
        p[f"b{g}"] = st.b_shape[g] / st.b_rate[g]
    p.update(st.weights)
    p["core"] = st.core_shape / st.core_rate
    p["delta"] = st.delta_shape / st.delta_rate
    return p


def _loglik_bound(spec, data, st: VIState):
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
    F, _, _ = _loglik_bound(spec, data, st)
    return _elbo_rest(spec, data, st, F)


def _elbo_rest(spec, data, st, F):
    p = _vi_point(spec, st)
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
        for name, R in _weight_names(spec):
            out += jnp.sum(dist.Gamma(spec.gamma0 / R, zeta).log_prob(p[name]))
    return out


def _gamma_logpdf_expect(e, f, A, B):
    """E_q[log Gamma(x | e, f)] for q = Gamma(A, B)."""
    return e * jnp.log(f) + (e - 1) * _elog(A, B) - f * A / B - gammaln(e)


def _weight_names(spec):
    out = [(f"w{k}", spec.ranks[k]) for k in spec.weight_modes]
    if spec.within_between:
        R = spec.ranks[spec.pair[0]]
        out += [("eta_within", R), ("eta_between", R)]
    return out


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
        t = _moveaxis_flat(_others_shape(spec, p, k), k)
        el = _moveaxis_flat(st_core_elog, k)
        p[f"w{k}"] = _maximise_weight(t, el, eld, spec.gamma0 / spec.ranks[k], p["zeta"])
    if spec.within_between:
        a, b = spec.pair
        R = spec.ranks[a]
        g0 = spec.gamma0 / R
        rest = _outer(_weight_vectors(spec, p))
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
    names = _weight_names(spec)
    total_w = sum(p[n].sum() for n, _ in names)
    shape_sum = spec.gamma0 * len(names)
    p["zeta"] = jnp.maximum(spec.e0 - 1 + shape_sum, 1e-12) / (spec.f0 + total_w)
    return p


def vi_init(spec: PoissonTuckerSpec, data: PoissonData, key: jax.Array) -> VIState:
    """Start the variational parameters at a random Gibbs-style initial point."""
    p = _init_jit(spec, data, key)
    G = len(spec.groups)
    dtype = data.y.dtype
    one = jnp.asarray(1.0, dtype)
    weights = {n: p[n] for n, _ in _weight_names(spec)}
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
    F, counts, Ybar = _loglik_bound(spec, data, st)
    bound = _elbo_rest(spec, data, st, F)
    a = spec.factor_shape
    ts, tr = list(st.theta_shape), list(st.theta_rate)
    b_shape, b_rate = st.b_shape, st.b_rate
    for g, modes in enumerate(spec.groups):
        p = _vi_point(
            spec,
            st._replace(
                theta_shape=tuple(ts), theta_rate=tuple(tr), b_shape=b_shape, b_rate=b_rate
            ),
        )
        shape = a + _group_counts(spec, counts, g)
        eb = b_shape[g] / b_rate[g]
        factors = mode_factors(spec, p)
        if len(modes) == 1:
            E, _ = exposures(spec, factors, p["core"], data.mask)
            rate = eb + E[modes[0]]
        else:
            A, L, M = _pair_matrices(spec, factors, p["core"], data.mask)
            _, rate = _shared_rows(
                spec, p[f"theta{g}"], shape, eb, A, L, M, lambda i, sh, rate: sh / rate
            )
        ts[g], tr[g] = shape, rate
        b_shape = b_shape.at[g].set(spec.e0 + a * shape.size)
        b_rate = b_rate.at[g].set(spec.f0 + jnp.sum(shape / rate))
    st = st._replace(theta_shape=tuple(ts), theta_rate=tuple(tr), b_shape=b_shape, b_rate=b_rate)
    p = _vi_point(spec, st)
    _, Z = exposures(spec, mode_factors(spec, p), p["core"], data.mask)
    s = core_shape(spec, p)
    st = st._replace(core_shape=s + Ybar, core_rate=p["delta"] + Z)
    st = st._replace(
        delta_shape=spec.e0 + jnp.sum(s), delta_rate=spec.f0 + jnp.sum(st.core_shape / st.core_rate)
    )
    if spec.shrinkage:
        p = _vi_point(spec, st)
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


def cavi_fit(
    spec: PoissonTuckerSpec,
    data: PoissonData,
    key: jax.Array,
    max_iter: int = 200,
    tol: float = 1e-6,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[VIState, list[float]]:
    """Run CAVI until the relative ELBO change is below ``tol`` (or ``max_iter`` iterations).

    Returns
    -------
    state : VIState
    elbos : list of float
        The bound after every iteration (non-decreasing up to rounding).
    """
    step = jax.jit(partial(cavi_step, spec))
    st = vi_init(spec, data, key)
    elbos: list[float] = []
    for it in range(max_iter):
        st_new, bound = step(data, st)
        bound = float(bound)
        if elbos and abs(bound - elbos[-1]) <= tol * abs(bound):
            elbos.append(bound)
            st = st_new
            if callback is not None:
                callback(it, bound)
            break
        elbos.append(bound)
        st = st_new
        if callback is not None:
            callback(it, bound)
    return st, elbos
