"""Bayesian tensor models: generative NumPyro functions and their fast inference."""

from bayestensor.models.funbat import FunBaT, funbat_model
from bayestensor.models.poisson_tucker import PoissonTuckerGibbs, poisson_tucker_model

__all__ = ["FunBaT", "PoissonTuckerGibbs", "funbat_model", "poisson_tucker_model"]
