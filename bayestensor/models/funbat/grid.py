"""Tucker second-moment sums over the grid of unique coordinates instead of over the rows.

Every Tucker sum over the observations that holds second moments — the core's Gram sum
``Σ_n ⊗_k M^k_n`` and, for mode ``k``, the message precisions
``Λ_k[i] = E[τ] Σ_{n: i_k(n) = i} Σ_{r_{-k}, s_{-k}} E[W_r W_s] Π_{j≠k} M^j_{n r_j s_j}`` — reads
each mode's factor rows only through the observation's coordinate index ``i_j(n)``. Formed row
by row they cost ``P²`` (``P = Π_k R_k``) per observation, and gathering the per-row
intermediates is memory-bound (us_temp, 44,755 rows, Tucker 8×8×8: 0.3 s for the Gram sum and
0.2 s for each mode's messages on 2 cores).

Here one mode ``c`` (the largest besides the kept one) is summed row by row into the dense grid
of the other modes' coordinates: ``S[i_{-c}] = Σ_{n → i_{-c}} M^c_n``, an ``R_c²`` scatter-add per
row. The other modes are then contracted on their unique coordinates, one at a time, largest
first. The sums are the same (in exact arithmetic); the work is ``n R_c²`` plus a few dense
contractions of the grid (us_temp at 8×8×8: 2.4 ms for the Gram sum, 1.1 ms for a mode's
message precisions; a whole default fit without its local stage went from 2.9 s to 0.9 s).
The noise update then needs no per-row ``E[f_n²]`` either (:func:`grid_noise`).

This pays when the grid is no larger than the data (``Π_{j≠c} N_j ≤ n``), as on gridded data
— stations × months × years — and is skipped on scattered coordinates (:func:`plan` returns
``None``; the row-wise forms of :mod:`~bayestensor.models.funbat.moments` are used).
"""

from __future__ import annotations

import string

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bayestensor.models.funbat.moments import (
    Grouping,
    _core_second,
    einsum_letters,
    expected_contraction,
    expected_mean,
    message_sums,
)
from bayestensor.models.funbat.state import CorePosterior, Messages, NoisePosterior

#: The grid is used when the dense grid of every mode but the scattered one has at most this
#: many cells per observation (beyond, the row-wise form does less work).
GRID_CELLS_PER_ROW = 1.0
#: ... and when no intermediate of its contractions holds more than this many numbers
#: (512 MB in float32).
GRID_MAX_NUMBERS = 2**27


def _letters(K: int) -> tuple[str, str, str]:
    """Rank letters ``r``, ``s`` (as :func:`~.moments.einsum_letters`) and grid letters."""
    r, s = einsum_letters(K)
    pool = [c for c in string.ascii_letters if c not in "ni" + r + s]
    return r, s, "".join(pool[:K])


def _order(sizes, c: int, keep: int | None) -> list[int]:
    """The grid modes contracted, largest first (the kept mode and ``c`` are not)."""
    return sorted((j for j in range(len(sizes)) if j not in (c, keep)), key=lambda j: -sizes[j])


def plan(sizes: tuple[int, ...], ranks: tuple[int, ...], n: int, keep: int | None = None):
    """The mode summed row by row, or ``None`` when the grid does not pay (see the module
    docstring); ``keep``: the mode whose coordinates stay (messages) or ``None`` (Gram sum)."""
    K = len(sizes)
    if K < 2:
        return None
    c = max((j for j in range(K) if j != keep), key=lambda j: sizes[j])
    cells = int(np.prod([sizes[j] for j in range(K) if j != c]))
    if cells > GRID_CELLS_PER_ROW * n:
        return None
    numbers = peak = cells * ranks[c] ** 2
    for j in _order(sizes, c, keep):
        numbers = numbers // sizes[j] * ranks[j] ** 2
        peak = max(peak, numbers)
    return c if peak <= GRID_MAX_NUMBERS else None


def grid_second(
    group: Grouping,
    sizes: tuple[int, ...],
    c: int,
    keep: int | None = None,
    weight: Float[Array, " n"] | None = None,
) -> Array:
    """``Σ_n w_n ⊗_{j≠keep} M^j_{i_j(n)}``, per coordinate of ``keep`` when given.

    Parameters
    ----------
    group : Grouping
        Observation indices ``(n, K)`` and each mode's ``E[u uᵀ]`` at its unique coordinates.
    sizes : tuple of int
        Number of unique coordinates per mode.
    c : int
        The mode summed row by row (from :func:`plan`).
    keep : int, optional
        The mode whose coordinates are kept (its second moments are not multiplied in).
    weight : Float[Array, "n"], optional
        Per-row weight (the 0/1 row mask of sharded fits).

    Returns
    -------
    Array
        Axes ``(i_keep, r_j …, s_j …)`` over ``j ≠ keep`` in mode order; without ``keep`` the
        ``2K``-way Gram sum ``(r_1 … r_K, s_1 … s_K)``.
    """
    K = len(sizes)
    r, s, g = _letters(K)
    index, rows = group.index, group.rows
    dense = [j for j in range(K) if j != c]
    flat = index[:, dense[0]]
    for j in dense[1:]:
        flat = flat * sizes[j] + index[:, j]
    per_row = rows[c][index[:, c]]
    if weight is not None:
        per_row = per_row * weight[:, None, None]
    Rc = per_row.shape[-1]
    cells = int(np.prod([sizes[j] for j in dense]))
    S = jax.ops.segment_sum(per_row, flat, num_segments=cells)
    S = S.reshape([sizes[j] for j in dense] + [Rc, Rc])
    axes = "".join(g[j] for j in dense) + r[c] + s[c]
    for j in _order(sizes, c, keep):
        out = axes.replace(g[j], "") + r[j] + s[j]
        S = jnp.einsum(f"{axes},{g[j]}{r[j]}{s[j]}->{out}", S, rows[j])
        axes = out
    free = [j for j in range(K) if j != keep]
    target = "".join(r[j] for j in free) + "".join(s[j] for j in free)
    if keep is not None:
        target = g[keep] + target
    return jnp.einsum(f"{axes}->{target}", S)


def grid_message_prec(
    k: int,
    second: Array,
    group: Grouping,
    sizes: tuple[int, ...],
    c: int,
    weight: Float[Array, " n"] | None = None,
) -> Float[Array, "N R R"]:
    """``Σ_{n: i_k(n) = i} E[a_n a_nᵀ]`` per coordinate ``i`` of mode ``k`` (the message
    precision before ``E[τ]``), from ``E[W ⊗ W]`` (``second``, axes ``(r…, s…)``) through
    :func:`grid_second`; symmetrised."""
    K = len(sizes)
    r, s, g = _letters(K)
    Z = grid_second(group, sizes, c, keep=k, weight=weight)
    others = [j for j in range(K) if j != k]
    z_axes = g[k] + "".join(r[j] for j in others) + "".join(s[j] for j in others)
    prec = jnp.einsum(f"{r}{s},{z_axes}->{g[k]}{r[k]}{s[k]}", second, Z)
    return 0.5 * (prec + jnp.swapaxes(prec, -1, -2))


def mode_messages(
    k: int,
    y: Float[Array, " n"],
    tau: Float[Array, ""],
    means: list,
    seconds: list,
    core,
    index: Int[Array, "n K"],
    group: Grouping | None,
    sizes: tuple[int, ...],
    chunk: int | None,
    mask: Float[Array, " n"] | None = None,
) -> Messages:
    """Mode ``k``'s message sums: through the grid (:func:`grid_message_prec`) where
    :func:`plan` allows (Tucker), else row by row (:func:`~.moments.expected_contraction`,
    :func:`~.moments.message_sums`); ``mask``: 0/1 per row (padding rows send nothing)."""
    c = None
    if group is not None and isinstance(core, CorePosterior):
        c = plan(sizes, core.mean.shape, y.shape[0], keep=k)
    if c is None:
        Ea, Eaa = expected_contraction(k, means, seconds, core, chunk, group)
        if mask is not None:
            Ea, Eaa = Ea * mask[:, None], Eaa * mask[:, None, None]
        return message_sums(y, tau, Ea, Eaa, index[:, k], sizes[k])
    Ea = expected_mean(means, core, chunk, skip=k)
    w = tau * y if mask is None else tau * y * mask
    shift = jax.ops.segment_sum(w[:, None] * Ea, index[:, k], num_segments=sizes[k])
    prec = grid_message_prec(k, _core_second(core), group, sizes, c, mask)
    return Messages(tau * prec, shift)


def grid_noise(
    y: Float[Array, " n"],
    Ef: Float[Array, " n"],
    core: CorePosterior,
    G: Array,
    factors: tuple,
    group: Grouping,
    sizes: tuple[int, ...],
    c: int,
    a0: float,
    b0: float,
    mask: Float[Array, " n"] | None = None,
) -> NoisePosterior:
    """``q(τ)`` as :func:`~.moments.noise_update`, with ``Σ_n Var[f_n]`` from grid sums.

    ``Σ_n E[(y_n − f_n)²] = Σ_n (y_n − E f_n)² + Σ_n Var[f_n]`` and, with ``M = C + μμᵀ`` per
    mode, ``Var[f_n] = ⟨Σ_W, ⊗_k M^k_n⟩ + Σ_{S ≠ ∅} m_Wᵀ (⊗_{k∈S} C^k_n ⊗_{k∉S} μ^k_n μ^kᵀ_n) m_W``:
    every term is non-negative (no cancellation in float32), the first from the core's Gram sum
    ``G`` and the others from one grid sum per non-empty subset ``S`` of the modes."""
    K = len(sizes)
    r, s = einsum_letters(K)
    w = jnp.ones_like(y) if mask is None else mask
    P = int(np.prod(core.mean.shape))
    var = jnp.sum(core.cov * G.reshape(P, P))
    covs = [f.cov for f in factors]
    outers = [f.mean[:, :, None] * f.mean[:, None, :] for f in factors]
    for S in range(1, 2**K):
        rows = [covs[j] if S >> j & 1 else outers[j] for j in range(K)]
        GS = grid_second(Grouping(group.index, rows), sizes, c, weight=mask)
        var = var + jnp.einsum(f"{r},{r}{s},{s}->", core.mean, GS, core.mean)
    sq = jnp.sum(w * (y - Ef) ** 2) + jnp.maximum(var, 0.0)
    shape = (a0 + 0.5 * jnp.sum(w)).astype(y.dtype)
    return NoisePosterior(shape, (b0 + 0.5 * sq).astype(y.dtype))
