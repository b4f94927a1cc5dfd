"""One-dimensional GP regression in O(n) with the state-space Kalman smoother.

``y_i = u(x_i) + ε_i``, ``u ~ GP(0, Matérn_ν(ℓ, σ²))``, ``ε_i ~ N(0, s²)``. Each observation is a
natural-parameter message ``Λ = 1/s², η = y/s²`` to :mod:`bayestensor.ssm`, so the evidence is

.. math:: \\log p(y) = \\log Z + \\sum_i \\big[\\tfrac12 \\log(Λ/2π) − \\tfrac12 y_i^2 Λ\\big],

and ``(ℓ, σ², s²)`` are fitted to the standardised values by maximising it with Adam on their
logarithms (one compiled ``lax.scan`` over the optimisation steps). Repeated coordinates are
merged by summing their messages, which is exact.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayestensor.kernels import check_kernel_name
from bayestensor.ssm import (
    Posterior,
    gaps,
    interpolate,
    kalman_filter,
    locate,
    smooth,
    stacked_matern,
)


class GPFit(NamedTuple):
    """A fitted 1-D state-space GP (see :func:`fit_gp`).

    Attributes
    ----------
    kernel : str
        Matérn kernel name.
    x : np.ndarray
        Sorted unique training coordinates.
    lengthscale, variance, noise : float
        Fitted ℓ (units of ``x``), σ² and noise variance s² (standardised units of y).
    log_evidence : float
        ``log p(y)`` at the fitted hyperparameters.
    posterior : Posterior
        Smoothed posterior at ``x``.
    history : np.ndarray
        Negative log evidence of y per optimisation step.
    y_mean, y_scale : float
        The fit runs on ``(y − y_mean) / y_scale``; ``variance`` and ``noise`` are in those
        standardised units, predictions are in y's units.
    """

    kernel: str
    x: np.ndarray
    lengthscale: float
    variance: float
    noise: float
    log_evidence: float
    posterior: Posterior
    history: np.ndarray
    y_mean: float = 0.0
    y_scale: float = 1.0

    def predict(self, xnew) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean of u and standard deviations of u and of a new y at ``xnew``.

        Parameters
        ----------
        xnew : array-like of shape (M,)
            Any coordinates (inside or outside the training range).

        Returns
        -------
        mean, sd_u, sd_y : np.ndarray of shape (M,)
        """
        xnew = np.asarray(xnew, dtype=np.float64)
        mean, cov = _predict(
            self.posterior,
            locate(self.x, xnew),
            self.lengthscale,
            self.variance,
            kernel=self.kernel,
        )
        var_u = np.asarray(cov[:, 0, 0])
        c = self.y_scale
        mean = self.y_mean + c * np.asarray(mean[:, 0])
        return mean, c * np.sqrt(var_u), c * np.sqrt(var_u + self.noise)


@partial(jax.jit, static_argnames=("kernel",))
def _predict(post, loc, lengthscale, variance, *, kernel):
    return interpolate(stacked_matern(kernel, lengthscale, variance, 1), post, loc)


def _messages(index, y, noise, n_unique):
    """Sum the messages Λ = 1/s², η = y/s² of observations sharing a coordinate."""
    prec = jax.ops.segment_sum(jnp.ones_like(y), index, n_unique) / noise
    shift = jax.ops.segment_sum(y, index, n_unique) / noise
    return prec[:, None, None], shift[:, None]


def log_evidence(params, kernel, dt, index, y):
    """``log p(y)`` for log-hyperparameters ``params = (log ℓ, log σ², log s²)``.

    With ``n_t`` observations at coordinate t the message is ``Λ_t = n_t/s²``,
    ``η_t = Σ y_i / s²``, and

    ``log p(y) = ℓ − (n/2) log(2π s²) − Σ_t Σ_{i∈t} (y_i − ȳ_t)² / (2 s²)``,

    where ℓ is the filter's cancellation-free ``log_lik`` (see :mod:`bayestensor.ssm`).

    Parameters
    ----------
    params : Float[Array, "3"]
        Log lengthscale, log signal variance and log noise variance.
    kernel : str
        Matérn kernel name.
    dt : Float[Array, "N"]
        Gaps between the sorted unique coordinates (``dt[0] = 0``).
    index : Int[Array, "n"]
        Position of each observation among the unique coordinates.
    y : Float[Array, "n"]
        Observations.

    Returns
    -------
    Float[Array, ""]
    """
    ell, var, noise = jnp.exp(params)
    N = dt.shape[0]
    prec, shift = _messages(index, y, noise, N)
    sde = stacked_matern(kernel, ell, var, 1)
    loglik = kalman_filter(sde, dt, prec, shift).log_lik
    count = jax.ops.segment_sum(jnp.ones_like(y), index, N)
    ybar = jax.ops.segment_sum(y, index, N) / jnp.maximum(count, 1.0)
    scatter = jnp.sum((y - ybar[index]) ** 2)
    n = y.shape[0]
    return loglik - 0.5 * n * jnp.log(2 * jnp.pi * noise) - 0.5 * scatter / noise


@partial(jax.jit, static_argnames=("kernel", "steps", "learning_rate"))
def _optimise(init, dt, index, y, *, kernel, steps, learning_rate):
    """Adam on the log-hyperparameters (one compiled scan), then the smoothed posterior."""
    opt = optax.adam(learning_rate)

    def loss(p):
        return -log_evidence(p, kernel, dt, index, y)

    def _step(carry, _):
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p)
        updates, state = opt.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), hist = jax.lax.scan(_step, (init, opt.init(init)), None, length=steps)
    ell, var, noise = jnp.exp(params)
    prec, shift = _messages(index, y, noise, dt.shape[0])
    post = smooth(stacked_matern(kernel, ell, var, 1), dt, prec, shift)
    return params, hist, post, log_evidence(params, kernel, dt, index, y)


def fit_gp(x, y, *, kernel: str = "matern32", steps: int = 300, learning_rate: float = 0.05):
    """Fit a 1-D Matérn GP by maximising the Kalman evidence.

    Parameters
    ----------
    x : array-like of shape (n,)
        Coordinates (any order, repeats allowed).
    y : array-like of shape (n,)
        Observations.
    kernel : {"matern12", "matern32", "matern52"}
        Smoothness of the prior.
    steps : int
        Adam steps on the log-hyperparameters.
    learning_rate : float
        Adam learning rate.

    Returns
    -------
    GPFit

    Raises
    ------
    ValueError
        On mismatched lengths, fewer than 3 points, non-finite values or bad settings.
    """
    check_kernel_name(kernel)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 observations, got {x.size}")
    for name, a in (("x", x), ("y", y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has {int(np.sum(~np.isfinite(a)))} NaN or inf values")
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    xu, index = np.unique(x, return_inverse=True)
    if xu.size < 2:
        raise ValueError("x must contain at least 2 distinct coordinates")
    dt = gaps(xu)
    # fit on standardised values z = (y − ȳ)/s_y (a constant-mean GP), report in y's units
    y_mean, y_scale = float(np.mean(y)), float(np.std(y)) or 1.0
    y_raw, y = y, (y - y_mean) / y_scale
    # data-driven start: lengthscale a tenth of the range, signal variance 1, noise 0.1
    init = jnp.log(jnp.array([(xu[-1] - xu[0]) / 10.0, 1.0, 0.1]))
    params, hist, post, logev = _optimise(
        init, dt, index, y, kernel=kernel, steps=steps, learning_rate=learning_rate
    )
    ell, var, noise = (float(v) for v in np.exp(np.asarray(params)))
    # evidence of the original y: the standardisation's Jacobian is −n log s_y
    logev = float(logev) - y_raw.size * np.log(y_scale)
    hist = np.asarray(hist) + y_raw.size * np.log(y_scale)
    return GPFit(kernel, xu, ell, var, noise, logev, post, hist, y_mean, y_scale)
