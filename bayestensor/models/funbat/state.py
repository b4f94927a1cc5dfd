"""FunBaT pytrees: messages, posteriors of the factors, core and noise, the static config and
the sweep state; the block size of the Tucker contractions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Array, Float

from bayestensor.kernels import KERNELS, PERIODIC_HARMONICS

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


class WeightPosterior(NamedTuple):
    """Gaussian posterior of the CP component weights ``w`` (CP with ``rank="auto"``).

    With ARD the CP core is the diagonal ``diag(w)`` with ``w_r ~ N(0, 1/λ_r)`` instead of the
    fixed superdiagonal of ones.

    Attributes
    ----------
    mean : Float[Array, "R"]
    cov : Float[Array, "R R"]
    """

    mean: Float[Array, " R"]
    cov: Float[Array, "R R"]


class ARDPosterior(NamedTuple):
    """Gamma posteriors ``q(λ_r) = Gamma(shape_r, rate_r)`` of the ARD precisions of one mode's
    components (Tucker: of the core slices ``W[…, r, …]``; CP: of the weights ``w_r``).

    Attributes
    ----------
    shape, rate : Float[Array, "R"]
        ``E[λ_r] = shape_r / rate_r``.
    """

    shape: Float[Array, " R"]
    rate: Float[Array, " R"]

    @property
    def mean(self) -> Float[Array, " R"]:
        """``E[λ]``."""
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
    kernel : tuple of (str or None), or str
        Per mode, the kernel name (a key of :data:`bayestensor.kernels.KERNELS`; ``None`` for a
        categorical mode). One name stands for every continuous mode (files saved before
        per-mode kernels). Read it through :meth:`mode_kernel`.
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
    learn_period : tuple of bool
        Per mode, whether the period of a (quasi-)periodic kernel is learned (``False``: kept
        at its initial value, as when the user gave it). Empty: learned wherever there is one.
    harmonics : int
        J of the (quasi-)periodic kernels (state dimension ``2J + 1`` per function, times the
        envelope's for the quasi-periodic one).
    ard : bool
        Automatic rank determination (``rank="auto"``): Gamma-distributed precisions on the core
        slices (Tucker) or on CP component weights, updated every sweep (see
        :mod:`bayestensor.models.funbat.ard`).
    """

    model: str
    ranks: tuple[int, ...]
    sizes: tuple[int, ...]
    continuous: tuple[bool, ...]
    kernel: str | tuple[str | None, ...] = "matern32"
    damping: float = 1.0
    learn_hyper: bool = True
    hyper_steps: int = 1
    hyper_step: float = 1.0
    a0: float = 1e-3
    b0: float = 1e-3
    chunk: int | None = OBS_CHUNK
    learn_period: tuple[bool, ...] = ()
    harmonics: int = PERIODIC_HARMONICS
    ard: bool = False

    def mode_kernel(self, k: int) -> str | None:
        """Kernel name of mode ``k`` (``None`` for a categorical mode)."""
        if not self.continuous[k]:
            return None
        return self.kernel if isinstance(self.kernel, str) else self.kernel[k]

    def reading(self) -> FunBaTConfig:
        """This config with only what reading the posterior needs (the model, each mode's rank,
        size, kind and kernel, the harmonics and the contraction blocks) and every setting of
        how it was fitted (``ard``, damping, the search, the noise prior) at its default: the
        static argument of the marginals and row moments, so that fits that differ only in
        how they were fitted (the ARD's pruned fit and a refit at its ranks) share them."""
        kernels = tuple(self.mode_kernel(k) for k in range(len(self.ranks)))
        return FunBaTConfig(
            self.model,
            self.ranks,
            self.sizes,
            self.continuous,
            kernels,
            chunk=self.chunk,
            harmonics=self.harmonics,
        )

    def hyper_names(self, k: int) -> tuple[str, ...]:
        """Names of mode ``k``'s hyperparameters, in the order of ``log_hyper[k]``."""
        kernel = self.mode_kernel(k)
        return () if kernel is None else KERNELS[kernel]

    def learned(self, k: int) -> tuple[bool, ...]:
        """Per hyperparameter of mode ``k``, whether the search moves it."""
        learn_period = self.learn_period[k] if self.learn_period else True
        return tuple(
            self.learn_hyper and (name != "period" or learn_period) for name in self.hyper_names(k)
        )


class FunBaTState(NamedTuple):
    """Everything the sweep updates (a pytree).

    Attributes
    ----------
    factors : tuple
        Per mode, :class:`bayestensor.ssm.Posterior` (continuous) or
        :class:`CategoricalPosterior`; both have ``.mean (N, R)`` and ``.cov (N, R, R)``.
    messages : tuple of Messages
        Per mode, the damped summed messages of the last update.
    core : CorePosterior, WeightPosterior or None
        ``q(W)`` (Tucker); ``q(w)`` (CP with ARD); ``None`` for CP with fixed rank.
    noise : NoisePosterior
        ``q(τ)``.
    log_hyper : tuple
        Per mode, the logs of the kernel's hyperparameters in the order of
        ``FunBaTConfig.hyper_names(k)`` — ``[log ℓ_k, log σ²_k]`` for a Matérn kernel, then
        ``log p_k`` (periodic) and ``log ℓ_e,k`` (quasi-periodic envelope) — or ``None``
        (categorical).
    opt_state : tuple
        Per mode, the current search steps of ``log_hyper[k]`` (same length) or ``None``.
    ard : tuple of ARDPosterior or None
        With ARD, ``q(λ)``: one per mode (Tucker) or a single one (CP); ``None`` without.
    """

    factors: tuple
    messages: tuple
    core: CorePosterior | None
    noise: NoisePosterior
    log_hyper: tuple
    opt_state: tuple
    ard: tuple | None = None
