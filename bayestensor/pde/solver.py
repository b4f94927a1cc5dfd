"""GP-HM: a Gaussian-process solver for high-frequency and multi-scale PDEs.

The solution values on the collocation grid, ``U`` (shape ``(n_1, …, n_D)``), have the GP prior
:math:`\\mathrm{vec}(U) \\sim \\mathcal N(0, K)`, :math:`K = ⊗_d (K_d + εI)` with
:math:`K_d = k_d(x^{(d)}, x^{(d)})` a 1-D spectral-mixture kernel (:mod:`bayestensor.pde.kernels`)
and ε a jitter. Derivatives of u are the GP conditional mean given ``U``; because ``K`` is a
Kronecker product, a derivative along dimension d is a mode product with one small matrix:

.. math::

    U_{v} = U \\times_d \\big[K_d^{(1,0)} (K_d + εI)^{-1}\\big], \\qquad
    U_{vv} = U \\times_d \\big[K_d^{(2,0)} (K_d + εI)^{-1}\\big].

The parameters — ``U`` and every dimension's mixture (log-weights, frequencies, log-scales) —
minimise the negative log joint (the GP-HM objective)

.. math::

    \\mathcal J = \\tfrac12 \\mathrm{vec}(U)^\\top K^{-1} \\mathrm{vec}(U) + \\tfrac12 \\log|K|
    + \\frac{λ_b}{2} \\sum_{x ∈ ∂X} (U(x) - g(x))^2
    + \\frac{λ_r}{2} \\sum_{x ∈ X} \\big(\\mathcal L[U](x) - f(x)\\big)^2,

i.e. the GP prior plus Gaussian likelihoods with precisions λ_b (boundary) and λ_r (residual).
The quadratic form and the log-determinant use per-dimension Cholesky factors
``K_d + εI = L_d L_dᵀ`` and mode products, never the ``N × N`` matrix; the weights are learned
in the log domain (a Jeffreys prior, no extra term).

``U`` is parametrised by whitened values ``Z``, :math:`U = Z \\times_1 L_1 \\cdots \\times_D L_D`
(:func:`solution`), so the quadratic form is :math:`\\|Z\\|_F^2`. The objective is the same
function of ``(U, kernels)`` as in the paper, and so are its minimisers; only the coordinates
the optimiser moves in change. Optimising ``U`` directly (as the paper does) converges far more
slowly: the prior term is as ill-conditioned as ``K``. :func:`fit` runs Adam (optax) with a
cosine-decayed step size as one jitted ``lax.scan``.

References
----------
.. [1] S. Fang, M. Cooley, D. Long, S. Li, R. M. Kirby and S. Zhe, "Solving High Frequency and
   Multi-Scale PDEs with Gaussian Processes", ICLR 2024.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax
from jax import lax
from jaxtyping import Array, Float

from bayestensor.pde.kernels import (
    SpectralMixture,
    check_spectrum,
    init_spectral_mixture,
    sm_kernel_lag,
)
from bayestensor.pde.problems import Problem
from bayestensor.tensor import mode_dot, multi_mode_dot


class GPHMConfig(NamedTuple):
    """Settings of the GP-HM solver (static: changing one recompiles :func:`fit`).

    Attributes
    ----------
    spectrum : {"gaussian", "student_t"}
        Mixture family of every dimension's kernel.
    nu : float
        Matérn smoothness for ``"student_t"`` (≥ 2.5 so that second derivatives exist).
    n_components : int
        Q, mixture components per dimension.
    max_freq : float
        Highest initial frequency (cycles per unit length), see
        :func:`~bayestensor.pde.kernels.init_spectral_mixture`.
    jitter : float
        ε added to the diagonal of every ``K_d``.
    boundary_weight : float
        λ_b, precision of the boundary likelihood. Keep it well above ``residual_weight``: for
        elliptic problems a boundary error spreads over the whole domain.
    residual_weight : float
        λ_r, precision of the residual likelihood.
    learning_rate : float
        Initial Adam step size, cosine-decayed to 1 % of itself over ``n_steps``.
    n_steps : int
        Number of Adam steps.
    """

    spectrum: str = "gaussian"
    nu: float = 2.5
    n_components: int = 30
    max_freq: float = 10.0
    jitter: float = 1e-6
    boundary_weight: float = 1e5
    residual_weight: float = 1e3
    learning_rate: float = 5e-2
    n_steps: int = 3000


class GPHMParams(NamedTuple):
    """Learned quantities (a JAX pytree).

    Attributes
    ----------
    Z : Float[Array, "*shape"]
        Whitened grid values; the solution is ``U = Z ×_1 L_1 ⋯ ×_D L_D`` (:func:`solution`).
    kernels : tuple of SpectralMixture
        One spectral mixture per dimension.
    """

    Z: Float[Array, "*shape"]
    kernels: tuple[SpectralMixture, ...]


def init_params(problem: Problem, config: GPHMConfig) -> GPHMParams:
    """``Z = 0`` and the default mixture of :func:`init_spectral_mixture` per dimension."""
    check_spectrum(config.spectrum, config.nu)
    kernels = tuple(
        init_spectral_mixture(config.n_components, config.max_freq) for _ in problem.grid
    )
    return GPHMParams(jnp.zeros(problem.shape), kernels)


def kernel_matrix(
    params: SpectralMixture, x: Float[Array, " n"], config: GPHMConfig, n: int = 0
) -> Float[Array, "n n"]:
    """``K^{(n,0)}[i, j] = k^{(n)}(x_i − x_j)`` on one dimension's grid coordinates.

    On an equally spaced grid (checked on the concrete coordinates) the matrix is Toeplitz: the
    kernel is evaluated at the ``2m − 1`` distinct lags ``(i − j) h`` and gathered, which costs
    ``O(mQ)`` instead of ``O(m²Q)``; otherwise :func:`~bayestensor.pde.kernels.sm_kernel_lag` is
    evaluated on all pairs.

    Parameters
    ----------
    params : SpectralMixture
    x : Float[Array, "n"]
        Sorted grid coordinates (concrete, not traced).
    config : GPHMConfig
    n : int, default 0
        Derivative order in the first argument.

    Returns
    -------
    Float[Array, "n n"]
    """
    xs = np.asarray(x)
    m = xs.shape[0]
    h = (xs[-1] - xs[0]) / (m - 1)
    if np.allclose(np.diff(xs), h, rtol=1e-10, atol=0.0):
        lags = jnp.asarray(h * np.arange(-(m - 1), m), dtype=x.dtype)
        values = sm_kernel_lag(params, lags, config.spectrum, config.nu, n)
        return values[np.arange(m)[:, None] - np.arange(m)[None, :] + m - 1]
    return sm_kernel_lag(params, x[:, None] - x[None, :], config.spectrum, config.nu, n)


class DimensionFactors(NamedTuple):
    """Per-dimension matrices of the GP-HM model.

    Attributes
    ----------
    L : Float[Array, "n n"]
        Lower Cholesky factor of ``K_d + εI``.
    D1 : Float[Array, "n n"]
        ``K_d^{(1,0)} (K_d + εI)⁻¹``: grid values to first derivatives.
    D2 : Float[Array, "n n"]
        ``K_d^{(2,0)} (K_d + εI)⁻¹``: grid values to second derivatives.
    """

    L: Float[Array, "n n"]
    D1: Float[Array, "n n"]
    D2: Float[Array, "n n"]


def dimension_factors(
    params: SpectralMixture, x: Float[Array, " n"], config: GPHMConfig
) -> DimensionFactors:
    """Cholesky factor and derivative matrices of one dimension.

    .. math:: K + εI = L L^\\top, \\qquad D_i = K^{(i,0)} (K + εI)^{-1}
        = \\big[(K + εI)^{-1} K^{(i,0)\\top}\\big]^\\top \\quad (i = 1, 2).

    Parameters
    ----------
    params : SpectralMixture
        The dimension's kernel.
    x : Float[Array, "n"]
        Its grid coordinates.
    config : GPHMConfig

    Returns
    -------
    DimensionFactors
    """
    K = kernel_matrix(params, x, config)
    L = jnp.linalg.cholesky(K + config.jitter * jnp.eye(x.shape[0], dtype=K.dtype))
    K1 = kernel_matrix(params, x, config, 1)
    K2 = kernel_matrix(params, x, config, 2)
    D1 = jsl.cho_solve((L, True), K1.T).T
    D2 = jsl.cho_solve((L, True), K2.T).T
    return DimensionFactors(L, D1, D2)


def _all_factors(params: GPHMParams, problem: Problem, config: GPHMConfig):
    """:func:`dimension_factors` of every dimension."""
    return [
        dimension_factors(k, x, config) for k, x in zip(params.kernels, problem.grid, strict=True)
    ]


def solution(
    params: GPHMParams, problem: Problem, config: GPHMConfig, factors=None
) -> Float[Array, "*shape"]:
    """Solution on the grid, ``U = Z ×_1 L_1 ⋯ ×_D L_D`` (``vec U = (⊗_d L_d) vec Z``)."""
    factors = _all_factors(params, problem, config) if factors is None else factors
    return multi_mode_dot(params.Z, [f.L for f in factors])


def derivative_grids(
    params: GPHMParams, problem: Problem, config: GPHMConfig, factors=None
) -> dict[str, Float[Array, "*shape"]]:
    """The dict ``{"u": U, "u_x": …, "u_xx": …, …}`` the problem's operator reads.

    .. math:: U_v = U \\times_d D_{1,d}, \\qquad U_{vv} = U \\times_d D_{2,d}
        \\qquad (v \\text{ the name of dimension } d).

    Parameters
    ----------
    params : GPHMParams
    problem : Problem
    config : GPHMConfig
    factors : list of DimensionFactors, optional
        Precomputed :func:`dimension_factors` of every dimension.

    Returns
    -------
    dict of str to Float[Array, "*shape"]
    """
    factors = _all_factors(params, problem, config) if factors is None else factors
    U = solution(params, problem, config, factors)
    grids = {"u": U}
    for d, (v, f) in enumerate(zip(problem.variables, factors, strict=True)):
        grids[f"u_{v}"] = mode_dot(U, f.D1, d)
        grids[f"u_{v}{v}"] = mode_dot(U, f.D2, d)
    return grids


def loss(params: GPHMParams, problem: Problem, config: GPHMConfig) -> Float[Array, ""]:
    """Negative log joint ``𝒥`` (module docstring), constants dropped.

    .. math:: 𝒥 = \\tfrac12 \\|Z\\|_F^2 + \\sum_d \\frac{N}{n_d} \\sum_i \\log (L_d)_{ii}
        + \\frac{λ_b}{2} \\|U_{∂X} - g\\|^2 + \\frac{λ_r}{2} \\|\\mathcal L[U] - f\\|^2,

    using ``vec(U)ᵀ K⁻¹ vec(U) = ‖Z‖²`` and ``log|K| = Σ_d (N/n_d) log|K_d + εI|``.

    Parameters
    ----------
    params : GPHMParams
    problem : Problem
    config : GPHMConfig

    Returns
    -------
    Float[Array, ""]
    """
    factors = _all_factors(params, problem, config)
    grids = derivative_grids(params, problem, config, factors)
    N = params.Z.size
    half_logdet = sum((N // f.L.shape[0]) * jnp.sum(jnp.log(jnp.diag(f.L))) for f in factors)
    residual = problem.operator(grids) - problem.source
    boundary = grids["u"][problem.boundary_mask] - problem.boundary_values
    return (
        0.5 * jnp.sum(params.Z**2)
        + half_logdet
        + 0.5 * config.boundary_weight * jnp.sum(boundary**2)
        + 0.5 * config.residual_weight * jnp.sum(residual**2)
    )


def fit(
    problem: Problem, config: GPHMConfig | None = None, params: GPHMParams | None = None
) -> tuple[GPHMParams, Float[Array, " n_steps"]]:
    """Minimise :func:`loss` with Adam, all steps in one jitted ``lax.scan``.

    Parameters
    ----------
    problem : Problem
    config : GPHMConfig, optional
        Default ``GPHMConfig()``.
    params : GPHMParams, optional
        Starting point; default :func:`init_params`.

    Returns
    -------
    params : GPHMParams
        The final parameters; :func:`solution` gives the solution on the grid.
    losses : Float[Array, "n_steps"]
        The loss before each step.
    """
    config = GPHMConfig() if config is None else config
    params = init_params(problem, config) if params is None else params
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.n_steps, alpha=0.01)
    optimiser = optax.adam(schedule)
    value_and_grad = jax.value_and_grad(loss)

    def _step(carry, _):
        # one Adam step on the negative log joint
        params, opt_state = carry
        value, grads = value_and_grad(params, problem, config)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @jax.jit
    def run(params):
        carry, losses = lax.scan(_step, (params, optimiser.init(params)), length=config.n_steps)
        return carry[0], losses

    return run(params)
