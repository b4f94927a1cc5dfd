"""The front door: ``bayestensor.fit(df, coords=..., value=...)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayestensor.data import encode
from bayestensor.kernels import check_kernel_name
from bayestensor.models.funbat import FunBaT, check_ranks
from bayestensor.result import FitResult

MODELS = ("tucker", "cp", "poisson-tucker")


def fit(
    df: pd.DataFrame,
    *,
    coords: Sequence[str] | Mapping[str, str],
    value: str,
    model: str = "tucker",
    rank: int | Sequence[int] = 3,
    kernel: str = "matern32",
    seed: int = 0,
    max_sweeps: int = 100,
    tol: float = 0.02,
    progress: bool = True,
    **options,
) -> FitResult:
    """Fit a functional Bayesian Tucker (or CP) decomposition to a long-format DataFrame.

    ``y(x₁,…,x_K) = Σ_{r₁…r_K} W[r₁,…,r_K] Π_k u^k_{r_k}(x_k) + ε`` with Matérn state-space GP
    priors on the latent functions of continuous modes, N(0, I) factor rows for categorical
    modes, ``W ~ N(0, I)`` (Tucker) or superdiagonal ones (CP), and Gaussian noise with a Gamma
    prior on its precision. Inference is conditional expectation propagation with a Kalman
    filter / RTS smoother per mode; ℓ and σ² of each continuous mode are learned.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observation. It is never modified.
    coords : list of str or dict
        Coordinate columns (one tensor mode each), or ``{column: "continuous"|"categorical"}``.
        Numeric columns default to continuous, others to categorical.
    value : str
        The numeric column to model.
    model : {"tucker", "cp", "poisson-tucker"}
        Learned core or superdiagonal core; ``"poisson-tucker"`` fits a Bayesian Poisson Tucker
        decomposition to counts (see :func:`bayestensor.poisson_result.fit_poisson_tucker`
        for its options: ``method``, ``mask``, ``pair``, ``share`` …).
    rank : int or tuple of int
        Number of latent functions per mode (one int for all, or one per mode).
    kernel : {"matern12", "matern32", "matern52"}
        Smoothness of the GP priors.
    seed : int
        Random initialisation.
    max_sweeps : int
        Cap on the message-passing sweeps.
    tol : float
        Stop when the fitted values move by less than ``tol`` noise standard deviations
        between sweeps (root mean square over the training rows).
    progress : bool
        Show a progress bar over sweeps.
    **options
        Passed to :class:`bayestensor.models.funbat.FunBaT` (``damping``, ``learn_hyper``,
        ``lengthscale``, ``hyper_steps`` …).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        For a bad DataFrame, column, rank, model, kernel or setting — before any computation.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if model == "poisson-tucker":
        # count tensors: categorical modes, Gibbs or variational inference (own options)
        from bayestensor.poisson_result import fit_poisson_tucker

        return fit_poisson_tucker(
            df, coords=coords, value=value, rank=rank, seed=seed, progress=progress, **options
        )
    check_kernel_name(kernel)
    if not isinstance(max_sweeps, (int, np.integer)) or max_sweeps < 1:
        raise ValueError(f"max_sweeps must be a positive int, got {max_sweeps!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    enc = encode(df, coords, value)
    rank = check_ranks(rank, enc.K, model)
    est = FunBaT(
        model=model, rank=rank, kernel=kernel, max_sweeps=max_sweeps, tol=tol, seed=seed, **options
    )
    from tqdm.auto import tqdm

    with tqdm(total=max_sweeps, desc=f"FunBaT-{model}", disable=not progress, leave=False) as bar:

        def _report(record: dict) -> None:
            bar.update(1)
            bar.set_postfix(rmse=f"{record['rmse']:.4g}", change=f"{record['change']:.2e}")

        est.fit(enc, callback=_report)
    return FitResult(est, value)
