"""One-dimensional spectral-mixture kernels and their closed-form derivative kernels.

GP-HM [1]_ models the power spectrum of the solution along each input dimension as a symmetric
mixture and takes its inverse Fourier transform (Wiener–Khinchin) as the covariance:

.. math::

    S(s) = \\sum_{q=1}^{Q} \\frac{w_q}{2}\\big[φ(s; μ_q, σ_q) + φ(s; -μ_q, σ_q)\\big],
    \\qquad
    k(d) = \\int S(s)\\, e^{2πi s d}\\, \\mathrm ds
         = \\sum_{q=1}^{Q} w_q\\, e_q(d) \\cos(2π μ_q d),

with ``d = x − x'``, frequencies μ_q, spectral scales σ_q and weights w_q = exp(log w_q) learned in
the log domain (equivalent to a Jeffreys prior on w_q, which prunes unneeded frequencies). Two
spectra are provided (the ``spectrum`` argument):

``"gaussian"``
    φ a Gaussian density with standard deviation σ_q; the envelope is
    :math:`e_q(d) = \\exp(-2π^2 σ_q^2 d^2)`, the spectral mixture kernel of Wilson & Adams [2]_.
``"student_t"``
    φ a Student-t density with ``2ν`` degrees of freedom and scale σ_q; the envelope is the
    Matérn-ν correlation :math:`m_ν(d; ℓ_q)` with lengthscale :math:`ℓ_q = 1/(2πσ_q)`. Half-integer
    ν = p + ½ only (closed form :math:`m_ν = P_p(z) e^{-z}`, :math:`z = \\sqrt{2ν}|d|/ℓ`). The
    paper's experiments and released code use ν = 5/2 ("Matern52_Cos"), the default here: it is
    the smallest half-integer for which :math:`u_{xx}` has a finite variance
    (:math:`k^{(2,2)}` needs four derivatives of :math:`m_ν` at 0, i.e. 4 < 2ν).

A GP u with covariance k has derivative processes with cross-covariances

.. math:: k^{(i,j)}(x, x') = \\frac{∂^{i+j} k}{∂x^i ∂x'^j} = (-1)^j k^{(i+j)}(x - x'),

so :math:`U_x = K^{(1,0)} K^{-1} U`, :math:`U_{xx} = K^{(2,0)} K^{-1} U`, and the variance of
:math:`u_{xx}` needs :math:`k^{(2,2)} = k^{(4)}`. All derivatives are closed forms — the Leibniz
rule on envelope × cosine with

.. math::

    \\frac{\\mathrm d^n}{\\mathrm dd^n} e^{-βd^2/2} = (-\\sqrt β)^n \\mathrm{He}_n(\\sqrt β d)\\,
    e^{-βd^2/2}\\ (β = 4π^2σ^2),
    \\qquad
    \\frac{\\mathrm d^n}{\\mathrm dd^n} P(z) e^{-z} = \\mathrm{sign}(d)^n a^n
    \\big[(\\tfrac{\\mathrm d}{\\mathrm dz} - 1)^n P\\big](z)\\, e^{-z}
    \\ (z = a|d|,\\ a = \\sqrt{2ν}/ℓ),

    \\frac{\\mathrm d^n}{\\mathrm dd^n} \\cos(ωd) = ω^n \\cos(ωd + nπ/2),

evaluated as dense ``n × m`` matrices; no automatic differentiation over point pairs. The Matérn
form is exact at ``d = 0`` too (its odd derivatives vanish there for n < 2ν).

References
----------
.. [1] S. Fang, M. Cooley, D. Long, S. Li, R. M. Kirby and S. Zhe, "Solving High Frequency and
   Multi-Scale PDEs with Gaussian Processes", ICLR 2024.
.. [2] A. G. Wilson and R. P. Adams, "Gaussian Process Kernels for Pattern Discovery and
   Extrapolation", ICML 2013.
.. [3] C. E. Rasmussen and C. K. I. Williams, *Gaussian Processes for Machine Learning*, MIT
   Press 2006, §4.2 (Matérn spectral density).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jaxtyping import Array, Float

#: Supported spectra.
SPECTRA = ("gaussian", "student_t")


class SpectralMixture(NamedTuple):
    """Parameters of a 1-D spectral mixture with Q components (a JAX pytree).

    Attributes
    ----------
    log_weight : Float[Array, "q"]
        log w_q; ``k(0) = Σ_q w_q``.
    freq : Float[Array, "q"]
        Component frequencies μ_q (cycles per unit of x), usually ≥ 0.
    log_scale : Float[Array, "q"]
        log σ_q, the spectral scale of each component (Gaussian standard deviation, or the
        Student-t scale; the Matérn lengthscale is ``1/(2πσ_q)``).
    """

    log_weight: Float[Array, " q"]
    freq: Float[Array, " q"]
    log_scale: Float[Array, " q"]


def check_spectrum(spectrum: str, nu: float = 2.5) -> int | None:
    """Validate ``spectrum`` (and ν for ``"student_t"``).

    Parameters
    ----------
    spectrum : {"gaussian", "student_t"}
        Mixture family.
    nu : float, default 2.5
        Matérn smoothness for ``"student_t"``; a half-integer p + ½.

    Returns
    -------
    int or None
        p = ν − ½ for ``"student_t"``, ``None`` for ``"gaussian"``.

    Raises
    ------
    ValueError
        For an unknown spectrum or a ν that is not a positive half-integer.
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
    if spectrum == "gaussian":
        return None
    p = float(nu) - 0.5
    if p < 0 or p != int(p):
        raise ValueError(f"nu must be a half-integer (0.5, 1.5, 2.5, ...), got {nu}")
    return int(p)


def init_spectral_mixture(
    n_components: int = 30,
    max_freq: float = 10.0,
    scale: float | None = None,
    weight: float | None = None,
    dtype=None,
) -> SpectralMixture:
    """Initial parameters: frequencies on an even grid over ``[0, max_freq]``.

    .. math:: μ_q = \\frac{q-1}{Q-1}\\, μ_{\\max}, \\quad σ_q = σ, \\quad w_q = w \\qquad
        (q = 1, …, Q).

    Parameters
    ----------
    n_components : int, default 30
        Q.
    max_freq : float, default 10
        Highest initial frequency μ_max (cycles per unit of x); choose it above the highest
        frequency the solution is expected to contain.
    scale : float, optional
        Common spectral scale σ; default the grid spacing ``max_freq / (Q − 1)`` (or
        ``max_freq`` when Q = 1), so neighbouring components overlap.
    weight : float, optional
        Common weight w; default ``1/Q`` so that ``k(0) = 1``.
    dtype : dtype, optional
        Floating dtype of the arrays (default: JAX's default float).

    Returns
    -------
    SpectralMixture
    """
    if n_components < 1:
        raise ValueError(f"n_components must be ≥ 1, got {n_components}")
    if max_freq <= 0:
        raise ValueError(f"max_freq must be positive, got {max_freq}")
    Q = int(n_components)
    if scale is None:
        scale = max_freq / (Q - 1) if Q > 1 else max_freq
    if weight is None:
        weight = 1.0 / Q
    dtype = jnp.result_type(float) if dtype is None else dtype
    freq = jnp.linspace(0.0, max_freq, Q, dtype=dtype) if Q > 1 else jnp.zeros(1, dtype)
    return SpectralMixture(
        log_weight=jnp.full(Q, math.log(weight), dtype),
        freq=freq,
        log_scale=jnp.full(Q, math.log(scale), dtype),
    )


def spectral_density(
    params: SpectralMixture, s: Float[Array, "*shape"], spectrum: str = "gaussian", nu: float = 2.5
) -> Float[Array, "*shape"]:
    """Two-sided spectral density ``S(s)`` whose inverse Fourier transform is the kernel.

    .. math:: S(s) = \\sum_q \\frac{w_q}{2}\\big[φ(s; μ_q, σ_q) + φ(s; -μ_q, σ_q)\\big],

    φ a Gaussian density (``"gaussian"``) or a Student-t density with 2ν degrees of freedom
    (``"student_t"``).

    Parameters
    ----------
    params : SpectralMixture
    s : Float[Array, "*shape"]
        Frequencies (cycles per unit of x).
    spectrum : {"gaussian", "student_t"}
    nu : float, default 2.5
        Matérn smoothness (``"student_t"`` only).

    Returns
    -------
    Float[Array, "*shape"]
        ``S(s)``, same shape as ``s``.
    """
    check_spectrum(spectrum, nu)
    s = jnp.asarray(s)[..., None]
    w = jnp.exp(params.log_weight)
    sigma = jnp.exp(params.log_scale)
    if spectrum == "gaussian":

        def phi(t):
            return jnp.exp(-0.5 * t**2) / jnp.sqrt(2.0 * jnp.pi)

    else:
        dof = 2.0 * nu
        log_c = gammaln((dof + 1) / 2) - gammaln(dof / 2) - 0.5 * jnp.log(dof * jnp.pi)

        def phi(t):
            return jnp.exp(log_c - (dof + 1) / 2 * jnp.log1p(t**2 / dof))

    dens = phi((s - params.freq) / sigma) + phi((s + params.freq) / sigma)
    return jnp.sum(0.5 * w * dens / sigma, axis=-1)


def _horner(coeffs: tuple[float, ...], z: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Evaluate ``Σ_k coeffs[k] z^k``."""
    out = jnp.full_like(z, coeffs[-1])
    for c in coeffs[-2::-1]:
        out = out * z + c
    return out


@functools.cache
def _matern_poly(p: int, n: int) -> tuple[float, ...]:
    """Coefficients (in z, ascending) of ``(d/dz − 1)^n P_p``, ``m_{p+½} = P_p(z) e^{−z}``.

    ``P_p(z) = p!/(2p)! Σ_{i≤p} (p+i)!/(i!(p−i)!) (2z)^{p−i}`` (Rasmussen & Williams eq. 4.16).
    """
    coef = np.zeros(p + 1)
    for i in range(p + 1):
        coef[p - i] = (
            math.factorial(p + i) / (math.factorial(i) * math.factorial(p - i)) * 2.0 ** (p - i)
        )
    P = np.polynomial.Polynomial(coef * math.factorial(p) / math.factorial(2 * p))
    for _ in range(n):
        P = P.deriv() - P
    return tuple(float(c) for c in P.coef)


@functools.cache
def _hermite_poly(n: int) -> tuple[float, ...]:
    """Coefficients (ascending) of the probabilists' Hermite polynomial He_n."""
    basis = np.zeros(n + 1)
    basis[n] = 1.0
    return tuple(float(c) for c in np.polynomial.hermite_e.herme2poly(basis))


def _envelope_derivs(
    d: Float[Array, "*shape 1"], sigma: Float[Array, " q"], order: int, p: int | None
) -> list[Float[Array, "*shape q"]]:
    """Derivatives ``e^{(j)}(d)``, ``j = 0, …, order``, of every component's envelope."""
    if p is None:
        # e(d) = exp(−β d²/2), β = 4π²σ²;  e^{(j)} = (−√β)^j He_j(√β d) e(d)
        rb = 2.0 * jnp.pi * sigma
        t = rb * d
        e = jnp.exp(-0.5 * t**2)
        return [(-rb) ** j * _horner(_hermite_poly(j), t) * e for j in range(order + 1)]
    # e(d) = P_p(z) e^{−z}, z = a|d|, a = √(2ν)/ℓ = 2πσ√(2ν)
    a = 2.0 * jnp.pi * sigma * math.sqrt(2 * p + 1)
    z = a * jnp.abs(d)
    e = jnp.exp(-z)
    sign = jnp.sign(d)
    # odd derivatives carry sign(d); they vanish at d = 0 (for j < 2ν), where sign(0) = 0
    return [
        (sign if j % 2 else 1.0) * a**j * _horner(_matern_poly(p, j), z) * e
        for j in range(order + 1)
    ]


def _cos_derivs(d: Float[Array, "*shape 1"], freq: Float[Array, " q"], order: int):
    """Derivatives ``dʲ/ddʲ cos(ωd) = ωʲ cos(ωd + jπ/2)``, ``j = 0, …, order``, ω = 2πμ."""
    omega = 2.0 * jnp.pi * freq
    c, s = jnp.cos(omega * d), jnp.sin(omega * d)
    cycle = (c, -s, -c, s)
    return [omega**j * cycle[j % 4] for j in range(order + 1)]


def sm_kernel(
    params: SpectralMixture,
    x1: Float[Array, " n"],
    x2: Float[Array, " m"],
    spectrum: str = "gaussian",
    nu: float = 2.5,
    order: tuple[int, int] = (0, 0),
) -> Float[Array, "n m"]:
    """Dense (derivative) spectral-mixture kernel matrix.

    .. math:: K^{(i,j)}[a, b] = \\frac{∂^{i+j} k(x, x')}{∂x^i ∂x'^j}\\Big|_{x = x_{1a},\\,
        x' = x_{2b}} = (-1)^j \\sum_q w_q \\sum_{l=0}^{i+j} \\binom{i+j}{l}\\,
        e_q^{(l)}(d)\\, c_q^{(i+j-l)}(d), \\qquad d = x_{1a} - x_{2b},

    with :math:`c_q(d) = \\cos(2πμ_q d)` and envelope :math:`e_q` (see the module docstring).

    Parameters
    ----------
    params : SpectralMixture
    x1 : Float[Array, "n"]
        First set of 1-D inputs (x, differentiated i times).
    x2 : Float[Array, "m"]
        Second set of 1-D inputs (x', differentiated j times).
    spectrum : {"gaussian", "student_t"}, default "gaussian"
        Mixture family.
    nu : float, default 2.5
        Matérn smoothness (``"student_t"`` only), a half-integer.
    order : (int, int), default (0, 0)
        Derivative orders (i, j) in x and x'.

    Returns
    -------
    Float[Array, "n m"]
        The matrix.

    Raises
    ------
    ValueError
        For an unknown spectrum, a bad ν, negative orders, or ``i + j ≥ 2ν`` for
        ``"student_t"`` (the Matérn-ν kernel has only ``2ν − 1`` derivatives at 0).
    """
    check_spectrum(spectrum, nu)
    i, j = (int(o) for o in order)
    if i < 0 or j < 0:
        raise ValueError(f"derivative orders must be non-negative, got {order}")
    d = jnp.asarray(x1)[:, None] - jnp.asarray(x2)[None, :]
    return (-1) ** j * sm_kernel_lag(params, d, spectrum, nu, i + j)


def sm_kernel_lag(
    params: SpectralMixture,
    d: Float[Array, "*shape"],
    spectrum: str = "gaussian",
    nu: float = 2.5,
    n: int = 0,
) -> Float[Array, "*shape"]:
    """n-th derivative of the stationary kernel at the lags ``d``.

    .. math:: k^{(n)}(d) = \\sum_q w_q \\sum_{l=0}^{n} \\binom{n}{l}\\,
        e_q^{(l)}(d)\\, c_q^{(n-l)}(d),

    so that ``sm_kernel(..., order=(i, j)) = (-1)^j sm_kernel_lag(x1[:, None] - x2[None, :],
    n=i + j)``. On an equally spaced grid of m points the Gram matrices are Toeplitz and only
    the ``2m − 1`` distinct lags need evaluating.

    Parameters
    ----------
    params : SpectralMixture
    d : Float[Array, "*shape"]
        Lags ``x − x'``.
    spectrum : {"gaussian", "student_t"}, default "gaussian"
    nu : float, default 2.5
        Matérn smoothness (``"student_t"`` only), a half-integer.
    n : int, default 0
        Derivative order.

    Returns
    -------
    Float[Array, "*shape"]
        ``k^{(n)}(d)``.

    Raises
    ------
    ValueError
        As :func:`sm_kernel`.
    """
    p = check_spectrum(spectrum, nu)
    n = int(n)
    if n < 0:
        raise ValueError(f"derivative orders must be non-negative, got {n}")
    if p is not None and n > 2 * p:
        raise ValueError(
            f"the Matérn-{nu} envelope has derivatives up to order {2 * p} at d = 0; "
            f"order {n} was asked for"
        )
    d = jnp.asarray(d)[..., None]
    w = jnp.exp(params.log_weight)
    env = _envelope_derivs(d, jnp.exp(params.log_scale), n, p)
    cos = _cos_derivs(d, params.freq, n)
    terms = sum(math.comb(n, l) * env[l] * cos[n - l] for l in range(n + 1))
    return jnp.sum(w * terms, axis=-1)


def sm_kernel_dx(
    params: SpectralMixture,
    x1: Float[Array, " n"],
    x2: Float[Array, " m"],
    spectrum: str = "gaussian",
    nu: float = 2.5,
) -> Float[Array, "n m"]:
    """``k^{(1,0)} = ∂k/∂x``, the covariance of ``u_x(x1)`` with ``u(x2)`` (:func:`sm_kernel`)."""
    return sm_kernel(params, x1, x2, spectrum, nu, order=(1, 0))


def sm_kernel_dxx(
    params: SpectralMixture,
    x1: Float[Array, " n"],
    x2: Float[Array, " m"],
    spectrum: str = "gaussian",
    nu: float = 2.5,
) -> Float[Array, "n m"]:
    """``k^{(2,0)} = ∂²k/∂x²``, the covariance of ``u_xx(x1)`` with ``u(x2)``."""
    return sm_kernel(params, x1, x2, spectrum, nu, order=(2, 0))


def sm_kernel_dxx_dyy(
    params: SpectralMixture,
    x1: Float[Array, " n"],
    x2: Float[Array, " m"],
    spectrum: str = "gaussian",
    nu: float = 2.5,
) -> Float[Array, "n m"]:
    """``k^{(2,2)} = ∂⁴k/∂x²∂x'²``, the covariance of ``u_xx(x1)`` with ``u_xx(x2)``."""
    return sm_kernel(params, x1, x2, spectrum, nu, order=(2, 2))
