"""Periodic and quasi-periodic kernels in state-space form (Solin & Särkkä, AISTATS 2014).

The periodic kernel ``σ² exp(−2 sin²(π τ / p) / ℓ²)`` is approximated by its Fourier series
truncated after ``J`` harmonics: a sum of ``J`` undamped resonators (:func:`periodic_sde`). The
quasi-periodic kernel, periodic × Matérn, is the Kronecker product of the two state spaces
(:func:`quasiperiodic_sde`). :func:`periodic_cov` is the exact (untruncated) kernel, the
reference of the tests. :mod:`bayestensor.kernels` reaches them by name (``kernel_sde``,
``kernel_cov``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jax.scipy.special
from jax import lax
from jaxtyping import Array, Float

from bayestensor.kernels import (
    PERIODIC_HARMONICS,
    QUASIPERIODIC_ENVELOPE,
    StateSpaceKernel,
    matern_sde,
)


def periodic_coefficients(
    lengthscale, harmonics: int = PERIODIC_HARMONICS, terms: int = 60
) -> Float[Array, " J+1"]:
    """Fourier coefficients ``q_j²`` of the unit-variance periodic kernel.

    .. math::

        \\exp\\Big(-\\frac{2 \\sin^2(ω_0 τ / 2)}{ℓ^2}\\Big)
        = \\sum_{j=0}^{∞} q_j^2 \\cos(j ω_0 τ), \\qquad
        q_0^2 = \\frac{I_0(ℓ^{-2})}{e^{ℓ^{-2}}}, \\quad
        q_j^2 = \\frac{2 I_j(ℓ^{-2})}{e^{ℓ^{-2}}} \\ (j ≥ 1),

    with ``I_j`` the modified Bessel function of the first kind ([3] in the module docstring),
    so that ``Σ_j q_j² = 1``. The scaled ``I_0(x) e^{-x}`` is :func:`jax.scipy.special.i0e`; the
    ratios ``r_j = I_j / I_{j−1} = x / (2j + x r_{j+1})`` come from the backward recurrence
    (Miller's algorithm, stable, no overflow, started ``terms`` orders above ``J`` at
    ``r = 0``), so everything is traceable and differentiable in ℓ. Accurate to rounding for
    ℓ ≥ 0.2 (``x ≤ 25``).

    Parameters
    ----------
    lengthscale : float or Float[Array, ""]
        ℓ > 0 (dimensionless: relative to the period).
    harmonics : int
        J, the last harmonic kept.
    terms : int
        Extra orders of the backward recurrence.

    Returns
    -------
    Float[Array, "J+1"]
        ``q_0², …, q_J²`` (unit variance).
    """
    lengthscale = jnp.asarray(lengthscale)
    x = lengthscale.astype(jnp.result_type(lengthscale, float)) ** -2
    orders = jnp.arange(harmonics + terms, 0, -1, dtype=x.dtype)

    def _step(r_next, j):
        # r_j = I_j / I_{j-1} = x / (2j + x r_{j+1})
        r = x / (2.0 * j + x * r_next)
        return r, r

    _, ratios = lax.scan(_step, jnp.zeros((), x.dtype), orders)
    ratios = ratios[::-1][:harmonics]  # r_1 … r_J
    scaled = jax.scipy.special.i0e(x) * jnp.concatenate(
        [jnp.ones((1,), x.dtype), 2.0 * jnp.cumprod(ratios)]
    )
    return scaled


def _harmonic_index(harmonics: int):
    """State positions of the cosine and sine parts of harmonics ``1 … J`` (harmonic 0 is a
    single state at position 0)."""
    j = jnp.arange(1, harmonics + 1)
    return j, 2 * j - 1, 2 * j


class PeriodicSDE(NamedTuple):
    """State-space form of the periodic kernel truncated after ``J`` harmonics (a pytree).

    The state is ``s = (c_0, c_1, s_1, …, c_J, s_J)`` (dimension ``d = 2J + 1``): harmonic
    ``j ≥ 1`` is an undamped resonator of frequency ``j ω_0`` (``ω_0 = 2π / p``), a 2-D state
    rotated by ``j ω_0 Δ`` over a gap Δ, with stationary covariance ``q_j² I₂``; harmonic 0 is a
    constant with variance ``q_0²`` (its sine partner is identically zero and is dropped). There
    is no driving noise: ``L Qc Lᵀ = 0`` and ``Q(Δ) = P∞ − A P∞ Aᵀ = 0``.

    Attributes
    ----------
    F : Float[Array, "d d"]
        Drift: blocks ``[[0, −j ω_0], [j ω_0, 0]]``.
    L : Float[Array, "d 1"]
        Zero diffusion.
    Qc : Float[Array, "1 1"]
        Zero spectral density.
    H : Float[Array, "1 d"]
        Sums the cosine parts, ``u(x) = Σ_j c_j(x)``.
    Pinf : Float[Array, "d d"]
        ``diag(q_0², q_1², q_1², …, q_J², q_J²)`` (variance included).
    omega : Float[Array, ""]
        Fundamental angular frequency ``ω_0 = 2π / p``.
    """

    F: Float[Array, "d d"]
    L: Float[Array, "d 1"]
    Qc: Float[Array, "1 1"]
    H: Float[Array, "1 d"]
    Pinf: Float[Array, "d d"]
    omega: Float[Array, ""]

    #: ``Q(Δ) = 0``: the state moves deterministically (the smoother and the bridge use it).
    noiseless = True

    @property
    def state_dim(self) -> int:
        """Dimension d = 2J + 1 of the state."""
        return self.F.shape[-1]

    def transition(self, dt: Float[Array, ""]) -> tuple[Float[Array, "d d"], Float[Array, "d d"]]:
        """Exact ``A(Δ) = expm(F Δ)`` (block rotations by ``j ω_0 Δ``) and ``Q(Δ) = 0``.

        Parameters
        ----------
        dt : Float[Array, ""]
            Gap (any sign: ``A(−Δ) = A(Δ)ᵀ = A(Δ)⁻¹``).

        Returns
        -------
        A : Float[Array, "d d"]
            Block-diagonal rotation.
        Q : Float[Array, "d d"]
            Zeros.
        """
        d = self.state_dim
        j, c, s = _harmonic_index((d - 1) // 2)
        angle = j.astype(self.F.dtype) * self.omega * dt
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        A = jnp.eye(d, dtype=self.F.dtype)
        A = A.at[c, c].set(cos).at[c, s].set(-sin).at[s, c].set(sin).at[s, s].set(cos)
        return A, jnp.zeros_like(A)


def periodic_sde(lengthscale, variance, period, harmonics: int = PERIODIC_HARMONICS) -> PeriodicSDE:
    """State-space form of the periodic kernel ``σ² exp(−2 sin²(π τ / p) / ℓ²)``, truncated.

    The kernel is replaced by its Fourier series up to harmonic ``J``,
    ``k_J(τ) = σ² Σ_{j≤J} q_j² cos(2π j τ / p)`` (:func:`periodic_coefficients`), which is the
    covariance of the state-space model exactly. ``k_J ≤ k`` at τ = 0 and
    ``max_τ |k(τ) − k_J(τ)| ≤ σ² (1 − Σ_{j≤J} q_j²)``: with the default J = 7, 1e-7 σ² at
    ℓ = 1, 1e-5 σ² at ℓ = 0.7, 5e-4 σ² at ℓ = 0.5 and 3e-2 σ² at ℓ = 0.3 (short lengthscales
    need more harmonics).

    Parameters
    ----------
    lengthscale : float or Float[Array, ""]
        ℓ > 0, dimensionless (the kernel depends on τ only through τ / p).
    variance : float or Float[Array, ""]
        σ² > 0.
    period : float or Float[Array, ""]
        p > 0, in the coordinate's units.
    harmonics : int
        J ≥ 1.

    Returns
    -------
    PeriodicSDE
        In the floating dtype of ``lengthscale``.

    References
    ----------
    A. Solin and S. Särkkä, "Explicit link between periodic covariance functions and state space
    models", AISTATS 2014.
    """
    if harmonics < 1:
        raise ValueError(f"harmonics must be at least 1, got {harmonics!r}")
    lengthscale = jnp.asarray(lengthscale)
    dtype = jnp.result_type(lengthscale, float)
    q2 = jnp.asarray(variance, dtype) * periodic_coefficients(lengthscale.astype(dtype), harmonics)
    omega = 2.0 * jnp.pi / jnp.asarray(period, dtype)
    d = 2 * harmonics + 1
    j, c, s = _harmonic_index(harmonics)
    F = jnp.zeros((d, d), dtype)
    F = F.at[c, s].set(-j * omega).at[s, c].set(j * omega)
    H = jnp.zeros((1, d), dtype).at[0, 0].set(1.0).at[0, c].set(1.0)
    Pinf = jnp.diag(jnp.concatenate([q2[:1], jnp.repeat(q2[1:], 2)]))
    return PeriodicSDE(F, jnp.zeros((d, 1), dtype), jnp.zeros((1, 1), dtype), H, Pinf, omega)


class QuasiPeriodicSDE(NamedTuple):
    """State-space form of periodic × Matérn: the Kronecker product of the two (a pytree).

    If ``s_p`` and ``s_m`` are independent states of the periodic and the (unit-variance) Matérn
    envelope models, ``s = s_p ⊗ s_m`` has ``F = F_p ⊕ F_m = F_p ⊗ I + I ⊗ F_m``,
    ``A(Δ) = A_p(Δ) ⊗ A_m(Δ)``, ``P∞ = P∞_p ⊗ P∞_m``, ``H = H_p ⊗ H_m`` and, because
    ``A_p P∞_p A_pᵀ = P∞_p``, ``Q(Δ) = P∞_p ⊗ Q_m(Δ)``; its covariance is
    ``H A(τ) P∞ Hᵀ = k_J(τ) k_m(τ)``. Dimension ``d = (2J + 1) d_m``.

    Attributes
    ----------
    periodic : PeriodicSDE
        The periodic factor (carries the variance σ²).
    envelope : StateSpaceKernel
        The Matérn factor, unit variance.
    """

    periodic: PeriodicSDE
    envelope: StateSpaceKernel

    noiseless = False

    @property
    def F(self) -> Float[Array, "d d"]:
        """``F_p ⊗ I + I ⊗ F_m``."""
        p, m = self.periodic, self.envelope
        return jnp.kron(p.F, jnp.eye(m.state_dim, dtype=p.F.dtype)) + jnp.kron(
            jnp.eye(p.state_dim, dtype=p.F.dtype), m.F
        )

    @property
    def L(self) -> Float[Array, "d dp"]:
        """``P∞_p^{1/2} ⊗ L_m`` (so that ``L Qc Lᵀ = P∞_p ⊗ L_m Qc_m L_mᵀ``)."""
        return jnp.kron(jnp.sqrt(self.periodic.Pinf), self.envelope.L)

    @property
    def Qc(self) -> Float[Array, "dp dp"]:
        """``I ⊗ Qc_m``."""
        p = self.periodic
        return jnp.kron(jnp.eye(p.state_dim, dtype=p.F.dtype), self.envelope.Qc)

    @property
    def H(self) -> Float[Array, "1 d"]:
        """``H_p ⊗ H_m``."""
        return jnp.kron(self.periodic.H, self.envelope.H)

    @property
    def Pinf(self) -> Float[Array, "d d"]:
        """``P∞_p ⊗ P∞_m``."""
        return jnp.kron(self.periodic.Pinf, self.envelope.Pinf)

    @property
    def state_dim(self) -> int:
        """Dimension ``(2J + 1) d_m``."""
        return self.periodic.state_dim * self.envelope.state_dim

    def transition(self, dt: Float[Array, ""]) -> tuple[Float[Array, "d d"], Float[Array, "d d"]]:
        """``A = A_p(Δ) ⊗ A_m(Δ)`` and ``Q = P∞_p ⊗ Q_m(Δ)`` (both factors' closed forms).

        Parameters
        ----------
        dt : Float[Array, ""]
            Non-negative gap.

        Returns
        -------
        A, Q : Float[Array, "d d"]
        """
        A_p, _ = self.periodic.transition(dt)
        A_m, Q_m = self.envelope.transition(dt)
        return jnp.kron(A_p, A_m), jnp.kron(self.periodic.Pinf, Q_m)


def quasiperiodic_sde(
    lengthscale,
    variance,
    period,
    envelope,
    harmonics: int = PERIODIC_HARMONICS,
    envelope_kernel: str = QUASIPERIODIC_ENVELOPE,
) -> QuasiPeriodicSDE:
    """State-space form of ``σ² exp(−2 sin²(π τ / p) / ℓ²) · k_ν(τ; ℓ_e)``, periodic truncated.

    A seasonal cycle whose shape drifts: two points one period apart are correlated
    ``k_ν(p; ℓ_e)`` (``k_ν`` a unit-variance Matérn of lengthscale ℓ_e, the envelope).

    Parameters
    ----------
    lengthscale, variance, period : float or Float[Array, ""]
        ℓ (dimensionless), σ² and p of the periodic factor (see :func:`periodic_sde`).
    envelope : float or Float[Array, ""]
        ℓ_e > 0, the Matérn envelope's lengthscale (coordinate units).
    harmonics : int
        J of the periodic factor.
    envelope_kernel : {"matern12", "matern32", "matern52"}
        Smoothness of the envelope (default Matérn-3/2).

    Returns
    -------
    QuasiPeriodicSDE
    """
    lengthscale = jnp.asarray(lengthscale)
    dtype = jnp.result_type(lengthscale, float)
    per = periodic_sde(lengthscale.astype(dtype), variance, period, harmonics)
    env = matern_sde(envelope_kernel, jnp.asarray(envelope, dtype), jnp.ones((), dtype))
    return QuasiPeriodicSDE(per, env)


def periodic_cov(x1, x2, lengthscale, variance, period) -> Float[Array, "n m"]:
    """Dense (exact, untruncated) periodic covariance ``σ² exp(−2 sin²(π |x − x'| / p) / ℓ²)``.

    Parameters
    ----------
    x1 : Float[Array, "n"]
        First set of 1-D inputs.
    x2 : Float[Array, "m"]
        Second set of 1-D inputs.
    lengthscale, variance, period : float or Float[Array, ""]
        ℓ, σ², p.

    Returns
    -------
    Float[Array, "n m"]
    """
    tau = jnp.asarray(x1)[:, None] - jnp.asarray(x2)[None, :]
    return variance * jnp.exp(-2.0 * jnp.sin(jnp.pi * tau / period) ** 2 / lengthscale**2)
