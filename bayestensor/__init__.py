"""bayestensor: Bayesian tensor models on continuous and categorical coordinates."""

__version__ = "0.1.0"
