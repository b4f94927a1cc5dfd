"""Matérn, periodic and quasi-periodic kernels and their linear time-invariant state-space forms.

A stationary Matérn GP with smoothness ν = p + 1/2 (p = 0, 1, 2) is the first coordinate of a
``d = p + 1`` dimensional linear SDE

.. math::

    \\mathrm{d}s(x) = F s(x)\\,\\mathrm{d}x + L\\,\\mathrm{d}\\beta(x), \\qquad
    u(x) = H s(x), \\qquad s(x) \\sim \\mathcal N(0, P_\\infty),

with white-noise spectral density :math:`Q_c`. Its exact discretisation over a gap Δ > 0 is
:math:`A(Δ) = \\exp(FΔ)` and :math:`Q(Δ) = P_\\infty - A(Δ) P_\\infty A(Δ)^\\top`.

What comes from gpjax: the continuous-time matrices ``F, L, Qc, H`` and the stationary
covariance :math:`P_\\infty` are read from ``gpjax.state_space.to_sde`` applied to
``gpjax.kernels.Matern{12,32,52}``. What is ours: the discrete transition (a closed form, see
:meth:`StateSpaceKernel.transition`), the covariance function :func:`matern_cov`, and the
interface used by :mod:`bayestensor.ssm`. The test-suite checks every piece against an
independent reference (``scipy.linalg.expm``, the Lyapunov equation, the kernel itself).

The periodic kernel ``σ² exp(−2 sin²(π τ / p) / ℓ²)`` has no finite state-space form; it is
approximated by its Fourier series truncated after ``J`` harmonics (Solin & Särkkä [3]), a sum of
``J`` undamped resonators (:func:`periodic_sde`). The quasi-periodic kernel, periodic × Matérn,
is the Kronecker product of the two state spaces (:func:`quasiperiodic_sde`). Neither comes
from gpjax; both are written here from [3].

References
----------
.. [1] S. Särkkä and A. Solin, *Applied Stochastic Differential Equations*, CUP 2019, §12.3.
.. [2] J. Hartikainen and S. Särkkä, "Kalman filtering and smoothing solutions to temporal
   Gaussian process regression models", MLSP 2010.
.. [3] A. Solin and S. Särkkä, "Explicit link between periodic covariance functions and state
   space models", AISTATS 2014.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jax.scipy.special
from jax import lax
from jaxtyping import Array, Float

#: Accepted kernel names and their smoothness ν.
MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}

#: Every kernel name :class:`bayestensor.models.funbat.FunBaT` accepts, with the names of its
#: hyperparameters in the order they are stored (see :func:`kernel_sde`).
KERNELS = {
    "matern12": ("lengthscale", "variance"),
    "matern32": ("lengthscale", "variance"),
    "matern52": ("lengthscale", "variance"),
    "periodic": ("lengthscale", "variance", "period"),
    "quasiperiodic": ("lengthscale", "variance", "period", "envelope"),
}

#: Default number of harmonics J of the truncated periodic kernel (state dimension 2J + 1).
#: The truncation error ``max_τ |k(τ) − k_J(τ)|`` is at most ``σ² (1 − Σ_{j≤J} q_j²)``:
#: 1e-7 σ² at ℓ = 1, 1e-5 σ² at ℓ = 0.7 and 5e-4 σ² at ℓ = 0.5 (see :func:`periodic_sde`).
PERIODIC_HARMONICS = 7

#: Matérn envelope of the ``"quasiperiodic"`` kernel.
QUASIPERIODIC_ENVELOPE = "matern32"

#: gpjax kernel class names (gpjax is imported on first use: it takes ~1 s to import).
_GPJAX_KERNELS = {"matern12": "Matern12", "matern32": "Matern32", "matern52": "Matern52"}


def check_kernel_name(kernel: str) -> str:
    """Return ``kernel`` if it names a supported Matérn kernel, else raise ``ValueError``.

    Parameters
    ----------
    kernel : str
        One of ``"matern12"``, ``"matern32"``, ``"matern52"``.

    Returns
    -------
    str
        The same name.

    Raises
    ------
    ValueError
        If the name is not supported.
    """
    if kernel not in MATERN_NU:
        raise ValueError(f"kernel must be one of {sorted(MATERN_NU)}, got {kernel!r}")
    return kernel


def check_kernel(kernel: str) -> str:
    """Return ``kernel`` if it names any supported kernel (Matérn, periodic, quasi-periodic).

    Parameters
    ----------
    kernel : str
        One of the keys of :data:`KERNELS`.

    Returns
    -------
    str
        The same name.

    Raises
    ------
    ValueError
        If the name is not supported.
    """
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    return kernel


class StateSpaceKernel(NamedTuple):
    """Continuous-time state-space form of one Matérn GP (a JAX pytree).

    Attributes
    ----------
    F : Float[Array, "d d"]
        Drift matrix (companion form, single eigenvalue −λ of multiplicity d).
    L : Float[Array, "d 1"]
        Diffusion (noise input) matrix.
    Qc : Float[Array, "1 1"]
        Spectral density of the driving white noise.
    H : Float[Array, "1 d"]
        Measurement matrix, ``u(x) = H s(x)``.
    Pinf : Float[Array, "d d"]
        Stationary state covariance, solving ``F Pinf + Pinf Fᵀ + L Qc Lᵀ = 0``.
    decay : Float[Array, ""]
        λ = √(2ν)/ℓ, the rate in ``exp(−λ Δ)``.
    """

    F: Float[Array, "d d"]
    L: Float[Array, "d 1"]
    Qc: Float[Array, "1 1"]
    H: Float[Array, "1 d"]
    Pinf: Float[Array, "d d"]
    decay: Float[Array, ""]

    #: Whether the process noise Q(Δ) is identically zero (never, for a Matérn kernel).
    noiseless = False

    @property
    def state_dim(self) -> int:
        """Dimension d of the state (ν + 1/2)."""
        return self.F.shape[-1]

    def transition(self, dt: Float[Array, ""]) -> tuple[Float[Array, "d d"], Float[Array, "d d"]]:
        """Exact discrete transition over a gap ``dt ≥ 0``.

        Because ``N = F + λI`` is nilpotent (``N^d = 0``; the characteristic polynomial of the
        companion matrix is ``(s + λ)^d``), the matrix exponential is the finite sum

        .. math:: A(Δ) = e^{-λΔ} \\sum_{j<d} \\frac{Δ^j}{j!} N^j .

        The process noise is ``Q(Δ) = P∞ − A P∞ Aᵀ``, evaluated as
        ``−(E P∞ + P∞ Eᵀ + E P∞ Eᵀ)`` with ``E = A − I`` formed through ``expm1`` so that small
        gaps do not cancel catastrophically in float32. ``Q`` is symmetrised.

        Parameters
        ----------
        dt : Float[Array, ""]
            Non-negative gap between two coordinates.

        Returns
        -------
        A : Float[Array, "d d"]
            Transition matrix ``expm(F dt)``.
        Q : Float[Array, "d d"]
            Process noise covariance.
        """
        d = self.state_dim
        eye = jnp.eye(d, dtype=self.F.dtype)
        N = self.F + self.decay * eye
        # poly = Σ_{1≤j<d} Δ^j N^j / j!  (the j = 0 term is handled by expm1 below)
        poly = jnp.zeros_like(self.F)
        term = eye
        for j in range(1, d):
            term = term @ N * (dt / j)
            poly = poly + term
        E = jnp.exp(-self.decay * dt) * poly + jnp.expm1(-self.decay * dt) * eye
        EP = E @ self.Pinf
        Q = -(EP + EP.T + EP @ E.T)
        return eye + E, 0.5 * (Q + Q.T)


def matern_sde(kernel: str, lengthscale, variance) -> StateSpaceKernel:
    """State-space form of a Matérn kernel.

    Parameters
    ----------
    kernel : {"matern12", "matern32", "matern52"}
        Smoothness ν = 1/2, 3/2 or 5/2.
    lengthscale : float or Float[Array, ""]
        Lengthscale ℓ > 0 (traceable; gradients flow through it).
    variance : float or Float[Array, ""]
        Signal variance σ² > 0 (traceable).

    Returns
    -------
    StateSpaceKernel
        ``F, L, Qc, H, Pinf`` from ``gpjax.state_space.to_sde`` and the decay λ = √(2ν)/ℓ, all
        in the floating dtype of ``lengthscale`` (so a float32 model stays float32).
    """
    check_kernel_name(kernel)
    lengthscale = jnp.asarray(lengthscale)
    lengthscale = lengthscale.astype(jnp.result_type(lengthscale, float))
    variance = jnp.asarray(variance, dtype=lengthscale.dtype)
    import gpjax.kernels
    from gpjax.state_space import to_sde

    gp_kernel = getattr(gpjax.kernels, _GPJAX_KERNELS[kernel])
    sde = to_sde(gp_kernel(lengthscale=lengthscale, variance=variance))
    Linf = sde.stationary_state_cov_sqrt
    decay = jnp.sqrt(2.0 * MATERN_NU[kernel]) / lengthscale
    # gpjax builds L and H from literals (default dtype): cast everything to the model's dtype
    fields = (
        sde.drift_matrix,
        sde.diffusion_matrix,
        sde.process_noise_spectral_density,
        sde.observation_matrix,
        Linf @ Linf.T,
        decay,
    )
    return StateSpaceKernel(*(jnp.asarray(a, lengthscale.dtype) for a in fields))


def matern_cov(kernel: str, x1, x2, lengthscale, variance) -> Float[Array, "n m"]:
    """Dense Matérn covariance matrix ``k(x1_i, x2_j)``.

    .. math::

        k_{1/2}(τ) = σ^2 e^{-λτ}, \\quad
        k_{3/2}(τ) = σ^2 (1 + λτ) e^{-λτ}, \\quad
        k_{5/2}(τ) = σ^2 (1 + λτ + λ^2τ^2/3) e^{-λτ},

    with τ = |x − x'| and λ = √(2ν)/ℓ.

    Parameters
    ----------
    kernel : {"matern12", "matern32", "matern52"}
        Smoothness.
    x1 : Float[Array, "n"]
        First set of 1-D inputs.
    x2 : Float[Array, "m"]
        Second set of 1-D inputs.
    lengthscale, variance : float or Float[Array, ""]
        ℓ and σ².

    Returns
    -------
    Float[Array, "n m"]
        The covariance matrix.
    """
    check_kernel_name(kernel)
    lam = jnp.sqrt(2.0 * MATERN_NU[kernel]) / lengthscale
    r = lam * jnp.abs(jnp.asarray(x1)[:, None] - jnp.asarray(x2)[None, :])
    poly = {"matern12": 1.0, "matern32": 1.0 + r, "matern52": 1.0 + r + r**2 / 3.0}[kernel]
    return variance * poly * jnp.exp(-r)


# --------------------------------------------------------------------------------------------
# periodic and quasi-periodic kernels
# --------------------------------------------------------------------------------------------


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


def kernel_sde(kernel: str, *hyper, harmonics: int = PERIODIC_HARMONICS):
    """State-space form of any kernel in :data:`KERNELS` from its hyperparameters.

    Parameters
    ----------
    kernel : str
        A key of :data:`KERNELS`.
    *hyper : float or Float[Array, ""]
        The hyperparameters named by ``KERNELS[kernel]``, in that order: ``lengthscale,
        variance`` (Matérn), ``+ period`` (periodic), ``+ period, envelope`` (quasi-periodic).
    harmonics : int
        J of the (quasi-)periodic kernels.

    Returns
    -------
    StateSpaceKernel, PeriodicSDE or QuasiPeriodicSDE
        Each has ``F, L, Qc, H, Pinf``, ``state_dim``, ``noiseless`` and ``transition(dt)``.
    """
    names = KERNELS[check_kernel(kernel)]
    if len(hyper) != len(names):
        raise ValueError(f"kernel {kernel!r} takes hyperparameters {names}, got {len(hyper)}")
    if kernel == "periodic":
        return periodic_sde(*hyper, harmonics=harmonics)
    if kernel == "quasiperiodic":
        return quasiperiodic_sde(*hyper, harmonics=harmonics)
    return matern_sde(kernel, *hyper)


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


def kernel_cov(kernel: str, x1, x2, *hyper) -> Float[Array, "n m"]:
    """Dense covariance matrix of any kernel in :data:`KERNELS` (the exact, untruncated one).

    Parameters
    ----------
    kernel : str
        A key of :data:`KERNELS`.
    x1, x2 : Float[Array, "n"], Float[Array, "m"]
        1-D inputs.
    *hyper : float
        As in :func:`kernel_sde`.

    Returns
    -------
    Float[Array, "n m"]
    """
    names = KERNELS[check_kernel(kernel)]
    if len(hyper) != len(names):
        raise ValueError(f"kernel {kernel!r} takes hyperparameters {names}, got {len(hyper)}")
    if kernel == "periodic":
        return periodic_cov(x1, x2, *hyper)
    if kernel == "quasiperiodic":
        ell, var, period, env = hyper
        env_cov = matern_cov(QUASIPERIODIC_ENVELOPE, x1, x2, env, 1.0)
        return periodic_cov(x1, x2, ell, var, period) * env_cov
    return matern_cov(kernel, x1, x2, *hyper)
