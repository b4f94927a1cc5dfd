"""Moments of the multilinear form and the closed-form updates of FunBaT.

For mode ``k`` the contraction ``a_n`` of the core with the other modes' factor rows gives the
messages ``Λ_n = E[τ] E[a_n a_nᵀ]``, ``η_n = E[τ] y_n E[a_n]`` (:func:`expected_contraction`,
:func:`message_sums`); the core ``q(W)`` and the noise ``q(τ)`` have Gaussian / Gamma updates
(:func:`core_update`, :func:`noise_update`). Observations are processed in blocks to bound
memory.
"""

from __future__ import annotations

import string
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bayestensor.models.funbat.state import (
    OBS_CHUNK,
    CategoricalPosterior,
    CorePosterior,
    Messages,
    NoisePosterior,
    WeightPosterior,
)


def _blocks(arrays: list, chunk: int) -> tuple[list, int]:
    """Zero-pad the leading (observation) axis to a multiple of ``chunk`` and split it."""
    n = arrays[0].shape[0]
    pad = (-n) % chunk
    out = []
    for a in arrays:
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        out.append(a.reshape((-1, chunk) + a.shape[1:]))
    return out, n


def _map_obs(fn, arrays: list, chunk: int | None):
    """``fn(*arrays)`` for a function acting row-wise on the observation axis, in blocks."""
    if chunk is None or arrays[0].shape[0] <= chunk:
        return fn(*arrays)
    blocks, n = _blocks(arrays, chunk)
    out = jax.lax.map(lambda b: fn(*b), blocks)
    return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)


def _sum_obs(fn, arrays: list, chunk: int | None):
    """``fn(*arrays)`` for a function that sums over observations, accumulated over blocks.

    Zero padding must contribute zero to the sum (true for the products used here).
    """
    if chunk is None or arrays[0].shape[0] <= chunk:
        return fn(*arrays)
    blocks, _ = _blocks(arrays, chunk)
    shapes = jax.eval_shape(fn, *[b[0] for b in blocks])
    zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

    def _add(total, block):  # accumulated block by block: one sum in memory, not every block's
        return jax.tree.map(jnp.add, total, fn(*block)), None

    return jax.lax.scan(_add, zero, blocks)[0]


def second_moment(mean: Float[Array, "n R"], cov: Float[Array, "n R R"]) -> Float[Array, "n R R"]:
    """``E[u uᵀ] = Σ + μ μᵀ``, row-wise."""
    return cov + mean[:, :, None] * mean[:, None, :]


def _core_second(core: CorePosterior) -> Array:
    """``E[W ⊗ W]`` as a ``2K``-way tensor with axes ``(r_1 … r_K, s_1 … s_K)``."""
    m = core.mean.reshape(-1)
    return (core.cov + jnp.outer(m, m)).reshape(core.mean.shape * 2)


def einsum_letters(K: int) -> tuple[str, str]:
    """Index letters for the ``r`` and ``s`` axes of a ``K``-way core (``n``, ``i`` reserved)."""
    pool = [c for c in string.ascii_letters if c not in "ni"]
    return "".join(pool[:K]), "".join(pool[K : 2 * K])


class Grouping(NamedTuple):
    """Observation indices and per-coordinate second moments for the grouped contractions.

    The Tucker second moments ``Σ E[W_r W_s] Π_j M^j_{n r_j s_j}`` cost ``P²`` per observation
    when formed observation by observation. Contracting ``E[W ⊗ W]`` with one mode's second
    moments on that mode's *unique coordinates* first (``N_j`` rows, usually far fewer than
    ``n``) and gathering the result leaves ``P² / R_j²`` per observation.

    Attributes
    ----------
    index : Int[Array, "n K"]
        Coordinate index of every observation along every mode.
    rows : list of Float[Array, "N_j R_j R_j"]
        Per mode, ``E[u uᵀ]`` at its unique coordinates.
    """

    index: Array
    rows: list


def grouping(factors: tuple, index) -> Grouping:
    """:class:`Grouping` from the factor posteriors."""
    return Grouping(index, [second_moment(f.mean, f.cov) for f in factors])


def grouped_second(
    second: Array, group: Grouping, seconds: list, others: list[int], chunk: int | None
) -> Array:
    """``Σ_{r_j, s_j, j ∈ others} E[W_r W_s] Π_{j ∈ others} M^j_{n r_j s_j}`` per observation,
    with the first of ``others`` applied on its unique coordinates (see :class:`Grouping`).

    Returns an array ``(n, R_keep…, R_keep…)`` over the modes not in ``others`` (``r`` axes then
    ``s`` axes); a scalar per observation when ``others`` holds every mode.
    """
    K = second.ndim // 2
    r, s = einsum_letters(K)
    j0, rest = others[0], others[1:]
    keep = [m for m in range(K) if m not in others]
    table_modes = sorted(keep + rest)
    t_axes = "".join(r[m] for m in table_modes) + "".join(s[m] for m in table_modes)
    out_axes = "".join(r[m] for m in keep) + "".join(s[m] for m in keep)
    table = jnp.einsum(f"{r}{s},i{r[j0]}{s[j0]}->i{t_axes}", second, group.rows[j0])
    spec = ",".join([f"n{t_axes}"] + [f"n{r[m]}{s[m]}" for m in rest]) + f"->n{out_axes}"

    def _per_obs(idx, *Ms):
        return jnp.einsum(spec, table[idx], *Ms)

    return _map_obs(_per_obs, [group.index[:, j0]] + [seconds[m] for m in rest], chunk)


def expected_mean(
    means: list[Float[Array, "n _"]],
    core: CorePosterior,
    chunk: int | None,
    skip: int | None = None,
) -> Array:
    """``E[f_n] = Σ_r m_W[r] Π_k μ^k_{n r_k}`` per row; with ``skip``: ``E[a_n]``, the mode
    ``skip`` left open (``(n, R_skip)``)."""
    K = len(means)
    r, _ = einsum_letters(K)
    modes = [j for j in range(K) if j != skip]
    out = "n" + (r[skip] if skip is not None else "")
    spec = ",".join([r] + [f"n{r[j]}" for j in modes]) + f"->{out}"
    return _map_obs(lambda *mu: jnp.einsum(spec, core.mean, *mu), [means[j] for j in modes], chunk)


def linear_sum(y: Float[Array, " n"], means: list, chunk: int | None) -> Array:
    """``Σ_n y_n ⊗_k μ^k_n``, the core's linear term (a ``K``-way tensor)."""
    r, _ = einsum_letters(len(means))
    spec = ",".join(["n"] + [f"n{c}" for c in r]) + f"->{r}"
    return _sum_obs(lambda y, *mu: jnp.einsum(spec, y, *mu), [y, *means], chunk)


def expected_contraction(
    k: int,
    means: list[Float[Array, "n _"]],
    seconds: list[Float[Array, "n _ _"]],
    core: CorePosterior | None,
    chunk: int | None = OBS_CHUNK,
    group: Grouping | None = None,
) -> tuple[Float[Array, "n Rk"], Float[Array, "n Rk Rk"]]:
    """First and second moments of ``a_n``, the core contracted with the other modes' rows.

    ``a_n[r_k] = Σ_{r_{-k}} W[r] Π_{j≠k} u^j_{r_j}(x_nj)``, so under the mean-field posterior

    .. math::

        E[a_n]_{r_k} = Σ_{r_{-k}} m_W[r] \\prod_{j≠k} μ^j_{n r_j}, \\qquad
        E[a_n a_n^\\top]_{r_k s_k} = Σ_{r_{-k}, s_{-k}} E[W_r W_s] \\prod_{j≠k} M^j_{n r_j s_j},

    with the full second moment of ``W`` (mean and covariance) and of every factor row. For CP
    (``core=None``, ``W`` the superdiagonal) these reduce to ``Π_{j≠k} μ^j_n`` and the Hadamard
    product ``⊙_{j≠k} M^j_n``; with CP weights (``W = diag(w)``, a :class:`WeightPosterior`) to
    ``m_w ⊙ Π_{j≠k} μ^j_n`` and ``E[w wᵀ] ⊙ (⊙_{j≠k} M^j_n)``. Everything is one ``einsum``
    over the observations; no per-observation Kronecker product is formed.

    Parameters
    ----------
    k : int
        The mode receiving the messages.
    means : list of Float[Array, "n R_j"]
        Per mode, the factor-row means gathered at each observation (entry ``k`` is unused).
    seconds : list of Float[Array, "n R_j R_j"]
        Per mode, the factor-row second moments ``E[u uᵀ]`` at each observation.
    core : CorePosterior, WeightPosterior or None
        ``q(W)`` for Tucker, ``q(w)`` for CP with weights, ``None`` for CP.
    chunk : int or None
        Tucker contractions run over blocks of this many observations (``None``: all at once).
    group : Grouping, optional
        Tucker only: form the second moment through the unique coordinates of the first other
        mode (same numbers, ``R_j²`` times fewer operations per observation).

    Returns
    -------
    Ea : Float[Array, "n R_k"]
        ``E[a_n]``.
    Eaa : Float[Array, "n R_k R_k"]
        ``E[a_n a_nᵀ]``.
    """
    K = len(means)
    others = [j for j in range(K) if j != k]
    if core is None or isinstance(core, WeightPosterior):
        n, R = means[k].shape
        Ea = jnp.ones((n, R), means[k].dtype)
        Eaa = jnp.ones((n, R, R), means[k].dtype)
        for j in others:
            Ea = Ea * means[j]
            Eaa = Eaa * seconds[j]
        if core is not None:  # CP weights: W = diag(w)
            Ea = Ea * core.mean
            Eaa = Eaa * weight_second(core)
        return Ea, Eaa
    if not others:  # a single mode: a_n is the core itself
        n = means[k].shape[0]
        second = _core_second(core)
        return (
            jnp.broadcast_to(core.mean, (n,) + core.mean.shape),
            jnp.broadcast_to(second, (n,) + second.shape),
        )
    r, s = einsum_letters(K)
    mean_spec = ",".join([r] + [f"n{r[j]}" for j in others]) + f"->n{r[k]}"
    sec_spec = ",".join([r + s] + [f"n{r[j]}{s[j]}" for j in others]) + f"->n{r[k]}{s[k]}"
    second = _core_second(core)
    if group is not None:
        Ea = expected_mean(means, core, chunk, skip=k)
        Eaa = grouped_second(second, group, seconds, others, chunk)
        return Ea, 0.5 * (Eaa + jnp.swapaxes(Eaa, -1, -2))

    def _moments(*rows):
        mu, M = rows[: K - 1], rows[K - 1 :]
        return jnp.einsum(mean_spec, core.mean, *mu), jnp.einsum(sec_spec, second, *M)

    rows = [means[j] for j in others] + [seconds[j] for j in others]
    Ea, Eaa = _map_obs(_moments, rows, chunk)
    return Ea, 0.5 * (Eaa + jnp.swapaxes(Eaa, -1, -2))


def expected_f(
    means: list[Float[Array, "n _"]],
    seconds: list[Float[Array, "n _ _"]],
    core: CorePosterior | None,
    chunk: int | None = OBS_CHUNK,
    group: Grouping | None = None,
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Mean-field moments ``E[f_n]`` and ``E[f_n²]`` of the noiseless value.

    .. math::

        E[f_n] = Σ_r m_W[r] \\prod_k μ^k_{n r_k}, \\qquad
        E[f_n^2] = Σ_{r,s} E[W_r W_s] \\prod_k M^k_{n r_k s_k}

    (CP: ``Σ_r Π_k μ^k_{nr}`` and ``Σ_{r,s} Π_k M^k_{n rs}``; with CP weights the terms are
    multiplied by ``m_{w,r}`` and ``E[w_r w_s]``).

    Parameters
    ----------
    means, seconds : list of arrays
        Per mode, factor-row means ``(n, R_k)`` and second moments ``(n, R_k, R_k)``.
    core : CorePosterior, WeightPosterior or None
        ``q(W)`` for Tucker, ``q(w)`` for CP with weights, ``None`` for CP.
    chunk : int or None
        Tucker contractions run over blocks of this many observations (``None``: all at once).
    group : Grouping, optional
        Tucker only: ``E[f²]`` through mode 0's unique coordinates (see :class:`Grouping`).

    Returns
    -------
    Ef, Ef2 : Float[Array, "n"]
    """
    K = len(means)
    if core is None or isinstance(core, WeightPosterior):
        prod_m = means[0]
        prod_M = seconds[0]
        for j in range(1, K):
            prod_m = prod_m * means[j]
            prod_M = prod_M * seconds[j]
        if core is not None:
            prod_m = prod_m * core.mean
            prod_M = prod_M * weight_second(core)
        return prod_m.sum(-1), prod_M.sum((-1, -2))
    r, s = einsum_letters(K)
    mean_spec = ",".join([r] + [f"n{c}" for c in r]) + "->n"
    sec_spec = ",".join([r + s] + [f"n{r[j]}{s[j]}" for j in range(K)]) + "->n"
    second = _core_second(core)
    if group is not None:
        Ef = expected_mean(means, core, chunk)
        return Ef, grouped_second(second, group, seconds, list(range(K)), chunk)

    def _moments(*rows):
        mu, M = rows[:K], rows[K:]
        return jnp.einsum(mean_spec, core.mean, *mu), jnp.einsum(sec_spec, second, *M)

    return _map_obs(_moments, list(means) + list(seconds), chunk)


def core_update(
    y: Float[Array, " n"],
    tau: Float[Array, ""],
    means: list[Float[Array, "n _"]],
    seconds: list[Float[Array, "n _ _"]],
    chunk: int | None = OBS_CHUNK,
    prior_prec: Float[Array, " P"] | None = None,
) -> CorePosterior:
    """Closed-form Gaussian ``q(vec W)`` given the factor posteriors and ``E[τ]``.

    .. math::

        Λ_W = D + E[τ] \\sum_n \\bigotimes_k M^k_n, \\qquad
        h_W = E[τ] \\sum_n y_n \\bigotimes_k μ^k_n, \\qquad
        q(\\mathrm{vec}\\,W) = \\mathcal N(Λ_W^{-1} h_W, Λ_W^{-1}).

    with ``D = I`` (the ``N(0, I)`` prior) or the diagonal ARD prior precision ``prior_prec``.
    The sums are single ``einsum`` contractions over ``n``, never a per-observation
    Kronecker product.

    Parameters
    ----------
    y : Float[Array, "n"]
        Observations.
    tau : Float[Array, ""]
        ``E[τ]``.
    means, seconds : list of arrays
        Per mode, factor-row means ``(n, R_k)`` and second moments ``(n, R_k, R_k)`` at each
        observation.
    chunk : int or None
        Accumulate the sums over blocks of this many observations (``None``: all at once).
    prior_prec : Float[Array, "P"], optional
        Prior precision of each entry of ``vec W`` (default: ones).

    Returns
    -------
    CorePosterior
    """
    G, h = core_sums(y, means, seconds, chunk)
    return core_from_sums(G, h, tau, prior_prec)


def core_sums(y, means: list, seconds: list, chunk: int | None = OBS_CHUNK):
    """The row sums of :func:`core_update`: ``(Σ_n ⊗_k M^k_n, Σ_n y_n ⊗_k μ^k_n)`` as a
    ``2K``-way and a ``K``-way tensor (additive over blocks of rows).

    Each ``M^k_n`` is symmetric, so the Gram sum's entry ``(r, s)`` reads mode ``k`` only
    through the unordered pair ``{r_k, s_k}``: the rows are summed over the packed upper
    triangles (``T_k = R_k(R_k + 1)/2`` numbers per mode, :func:`packed_pairs`), in one
    ``einsum`` per block that XLA runs as a matrix product (``Π_k T_k · n`` multiply-adds, about
    ``2^K`` times fewer than ``P² · n``), and the sum is unpacked once at the end: each product
    is formed once instead of up to ``2^K`` times (equal up to rounding). Summing per unique
    coordinate of one mode first (as :func:`grouped_second` does for the messages) needs a
    scatter-add per row, which was 3.6× slower on CPU (beijing_pm25, Tucker 6×6×6: 0.22 s
    against 0.06 s per sweep unpacked). On gridded data the sweep forms the Gram sum through
    the grid of unique coordinates instead (:mod:`~bayestensor.models.funbat.grid`)."""
    K = len(means)
    r, s = einsum_letters(K)
    G_spec = ",".join(f"n{r[j]}" for j in range(K)) + f"->{r}"
    h_spec = ",".join(["n"] + [f"n{c}" for c in r]) + f"->{r}"
    pairs = [packed_pairs(M.shape[-1]) for M in seconds]

    def _sums(y, *rows):
        packed = [M[:, i, j] for M, (i, j, _) in zip(rows[K:], pairs, strict=True)]
        return jnp.einsum(G_spec, *packed), jnp.einsum(h_spec, y, *rows[:K])

    Gp, h = _sum_obs(_sums, [y] + list(means) + list(seconds), chunk)
    # G[r_1 … r_K, s_1 … s_K] = Gp[pair(r_1, s_1), …, pair(r_K, s_K)]
    grids = np.ix_(*[tri.ravel() for _, _, tri in pairs])
    G = Gp[grids].reshape(sum(([R, R] for R in h.shape), []))
    # axes (r_1, s_1, r_2, s_2, …) -> (r_1 … r_K, s_1 … s_K)
    return G.transpose([*range(0, 2 * K, 2), *range(1, 2 * K, 2)]), h


def packed_pairs(R: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The upper triangle of an ``R × R`` symmetric matrix as ``T = R(R + 1)/2`` packed
    entries: their rows and columns ``(i, j)``, and the ``R × R`` table of each entry's packed
    position (``tri[r, s] = tri[s, r]``)."""
    i, j = np.triu_indices(R)
    tri = np.empty((R, R), np.int32)
    tri[i, j] = tri[j, i] = np.arange(len(i))
    return i, j, tri


def core_from_sums(G, h, tau, prior_prec=None) -> CorePosterior:
    """:func:`core_update` from its row sums (:func:`core_sums`)."""
    ranks = h.shape
    P = int(np.prod(ranks))
    prior = jnp.ones(P, h.dtype) if prior_prec is None else prior_prec.reshape(P)
    mean, cov = _gaussian(jnp.diag(prior) + tau * G.reshape(P, P), tau * h.reshape(P))
    return CorePosterior(mean.reshape(ranks), cov)


def _gaussian(prec: Float[Array, "P P"], h: Float[Array, " P"]):
    """Mean ``Λ⁻¹ h`` and covariance ``Λ⁻¹`` (symmetrised) from a precision ``Λ`` (symmetrised
    before its Cholesky factorisation) and a linear term ``h``."""
    chol = jnp.linalg.cholesky(0.5 * (prec + prec.T))
    cov = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(h.shape[0], dtype=h.dtype))
    mean = jax.scipy.linalg.cho_solve((chol, True), h)
    return mean, 0.5 * (cov + cov.T)


def weight_second(weights: WeightPosterior) -> Float[Array, "R R"]:
    """``E[w wᵀ] = Σ_w + m_w m_wᵀ``."""
    return weights.cov + jnp.outer(weights.mean, weights.mean)


def weight_update(
    y: Float[Array, " n"],
    tau: Float[Array, ""],
    means: list[Float[Array, "n R"]],
    seconds: list[Float[Array, "n R R"]],
    prior_prec: Float[Array, " R"],
) -> WeightPosterior:
    """Closed-form Gaussian ``q(w)`` of the CP weights given the factors and ``E[τ]``.

    With ``f_n = Σ_r w_r Π_k u^k_{nr}`` and ``w ~ N(0, diag(λ)⁻¹)``:

    .. math::

        Λ_w = \\mathrm{diag}(E[λ]) + E[τ] \\sum_n \\bigodot_k M^k_n, \\qquad
        h_w = E[τ] \\sum_n y_n \\bigodot_k μ^k_n, \\qquad
        q(w) = \\mathcal N(Λ_w^{-1} h_w, Λ_w^{-1}).

    Parameters
    ----------
    y : Float[Array, "n"]
        Observations.
    tau : Float[Array, ""]
        ``E[τ]``.
    means, seconds : list of arrays
        Per mode, factor-row means ``(n, R)`` and second moments ``(n, R, R)`` at each
        observation.
    prior_prec : Float[Array, "R"]
        ``E[λ]``.

    Returns
    -------
    WeightPosterior
    """
    return weight_from_sums(*weight_sums(y, means, seconds), tau, prior_prec)


def weight_sums(y, means: list, seconds: list):
    """The row sums of :func:`weight_update`: ``(Σ_n ⊙_k M^k_n, Σ_n y_n ⊙_k μ^k_n)``."""
    prod_m, prod_M = means[0], seconds[0]
    for j in range(1, len(means)):
        prod_m = prod_m * means[j]
        prod_M = prod_M * seconds[j]
    return prod_M.sum(0), y @ prod_m


def weight_from_sums(G, h, tau, prior_prec) -> WeightPosterior:
    """:func:`weight_update` from its row sums (:func:`weight_sums`)."""
    mean, cov = _gaussian(jnp.diag(prior_prec) + tau * G, tau * h)
    return WeightPosterior(mean, cov)


def noise_update(
    y: Float[Array, " n"],
    Ef: Float[Array, " n"],
    Ef2: Float[Array, " n"],
    a0: float,
    b0: float,
) -> NoisePosterior:
    """Closed-form ``q(τ) = Gamma(a₀ + n/2, b₀ + ½ Σ_n E[(y_n − f_n)²])``.

    ``E[(y_n − f_n)²] = y_n² − 2 y_n E[f_n] + E[f_n²]`` with the exact second moment.

    Parameters
    ----------
    y, Ef, Ef2 : Float[Array, "n"]
        Observations and the moments from :func:`expected_f`.
    a0, b0 : float
        Prior shape and rate.

    Returns
    -------
    NoisePosterior
    """
    sq = jnp.sum(y**2 - 2.0 * y * Ef + Ef2)
    shape = jnp.full((), a0 + 0.5 * y.shape[0], y.dtype)
    return NoisePosterior(shape, (b0 + 0.5 * jnp.maximum(sq, 0.0)).astype(y.dtype))


def message_sums(
    y: Float[Array, " n"],
    tau: Float[Array, ""],
    Ea: Float[Array, "n R"],
    Eaa: Float[Array, "n R R"],
    idx: Int[Array, " n"],
    num: int,
) -> Messages:
    """Per-coordinate sums of the observation messages ``Λ_n = E[τ]E[a aᵀ], η_n = E[τ] y E[a]``.

    Parameters
    ----------
    y : Float[Array, "n"]
        Observations.
    tau : Float[Array, ""]
        ``E[τ]``.
    Ea, Eaa : arrays
        Output of :func:`expected_contraction`.
    idx : Int[Array, "n"]
        Each observation's coordinate index along the mode.
    num : int
        Number of unique coordinates ``N_k``.

    Returns
    -------
    Messages
    """
    prec = jax.ops.segment_sum(tau * Eaa, idx, num_segments=num)
    shift = jax.ops.segment_sum((tau * y)[:, None] * Ea, idx, num_segments=num)
    return Messages(prec, shift)


def categorical_posterior(msg: Messages) -> CategoricalPosterior:
    """``N(0, I)`` prior times the messages, per category: ``P = (I + Λ)⁻¹``, ``μ = P η``."""
    R = msg.shift.shape[-1]
    prec = jnp.eye(R, dtype=msg.shift.dtype) + msg.prec
    chol = jnp.linalg.cholesky(0.5 * (prec + jnp.swapaxes(prec, -1, -2)))
    solve = jax.vmap(lambda c, b: jax.scipy.linalg.cho_solve((c, True), b))
    cov = solve(chol, jnp.broadcast_to(jnp.eye(R, dtype=prec.dtype), prec.shape))
    mean = solve(chol, msg.shift)
    return CategoricalPosterior(mean, 0.5 * (cov + jnp.swapaxes(cov, -1, -2)))


def gather(factors: tuple, index: Int[Array, "n K"]) -> tuple[list, list]:
    """Factor-row means and second moments at every observation."""
    means = [f.mean[index[:, k]] for k, f in enumerate(factors)]
    seconds = [
        second_moment(m, f.cov[index[:, k]])
        for k, (m, f) in enumerate(zip(means, factors, strict=True))
    ]
    return means, seconds
