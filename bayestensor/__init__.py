"""bayestensor: Bayesian tensor models on continuous and categorical coordinates.

Submodules: :mod:`~bayestensor.data` (DataFrame encoding), :mod:`~bayestensor.kernels` (Matérn
state-space forms), :mod:`~bayestensor.ssm` (Kalman filter / RTS smoother with Gaussian
messages), :mod:`~bayestensor.gp` (1-D GP regression), :mod:`~bayestensor.metrics`,
:mod:`~bayestensor.demo`.
"""

from bayestensor import data, demo, gp, kernels, metrics, ssm

__version__ = "0.1.0"

__all__ = ["__version__", "data", "demo", "gp", "kernels", "metrics", "ssm"]
