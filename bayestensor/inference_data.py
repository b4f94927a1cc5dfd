"""Posterior draws as :class:`arviz.InferenceData`, with dimensions and coordinates named after
the user's columns and levels.

FunBaT's posterior is Gaussian (factors, core) and Gamma (noise precision) under the fitted
mean-field ``q``; its draws are drawn here. Poisson Tucker keeps its Gibbs draws (or draws from
the CAVI ``q``) with the result. arviz is optional (``pip install "bayestensor[arviz]"``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from bayestensor.checks import CONTINUOUS, check_int, check_seed, observed_values

__all__ = ["funbat_inference_data", "poisson_inference_data", "require_arviz"]

#: Rows of ``df`` whose ``f`` draws are contracted at a time (bounds the memory).
ROW_CHUNK = 4096


def _memory_bytes() -> float:
    """This machine's physical memory in bytes (8 GB where the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8e9


def check_draws_fit(per_chain: int, chains: int, per_draw: int) -> None:
    """Refuse draws whose arrays (``per_draw`` float64 values each, about three copies held
    at once while they are drawn and reshaped) would need more than half of this machine's
    memory: a clear ValueError, not a MemoryError halfway through.

    Raises
    ------
    ValueError
        Naming ``draws`` and ``chains``, the memory needed and the most draws that fit.
    """
    need = 3 * 8 * per_chain * chains * per_draw
    have = _memory_bytes() / 2
    if need > have:
        most = max(1, int(have // (3 * 8 * chains * per_draw)))
        raise ValueError(
            f"draws={per_chain} with chains={chains} would need about {need / 1e9:.3g} GB "
            f"({per_draw} values a draw), more than half of this machine's memory "
            f"({2 * have / 1e9:.3g} GB); ask for at most draws={most} per chain"
        )


def require_arviz():
    """The arviz module, or an ImportError saying how to install it."""
    try:
        import arviz
    except ImportError:
        raise ImportError(
            "this needs arviz, an optional dependency of bayestensor: "
            "pip install 'bayestensor[arviz]' (or pip install arviz)"
        ) from None
    return arviz


def _gaussian_draws(
    rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray, n: int
) -> np.ndarray:
    """``n`` draws of each of the independent Gaussians ``N(mean[i], cov[i])``: ``(n, *mean)``."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    # eigen-factor (not Cholesky): covariances of tightly pinned factor rows can be singular
    w, v = np.linalg.eigh(cov)
    root = v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]
    z = rng.standard_normal((n, *mean.shape))
    return mean + np.einsum("...ij,n...j->n...i", root, z)


def _component_dim(name: str) -> str:
    return f"{name}_component"


def funbat_inference_data(
    result: Any,
    df: pd.DataFrame | None = None,
    draws: int = 1000,
    chains: int = 4,
    seed: int = 0,
):
    """Draws from a fitted FunBaT posterior as :class:`arviz.InferenceData`.

    See :meth:`bayestensor.models.funbat.FitResult.to_inference_data`.
    """
    az = require_arviz()
    per_chain = check_int("draws", draws)
    chains = check_int("chains", chains)
    draws = per_chain * chains
    rng = np.random.default_rng(check_seed(seed))
    est = result.estimator
    state = est.state_
    per_draw = sum(m.size * r for m, r in zip(result.modes, result.ranks, strict=True))
    per_draw += (math.prod(result.ranks) if state.core is not None else 0) + 1
    check_draws_fit(per_chain, chains, per_draw + (0 if df is None else 2 * len(df)))
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {}
    U = []
    for k, mode in enumerate(result.modes):
        post = state.factors[k]
        u = _gaussian_draws(rng, post.mean, post.cov, draws)  # (S, N_k, R_k)
        U.append(u)
        name = f"u_{mode.name}"
        posterior[name] = u
        dims[name] = [mode.name, _component_dim(mode.name)]
        coords[mode.name] = mode.coordinates()
        coords[_component_dim(mode.name)] = np.arange(result.ranks[k])
    if state.core is not None:
        vec = _gaussian_draws(
            rng, np.ravel(state.core.mean)[None], np.asarray(state.core.cov)[None], draws
        )[:, 0]
        W = vec.reshape(draws, *result.ranks)
        posterior["W"] = W
        dims["W"] = [_component_dim(m.name) for m in result.modes]
    else:
        W = None
    tau = rng.gamma(float(state.noise.shape), 1.0 / float(state.noise.rate), draws)
    posterior["noise_sd"] = est.y_scale_ / np.sqrt(tau)
    observed = None
    if df is not None:
        f = _f_draws(result, df, U, W)
        posterior["f"] = f
        dims["f"] = ["obs"]
        coords["obs"] = np.asarray(df.index)
        if result.value in df.columns:
            observed = {"y": observed_values(df, result.value)}
            dims["y"] = ["obs"]
    return az.from_dict(
        posterior={k: v.reshape(chains, per_chain, *v.shape[1:]) for k, v in posterior.items()},
        observed_data=observed,
        coords=coords,
        dims=dims,
        attrs={"model": f"FunBaT-{result.model}", "value": result.value},
    )


def _f_draws(result: Any, df: pd.DataFrame, U: list, W: np.ndarray | None) -> np.ndarray:
    """Draws of ``f = Σ W Π u`` (data units) at the rows of ``df``: ``(S, n)``."""
    from bayestensor.data import encode_new

    new = encode_new(df, result.modes)
    off = [
        m.name
        for k, m in enumerate(result.modes)
        if m.kind == CONTINUOUS and (new.index[:, k] < 0).any()
    ]
    if off:
        raise ValueError(
            f"df has coordinates of {off} that are not training coordinates; f draws are "
            "available at the fitted coordinates (predict() gives the others)"
        )
    S, n = U[0].shape[0], new.n
    est = result.estimator
    out = np.empty((S, n), dtype=np.float64)
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, n))
        rowsU = [u[:, new.index[rows, k], :] for k, u in enumerate(U)]  # (S, m, R_k)
        if W is None:  # CP: the superdiagonal core
            f = np.prod(np.stack(rowsU), axis=0).sum(-1)
        else:
            t = np.einsum("smr,sr...->sm...", rowsU[0], W)
            for u in rowsU[1:]:
                t = np.einsum("smr,smr...->sm...", u, t)
            f = t
        out[:, rows] = est.y_mean_ + est.y_scale_ * f
    return out


def poisson_inference_data(result: Any, draws: int | None = None):
    """Kept Poisson Tucker draws as :class:`arviz.InferenceData`.

    See :meth:`bayestensor.models.poisson_tucker.PoissonTuckerResult.to_inference_data`.
    """
    az = require_arviz()
    spec = result.spec
    names = list(result.coords)
    available = len(result.draws["core"])
    if draws is None:
        keep = np.arange(available)
    else:
        draws = check_int("draws", draws)
        if draws > available:
            raise ValueError(f"draws={draws} but the result keeps {available} draws")
        keep = np.unique(np.linspace(0, available - 1, draws).round().astype(np.int64))
    varying = {
        k: v
        for k, v in result.draws.items()
        if result.method == "gibbs" or k.startswith("theta") or k == "core"
    }
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {
        _component_dim(c): np.arange(r) for c, r in zip(names, spec.ranks, strict=True)
    }
    group_dim = []
    for modes in spec.groups:
        dim = "_".join(names[k] for k in modes)
        group_dim.append(dim)
        coords[dim] = np.asarray(result.levels[names[modes[0]]])
    for key, value in varying.items():
        value = np.asarray(value)[keep]
        if key.startswith("theta"):
            g = int(key[5:])
            first = names[spec.groups[g][0]]
            name, d = f"theta_{group_dim[g]}", [group_dim[g], _component_dim(first)]
        elif key.startswith("b") and key[1:].isdigit():
            name, d = f"b_{group_dim[int(key[1:])]}", []
        elif key == "core":
            name, d = "core", [_component_dim(c) for c in names]
        elif key.startswith("w") and key[1:].isdigit():
            c = names[int(key[1:])]
            name, d = f"w_{c}", [_component_dim(c)]
        elif key.startswith("eta_"):
            name, d = key, [_component_dim(names[spec.pair[0]])]
        else:
            name, d = key, []
        posterior[name] = value[None]
        dims[name] = d
    cells = np.asarray(result.data.index)
    observed = {"y": np.asarray(result.data.y, dtype=np.float64)}
    dims["y"] = ["cell"]
    coords["cell"] = np.arange(cells.shape[0])
    idata = az.from_dict(
        posterior=posterior,
        observed_data=observed,
        coords=coords,
        dims=dims,
        attrs={"model": "poisson-tucker", "method": result.method, "value": result.value},
    )
    # each nonzero cell's levels, as coordinates of the observed counts
    levels = {c: ("cell", np.asarray(result.levels[c])[cells[:, k]]) for k, c in enumerate(names)}
    idata.observed_data = idata.observed_data.assign_coords(levels)
    return idata
