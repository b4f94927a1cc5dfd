"""The FunBaT generative model as a plain NumPyro function (dense GPs; tiny problems)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bayestensor.kernels import KERNELS, kernel_cov
from bayestensor.models.funbat.moments import einsum_letters


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
    periods=None,
    envelopes=None,
    a0: float = 1e-3,
    b0: float = 1e-3,
):
    """The FunBaT generative model as a plain NumPyro function (dense GPs; tiny problems).

    ``U^k ~ N(0, K_k ⊗ I_{R_k})`` with ``K_k`` the dense kernel covariance over the unique
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
    kernel : str or sequence of str
        Kernel name (a key of :data:`bayestensor.kernels.KERNELS`) for every continuous mode,
        or one per mode. The (quasi-)periodic kernels are the exact ones here, not the
        truncated series the fast inference uses.
    lengthscales, variances : sequence of float
        Per mode ℓ_k, σ²_k (ignored for categorical modes; default 1).
    periods, envelopes : sequence of float, optional
        Per mode the period and the quasi-periodic envelope lengthscale (where the kernel has
        them; default 1).
    a0, b0 : float
        Gamma prior of τ.
    """
    import numpyro
    import numpyro.distributions as dist

    K = len(coords_per_mode)
    ranks = (rank,) * K if np.ndim(rank) == 0 else tuple(rank)
    lengthscales = [1.0] * K if lengthscales is None else list(lengthscales)
    variances = [1.0] * K if variances is None else list(variances)
    periods = [1.0] * K if periods is None else list(periods)
    envelopes = [1.0] * K if envelopes is None else list(envelopes)
    kernels = [kernel] * K if isinstance(kernel, str) else list(kernel)
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
            values = {
                "lengthscale": lengthscales[k],
                "variance": variances[k],
                "period": periods[k],
                "envelope": envelopes[k],
            }
            hyper = [values[n] for n in KERNELS[kernels[k]]]
            cov = kernel_cov(kernels[k], x, x, *hyper)
            cov = cov + 1e-8 * variances[k] * jnp.eye(N)
            mvn = dist.MultivariateNormal(jnp.zeros(N), covariance_matrix=cov)
            # rows of U^k are the R functions' values: sample (R, N) then transpose
            U = numpyro.sample(f"U{k}", mvn.expand([R]).to_event(1)).T
        rows.append(U[index[:, k]])
    if model == "cp":
        f = jnp.prod(jnp.stack(rows), axis=0).sum(-1)
    else:
        W = numpyro.sample("W", dist.Normal(0.0, 1.0).expand(list(ranks)).to_event(len(ranks)))
        r, _ = einsum_letters(K)
        f = jnp.einsum(",".join([r] + [f"n{c}" for c in r]) + "->n", W, *rows)
    numpyro.deterministic("f", f)
    tau = numpyro.sample("tau", dist.Gamma(a0, b0))
    with numpyro.plate("obs", index.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0 / jnp.sqrt(tau)), obs=y)
