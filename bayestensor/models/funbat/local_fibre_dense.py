"""The fibre residual process by dense algebra in NumPy, for small layouts.

:class:`~.local_fibre.FibreGP` runs one Kalman filter (+ RTS smoother) per fibre in a compiled,
vmapped scan: linear in the fibres' lengths, but compiling its likelihood, gradient and
posterior cost 3–5 s of a cold fit of small data (``docs/benchmarks.md``), where the fibres
are few and short. For a Matérn kernel and a layout of at most :data:`DENSE_MAX_WORK` (fibres ×
length³) the same likelihood, its gradient and the same posterior are computed here by dense
GP algebra on the fibres' cells, batched over fibres, with no compiling:

each fibre's observed cells hold the mean ``ȳ_j`` of their ``c_j`` residuals, which is the GP
value there plus noise of variance ``σ²_n / c_j``, so with ``C = K + diag(σ²_n / c)``

.. math:: \\log Z = \\sum_f \\log N(ȳ_f; 0, C_f)
    + \\sum_j \\big[\\tfrac12 \\log(2π σ²_n / c_j) + \\tfrac12 c_j ȳ_j² / σ²_n\\big],

the filter's log normaliser of the messages exactly; the likelihood of the residuals is
``log Z − ½ n log(2π σ²_n) − ½ Σ r² / σ²_n`` as in :func:`~.local_fibre._fibre_nll`. The
gradient is the usual ``½ tr((α αᵀ − C⁻¹) ∂C)`` plus the explicit terms in ``σ²_n``. Cells
without residuals (padding, or rows only to predict) are decoupled in ``C`` (unit variance, no
value) and read the posterior ``K_{*o} C⁻¹ ȳ``, ``k(x, x) − K_{*o} C⁻¹ K_{o*}``.
"""

from __future__ import annotations

import numpy as np

from bayestensor.kernels import MATERN_NU

__all__ = ["DENSE_MAX_WORK", "dense_layout", "dense_nll_grad", "dense_posterior", "matern_gram"]

#: A layout of ``F`` fibres of at most ``L`` cells goes dense when ``F · L³`` is at most this
#: (about 0.1 s a likelihood and gradient in NumPy on this machine's cores).
DENSE_MAX_WORK = 4_000_000


def dense_layout(lay: dict, kernel: str) -> bool:
    """Whether :mod:`.local_fibre`'s layout ``lay`` is computed here: a Matérn ``kernel`` and
    at most :data:`DENSE_MAX_WORK` fibres × length³."""
    F, L = lay["dt"].shape
    return kernel in MATERN_NU and F * L**3 <= DENSE_MAX_WORK


def matern_gram(theta, kernel: str, x):
    """The Matérn ``kernel``'s covariance (F, L, L) at each row of coordinates ``x`` (F, L),
    lengthscale and variance ``exp(theta[:2])``, and its derivative in ``log ℓ``."""
    ell, var = np.exp(theta[0]), np.exp(theta[1])
    r = np.sqrt(2.0 * MATERN_NU[kernel]) / ell * np.abs(x[:, :, None] - x[:, None, :])
    e = np.exp(-r)
    # k = σ² p(r) e^{−r}; ∂k/∂ log ℓ = σ² (p − p′) r e^{−r}
    p, dp = {
        "matern12": (1.0, 1.0),
        "matern32": (1.0 + r, r),
        "matern52": (1.0 + r + r**2 / 3.0, r * (1.0 + r) / 3.0),
    }[kernel]
    return var * p * e, var * dp * r * e


def _cells(lay: dict, noise: float):
    """Observed mask, counts (1 where none), cell means and ``C`` pieces of a layout."""
    cnt = np.asarray(lay["cnt"], np.float64)
    obs = cnt > 0
    c = np.where(obs, cnt, 1.0)
    ybar = np.where(obs, np.asarray(lay["sum"], np.float64) / c, 0.0)
    return obs, c, ybar, np.where(obs, noise / c, 1.0)


def _solve(theta, kernel: str, lay: dict):
    """``K``, ``∂K/∂ log ℓ``, the masks and ``C``'s Cholesky factor, inverse and ``α``."""
    x = np.asarray(lay["grid"], np.float64)
    K, dK = matern_gram(theta, kernel, x)
    obs, c, ybar, diag = _cells(lay, float(np.exp(theta[2])))
    both = obs[:, :, None] & obs[:, None, :]
    C = np.where(both, K, 0.0)
    idx = np.arange(C.shape[-1])
    C[:, idx, idx] += diag
    chol = np.linalg.cholesky(C)
    Cinv = np.linalg.inv(C)
    Cinv = 0.5 * (Cinv + np.swapaxes(Cinv, -1, -2))
    alpha = np.einsum("fij,fj->fi", Cinv, ybar)
    return K, dK, obs, both, c, ybar, chol, Cinv, alpha


def dense_nll_grad(theta, kernel: str, lay: dict, ss: float, n: float):
    """The negative log marginal likelihood of the residuals and its gradient in ``theta``
    (log lengthscale, log variance, log noise variance), as :func:`~.local_fibre._fibre_vg`
    gives them for the same layout (``ss``: the residuals' sum of squares, ``n``: their
    number)."""
    theta = np.asarray(theta, np.float64)
    noise = float(np.exp(theta[2]))
    try:
        K, dK, obs, both, c, ybar, chol, Cinv, alpha = _solve(theta, kernel, lay)
    except np.linalg.LinAlgError:  # not positive definite in floating point: L-BFGS-B steps back
        return np.inf, np.zeros(3)
    logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)))
    m = float(np.sum(obs))
    log_n = -0.5 * float(np.sum(alpha * ybar)) - 0.5 * logdet - 0.5 * m * np.log(2 * np.pi)
    extra = np.where(obs, 0.5 * np.log(2 * np.pi * noise / c) + 0.5 * c * ybar**2 / noise, 0.0)
    logz = log_n + float(np.sum(extra))
    nll = -(logz - 0.5 * n * np.log(2 * np.pi * noise) - 0.5 * ss / noise)
    W = alpha[:, :, None] * alpha[:, None, :] - Cinv  # ½ tr(W ∂C) is ∂ log N
    g_ell = 0.5 * np.sum(W * np.where(both, dK, 0.0))
    g_var = 0.5 * np.sum(W * np.where(both, K, 0.0))
    d_noise = np.where(obs, noise / c, 0.0)
    g_noise = 0.5 * np.sum(np.diagonal(W, axis1=-2, axis2=-1) * d_noise)
    g_noise += float(np.sum(np.where(obs, 0.5 - 0.5 * c * ybar**2 / noise, 0.0)))
    g_noise += -0.5 * n + 0.5 * ss / noise
    return nll, -np.array([g_ell, g_var, g_noise])


def dense_posterior(theta, kernel: str, lay: dict):
    """Mean and variance of the process at every cell of the layout (F, L), as
    :func:`~.local_fibre._fibre_post` gives them."""
    theta = np.asarray(theta, np.float64)
    K, _, obs, _, _, _, _, Cinv, alpha = _solve(theta, kernel, lay)
    Ko = np.where(obs[:, None, :], K, 0.0)  # each cell against the observed ones
    mean = np.einsum("fij,fj->fi", Ko, alpha)
    var = np.exp(theta[1]) - np.einsum("fij,fjk,fik->fi", Ko, Cinv, Ko)
    return mean, var
