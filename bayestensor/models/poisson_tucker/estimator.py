"""Fitting a Poisson Tucker model to a long DataFrame of counts: encoding, Gibbs and CAVI runs.

Both runs go through the shared loop (:func:`bayestensor.driver.iterate`); the Gibbs run steps
:class:`~bayestensor.models.poisson_tucker.gibbs.PoissonTuckerGibbs`, the same kernel NumPyro's
``MCMC`` drives and the tests compare with NUTS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayestensor.checks import (
    CATEGORICAL,
    DEFAULT_RANK,
    check_counts,
    check_int,
    check_options,
    check_positive,
    check_ranks,
)
from bayestensor.data import category_codes, category_levels, parse_coords, row_order
from bayestensor.distributed import single_process_only
from bayestensor.driver import Step, bound_compiled, iterate
from bayestensor.models.poisson_tucker.gibbs import (
    PoissonTuckerGibbs,
    gibbs_sweep_jit,
    init_params_jit,
)
from bayestensor.models.poisson_tucker.result import MAX_DRAWS, PoissonTuckerResult
from bayestensor.models.poisson_tucker.spec import (
    PoissonData,
    PoissonTuckerSpec,
    make_spec,
    prepare_data,
    region_mask,
    with_exact_counts,
)
from bayestensor.models.poisson_tucker.vi import VIState, cavi_step, vi_init, vi_point
from bayestensor.sharding import resolve_devices, shard_rows

__all__ = ["HYPER", "METHODS", "cavi_fit", "fit_poisson_tucker", "run_gibbs", "run_vi"]

METHODS = ("gibbs", "vi")
#: Prior settings accepted as keyword options (see :func:`make_spec`).
HYPER = ("factor_shape", "gamma0", "core_shape", "e0", "f0")


def _check_coords(df: pd.DataFrame, coords: Any, value: str) -> list[str]:
    """The coordinate columns (all categorical), validated like every other front door."""
    kinds = parse_coords(df, coords, value)
    explicit = coords if isinstance(coords, Mapping) else {}  # list entries: kinds ignored
    bad = {c: k for c, k in explicit.items() if k != CATEGORICAL}
    if bad:
        raise ValueError(f"poisson-tucker modes are categorical; got kinds {bad} in coords")
    for c in kinds:
        if df[c].isna().any():
            raise ValueError(f"coordinate column {c!r} has missing values")
    return list(kinds)


def fit_poisson_tucker(
    df: pd.DataFrame,
    *,
    coords: Sequence[str],
    value: str,
    rank: int | Sequence[int] = DEFAULT_RANK,
    method: str = "gibbs",
    mask: pd.DataFrame | None = None,
    pair: tuple[str, str] | None = None,
    share: bool = False,
    exclude_diagonal: bool | None = None,
    within_between: bool = False,
    shrinkage: bool = True,
    num_warmup: int = 500,
    num_samples: int = 500,
    max_iter: int = 500,
    vi_tol: float = 1e-7,
    seed: int = 0,
    progress: bool = True,
    devices=None,
    **hyper: float,
) -> PoissonTuckerResult:
    """Fit a Bayesian Poisson Tucker decomposition to counts in a long DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observed nonzero cell (rows with zero counts are allowed, but at least one
        count must be nonzero). Cells not listed are zeros unless ``mask`` marks them missing.
        It is never modified.
    coords : list of str
        Categorical coordinate columns, one per mode.
    value : str
        Column of non-negative integer counts.
    rank : int or tuple of int
        Upper bound on the number of components per mode (shrinkage prunes the unused ones).
    method : {"gibbs", "vi"}
        Compiled Gibbs sampler or mean-field variational fit.
    mask : pandas.DataFrame, optional
        Missing cells: columns a subset of ``coords``; each row marks every cell with those
        levels (a slice) as missing.
    pair : (str, str), optional
        Two coordinate columns with the same kind of levels (sender, receiver).
    share, exclude_diagonal, within_between, shrinkage : bool
        See :func:`bayestensor.models.poisson_tucker.spec.make_spec`.
    num_warmup, num_samples : int
        Gibbs sweeps discarded and kept.
    max_iter, vi_tol : int, float
        CAVI iterations cap and relative ELBO change for stopping.
    seed : int
        Random seed.
    progress : bool
        Show a progress bar.
    devices : None, "auto", int or list of jax.Device
        Devices the data are split over (data parallel, one host; see
        :mod:`bayestensor.sharding`): ``None``/``"auto"`` (default) every visible device, an
        int the first ``n``, or a list of devices. CAVI splits the nonzero cells and equals
        the single-device fit up to rounding. The Gibbs sampler splits its tokens
        (:func:`~bayestensor.models.poisson_tucker.gibbs.shard_tokens`; the large cells are
        allocated on the host) and, with JAX's partitionable threefry (the default), draws
        what the single-device run draws from the same seed, up to rounding.
    **hyper
        ``factor_shape``, ``gamma0``, ``core_shape``, ``e0``, ``f0``.

    Returns
    -------
    PoissonTuckerResult

    Raises
    ------
    ValueError
        For bad columns, counts (negative, non-integer, NaN, or none of them nonzero), ranks,
        options or mask, before any computation; in a multi-process run
        (``jax.process_count() > 1``), not supported.
    """
    single_process_only("the Poisson Tucker model")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    coords = _check_coords(df, coords, value)
    y = check_counts(df, value)
    if not np.any(y > 0):
        raise ValueError(
            f"count column {value!r} has no nonzero count (all {y.size} rows are 0); a Poisson "
            "Tucker model of all-zero counts has nothing to decompose"
        )
    K = len(coords)
    ranks = check_ranks(rank, K)
    check_int("num_warmup", num_warmup, minimum=0)
    check_int("num_samples", num_samples)
    check_int("max_iter", max_iter)
    check_positive("vi_tol", vi_tol)
    check_options("poisson-tucker", hyper, HYPER)
    devices = resolve_devices(devices)
    pair_idx = None
    if pair is not None:
        named = not isinstance(pair, str) and isinstance(pair, Sequence) and len(pair) == 2
        if not named or any(c not in coords for c in pair) or pair[0] == pair[1]:
            raise ValueError(f"pair must name two different columns of coords, got {pair!r}")
        pair_idx = (coords.index(pair[0]), coords.index(pair[1]))
    mcols: list[str] = []
    if mask is not None:
        if not isinstance(mask, pd.DataFrame) or len(mask) == 0:
            raise ValueError("mask must be a non-empty DataFrame of missing cells/slices")
        mcols = [c for c in mask.columns if c in coords]
        extra = [c for c in mask.columns if c not in coords]
        if extra or not mcols:
            raise ValueError(
                f"mask columns must be a subset of coords {coords}; got {list(mask.columns)}"
            )
    # levels: union over df and mask; a pair shares one level set
    columns = [[df[c].to_numpy()] for c in coords]
    for c in mcols:
        columns[coords.index(c)].append(mask[c].to_numpy())
    levels = [category_levels(*cols, name=c) for cols, c in zip(columns, coords, strict=True)]
    if pair_idx is not None:
        pair = " and ".join(coords[k] for k in pair_idx)
        joint = category_levels(*columns[pair_idx[0]], *columns[pair_idx[1]], name=pair)
        for k in pair_idx:
            levels[k] = joint
    index = np.stack(
        [category_codes(df[c].to_numpy(), levels[k], c) for k, c in enumerate(coords)], 1
    )
    # one order for the same cells however the rows came (by coordinates, then count): the
    # sampler's draws go cell by cell, so the fit depends on the cells, not on their order
    order = row_order(index, y)
    index, y = index[order], np.asarray(y)[order]
    spec = make_spec(
        tuple(len(lv) for lv in levels),
        ranks,
        pair=pair_idx,
        share=share,
        exclude_diagonal=exclude_diagonal,
        within_between=within_between,
        shrinkage=shrinkage,
        **hyper,
    )
    dense_mask = None
    if mask is not None:
        mm = [coords.index(c) for c in mcols]
        rows = np.stack(
            [
                category_codes(mask[c].to_numpy(), levels[k], c)
                for c, k in zip(mcols, mm, strict=True)
            ],
            1,
        )
        mask_modes, dense_mask = region_mask(spec, mm, rows)
        spec = spec._replace(mask_modes=mask_modes)
    # CAVI works with expected counts per cell: no allocation arrays, no limit on the counts
    data = prepare_data(spec, index, y, dense_mask, allocation=method == "gibbs")
    key = jax.random.key(seed)
    info: dict[str, Any] = {"method": method}
    if method == "gibbs":
        draws, mean = run_gibbs(spec, data, key, num_warmup, num_samples, progress, devices)
        info.update(num_warmup=num_warmup, num_samples=num_samples)
    else:
        draws, mean, elbos = run_vi(
            spec, shard_cells(data, devices), key, max_iter, vi_tol, progress
        )
        info.update(elbo=elbos, n_iter=len(elbos))
    # the result reports the exact counts (the device's copy is in the working dtype)
    cells = with_exact_counts(data, y)
    return PoissonTuckerResult(spec, coords, value, levels, cells, draws, mean, info)


def shard_cells(data: PoissonData, devices) -> PoissonData:
    """CAVI's data with the nonzero cells split over ``devices`` (unchanged for one device).

    The cells are padded to a multiple of the device count with zero counts at cell 0, which
    add nothing to the bound or the expected counts (``y log μ = 0``, ``log y! = 0``).
    """
    if len(devices) == 1:
        return data
    if data.has_allocation:
        raise ValueError("shard_cells takes CAVI's data (built without allocation arrays)")
    (index, y), _ = shard_rows([data.index, data.y], devices)
    return data._replace(index=index, y=y)


def run_gibbs(
    spec: PoissonTuckerSpec,
    data: PoissonData,
    key: jax.Array,
    num_warmup: int,
    num_samples: int,
    progress: bool = False,
    devices=1,
) -> tuple[dict, dict]:
    """Gibbs sweeps of :class:`PoissonTuckerGibbs`: posterior means over every kept sweep and up
    to :data:`MAX_DRAWS` thinned draws (for intervals). ``devices``: as for the kernel (the
    default ``1`` runs on one device; ``None`` on every visible one)."""
    bound_compiled(gibbs_sweep_jit, init_params_jit)  # one compiled sweep per spec and size
    kernel = PoissonTuckerGibbs(spec, data, devices)
    state = kernel.init(key, num_warmup, None, (), {})
    thin = max(1, num_samples // MAX_DRAWS)

    def _step(it, carry):
        state, total, kept = carry
        state = kernel.sample(state, (), {})
        if it >= num_warmup:
            total = jax.tree.map(jnp.add, total, state.z)
            if (it - num_warmup) % thin == 0:
                kept.append(jax.device_get(state.z))
        return Step((state, total, kept))

    carry = (state, jax.tree.map(jnp.zeros_like, state.z), [])
    (_, total, kept), _, _ = iterate(
        _step, carry, num_warmup + num_samples, desc="BPTD Gibbs", progress=progress
    )
    mean = {k: np.asarray(v) / num_samples for k, v in total.items()}
    draws = {k: np.stack([d[k] for d in kept]) for k in kept[0]}
    return draws, mean


def cavi_fit(
    spec: PoissonTuckerSpec,
    data: PoissonData,
    key: jax.Array,
    max_iter: int = 200,
    tol: float = 1e-6,
    callback: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> tuple[VIState, list[float]]:
    """Run CAVI until the relative ELBO change is below ``tol`` (or ``max_iter`` iterations).

    Returns
    -------
    state : VIState
    elbos : list of float
        The bound after every iteration (non-decreasing up to rounding).
    """
    step = jax.jit(partial(cavi_step, spec))

    def _step(it, carry):
        st, elbos = carry
        st, bound = step(data, st)
        bound = float(bound)
        done = bool(elbos) and abs(bound - elbos[-1]) <= tol * abs(bound)
        elbos.append(bound)
        if callback is not None:
            callback(it, bound)
        return Step((st, elbos), done, {"elbo": bound})

    (st, elbos), _, _ = iterate(
        _step, (vi_init(spec, data, key), []), max_iter, desc="BPTD CAVI", progress=progress
    )
    return st, elbos


def run_vi(spec, data, key, max_iter, tol, progress=False):
    """CAVI, then :data:`MAX_DRAWS` draws from ``q`` for intervals."""
    st, elbos = cavi_fit(spec, data, key, max_iter=max_iter, tol=tol, progress=progress)
    mean = {k: np.asarray(v) for k, v in vi_point(spec, st).items()}
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    draws = {k: np.broadcast_to(v, (MAX_DRAWS, *np.shape(v))).copy() for k, v in mean.items()}
    for g in range(len(spec.groups)):
        draws[f"theta{g}"] = rng.gamma(
            np.asarray(st.theta_shape[g]),
            1.0 / np.asarray(st.theta_rate[g]),
            (MAX_DRAWS, *st.theta_shape[g].shape),
        )
    draws["core"] = rng.gamma(
        np.asarray(st.core_shape), 1.0 / np.asarray(st.core_rate), (MAX_DRAWS, *spec.ranks)
    )
    return draws, mean, elbos
