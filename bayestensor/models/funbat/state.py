"""FunBaT pytrees: messages, posteriors of the factors, core and noise, the static config and
the sweep state; the block size of the Tucker contractions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Array, Float

MODELS = ("tucker", "cp")

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
        Pattern-search iterations per mode per sweep (see :func:`hyper_search`).
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
