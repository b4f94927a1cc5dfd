"""Bayesian tensor models: each a package with the same file roles.

``model`` (the NumPyro model), inference modules (pure functions over NamedTuple pytrees),
``estimator`` (the loop, through :mod:`bayestensor.driver`) and ``result`` (what the user holds,
following :mod:`bayestensor.results`).
"""

#: Names imported on first use (Poisson Tucker's Gibbs sampler pulls in NumPyro's MCMC, which a
#: FunBaT fit does not need): name -> the package that defines it.
_LAZY_ATTRS = {
    "FitResult": "bayestensor.models.funbat",
    "FunBaT": "bayestensor.models.funbat",
    "funbat_model": "bayestensor.models.funbat",
    "PoissonTuckerGibbs": "bayestensor.models.poisson_tucker",
    "PoissonTuckerResult": "bayestensor.models.poisson_tucker",
    "fit_poisson_tucker": "bayestensor.models.poisson_tucker",
    "poisson_tucker_model": "bayestensor.models.poisson_tucker",
}


def __getattr__(name: str):
    if name not in _LAZY_ATTRS:
        raise AttributeError(f"module 'bayestensor.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRS))


__all__ = [
    "FitResult",
    "FunBaT",
    "PoissonTuckerGibbs",
    "PoissonTuckerResult",
    "fit_poisson_tucker",
    "funbat_model",
    "poisson_tucker_model",
]
