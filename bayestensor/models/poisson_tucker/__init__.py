"""Bayesian Poisson Tucker decomposition (BPTD): NumPyro model, compiled Gibbs sampler, CAVI.

Model (K modes, mode ``k`` of size ``N_k`` and rank bound ``R_k``)::

    y[i₁,…,i_K] ~ Poisson(μ[i]),   μ[i] = Σ_{r₁…r_K} λ[r₁,…,r_K] Π_k θ^k[i_k, r_k]
    θ^g[i, c]  ~ Gamma(a, b_g),     b_g ~ Gamma(e₀, f₀)          (one matrix per factor group g)
    λ[r]       ~ Gamma(s[r], δ),    δ ~ Gamma(e₀, f₀)
    s[r]       = Π_k w^k[r_k],      w^k_c ~ Gamma(γ₀ / R_k, ζ),   ζ ~ Gamma(e₀, f₀)

The weights ``w`` are the finite gamma-process shrinkage of Schein et al. (2016): the shapes
``γ₀/R_k`` are small, so components the data do not need get weights near zero and their core
cells collapse. Optional *pair* ``(a, b)`` of modes (sender, receiver) with

* ``share``: one factor matrix for both modes (the levels of the two modes are the same);
* ``exclude_diagonal``: cells with ``i_a = i_b`` are not observed (required with ``share``: on
  the diagonal a shared factor enters squared and the conditional is not conjugate);
* ``within_between``: BPTD's core prior, ``s = η↻_c`` on ``r_a = r_b = c`` and ``η↔_c η↔_d``
  off it (times the other modes' weights), in place of ``w^a_c w^b_d``.

A *mask* (dense 0/1 array over a subset of modes) marks missing slices: their cells are neither
zeros nor counts. Only the nonzero cells are ever listed; zero cells enter through the total
observed rate ``Λ = Σ_{observed cells} μ``, which is a multilinear function of the factors
computed in closed form from column sums, the diagonal term and the mask term
(:func:`total_rate`). Its gradient gives every exposure the conjugate updates need.

Modules: :mod:`.spec` (specification, data), :mod:`.rates` (closed-form rates and exposures),
:mod:`.model` (the NumPyro model), :mod:`.gibbs` (the sampler), :mod:`.vi` (CAVI steps),
:mod:`.estimator` (:func:`fit_poisson_tucker`, the runs), :mod:`.result`.

Inference

* :func:`poisson_tucker_model`: the NumPyro model (NUTS on tiny tensors, predictive checks).
* :class:`PoissonTuckerGibbs`: a :class:`numpyro.infer.mcmc.MCMCKernel` running one compiled
  Gibbs sweep per step: allocation of every token compositionally (``r_{π₁}``, then
  ``r_{π₂} | r_{π₁}``, …) from precomputed contraction tables, conjugate gamma updates (rows of a
  shared factor one at a time, exactly), CRT augmentation for the shrinkage weights.
* :func:`cavi_fit`: mean-field coordinate ascent with the same sufficient statistics; the
  weights and ``ζ`` are point estimates (exact 1-D maximisation), so the bound never decreases.

References
----------
Schein, Zhou, Blei, Wallach. "Bayesian Poisson Tucker Decomposition for Learning the Structure of
International Relations." ICML 2016.
Zhou, Carin. "Negative binomial process count and mixture modeling." IEEE TPAMI 2015 (CRT).
"""

from bayestensor.models.poisson_tucker.estimator import cavi_fit, fit_poisson_tucker, run_gibbs
from bayestensor.models.poisson_tucker.gibbs import (
    GibbsState,
    PoissonTuckerGibbs,
    allocate,
    crt,
    gamma_draw,
    gibbs_sweep,
    init_params,
    shard_tokens,
)
from bayestensor.models.poisson_tucker.model import poisson_tucker_model
from bayestensor.models.poisson_tucker.rates import (
    QUANTILE_RESOLUTION,
    cell_rates,
    component_mass,
    core_shape,
    exposures,
    masked_rate,
    mixture_quantiles,
    mode_factors,
    total_rate,
)
from bayestensor.models.poisson_tucker.result import PoissonTuckerResult
from bayestensor.models.poisson_tucker.spec import (
    PoissonData,
    PoissonTuckerSpec,
    make_spec,
    prepare_data,
    region_mask,
    with_exact_counts,
)
from bayestensor.models.poisson_tucker.vi import VIState, cavi_step, elbo, vi_init

__all__ = [
    "QUANTILE_RESOLUTION",
    "GibbsState",
    "PoissonData",
    "PoissonTuckerGibbs",
    "PoissonTuckerResult",
    "PoissonTuckerSpec",
    "VIState",
    "allocate",
    "cavi_fit",
    "cavi_step",
    "cell_rates",
    "component_mass",
    "core_shape",
    "crt",
    "elbo",
    "exposures",
    "fit_poisson_tucker",
    "gamma_draw",
    "gibbs_sweep",
    "init_params",
    "make_spec",
    "masked_rate",
    "mixture_quantiles",
    "mode_factors",
    "poisson_tucker_model",
    "prepare_data",
    "region_mask",
    "run_gibbs",
    "shard_tokens",
    "total_rate",
    "vi_init",
    "with_exact_counts",
]
