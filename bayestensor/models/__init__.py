"""Bayesian tensor models: generative NumPyro functions and their fast inference."""

from bayestensor.models.funbat import FunBaT, funbat_model

__all__ = ["FunBaT", "funbat_model"]
