"""The static specification of a Poisson Tucker model and its data: nonzero cells, tokens and
the mask of missing slices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor.checks import check_bool, check_positive

LETTERS = "abcdefghijklmnopqrstuvwxyz"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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
    """Sampling order π minimising the total size of the allocation tables."""
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
    flags = {"share": share, "within_between": within_between, "shrinkage": shrinkage}
    flags["exclude_diagonal"] = bool(share) if exclude_diagonal is None else exclude_diagonal
    for name, flag in flags.items():
        check_bool(name, flag)
    exclude_diagonal = flags["exclude_diagonal"]
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
        check_positive(name, v)
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


#: Cells with more events than this are allocated by multinomial draws (see ``allocate``),
#: not one token per event.
TOKEN_CELL_MAX = 1000
#: At most this many tokens in all: beyond it the largest cells also go the multinomial way.
TOKEN_BUDGET = 1 << 22


class PoissonData(NamedTuple):
    """Nonzero cells, their tokens and the missing-cell mask (arrays only; a pytree).

    ``index`` (n, K) and ``y`` (n,) are the nonzero cells; ``y`` is in the working floating
    dtype (what the device computes with: exact integers only up to 2**24 in float32), except
    in a result's copy (:func:`with_exact_counts`), which holds the exact counts as int64
    numpy. Cells with small counts are allocated token by token: ``tok_x`` (K, T) holds each
    token's level per mode, ``tok_f`` (K, T) its row in the contraction table of each sampling
    stage (before adding the rank prefix). Cells with large counts (``big``, rows of
    ``index``; ``big_y`` their exact counts as JAX's default integer) are allocated with one
    multinomial draw per cell, so nothing grows with the number of events. ``mask`` is the
    dense 0/1 missing mask over ``spec.mask_modes`` (None without one). Without allocation
    arrays (``tok_x`` None, as built for CAVI) the data serve the likelihood only. ``tok_w``
    (T,) is set only when the tokens are padded and split over devices
    (``gibbs.shard_tokens``): 1 for a real token, 0 for padding (None: every token is real).
    """

    index: jax.Array
    y: jax.Array
    tok_x: jax.Array | None
    tok_f: jax.Array | None
    mask: jax.Array | None
    big: jax.Array | None = None
    big_y: jax.Array | None = None
    tok_w: jax.Array | None = None

    @property
    def has_allocation(self) -> bool:
        """Whether the Gibbs sampler's allocation arrays were built."""
        return self.tok_x is not None


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
    allocation: bool | None = None,
    token_cell_max: int = TOKEN_CELL_MAX,
    token_budget: int = TOKEN_BUDGET,
) -> PoissonData:
    """Check the cells and build the allocation arrays for the Gibbs sampler.

    Cells with at most ``token_cell_max`` events are listed token by token (fast for typical
    counts); larger cells, and the largest ones whenever the tokens would exceed
    ``token_budget``, are kept as (cell, count) pairs that the sampler allocates with one
    multinomial draw each. Memory and time thus grow with the nonzero cells, not the events.

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
    allocation : bool, optional
        Build the Gibbs sampler's allocation arrays: True (an error if the counts are beyond
        exact integer sufficient statistics), False (CAVI and likelihoods only: any finite
        counts), None (build them when the counts allow it).
    token_cell_max, token_budget : int
        Largest count allocated token by token, and the most tokens in all.

    Returns
    -------
    PoissonData

    Raises
    ------
    ValueError
        If indices are out of range, cells repeat, counts are negative or not integers, or a
        nonzero cell lies on an excluded diagonal or in a missing slice; with
        ``allocation=True``, if the total count exceeds the largest exact integer count of the
        sufficient statistics (2³¹ − 1 with JAX's default 32-bit types, 2⁵³ with x64).
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
    if allocation is None or allocation:
        limit = count_limit()
        total = float(np.sum(counts))
        if total > limit:
            if allocation:
                raise ValueError(
                    f"the total count {total:.6g} exceeds {limit} (= {limit:.3g}), the largest "
                    "exact integer count of the Gibbs sampler's sufficient statistics"
                    + (
                        ""
                        if jax.config.jax_enable_x64
                        else " with JAX's default 32-bit types; enable 64-bit JAX "
                        "(jax.config.update('jax_enable_x64', True)) for totals up to 2**53"
                    )
                    + ", or use method='vi' (no such limit)"
                )
            allocation = False
        else:
            allocation = True
    index_j = jnp.asarray(index, dtype=jnp.int32)
    y_j = jnp.asarray(counts, dtype=dtype)
    if not allocation:
        return PoissonData(index=index_j, y=y_j, tok_x=None, tok_f=None, mask=mask)
    reps = counts.astype(np.int64)
    big = reps > token_cell_max
    small_total = int(reps[~big].sum())
    if small_total > token_budget:  # move the largest remaining cells out of the token path
        order = np.argsort(-np.where(big, -1, reps), kind="stable")
        excess = np.cumsum(reps[order]) - (small_total - token_budget)
        big[order[: int(np.searchsorted(excess, 0)) + 1]] = True
    small = np.flatnonzero(~big)
    tok_cells = np.repeat(small, reps[small])
    tok_index = index[tok_cells]
    tok_x = tok_index.T.astype(np.int32)
    tok_f = _flat_rest(spec, tok_index).astype(np.int32)
    int_dtype = jnp.zeros((), dtype=int).dtype
    return PoissonData(
        index=index_j,
        y=y_j,
        tok_x=jnp.asarray(tok_x),
        tok_f=jnp.asarray(tok_f),
        mask=mask,
        big=jnp.asarray(np.flatnonzero(big), dtype=jnp.int32),
        big_y=jnp.asarray(reps[big], dtype=int_dtype),
    )


def with_exact_counts(data: PoissonData, counts: np.ndarray) -> PoissonData:
    """``data`` for reporting: ``y`` the exact nonzero counts on the host, as int64.

    :func:`prepare_data` stores the counts in the working floating dtype, which in float32
    holds integers exactly only up to 2**24; what a result reports about the data (totals,
    the observed counts, saved files) comes from this copy instead. The allocation arrays
    (the sampler's alone) are left out; ``index`` and ``mask`` are kept as they are.

    Parameters
    ----------
    data : PoissonData
        Built by :func:`prepare_data` from ``counts``.
    counts : (n,) array
        The counts given to :func:`prepare_data` (zeros included, in the same order).

    Returns
    -------
    PoissonData

    Raises
    ------
    ValueError
        If the nonzero entries of ``counts`` are not integers or do not match ``data``'s cells.
    """
    counts = np.asarray(counts)
    y = counts[counts > 0]
    exact = y.astype(np.int64)
    if exact.shape != tuple(data.y.shape) or np.any(exact != y):
        raise ValueError(
            f"counts must hold the {data.y.shape[0]} nonzero integer counts of data, got "
            f"{y.shape[0]} nonzero values"
        )
    return PoissonData(index=data.index, y=exact, tok_x=None, tok_f=None, mask=data.mask)


def count_limit() -> int:
    """Largest total count with exact integer sufficient statistics under JAX's settings."""
    return 2**53 if jax.config.jax_enable_x64 else 2**31 - 1


def weight_names(spec: PoissonTuckerSpec) -> list[tuple[str, int]]:
    """``(name, size)`` of every shrinkage weight vector of the model's parameters."""
    out = [(f"w{k}", spec.ranks[k]) for k in spec.weight_modes]
    if spec.within_between:
        R = spec.ranks[spec.pair[0]]
        out += [("eta_within", R), ("eta_between", R)]
    return out
