"""Bayesian tensor models: each a package with the same file roles.

``model`` (the NumPyro model), inference modules (pure functions over NamedTuple pytrees),
``estimator`` (the loop, through :mod:`bayestensor.driver`) and ``result`` (what the user holds,
following :mod:`bayestensor.results`).
"""

from bayestensor.models.funbat import FitResult, FunBaT, funbat_model
from bayestensor.models.poisson_tucker import (
    PoissonTuckerGibbs,
    PoissonTuckerResult,
    fit_poisson_tucker,
    poisson_tucker_model,
)

__all__ = [
    "FitResult",
    "FunBaT",
    "PoissonTuckerGibbs",
    "PoissonTuckerResult",
    "fit_poisson_tucker",
    "funbat_model",
    "poisson_tucker_model",
]
