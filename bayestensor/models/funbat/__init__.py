"""Functional Bayesian Tucker / CP decomposition (FunBaT): model and fast inference.

Modules: :mod:`.state` (pytrees), :mod:`.moments` (contractions, core and noise updates),
:mod:`.inference` (init, sweep, predict), :mod:`.ard` (``rank="auto"``: ARD precisions,
pruning), :mod:`.estimator` (:class:`FunBaT`, the loop), :mod:`.model` (the NumPyro model),
:mod:`.result` (:class:`FitResult`).

The model for an observation ``y_n`` at coordinates
``(x_n1, …, x_nK)`` is

.. math::

    y_n = \\sum_{r_1 … r_K} W_{r_1 … r_K} \\prod_k u^k_{r_k}(x_{nk}) + ε_n,
    \\qquad ε_n \\sim \\mathcal N(0, τ^{-1}), \\qquad τ \\sim \\mathrm{Gamma}(a_0, b_0),

with ``vec W ~ N(0, I)`` (Tucker, ranks ``R_k`` per mode) or ``W`` the fixed superdiagonal of ones
(CP, all ``R_k = R``). On a continuous mode the ``R_k`` functions ``u^k_r`` are iid
``GP(0, Matérn_ν(ℓ_k, σ²_k))``; on a categorical mode the factor rows are iid ``N(0, I_{R_k})``.

Inference is the mean-field conditional EP / variational scheme of FunBaT,
``q(W) q(τ) Π_k q(U^k)``, with ``q(U^k)`` Gaussian over all ``R_k`` functions of mode ``k``. For
mode ``k`` write ``f_n = a_nᵀ u^k(x_nk)`` with ``a_n`` the core contracted with the other modes'
factor rows at observation ``n``. Each observation sends the Gaussian message

.. math::

    Λ_n = E[τ]\\, E[a_n a_n^\\top], \\qquad η_n = E[τ]\\, y_n\\, E[a_n]

to ``u^k(x_nk)``; messages sharing a coordinate are summed and damped in natural parameters, and
the posterior of ``u^k`` follows from one Kalman filter + RTS smoother pass over the sorted unique
coordinates (:func:`bayestensor.ssm.smooth`) or, for a categorical mode, a closed form per
category. The core and the noise precision then have closed-form Gaussian / Gamma updates, and
the kernel hyperparameters take a pattern-search step on the log marginal likelihood of the
messages (the part of the evidence lower bound that depends on them; see :func:`hyper_search`).
One sweep is one compiled function; its cost is linear in the number of observations and of
unique coordinates.

Notation
--------
=================  ===========================================================================
``K``              number of modes
``R`` / ``R_k``    rank(s); ``P = Π_k R_k`` the core size (Tucker)
``N_k``            number of unique coordinates (categories) of mode ``k``
``μ, Σ``           factor-row posterior mean ``(N_k, R_k)`` and covariance ``(N_k, R_k, R_k)``
``M``              factor-row second moment ``E[u uᵀ] = Σ + μ μᵀ``
``m_W, S_W``       core mean ``(R_1, …, R_K)`` and second moment ``E[vec W vec Wᵀ]``
``Λ, η``           message precision and shift (natural parameters)
=================  ===========================================================================

References
----------
.. [1] S. Fang, X. Yu, Z. Wang, S. Li, R. M. Kirby and S. Zhe, "Functional Bayesian Tucker
   Decomposition for Continuous-indexed Tensor Data", ICLR 2024.
.. [2] T. G. Kolda and B. W. Bader, "Tensor Decompositions and Applications", SIAM Review 2009.
"""

from __future__ import annotations

from bayestensor.models.funbat.estimator import FunBaT
from bayestensor.models.funbat.inference import init_state, predict_moments, spectral_init, sweep
from bayestensor.models.funbat.model import funbat_model
from bayestensor.models.funbat.moments import (
    core_update,
    expected_contraction,
    expected_f,
    message_sums,
    noise_update,
)
from bayestensor.models.funbat.result import FitResult
from bayestensor.models.funbat.state import (
    ARDPosterior,
    CategoricalPosterior,
    CorePosterior,
    FunBaTConfig,
    FunBaTState,
    Messages,
    NoisePosterior,
    WeightPosterior,
)

__all__ = [
    "ARDPosterior",
    "CategoricalPosterior",
    "CorePosterior",
    "FitResult",
    "FunBaT",
    "FunBaTConfig",
    "FunBaTState",
    "Messages",
    "NoisePosterior",
    "WeightPosterior",
    "core_update",
    "expected_contraction",
    "expected_f",
    "funbat_model",
    "init_state",
    "message_sums",
    "noise_update",
    "predict_moments",
    "spectral_init",
    "sweep",
]
