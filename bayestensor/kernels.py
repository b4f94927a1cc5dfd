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
``J`` undamped resonators (:func:`bayestensor.periodic.periodic_sde`). The quasi-periodic kernel,
periodic × Matérn, is the Kronecker product of the two state spaces
(:func:`bayestensor.periodic.quasiperiodic_sde`). Both live in :mod:`bayestensor.periodic`;
:func:`kernel_sde` and :func:`kernel_cov` reach every kernel by name. Neither comes
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
    from bayestensor.periodic import periodic_sde, quasiperiodic_sde

    names = KERNELS[check_kernel(kernel)]
    if len(hyper) != len(names):
        raise ValueError(f"kernel {kernel!r} takes hyperparameters {names}, got {len(hyper)}")
    if kernel == "periodic":
        return periodic_sde(*hyper, harmonics=harmonics)
    if kernel == "quasiperiodic":
        return quasiperiodic_sde(*hyper, harmonics=harmonics)
    return matern_sde(kernel, *hyper)


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
    from bayestensor.periodic import periodic_cov

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
