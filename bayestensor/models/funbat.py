"""Functional Bayesian Tucker / CP decomposition (FunBaT): model and fast inference.

The model (see ``DESIGN.md`` §1) for an observation ``y_n`` at coordinates
``(x_n1, …, x_nK)`` is

.. math::

    y_n = \\sum_{r_1 … r_K} W_{r_1 … r_K} \\prod_k u^k_{r_k}(x_{nk}) + ε_n,
    \\qquad ε_n \\sim \\mathcal N(0, τ^{-1}), \\qquad τ \\sim \\mathrm{Gamma}(a_0, b_0),

with ``vec W ~ N(0, I)`` (Tucker, ranks ``R_k`` per mode) or ``W`` the fixed superdiagonal of ones
(CP, all ``R_k = R``). On a continuous mode the ``R_k`` functions ``u^k_r`` are iid
``GP(0, Matérn_ν(ℓ_k, σ²_k))``; on a categorical mode the factor rows are iid ``N(0, I_{R_k})``.

Inference is the mean-field conditional EP / variational scheme of FunBaT,
``q(W) q(τ) Π_k q(U^k)``, with ``q(U^k)`` Gaussian over all ``R_k`` functions of mode ``k``. For
mode ``k`` write ``f_n = a_nᵀ u^k(x_nk)`` with ``a_n`` the core contracted with the other modes'
factor rows at observation ``n``. Each observation sends the Gaussian message

.. math::

    Λ_n = E[τ]\\, E[a_n a_n^\\top], \\qquad η_n = E[τ]\\, y_n\\, E[a_n]

to ``u^k(x_nk)``; messages sharing a coordinate are summed and damped in natural parameters, and
the posterior of ``u^k`` follows from one Kalman filter + RTS smoother pass over the sorted unique
coordinates (:func:`bayestensor.ssm.smooth`) or, for a categorical mode, a closed form per
category. The core and the noise precision then have closed-form Gaussian / Gamma updates, and
the kernel hyperparameters take a pattern-search step on the log marginal likelihood of the
messages (the part of the evidence lower bound that depends on them; see :func:`_hyper_search`).
One sweep is one compiled function; its cost is linear in the number of observations and of
unique coordinates.

Notation
--------
=================  ===========================================================================
``K``              number of modes
``R`` / ``R_k``    rank(s); ``P = Π_k R_k`` the core size (Tucker)
``N_k``            number of unique coordinates (categories) of mode ``k``
``μ, Σ``           factor-row posterior mean ``(N_k, R_k)`` and covariance ``(N_k, R_k, R_k)``
``M``              factor-row second moment ``E[u uᵀ] = Σ + μ μᵀ``
``m_W, S_W``       core mean ``(R_1, …, R_K)`` and second moment ``E[vec W vec Wᵀ]``
``Λ, η``           message precision and shift (natural parameters)
=================  ===========================================================================

References
----------
.. [1] S. Fang, X. Yu, Z. Wang, S. Li, R. M. Kirby and S. Zhe, "Functional Bayesian Tucker
   Decomposition for Continuous-indexed Tensor Data", ICLR 2024.
.. [2] T. G. Kolda and B. W. Bader, "Tensor Decompositions and Applications", SIAM Review 2009.
"""

from __future__ import annotations

import string
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bayestensor.data import CONTINUOUS, Encoded, NewEncoded
from bayestensor.kernels import check_kernel_name, matern_cov
from bayestensor.ssm import (
    Location,
    Posterior,
    gaps,
    interpolate,
    kalman_filter,
    locate,
    rts_smoother,
    smooth,
    stacked_matern,
)

__all__ = [
    "CategoricalPosterior",
    "CorePosterior",
    "FunBaT",
    "FunBaTConfig",
    "FunBaTState",
    "Messages",
    "NoisePosterior",
    "core_update",
    "expected_contraction",
    "expected_f",
    "funbat_model",
    "init_state",
    "message_sums",
    "noise_update",
    "predict_moments",
    "spectral_init",
    "sweep",
]

_MODELS = ("tucker", "cp")

#: Default number of observations per block in the Tucker contractions (bounds the memory of
#: the ``einsum`` intermediates, about ``chunk · P² / R_min²`` numbers).
OBS_CHUNK = 4096
#: With ``chunk="auto"``, blocks hold at most this many ``chunk · P²`` numbers (128 MB in
#: float64); smaller problems run in one block, which compiles and runs faster.
AUTO_CHUNK_BUDGET = 2**24


def auto_chunk(n: int, ranks: tuple[int, ...], model: str) -> int | None:
    """Block size for the Tucker contractions: ``None`` (one block) when ``n · P²`` fits in
    :data:`AUTO_CHUNK_BUDGET`, else the largest block that does (at least 64 rows)."""
    if model != "tucker":
        return None
    P2 = int(np.prod(ranks)) ** 2
    if n * P2 <= AUTO_CHUNK_BUDGET:
        return None
    return max(64, AUTO_CHUNK_BUDGET // P2)


# --------------------------------------------------------------------------------------------
# pytrees
# --------------------------------------------------------------------------------------------


class Messages(NamedTuple):
    """Summed (and damped) messages to one mode, in natural parameters.

    Attributes
    ----------
    prec : Float[Array, "N R R"]
        Λ_t = Σ_{n: x_nk = x_t} Λ_n.
    shift : Float[Array, "N R"]
        η_t = Σ_{n: x_nk = x_t} η_n.
    """

    prec: Float[Array, "N R R"]
    shift: Float[Array, "N R"]


class CategoricalPosterior(NamedTuple):
    """Posterior of the factor rows of a categorical mode (independent per category).

    Attributes
    ----------
    mean : Float[Array, "N R"]
        ``(I + Λ_t)⁻¹ η_t``.
    cov : Float[Array, "N R R"]
        ``(I + Λ_t)⁻¹``.
    """

    mean: Float[Array, "N R"]
    cov: Float[Array, "N R R"]


class CorePosterior(NamedTuple):
    """Gaussian posterior of the Tucker core ``vec W`` (C order of ``W``'s axes).

    Attributes
    ----------
    mean : Float[Array, "*ranks"]
        ``m_W`` with shape ``(R_1, …, R_K)``.
    cov : Float[Array, "P P"]
        Covariance of ``vec W``.
    """

    mean: Array
    cov: Float[Array, "P P"]


class NoisePosterior(NamedTuple):
    """Gamma posterior ``q(τ) = Gamma(shape, rate)`` of the noise precision.

    Attributes
    ----------
    shape, rate : Float[Array, ""]
        ``E[τ] = shape / rate``.
    """

    shape: Float[Array, ""]
    rate: Float[Array, ""]

    @property
    def mean(self) -> Float[Array, ""]:
        """``E[τ]``."""
        return self.shape / self.rate


class FunBaTConfig(NamedTuple):
    """Static (hashable) settings of a fit; passed to the compiled sweep as a static argument.

    Attributes
    ----------
    model : {"tucker", "cp"}
    ranks : tuple of int
        ``R_k`` per mode.
    sizes : tuple of int
        ``N_k`` per mode.
    continuous : tuple of bool
        Whether each mode is continuous (GP) or categorical.
    kernel : str
        Matérn kernel name.
    damping : float
        ρ in ``new = ρ·new + (1 − ρ)·old`` (natural parameters).
    learn_hyper : bool
        Whether to update ℓ_k, σ²_k.
    hyper_steps : int
        Pattern-search iterations per mode per sweep (see :func:`_hyper_search`).
    hyper_step : float
        Initial step of the search on ``log ℓ, log σ²``.
    a0, b0 : float
        Gamma prior of τ.
    chunk : int or None
        Observations per block in the Tucker contractions (see :func:`core_update`).
    """

    model: str
    ranks: tuple[int, ...]
    sizes: tuple[int, ...]
    continuous: tuple[bool, ...]
    kernel: str = "matern32"
    damping: float = 1.0
    learn_hyper: bool = True
    hyper_steps: int = 1
    hyper_step: float = 1.0
    a0: float = 1e-3
    b0: float = 1e-3
    chunk: int | None = OBS_CHUNK


class FunBaTState(NamedTuple):
    """Everything the sweep updates (a pytree).

    Attributes
    ----------
    factors : tuple
        Per mode, :class:`bayestensor.ssm.Posterior` (continuous) or
        :class:`CategoricalPosterior`; both have ``.mean (N, R)`` and ``.cov (N, R, R)``.
    messages : tuple of Messages
        Per mode, the damped summed messages of the last update.
    core : CorePosterior or None
        ``q(W)`` (Tucker); ``None`` for CP.
    noise : NoisePosterior
        ``q(τ)``.
    log_hyper : tuple
        Per mode, ``[log ℓ_k, log σ²_k]`` (continuous) or ``None`` (categorical).
    opt_state : tuple
        Per mode, the current search steps ``[δ_ℓ, δ_σ²]`` of ``log_hyper[k]`` or ``None``.
    """

    factors: tuple
    messages: tuple
    core: CorePosterior | None
    noise: NoisePosterior
    log_hyper: tuple
    opt_state: tuple


# --------------------------------------------------------------------------------------------
# moments of the multilinear form
# --------------------------------------------------------------------------------------------


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
    return jax.tree.map(lambda o: o.sum(0), jax.lax.map(lambda b: fn(*b), blocks))


def _second(mean: Float[Array, "n R"], cov: Float[Array, "n R R"]) -> Float[Array, "n R R"]:
    """``E[u uᵀ] = Σ + μ μᵀ``, row-wise."""
    return cov + mean[:, :, None] * mean[:, None, :]


def _core_second(core: CorePosterior) -> Array:
    """``E[W ⊗ W]`` as a ``2K``-way tensor with axes ``(r_1 … r_K, s_1 … s_K)``."""
    m = core.mean.reshape(-1)
    return (core.cov + jnp.outer(m, m)).reshape(core.mean.shape * 2)


def _letters(K: int) -> tuple[str, str]:
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


def _grouping(factors: tuple, index) -> Grouping:
    """:class:`Grouping` from the factor posteriors."""
    return Grouping(index, [_second(f.mean, f.cov) for f in factors])


def _grouped_second(
    second: Array, group: Grouping, seconds: list, others: list[int], chunk: int | None
) -> Array:
    """``Σ_{r_j, s_j, j ∈ others} E[W_r W_s] Π_{j ∈ others} M^j_{n r_j s_j}`` per observation,
    with the first of ``others`` applied on its unique coordinates (see :class:`Grouping`).

    Returns an array ``(n, R_keep…, R_keep…)`` over the modes not in ``others`` (``r`` axes then
    ``s`` axes); a scalar per observation when ``others`` holds every mode.
    """
    K = second.ndim // 2
    r, s = _letters(K)
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


def _grouped_gram(group: Grouping, seconds: list, chunk: int | None) -> Array:
    """``Σ_n ⊗_k M^k_n`` as a ``2K``-way tensor, summing the other modes' outer products per
    unique coordinate of mode 0 before applying mode 0's second moments."""
    K = len(seconds)
    r, s = _letters(K)
    N0 = group.rows[0].shape[0]
    rest_axes = "".join(r[1:]) + "".join(s[1:])
    outer = ",".join(f"n{r[m]}{s[m]}" for m in range(1, K)) + f"->n{rest_axes}"

    def _per_block(idx, *Ms):
        return jax.ops.segment_sum(jnp.einsum(outer, *Ms), idx, num_segments=N0)

    sums = _sum_obs(_per_block, [group.index[:, 0]] + list(seconds[1:]), chunk)
    return jnp.einsum(f"i{r[0]}{s[0]},i{rest_axes}->{r}{s}", group.rows[0], sums)


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
    product ``⊙_{j≠k} M^j_n``. Everything is one ``einsum`` over the observations; no
    per-observation Kronecker product is formed.

    Parameters
    ----------
    k : int
        The mode receiving the messages.
    means : list of Float[Array, "n R_j"]
        Per mode, the factor-row means gathered at each observation (entry ``k`` is unused).
    seconds : list of Float[Array, "n R_j R_j"]
        Per mode, the factor-row second moments ``E[u uᵀ]`` at each observation.
    core : CorePosterior or None
        ``q(W)`` for Tucker, ``None`` for CP.
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
    if core is None:
        n, R = means[k].shape
        Ea = jnp.ones((n, R), means[k].dtype)
        Eaa = jnp.ones((n, R, R), means[k].dtype)
        for j in others:
            Ea = Ea * means[j]
            Eaa = Eaa * seconds[j]
        return Ea, Eaa
    if not others:  # a single mode: a_n is the core itself
        n = means[k].shape[0]
        second = _core_second(core)
        return (
            jnp.broadcast_to(core.mean, (n,) + core.mean.shape),
            jnp.broadcast_to(second, (n,) + second.shape),
        )
    r, s = _letters(K)
    mean_spec = ",".join([r] + [f"n{r[j]}" for j in others]) + f"->n{r[k]}"
    sec_spec = ",".join([r + s] + [f"n{r[j]}{s[j]}" for j in others]) + f"->n{r[k]}{s[k]}"
    second = _core_second(core)
    if group is not None:
        Ea = _map_obs(
            lambda *mu: jnp.einsum(mean_spec, core.mean, *mu), [means[j] for j in others], chunk
        )
        Eaa = _grouped_second(second, group, seconds, others, chunk)
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

    (CP: ``Σ_r Π_k μ^k_{nr}`` and ``Σ_{r,s} Π_k M^k_{n rs}``).

    Parameters
    ----------
    means, seconds : list of arrays
        Per mode, factor-row means ``(n, R_k)`` and second moments ``(n, R_k, R_k)``.
    core : CorePosterior or None
        ``q(W)`` for Tucker, ``None`` for CP.
    chunk : int or None
        Tucker contractions run over blocks of this many observations (``None``: all at once).
    group : Grouping, optional
        Tucker only: ``E[f²]`` through mode 0's unique coordinates (see :class:`Grouping`).

    Returns
    -------
    Ef, Ef2 : Float[Array, "n"]
    """
    K = len(means)
    if core is None:
        prod_m = means[0]
        prod_M = seconds[0]
        for j in range(1, K):
            prod_m = prod_m * means[j]
            prod_M = prod_M * seconds[j]
        return prod_m.sum(-1), prod_M.sum((-1, -2))
    r, s = _letters(K)
    mean_spec = ",".join([r] + [f"n{c}" for c in r]) + "->n"
    sec_spec = ",".join([r + s] + [f"n{r[j]}{s[j]}" for j in range(K)]) + "->n"
    second = _core_second(core)
    if group is not None:
        Ef = _map_obs(lambda *mu: jnp.einsum(mean_spec, core.mean, *mu), list(means), chunk)
        return Ef, _grouped_second(second, group, seconds, list(range(K)), chunk)

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
    group: Grouping | None = None,
) -> CorePosterior:
    """Closed-form Gaussian ``q(vec W)`` given the factor posteriors and ``E[τ]``.

    .. math::

        Λ_W = I + E[τ] \\sum_n \\bigotimes_k M^k_n, \\qquad
        h_W = E[τ] \\sum_n y_n \\bigotimes_k μ^k_n, \\qquad
        q(\\mathrm{vec}\\,W) = \\mathcal N(Λ_W^{-1} h_W, Λ_W^{-1}).

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
    group : Grouping, optional
        Sum the Gram tensor per unique coordinate of mode 0 first (see :class:`Grouping`).

    Returns
    -------
    CorePosterior
    """
    K = len(means)
    ranks = tuple(m.shape[-1] for m in means)
    P = int(np.prod(ranks))
    r, s = _letters(K)
    G_spec = ",".join(f"n{r[j]}{s[j]}" for j in range(K)) + f"->{r}{s}"
    h_spec = ",".join(["n"] + [f"n{c}" for c in r]) + f"->{r}"

    def _sums(y, *rows):
        return jnp.einsum(G_spec, *rows[K:]), jnp.einsum(h_spec, y, *rows[:K])

    if group is None or K == 1:
        G, h = _sum_obs(_sums, [y] + list(means) + list(seconds), chunk)
    else:
        G = _grouped_gram(group, seconds, chunk)
        h = _sum_obs(lambda yy, *mu: jnp.einsum(h_spec, yy, *mu), [y] + list(means), chunk)
    prec = jnp.eye(P, dtype=y.dtype) + tau * G.reshape(P, P)
    prec = 0.5 * (prec + prec.T)
    chol = jnp.linalg.cholesky(prec)
    cov = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(P, dtype=y.dtype))
    mean = jax.scipy.linalg.cho_solve((chol, True), tau * h.reshape(P))
    return CorePosterior(mean.reshape(ranks), 0.5 * (cov + cov.T))


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


def _categorical_posterior(msg: Messages) -> CategoricalPosterior:
    """``N(0, I)`` prior times the messages, per category: ``P = (I + Λ)⁻¹``, ``μ = P η``."""
    R = msg.shift.shape[-1]
    prec = jnp.eye(R, dtype=msg.shift.dtype) + msg.prec
    chol = jnp.linalg.cholesky(0.5 * (prec + jnp.swapaxes(prec, -1, -2)))
    solve = jax.vmap(lambda c, b: jax.scipy.linalg.cho_solve((c, True), b))
    cov = solve(chol, jnp.broadcast_to(jnp.eye(R, dtype=prec.dtype), prec.shape))
    mean = solve(chol, msg.shift)
    return CategoricalPosterior(mean, 0.5 * (cov + jnp.swapaxes(cov, -1, -2)))


def _gather(factors: tuple, index: Int[Array, "n K"]) -> tuple[list, list]:
    """Factor-row means and second moments at every observation."""
    means = [f.mean[index[:, k]] for k, f in enumerate(factors)]
    seconds = [
        _second(m, f.cov[index[:, k]]) for k, (m, f) in enumerate(zip(means, factors, strict=True))
    ]
    return means, seconds


# --------------------------------------------------------------------------------------------
# one sweep
# --------------------------------------------------------------------------------------------


#: Offsets (in units of the current step) of the candidate grid of the hyperparameter search.
_SEARCH_OFFSETS = (-1.0, 0.0, 1.0)
#: Bounds on the per-parameter step of the search (natural-log units).
_SEARCH_STEP_BOUNDS = (1e-7, 4.0)


def _hyper_search(cfg: FunBaTConfig, R: int, dt, msg: Messages, theta, step):
    """Pattern search on ``θ = [log ℓ, log σ²]`` maximising ``log Z`` of the current messages,
    then the smoothed posterior at the chosen ``θ``.

    Each iteration evaluates the Kalman evidence on the 3 × 3 grid ``θ + (i δ₁, j δ₂)``,
    ``i, j ∈ {−1, 0, 1}`` (one vmapped forward filter; no gradients through the scan) and moves
    to the best point if it beats the centre. Per parameter, the step ``δ`` halves when the best
    point's offset along it is 0 and doubles when it is ±1 (the optimum is probably further
    out), so it crosses orders of magnitude in a few sweeps and then refines to ``δ → 0``.
    Candidates outside an admissible box (``ℓ`` within [min gap / 20, 20 × span], ``σ²`` within
    1e±6) are not taken. The evidence of the current messages never decreases, the search is
    as cheap to compile as a forward filter, and the last iteration's filter pass at the chosen
    ``θ`` is reused by the RTS smoother (no separate filter).

    Returns
    -------
    posterior : Posterior
        ``q(U^k)`` at the new hyperparameters.
    theta, step : Float[Array, "2"]
    """
    offsets = jnp.asarray(_SEARCH_OFFSETS, theta.dtype)
    n = offsets.shape[0]
    grid_i, grid_j = jnp.meshgrid(offsets, offsets, indexing="ij")
    pairs = jnp.stack([grid_i.ravel(), grid_j.ravel()], axis=1)  # (n², 2)
    centre = (n * n) // 2

    def _sde(th):
        return stacked_matern(cfg.kernel, jnp.exp(th[0]), jnp.exp(th[1]), R)

    def _filter(th):
        return kalman_filter(_sde(th), dt, msg.prec, msg.shift)

    # admissible box: ℓ between a twentieth of the smallest gap and twenty spans (beyond
    # either end the evidence is flat to rounding and the search would drift), σ² in 1e±6
    positive = jnp.where(dt > 0, dt, jnp.inf)
    min_gap = jnp.where(jnp.isfinite(jnp.min(positive)), jnp.min(positive), 1.0)
    span = jnp.maximum(jnp.sum(dt), min_gap)
    lower = jnp.stack([jnp.log(min_gap / 20.0), jnp.asarray(-6.0 * np.log(10.0), dt.dtype)])
    upper = jnp.stack([jnp.log(20.0 * span), jnp.asarray(6.0 * np.log(10.0), dt.dtype)])

    def _choose(th, st, values):
        candidates = th + pairs * st
        inside = jnp.all((candidates >= lower) & (candidates <= upper), axis=1)
        values = jnp.where(jnp.isfinite(values) & (inside | (pairs == 0).all(1)), values, -jnp.inf)
        best = jnp.argmax(values)
        best = jnp.where(values[best] > values[centre], best, centre)
        moved = th + pairs[best] * st
        grow = jnp.where(pairs[best] == 0.0, 0.5, 2.0)
        return best, moved, jnp.clip(grow * st, *_SEARCH_STEP_BOUNDS)

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
) -> tuple[FunBaTState, Float[Array, " n"]]:
    """One full update: every mode (messages → hyperparameters → posterior), core, noise.

    For each mode ``k`` in turn: gather the other modes' moments, form the messages
    (:func:`expected_contraction`, :func:`message_sums`), damp them,
    ``msg = ρ·new + (1 − ρ)·old``, take ``hyper_steps`` pattern-search steps on the hyperparameters
    (continuous modes, if learned) and recompute ``q(U^k)`` by Kalman smoothing (continuous) or
    the per-category closed form. Then update ``q(W)`` (Tucker; :func:`core_update`) and ``q(τ)``
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
    rho = cfg.damping
    for k in range(K):
        means, seconds = _gather(tuple(factors), index)
        group = _grouping(tuple(factors), index) if cfg.model == "tucker" else None
        Ea, Eaa = expected_contraction(k, means, seconds, state.core, cfg.chunk, group)
        new = message_sums(y, tau, Ea, Eaa, index[:, k], cfg.sizes[k])
        msg = jax.tree.map(lambda a, b: rho * a + (1.0 - rho) * b, new, messages[k])
        messages[k] = msg
        if cfg.continuous[k]:
            if cfg.learn_hyper:
                factors[k], log_hyper[k], opt_state[k] = _hyper_search(
                    cfg, cfg.ranks[k], dts[k], msg, log_hyper[k], opt_state[k]
                )
            else:
                ell, var = jnp.exp(log_hyper[k][0]), jnp.exp(log_hyper[k][1])
                sde = stacked_matern(cfg.kernel, ell, var, cfg.ranks[k])
                factors[k] = smooth(sde, dts[k], msg.prec, msg.shift)
        else:
            factors[k] = _categorical_posterior(msg)
    means, seconds = _gather(tuple(factors), index)
    group = _grouping(tuple(factors), index) if cfg.model == "tucker" else None
    core = state.core
    if cfg.model == "tucker":
        core = core_update(y, tau, means, seconds, cfg.chunk, group)
    Ef, Ef2 = expected_f(means, seconds, core, cfg.chunk, group)
    noise = noise_update(y, Ef, Ef2, cfg.a0, cfg.b0)
    new_state = FunBaTState(
        tuple(factors), tuple(messages), core, noise, tuple(log_hyper), tuple(opt_state)
    )
    return new_state, Ef


_sweep_jit = jax.jit(sweep, static_argnames=("cfg",))


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
) -> FunBaTState:
    """Initial posterior: random factor and core means, shrunken prior covariances.

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
            factors.append(_prior_posterior(cfg, dts[k], mean, cov_scale * init_variances[k]))
        else:
            cov = jnp.broadcast_to(cov_scale * jnp.eye(R, dtype=dtype), (N, R, R))
            factors.append(CategoricalPosterior(mean, cov))
        messages.append(Messages(jnp.zeros((N, R, R), dtype), jnp.zeros((N, R), dtype)))
        if cfg.continuous[k]:
            theta = jnp.log(
                jnp.stack([jnp.asarray(init_lengthscales[k]), jnp.asarray(init_variances[k])])
            ).astype(dtype)
            log_hyper.append(theta)
            opt_state.append(jnp.full((2,), cfg.hyper_step, dtype))
        else:
            log_hyper.append(None)
            opt_state.append(None)
    core = None
    if cfg.model == "tucker":
        P = int(np.prod(cfg.ranks))
        core_mean = jax.random.normal(keys[K], cfg.ranks, dtype)
        core = CorePosterior(core_mean, cov_scale * jnp.eye(P, dtype=dtype))
    # E[τ] = 1 / noise_sd² on z-scored values until the first update
    noise = NoisePosterior(jnp.full((), 1.0, dtype), jnp.full((), noise_sd**2, dtype))
    return FunBaTState(
        tuple(factors), tuple(messages), core, noise, tuple(log_hyper), tuple(opt_state)
    )


def _initial_state(
    cfg, dts, ell0, var0, key, mean_scale, cov_scale, init_means, noise_sd, index, y
):
    """:func:`init_state`, then (Tucker with given initial means) the core that best explains
    the data given the initial factors; one compiled call instead of many small ones."""
    state = init_state(cfg, dts, ell0, var0, key, mean_scale, cov_scale, init_means, noise_sd)
    if init_means is not None and cfg.model == "tucker":
        means, seconds = _gather(state.factors, index)
        group = _grouping(state.factors, index)
        core = core_update(y, state.noise.mean, means, seconds, cfg.chunk, group)
        state = state._replace(core=core)
    return state


_initial_state_jit = jax.jit(_initial_state, static_argnames=("cfg",))


def _prior_posterior(cfg: FunBaTConfig, dt, mean: Float[Array, "N R"], cov_scale) -> Posterior:
    """Smoother-shaped posterior of a continuous mode with ``mean`` and covariance ``cov_scale I``.

    The first sweep reads only ``mean`` and ``cov``; the other fields are zeros with the shapes
    :func:`bayestensor.ssm.smooth` returns (found by ``jax.eval_shape``, nothing is compiled), so
    every sweep sees the same pytree layout.
    """
    N, R = mean.shape
    sde = stacked_matern(cfg.kernel, jnp.ones((), mean.dtype), jnp.ones((), mean.dtype), R)
    zeros = Messages(jnp.zeros((N, R, R), mean.dtype), jnp.zeros((N, R), mean.dtype))
    shapes = jax.eval_shape(smooth, sde, dt, zeros.prec, zeros.shift)
    post = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    cov = jnp.broadcast_to(cov_scale * jnp.eye(R, dtype=mean.dtype), (N, R, R))
    return post._replace(mean=mean, cov=cov)


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------


def predict_moments(
    state: FunBaTState,
    cfg: FunBaTConfig,
    locs: list,
) -> tuple[Float[Array, " M"], Float[Array, " M"]]:
    """Posterior mean and variance of ``f`` at new rows.

    For a continuous mode the marginal ``q(u^k(x*))`` comes from the SDE bridge
    (:func:`bayestensor.ssm.interpolate`); a categorical mode reads its rows by index. Then
    ``E[f*]``, ``E[f*²]`` by :func:`expected_f` and ``Var[f*] = E[f*²] − E[f*]²``.

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
    means, seconds = [], []
    for k in range(len(cfg.ranks)):
        f = state.factors[k]
        if cfg.continuous[k]:
            th = state.log_hyper[k]
            sde = stacked_matern(cfg.kernel, jnp.exp(th[0]), jnp.exp(th[1]), cfg.ranks[k])
            m, P = interpolate(sde, f, locs[k])
        else:
            m, P = f.mean[locs[k]], f.cov[locs[k]]
        means.append(m)
        seconds.append(_second(m, P))
    # the training-size block may be too large for many new rows
    chunk = auto_chunk(means[0].shape[0], cfg.ranks, cfg.model)
    if cfg.chunk is not None:
        chunk = cfg.chunk if chunk is None else min(cfg.chunk, chunk)
    Ef, Ef2 = expected_f(means, seconds, state.core, chunk)
    return Ef, jnp.maximum(Ef2 - Ef**2, 0.0)


# --------------------------------------------------------------------------------------------
# user-facing wrapper
# --------------------------------------------------------------------------------------------


def check_ranks(rank, K: int, model: str) -> tuple[int, ...]:
    """Validate ``rank`` (one int for every mode, or one per mode) and return it per mode.

    Parameters
    ----------
    rank : int or sequence of int
        Number of latent functions per mode.
    K : int
        Number of modes.
    model : {"tucker", "cp"}
        CP needs one rank shared by every mode.

    Returns
    -------
    tuple of int
        ``(R_1, …, R_K)``.

    Raises
    ------
    ValueError
        If an entry is not a positive integer, the length is not 1 or ``K``, or CP ranks differ.
    """
    ranks = [rank] if np.ndim(rank) == 0 else list(rank)
    if not ranks or not all(
        isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in ranks
    ):
        raise ValueError(f"rank must be a positive int or one positive int per mode, got {rank!r}")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive, got {rank!r}")
    if len(ranks) not in (1, K):
        raise ValueError(f"rank has {len(ranks)} entries but the data have {K} modes")
    ranks = tuple(int(r) for r in ranks) * (K if len(ranks) == 1 else 1)
    if model == "cp" and len(set(ranks)) != 1:
        raise ValueError(f"model='cp' needs equal ranks on every mode, got {rank!r}")
    return ranks


class FunBaT:
    """Functional Bayesian Tucker (or CP) decomposition fitted by conditional EP sweeps.

    Parameters
    ----------
    model : {"tucker", "cp"}
        Learned Gaussian core (Tucker) or fixed superdiagonal core (CP).
    rank : int or tuple of int
        ``R`` for every mode, or ``(R_1, …, R_K)`` (Tucker only; CP needs equal ranks).
    kernel : {"matern12", "matern32", "matern52"}
        Matérn smoothness of every continuous mode.
    max_sweeps : int
        Cap on the number of sweeps.
    tol : float
        Stop when the fitted values move by less than ``tol`` noise standard deviations
        between sweeps: ``RMS(E[f]_new − E[f]_old) · E[τ]^{1/2} < tol`` on the training rows
        (scale-free; moves far below the noise level do not change predictions). Noiseless
        data make ``E[τ]`` large, so such fits run longer, as they should.
    damping : float
        ρ ∈ (0, 1]: weight of the new messages (1, the default, is no damping; lower it if
        sweeps oscillate).
    seed : int
        Seeds the random initial factor and core means.
    learn_hyper : bool
        Learn ℓ_k, σ²_k (pattern search on the log marginal of the messages) or keep their
        initial values.
    init : {"spectral", "random"}
        Initial factor means: leading singular vectors of the unfoldings
        (:func:`spectral_init`; the Tucker core then starts at its conditional posterior mean)
        or ``init_scale · N(0, 1)`` draws (the core mean too, unscaled).
    init_scale : float
        Scale of the random initial factor means, ``init_scale · N(0, 1)``. Much smaller values
        start the sweeps near the saddle point ``U = 0``, from which a weak component can take
        many sweeps to grow (the convergence test may then stop on the plateau).
    init_cov_scale : float
        Initial factor and core covariances as a fraction of the prior ones (see
        :func:`init_state`).
    init_noise_sd : float
        Noise sd assumed by the first sweep, as a fraction of the data sd (see
        :func:`init_state`: too large a value lets the first sweeps switch components off).
    lengthscale : float or sequence of float, optional
        Initial ℓ_k (one for all modes, or one per mode; entries of categorical modes are
        ignored). Default: ``lengthscale_fraction`` times the coordinate range of the mode.
    variance : float or sequence of float
        Initial σ²_k (of the z-scored values), one for all modes or one per mode.
    lengthscale_fraction : float
        Default initial ℓ_k as this fraction of the coordinate range of mode ``k``.
    hyper_steps, hyper_step : int, float
        Pattern-search iterations per mode per sweep, and the initial search step on
        ``log ℓ, log σ²`` (it then adapts: halved when the centre wins, doubled at the edge).
    a0, b0 : float
        Gamma prior on the noise precision (of the z-scored values).
    chunk : int, None or "auto"
        Observations per block in the Tucker contractions; bounds their memory. ``"auto"``
        (default) picks one block when it is small enough (see :func:`auto_chunk`).

    Attributes
    ----------
    state_ : FunBaTState
        Fitted posterior (z-scored units).
    history_ : list of dict
        Per sweep: ``rmse`` (training, original units), ``tau`` (``E[τ]``, z-scored units),
        ``noise_sd`` (``E[τ]^{-1/2}`` in original units), ``lengthscale`` and ``variance``
        (per mode, ``None`` for categorical modes), ``change`` (relative change of ``E[f]``).
    n_sweeps_ : int
        Number of sweeps run.
    converged_ : bool
        Whether the tolerance was reached before ``max_sweeps``.
    """

    def __init__(
        self,
        model: str = "tucker",
        rank: int | tuple[int, ...] = 2,
        kernel: str = "matern32",
        max_sweeps: int = 100,
        tol: float = 0.02,
        damping: float = 1.0,
        seed: int = 0,
        learn_hyper: bool = True,
        init: str = "spectral",
        init_scale: float = 1.0,
        init_cov_scale: float = 0.01,
        init_noise_sd: float = 0.1,
        lengthscale=None,
        variance=1.0,
        lengthscale_fraction: float = 0.1,
        hyper_steps: int = 1,
        hyper_step: float = 1.0,
        a0: float = 1e-3,
        b0: float = 1e-3,
        chunk: int | str | None = "auto",
    ):
        if model not in _MODELS:
            raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
        check_kernel_name(kernel)
        if not 0.0 < damping <= 1.0:
            raise ValueError(f"damping must be in (0, 1], got {damping}")
        self.model = model
        self.rank = rank
        self.kernel = kernel
        self.max_sweeps = int(max_sweeps)
        self.tol = float(tol)
        self.damping = float(damping)
        self.seed = int(seed)
        self.learn_hyper = bool(learn_hyper)
        if init not in ("spectral", "random"):
            raise ValueError(f"init must be 'spectral' or 'random', got {init!r}")
        self.init = init
        self.init_scale = float(init_scale)
        self.init_cov_scale = float(init_cov_scale)
        self.init_noise_sd = float(init_noise_sd)
        self.lengthscale = lengthscale
        self.variance = variance
        self.lengthscale_fraction = float(lengthscale_fraction)
        self.hyper_steps = int(hyper_steps)
        self.hyper_step = float(hyper_step)
        self.a0 = float(a0)
        self.b0 = float(b0)
        if not (chunk is None or chunk == "auto" or (isinstance(chunk, int) and chunk > 0)):
            raise ValueError(f"chunk must be a positive int, None or 'auto', got {chunk!r}")
        self.chunk = chunk

    def _ranks(self, K: int) -> tuple[int, ...]:
        """Per-mode ranks, validated against the number of modes and the model."""
        return check_ranks(self.rank, K, self.model)

    @staticmethod
    def _per_mode(value, K: int, name: str) -> list:
        """Broadcast a scalar (or ``None``) to ``K`` modes; check a sequence's length and sign."""
        values = [value] * K if value is None or np.ndim(value) == 0 else list(value)
        if len(values) != K:
            raise ValueError(f"{name} has {len(values)} entries but the data have {K} modes")
        if any(v is not None and not float(v) > 0 for v in values):
            raise ValueError(f"{name} must be positive, got {value}")
        return [None if v is None else float(v) for v in values]

    def fit(self, enc: Encoded, callback=None) -> FunBaT:
        """Fit to encoded training data.

        Parameters
        ----------
        enc : Encoded
            Output of :func:`bayestensor.data.encode` (with a value column).
        callback : callable, optional
            Called after every sweep with that sweep's history record (see ``history_``),
            e.g. to drive a progress bar.

        Returns
        -------
        FunBaT
            ``self``.
        """
        if enc.y is None:
            raise ValueError("enc has no values (y is None); encode with a value column")
        K = enc.K
        ranks = self._ranks(K)
        continuous = tuple(mode.kind == CONTINUOUS for mode in enc.modes)
        self.modes_ = enc.modes
        self.y_mean_ = float(np.mean(enc.y))
        self.y_scale_ = float(np.std(enc.y)) or 1.0
        y = jnp.asarray((enc.y - self.y_mean_) / self.y_scale_)
        index = jnp.asarray(enc.index)
        ell_given = self._per_mode(self.lengthscale, K, "lengthscale")
        var_given = self._per_mode(self.variance, K, "variance")
        dts, ell0, var0 = [], [], []
        for k, mode in enumerate(enc.modes):
            if continuous[k]:
                span = mode.values[-1] - mode.values[0]
                default = self.lengthscale_fraction * span if span > 0 else 1.0
                dts.append(jnp.asarray(gaps(mode.values)))
                ell0.append(default if ell_given[k] is None else ell_given[k])
                var0.append(var_given[k])
            else:
                dts.append(None)
                ell0.append(None)
                var0.append(None)
        dts = tuple(dts)
        cfg = FunBaTConfig(
            self.model,
            ranks,
            enc.shape,
            continuous,
            self.kernel,
            self.damping,
            self.learn_hyper,
            self.hyper_steps,
            self.hyper_step,
            self.a0,
            self.b0,
            auto_chunk(len(enc.y), ranks, self.model) if self.chunk == "auto" else self.chunk,
        )
        init_means = None
        if self.init == "spectral":
            init_means = spectral_init(enc.index, np.asarray(y), enc.shape, ranks, self.seed)
        state = _initial_state_jit(
            cfg,
            dts,
            [None if v is None else float(v) for v in ell0],
            [None if v is None else float(v) for v in var0],
            jax.random.key(self.seed),
            self.init_scale,
            self.init_cov_scale,
            init_means,
            self.init_noise_sd,
            index,
            y,
        )
        history = []
        Ef_old = None
        converged = False
        for _ in range(self.max_sweeps):
            state, Ef = _sweep_jit(state, index, y, dts, cfg)
            Ef = np.asarray(Ef)
            tau = float(state.noise.mean)
            # RMS move of the fitted values in units of the current noise sd (both z-scored)
            change = np.inf if Ef_old is None else float(np.sqrt(np.mean((Ef - Ef_old) ** 2) * tau))
            history.append(
                {
                    "rmse": float(np.sqrt(np.mean((Ef - np.asarray(y)) ** 2))) * self.y_scale_,
                    "tau": tau,
                    "noise_sd": self.y_scale_ / np.sqrt(tau),
                    "lengthscale": [
                        None if th is None else float(np.exp(th[0])) for th in state.log_hyper
                    ],
                    "variance": [
                        None if th is None else float(np.exp(th[1])) for th in state.log_hyper
                    ],
                    "change": change,
                }
            )
            if callback is not None:
                callback(history[-1])
            Ef_old = Ef
            if change < self.tol:
                converged = True
                break
        self.cfg_ = cfg
        self.state_ = state
        self.history_ = history
        self.n_sweeps_ = len(history)
        self.converged_ = converged
        return self

    def predict(self, new: NewEncoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predictive mean and standard deviations at new rows, in original units.

        Parameters
        ----------
        new : NewEncoded
            Output of :func:`bayestensor.data.encode_new` with the fitted modes.

        Returns
        -------
        mean : numpy.ndarray
            ``E[f*]``.
        sd_f : numpy.ndarray
            ``sqrt(Var[f*])`` (latent function).
        sd_y : numpy.ndarray
            ``sqrt(Var[f*] + 1/E[τ])`` (a new noisy observation).
        """
        if not hasattr(self, "state_"):
            raise ValueError("call fit before predict")
        if tuple(m.name for m in new.modes) != tuple(m.name for m in self.modes_):
            raise ValueError("new rows were encoded with different modes than the fit")
        M = new.index.shape[0]
        # pad the rows (repeating the first) to a power of two, so that predictions for
        # differently sized batches share one compiled function
        size = max(_MIN_PREDICT_BUCKET, 1 << max(M - 1, 0).bit_length())
        take = np.concatenate([np.arange(M), np.zeros(size - M, dtype=np.int64)])
        locs = []
        for k, mode in enumerate(self.modes_):
            if self.cfg_.continuous[k]:
                loc = locate(mode.values, np.asarray(new.x[k], dtype=np.float64)[take])
                locs.append(Location(*(jnp.asarray(a) for a in loc)))
            else:
                locs.append(jnp.asarray(new.index[take, k]))
        Ef, var = _predict_jit(self.state_, self.cfg_, locs)
        Ef, var = np.asarray(Ef)[:M], np.asarray(var)[:M]
        noise_var = 1.0 / float(self.state_.noise.mean)
        mean = Ef * self.y_scale_ + self.y_mean_
        sd_f = np.sqrt(var) * self.y_scale_
        sd_y = np.sqrt(var + noise_var) * self.y_scale_
        return mean, sd_f, sd_y


_predict_jit = jax.jit(predict_moments, static_argnames=("cfg",))
#: Smallest padded batch of prediction rows (see :meth:`FunBaT.predict`).
_MIN_PREDICT_BUCKET = 64


# --------------------------------------------------------------------------------------------
# NumPyro model
# --------------------------------------------------------------------------------------------


def funbat_model(
    index,
    coords_per_mode,
    y=None,
    *,
    model: str = "tucker",
    rank=1,
    kernel: str = "matern32",
    lengthscales=None,
    variances=None,
    a0: float = 1e-3,
    b0: float = 1e-3,
):
    """The FunBaT generative model as a plain NumPyro function (dense GPs; tiny problems).

    ``U^k ~ N(0, K_k ⊗ I_{R_k})`` with ``K_k`` the dense Matérn covariance over the unique
    coordinates of a continuous mode (``coords_per_mode[k]`` an array) or ``N(0, I)`` rows for a
    categorical mode (``coords_per_mode[k]`` an int, the number of categories);
    ``vec W ~ N(0, I)`` (Tucker) or the superdiagonal (CP); ``τ ~ Gamma(a₀, b₀)``;
    ``y_n ~ N(f_n, 1/τ)``.

    Parameters
    ----------
    index : Int[Array, "n K"]
        Coordinate index of every observation along every mode.
    coords_per_mode : sequence
        Per mode, the sorted unique coordinates (continuous) or the number of categories.
    y : Float[Array, "n"], optional
        Observations (``None`` for prior predictive).
    model : {"tucker", "cp"}
    rank : int or tuple of int
    kernel : str
        Matérn kernel name.
    lengthscales, variances : sequence of float
        Per mode ℓ_k, σ²_k (ignored for categorical modes; default 1).
    a0, b0 : float
        Gamma prior of τ.
    """
    import numpyro
    import numpyro.distributions as dist

    K = len(coords_per_mode)
    ranks = (rank,) * K if np.ndim(rank) == 0 else tuple(rank)
    lengthscales = [1.0] * K if lengthscales is None else list(lengthscales)
    variances = [1.0] * K if variances is None else list(variances)
    index = jnp.asarray(index)
    rows = []
    for k, coords in enumerate(coords_per_mode):
        R = ranks[k]
        if np.ndim(coords) == 0:
            N = int(coords)
            U = numpyro.sample(f"U{k}", dist.Normal(0.0, 1.0).expand([N, R]).to_event(2))
        else:
            x = jnp.asarray(coords)
            N = x.shape[0]
            cov = matern_cov(kernel, x, x, lengthscales[k], variances[k])
            cov = cov + 1e-8 * variances[k] * jnp.eye(N)
            mvn = dist.MultivariateNormal(jnp.zeros(N), covariance_matrix=cov)
            # rows of U^k are the R functions' values: sample (R, N) then transpose
            U = numpyro.sample(f"U{k}", mvn.expand([R]).to_event(1)).T
        rows.append(U[index[:, k]])
    if model == "cp":
        f = jnp.prod(jnp.stack(rows), axis=0).sum(-1)
    else:
        W = numpyro.sample("W", dist.Normal(0.0, 1.0).expand(list(ranks)).to_event(len(ranks)))
        r, _ = _letters(K)
        f = jnp.einsum(",".join([r] + [f"n{c}" for c in r]) + "->n", W, *rows)
    numpyro.deterministic("f", f)
    tau = numpyro.sample("tau", dist.Gamma(a0, b0))
    with numpyro.plate("obs", index.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0 / jnp.sqrt(tau)), obs=y)
