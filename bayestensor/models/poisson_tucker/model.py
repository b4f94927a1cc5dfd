"""The Poisson Tucker generative model as a plain NumPyro function."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln

from bayestensor.models.poisson_tucker.rates import cell_rates, core_shape, mode_factors, total_rate
from bayestensor.models.poisson_tucker.spec import LETTERS, UPPER, PoissonData, PoissonTuckerSpec


def poisson_tucker_model(
    spec: PoissonTuckerSpec,
    data: PoissonData | None = None,
    cells=None,
    y=None,
):
    """The generative model as a NumPyro function.

    Sites: ``b{g}``, ``theta{g}`` per factor group; ``zeta``, ``w{k}`` (and ``eta_within``,
    ``eta_between`` for the BPTD pair prior) with shrinkage; ``delta``; ``core``.

    Parameters
    ----------
    spec : PoissonTuckerSpec
    data : PoissonData, optional
        Sparse likelihood: ``Σ_nonzero (y log μ − log y!) − Λ`` as a factor site ``"loglik"``
        (any size; zeros enter through :func:`total_rate`).
    cells : (n, K) int array, optional
        Cells with a Poisson sample site ``"y"`` (dense list, for tiny tensors and predictive
        checks); rates come from the dense tensor ``einsum`` so this path is independent of the
        sparse one.
    y : (n,) array, optional
        Observed counts at ``cells`` (None: sample them).
    """
    e0, f0 = spec.e0, spec.f0
    params = {}
    for g, modes in enumerate(spec.groups):
        k = modes[0]
        b = numpyro.sample(f"b{g}", dist.Gamma(e0, f0))
        params[f"theta{g}"] = numpyro.sample(
            f"theta{g}",
            dist.Gamma(spec.factor_shape, b).expand((spec.shape[k], spec.ranks[k])).to_event(2),
        )
    if spec.shrinkage:
        zeta = numpyro.sample("zeta", dist.Gamma(e0, f0))
        for k in spec.weight_modes:
            params[f"w{k}"] = numpyro.sample(
                f"w{k}",
                dist.Gamma(spec.gamma0 / spec.ranks[k], zeta).expand((spec.ranks[k],)).to_event(1),
            )
        if spec.within_between:
            R = spec.ranks[spec.pair[0]]
            for name in ("eta_within", "eta_between"):
                params[name] = numpyro.sample(
                    name, dist.Gamma(spec.gamma0 / R, zeta).expand((R,)).to_event(1)
                )
    delta = numpyro.sample("delta", dist.Gamma(e0, f0))
    params["core"] = jnp.ones(spec.ranks)  # placeholder for core_shape's dtype
    s = core_shape(spec, params)
    core = numpyro.sample("core", dist.Gamma(s, delta).to_event(spec.K))
    params["core"] = core
    factors = mode_factors(spec, params)
    if data is not None:
        mu = cell_rates(spec, factors, core, data.index)
        ll = jnp.sum(data.y * jnp.log(mu) - gammaln(data.y + 1.0))
        numpyro.factor("loglik", ll - total_rate(spec, factors, core, data.mask))
    if cells is not None:
        cells = jnp.asarray(cells)
        letters = LETTERS[: spec.K]
        dense = jnp.einsum(
            letters
            + ","
            + ",".join(f"{UPPER[k]}{letters[k]}" for k in range(spec.K))
            + "->"
            + UPPER[: spec.K],
            core,
            *factors,
        )
        rate = dense[tuple(cells[:, k] for k in range(spec.K))]
        with numpyro.plate("cells", cells.shape[0]):
            numpyro.sample("y", dist.Poisson(rate), obs=y)
