"""The front door: ``bayestensor.fit(df, coords=..., value=...)``.

The arguments every model shares (the DataFrame, ``coords``, ``value``, ``rank``, ``seed``) are
checked once here; options are passed to the chosen model's estimator, and an option that the
model does not take is an error, not silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from bayestensor import distributed
from bayestensor.checks import (
    DEFAULT_RANK,
    check_bool,
    check_int,
    check_options,
    check_positive,
    check_ranks,
    check_seed,
)
from bayestensor.data import parse_coords, row_order
from bayestensor.driver import call_scope
from bayestensor.log_scale import check_log_coords, on_log_scale
from bayestensor.results import Result
from bayestensor.sharding import padded_rows
from bayestensor.xr import from_xarray, is_chunked, is_xarray, xarray_parts

__all__ = ["MODELS", "fit"]

MODELS = ("tucker", "cp", "poisson-tucker")

#: Options of ``model="poisson-tucker"`` besides the shared ones.
POISSON_OPTIONS = (
    "method mask pair share exclude_diagonal within_between shrinkage num_warmup num_samples "
    "max_iter vi_tol factor_shape gamma0 core_shape e0 f0 devices"
).split()


@call_scope()  # a fit and its refits keep what they compiled (driver.call_scope)
def fit(
    df: pd.DataFrame | Any,
    *,
    coords: Sequence[str] | Mapping[str, str] | None = None,
    value: str | None = None,
    model: str = "tucker",
    rank: int | Sequence[int] | str | None = None,
    seed: int = 0,
    progress: bool = True,
    kernel: str | Mapping[str, str] | None = None,
    max_sweeps: int | None = None,
    tol: float | None = None,
    time_unit: str | Mapping[str, str] | None = None,
    local: str | None = "auto",
    log_coords: str | Sequence[str] | None = "auto",
    **options: Any,
) -> Result:
    """Fit a Bayesian tensor model to a long-format DataFrame or an xarray grid.

    ``model="tucker"`` / ``"cp"`` (FunBaT):
    ``y(x₁,…,x_K) = Σ_{r₁…r_K} W[r₁,…,r_K] Π_k u^k_{r_k}(x_k) + ε`` with Matérn state-space GP
    priors on the latent functions of continuous modes, N(0, I) factor rows for categorical
    modes, ``W ~ N(0, I)`` (Tucker) or superdiagonal ones (CP), and Gaussian noise with a Gamma
    prior on its precision. Inference is conditional expectation propagation with a Kalman
    filter / RTS smoother per mode; ℓ and σ² of each continuous mode are learned.
    ``model="poisson-tucker"``: a Bayesian Poisson Tucker decomposition of counts (categorical
    modes), by Gibbs sampling or CAVI.

    Parameters
    ----------
    df : pandas.DataFrame, xarray.DataArray or xarray.Dataset
        One row per observation (never modified); or gridded data, whose dimensions are the
        coordinates and whose NaN cells are the missing entries: they are dropped (their
        number is ``result.n_missing``) and the rest fitted exactly as the equivalent
        DataFrame would be (see :func:`bayestensor.xr.from_xarray`). With several JAX
        processes (``jax.distributed``, FunBaT models): this process's rows; every process
        gets the fit of all of them (:mod:`bayestensor.distributed`). Or, for rows that do not
        fit in memory (FunBaT models): a list of DataFrames, or CSV / Parquet file paths (a
        folder of them, a glob), read part by part — see
        :mod:`bayestensor.models.funbat.blocked` (options ``block_rows``, ``sample_rows``).
        A dask-backed (chunked) DataArray or Dataset is fitted the same way (FunBaT models, one
        process), its chunks computed one at a time (:func:`bayestensor.xr.xarray_parts`);
        ``.load()`` it first for the in-memory fit.
    coords : list of str or dict
        Coordinate columns (one tensor mode each), or ``{column: "continuous"|"categorical"}``.
        Numeric, datetime64 (naive or tz-aware) and timedelta64 columns default to
        continuous, others to categorical. Required for a DataFrame; for xarray data the
        dimensions (all of them, in mode order; default: the array's order).
    value : str
        The numeric column to model (counts for ``"poisson-tucker"``). Required for a
        DataFrame; for a DataArray its name (default: ``da.name`` or ``"value"``); for a
        Dataset the data variable (may be omitted if there is only one).
    model : {"tucker", "cp", "poisson-tucker"}
        Learned core, superdiagonal core, or the Poisson Tucker model.
    rank : int, tuple of int or "auto", optional
        Number of components per mode (one int for all, or one per mode); for
        ``"poisson-tucker"`` an upper bound (shrinkage prunes; default 3). ``"auto"`` (FunBaT's
        default): the ranks are learned by automatic relevance determination up to
        ``max_rank=`` (an option; by default at most 8 per Tucker mode, 2 on fewer than 200
        rows, and 10 for CP) and reported as ``result.ranks``. On at most 2,000 rows, where
        the local stage keeps a residual process, rank 1 is also checked by refits on half
        the rows each and taken where it predicts far better
        (:mod:`bayestensor.models.funbat.refit_check`; what it found: ``result.rank_check``);
        and where that process stands on ranks pruned for it, the ranks pruned without it are
        taken instead if their refits predict better.
    seed : int
        Random initialisation (and the sampler's key).
    progress : bool
        Show a progress bar.
    kernel : str or dict, optional
        FunBaT only: GP prior of the continuous modes — ``"matern12"``, ``"matern32"``
        (default), ``"matern52"``, ``"periodic"`` or ``"quasiperiodic"`` for all of them, or
        ``{column: name}`` per mode; the period of a (quasi-)periodic mode is the option
        ``period={column: value}`` (learned when not given). ``"auto"`` (for all, or as a dict
        value): the Matérn smoothness chosen per mode by the evidence (``res.kernels`` says
        which).
    max_sweeps : int, optional
        FunBaT only: cap on the message-passing sweeps (default 100).
    tol : float, optional
        FunBaT only: stop when the fitted values move by less than ``tol`` noise standard
        deviations between sweeps (RMS over the training rows; default 0.02).
    time_unit : str or dict, optional
        FunBaT only: the unit in which continuous datetime / timedelta coordinates become
        floats — ``"W"``, ``"D"`` (default), ``"h"``, ``"min"``, ``"s"``, ``"ms"``, ``"us"``
        or ``"ns"``, for all of them or ``{column: unit}``. A datetime ``t`` becomes
        ``(t − t_min) / unit`` (``t_min``: the earliest training time, in UTC for tz-aware
        columns); lengthscales are then in this unit. The origin, unit and zone are saved with
        the model; ``predict`` takes new times (also beyond the training range) and
        ``factors()`` gives times back.
    local : {"auto", None, "fibre", "fibre:<column>", "neighbours"}, optional
        FunBaT only. After the low-rank fit, a local residual process ``g`` is fitted to its
        training residuals, so that ``y = f + g + ε`` with ``f`` the low-rank function —
        short-range variation a low rank cannot carry. ``"auto"`` (default): the best of the
        processes below by the likelihood of the residuals, or none when none gains more than
        a BIC penalty; skipped (as None) with no continuous coordinate, rows in parts, several
        processes, fewer than 15 or more than 200,000 rows. None: the low-rank fit alone.
        ``"fibre:<column>"``: ``g`` a Matérn GP along that continuous coordinate, independent
        across the combinations of the others (exact, one Kalman smoother per fibre);
        ``"fibre"``: along the continuous coordinate the evidence prefers; ``"neighbours"``: a
        product Matérn GP over all continuous coordinates (nearest-neighbour likelihood and
        kriging). ``result.predict`` then adds ``E[g]`` to the mean and ``Var[g]`` to the
        variance (``predict(df, local=False)``: the low-rank part alone); ``result.local``
        says which process was kept and ``summary()`` reports it; ``result.update`` carries it
        over. With ``rank="auto"`` the low-rank components whose part of the fitted values is
        under half a noise sd are then pruned too, left to the local process. The fit keeps
        them when the local stage then keeps no process, and (``"auto"``) when the residual
        process it keeps is still needed on top of the fit with them (its gain there passes
        the same BIC bound), or when the GP on the values enters its predictions (where it
        predicts left-out rows clearly better: blended with the low-rank part, or alone)
        where a residual process predicted most of the residuals or every mode has at least
        100 training rows per coordinate on average (``funbat.ard.DENSE_ROWS``), and the fit
        with them, given its own local stage, keeps a residual process. See
        :mod:`bayestensor.models.funbat.local` and the FunBaT guide.
    log_coords : "auto", None, str or list of str, optional
        FunBaT only: continuous numeric coordinates modelled on the log scale (their latent
        functions are GPs in ``log x``; every value must be > 0, in new rows too). ``"auto"``
        (default): those whose distinct values form a geometric design — a dilution series,
        doses that double — and none with rows in parts or several processes (see
        :mod:`bayestensor.log_scale`); None: none. ``result.log_coords`` says which;
        coordinates are reported in their own units, lengthscales in ``log x``.
    **options
        FunBaT: passed to :class:`bayestensor.models.funbat.FunBaT` (``period``, ``damping``,
        ``learn_hyper``, ``lengthscale``, ``hyper_steps`` …). Poisson Tucker: passed to
        :func:`bayestensor.models.poisson_tucker.fit_poisson_tucker` (``method``, ``mask``,
        ``pair``, ``share``, ``num_samples`` …). Both take ``devices`` (the devices a fit's
        observations are split over; by default every visible device, see
        :mod:`bayestensor.sharding`).

    Returns
    -------
    FitResult or PoissonTuckerResult
        See :mod:`bayestensor.results` for what every result offers.

    Raises
    ------
    ValueError
        For a bad DataFrame, column, rank, model, kernel or setting, or an option the model does
        not take — before any computation.
    ImportError
        For xarray data when xarray is not installed.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    from bayestensor.models.funbat.options import check_local_option

    local = check_local_option(local)
    n_missing = 0
    from bayestensor.models.funbat.blocked import is_parts

    chunked = (
        is_xarray(df)
        and model != "poisson-tucker"
        and is_chunked(df)
        and not distributed.is_multiprocess()
    )
    if chunked or is_parts(df):
        if local not in (None, "auto"):  # "auto" (the default) does not apply to parts
            raise ValueError("local= is not supported for rows in parts (a list, files, dask)")
        if log_coords not in (None, "auto"):
            raise ValueError(
                "log_coords= is not supported for rows in parts (a list, files, dask); "
                "log-transform the column instead"
            )
        source = xarray_parts(df, coords, value) if chunked else None
        if source is not None:  # dask-backed: read chunk by chunk, never loaded whole
            df, coords, value = source.parts, source.coords, source.value
        res = _fit_parts(
            df, coords, value, model, rank, seed, progress, kernel, max_sweeps, tol, time_unit,
            options,
        )  # fmt: skip
        if source is not None:
            res.n_missing = source.n_missing
        return res
    if is_xarray(df):
        df, coords, value, n_missing = from_xarray(df, coords, value)
        if n_missing and model == "poisson-tucker":
            raise ValueError(
                f"the array has {n_missing} NaN cells; model='poisson-tucker' reads an absent "
                "cell as a zero count, so give missing regions with mask= instead of NaN"
            )
    elif coords is None:
        raise ValueError("coords must be given for a DataFrame (the coordinate columns)")
    check_seed(seed)
    if not isinstance(value, str):
        raise ValueError(f"value must be the name of the value column (a str), got {value!r}")
    check_bool("progress", progress)
    kinds = parse_coords(df, coords, value)
    K = len(kinds)
    if rank is None:
        rank = DEFAULT_RANK if model == "poisson-tucker" else "auto"
    if isinstance(rank, str) and model != "poisson-tucker":
        from bayestensor.models.funbat.ard import check_rank_option

        check_rank_option(rank, options.get("max_rank"), model)
        ranks = rank
    else:
        ranks = check_ranks(rank, K, equal=model == "cp")
    if model == "poisson-tucker":
        given = {"kernel": kernel, "max_sweeps": max_sweeps, "tol": tol, "time_unit": time_unit}
        given["local"] = None if local == "auto" else local  # the default: FunBaT's only
        given["log_coords"] = None if log_coords == "auto" else log_coords
        check_options(model, {k: v for k, v in given.items() if v is not None}, POISSON_OPTIONS)
        check_options(model, options, POISSON_OPTIONS)
        from bayestensor.models.poisson_tucker import fit_poisson_tucker

        return fit_poisson_tucker(
            df, coords=coords, value=value, rank=ranks, seed=seed, progress=progress, **options
        )

    from bayestensor.models.funbat import FitResult, FunBaT
    from bayestensor.models.funbat.ard import pruned_for_local, scattered
    from bayestensor.models.funbat.estimator import ESTIMATOR_PARAMS
    from bayestensor.models.funbat.options import (
        auto_local,
        check_kernel_applies,
        check_kernel_option,
    )

    kernel_given = isinstance(kernel, str)  # (a dict names its columns: checked by FunBaT)
    kernel = check_kernel_option("matern32" if kernel is None else kernel)
    local = auto_local(local, kinds, len(df), distributed.is_multiprocess())
    check_local_option(local, kinds)
    if local is not None and distributed.is_multiprocess():
        raise ValueError("local= is not supported with several JAX processes")
    max_sweeps = check_int("max_sweeps", 100 if max_sweeps is None else max_sweeps)
    tol = check_positive("tol", 0.02 if tol is None else tol)
    shared = ("model", "rank", "kernel", "max_sweeps", "tol", "seed")
    check_options(model, options, [p for p in ESTIMATOR_PARAMS if p not in shared] + ["devices"])
    # this process's rows against every process's modes (bayestensor.distributed)
    enc = distributed.encode(df, coords, value, time_unit=time_unit)
    logs = check_log_coords(log_coords, enc.modes, auto=not distributed.is_multiprocess())
    enc = on_log_scale(enc, logs)
    enc, df = _canonical_order(enc, df)
    if kernel_given:
        check_kernel_applies(kernel, enc.modes)
    for mode in enc.modes:  # say now, not after the whole fit, what save() could not write
        try:
            mode.to_dict()
        except ValueError as err:
            warnings.warn(
                f"the fitted model will not be saveable: {err}", UserWarning, stacklevel=2
            )
    est = FunBaT(
        model=model, rank=ranks, kernel=kernel, max_sweeps=max_sweeps, tol=tol, seed=seed, **options
    )
    est.fit(enc, progress=progress, keep_unpruned=local is not None)
    res = FitResult(est, value, n_missing=n_missing)
    # rank="auto" with a local stage: the components under half a noise sd are left to the
    # local process (funbat.ard.PRUNE_NOISE_LOCAL), unless the local stage then keeps none, or
    # ("auto") its residual process is still needed on top of the leniently pruned fit, or its
    # GP on the values stood in for residuals that were mostly structure, or for a low-rank part
    # pruned on data that are not scattered, and the lenient fit's own local stage keeps a
    # residual process
    strict = pruned_for_local(est, local is not None)  # (releases the unpruned posterior)
    if local is not None:
        from bayestensor.models.funbat.local import fit_local, still_needed
        from bayestensor.models.funbat.local_cavity import mostly_structure

        kept = None  # the checks' refits of one fit share their memo and ranks (_refits)
        memo = _Refits(
            {}, res.ranks if strict is None else tuple(map(max, res.ranks, strict.cfg_.ranks))
        )
        given = {"coords": coords, "value": value, "model": model, "seed": seed}
        given |= {"max_sweeps": max_sweeps, "tol": tol, "time_unit": time_unit}
        given["log_coords"] = logs or None
        if strict is not None:
            res_strict = FitResult(strict, value, n_missing=n_missing)
            res_strict.local = kept = fit_local(res_strict, df, local)
            # (only where the lenient fit keeps at least twice the core: else the two predict
            # alike, us_temp 8×8×8 against 8×8×7 within 0.2 % on every fold, and the check
            # would cost a second fit of the residual process for nothing)
            lenient = local == "auto" and kept.kept_any
            lenient = lenient and math.prod(res.ranks) >= 2 * math.prod(res_strict.ranks)
            if lenient and not kept.values_kept:  # a residual process: still needed there?
                lenient = kept.process is not None and still_needed(res, df, kept)
            elif lenient:  # the GP on the values: also against the lenient fit's own stage,
                # where the strict fit's residuals were mostly structure (the pruning's noise
                # held what the local process predicts) or the data are not scattered (the
                # pruned components rest on many rows); kept only with a residual process
                lenient = mostly_structure(kept) or not scattered(enc.index)
                if lenient:  # (the GP on the values, rescaled: the same rows and values)
                    res.local = fit_local(res, df, local, values=(kept.compared, kept.scale))
                    lenient = res.local.residual is not None and not res.local.values_kept
            if kept.kept_any and not lenient:
                res = _lenient_by_refits(
                    res, res_strict, kept, df, local, progress, given, options, memo
                )
        if res.local is None:
            res.local = fit_local(res, df, local, values=_exact_compared(kept))
            if not res.local.kept_any and kept is not None and kept.kept_any:
                res = res_strict
        res = _rank_one_check(res, df, ranks, given, options, progress, memo)
    return res


class _Refits(NamedTuple):
    """What the check refits of one :func:`fit` share (:func:`_refits`): ``fits``, the refits
    by their rows and arguments, and ``ranks``, the ranks the fixed-rank refits run at."""

    fits: dict
    ranks: tuple[int, ...]


def _canonical_order(enc, df: pd.DataFrame):
    """``enc`` and ``df`` with their rows in one order for the same rows however they came
    (by coordinates, then value): what the fit draws by row position (the local stage's
    neighbour order and row samples, the rank-1 check's halves) then depends on the rows
    alone, not on how the caller's frame was sorted. ``df`` is reordered in a copy. With
    several JAX processes each keeps its rows as given (no local stage runs there, and the
    gathered start is the one process's fit of the rows in process order)."""
    import dataclasses

    import numpy as np

    if distributed.is_multiprocess():
        return enc, df
    order = row_order(enc.index, enc.y)
    if np.array_equal(order, np.arange(len(order))):
        return enc, df
    return dataclasses.replace(enc, index=enc.index[order], y=enc.y[order]), df.iloc[order]


def _exact_compared(kept) -> tuple | None:
    """``(GP, scale)``: the exact GP on the values that the local stage ``kept`` (None: none
    fitted) compared, for a later stage on the same rows to rescale (its posterior at the
    training rows, the O(n³) part, comes with it); None where there is none, or where it is
    the neighbour GP of large data (refitted there, as when the shared data were measured)."""
    from bayestensor.models.funbat.local_anova import AnovaGP

    if kept is None or not isinstance(kept.compared, AnovaGP):
        return None
    return kept.compared, kept.scale


def _lenient_by_refits(lenient, strict, kept, df, local, progress, given, options, memo):
    """``strict`` (pruned for the local stage, with the residual process ``kept`` there), or
    ``lenient`` (the leniently pruned fit) with its own local stage where, on small data, its
    refits predict the left-out rows better (:func:`.refit_check.lenient_by_refits`; with
    ``local="auto"``, where the two ranks differ). ``given`` and ``options``: :func:`fit`'s
    arguments, for the refits; ``memo``: :func:`_refits`'."""
    from bayestensor.models.funbat import refit_check
    from bayestensor.models.funbat.local import fit_local

    residual = kept.residual is not None and not kept.values_kept
    small = len(df) <= refit_check.MAX_ROWS
    if not residual or local != "auto" or not small or lenient.ranks == strict.ranks:
        return strict
    refit, categorical, coords = _refits(strict, df, given, options, memo)
    taken, _ = refit_check.lenient_by_refits(
        df,
        strict.value,
        (strict.ranks, kept.residual_label),
        (lenient.ranks, local),
        lambda rows, spec: refit(rows, spec[0], local=spec[1]),
        given["seed"],
        progress,
        categorical,
        coords,
    )
    if not taken:
        return strict
    lenient.local = fit_local(lenient, df, local, values=_exact_compared(kept))  # as refitted
    return lenient


def _refits(res, df, given, options, memo, **fixed):
    """What a check by refits of ``res``'s fit needs: ``refit(rows, rank, **more)``, the
    :func:`fit` of ``rows`` at ``rank`` with :func:`fit`'s ``given`` arguments and ``options``
    (``max_rank`` aside), ``res``'s kernels, ``fixed`` and ``more``, its rows padded to ``df``'s
    count (:func:`bayestensor.sharding.padded_rows`) and encoded on ``res``'s modes, the grid
    of all rows (:func:`bayestensor.distributed.on_modes`), its local processes padded to the
    shapes of all rows (:func:`~.local_fibre.padded_local`): the refits at one rank, and a
    fit of all rows there, share their compiled programs, and the refits' local processes
    share theirs with ``res``'s; and ``res``'s categorical and all mode names (for
    :func:`~.refit_check.fold_of_rows`). ``memo`` (a :class:`_Refits`, one per :func:`fit`):
    a refit of the same rows with the same arguments is the one it holds (the two checks both
    refit the folds at the learned ranks with the residual process the local stage kept, where
    the lenient pruning was not taken), and the refits run at its ranks, the largest any check
    asks for, with the components they do not fit switched off
    (:func:`~.padded.padded_ranks`): they share one compiled sweep. The refits at ``res``'s
    own ranks start the search for their residual process's hyperparameters where ``res``'s
    process ended (:func:`~.local.warm_starts`)."""
    from bayestensor.models.funbat.local import warm_starts
    from bayestensor.models.funbat.local_fibre import padded_local
    from bayestensor.models.funbat.padded import padded_ranks

    options = {k: v for k, v in options.items() if k != "max_rank"}
    given = {**given, "kernel": res.kernels or None, **fixed}
    coords = tuple(m.name for m in res.modes)
    rows = df[list(coords)]
    loc = res.local
    own = (
        {}
        if loc is None or loc.residual is None or loc.values_kept
        else {loc.residual_label: loc.residual.theta}
    )

    def refit(rows_, rank, **more):
        starts = own if rank == res.ranks else {}  # at res's ranks: from res's process
        rows_hash = pd.util.hash_pandas_object(rows_, index=True).to_numpy().tobytes()
        args = repr(sorted({**given, **more}.items(), key=str))
        key = (rows_hash, repr(rank), args, repr({k: v.tolist() for k, v in starts.items()}))
        if key not in memo.fits:
            with padded_rows(len(df)), distributed.on_modes(res.modes), padded_local(rows):
                with padded_ranks(memo.ranks), warm_starts(starts):
                    fit_ = fit(rows_, rank=rank, progress=False, **given, **options, **more)
            memo.fits[key] = fit_
        return memo.fits[key]

    categorical = tuple(m.name for m in res.modes if m.kind == "categorical")
    return refit, categorical, coords


def _rank_one_check(res, df, ranks, given, options, progress, memo):
    """``res``, or the rank-1 fit where :mod:`~bayestensor.models.funbat.refit_check` finds it
    clearly better by refits (``rank="auto"`` whose local stage kept a residual process, on
    small data only; both candidates with that process, the kernels the fit chose), with
    what the check found as ``rank_check`` (a :class:`~.refit_check.RankCheck`) where it ran;
    ``given`` and ``options``: :func:`fit`'s arguments, for the refits; ``memo``:
    :func:`_refits`'."""
    from bayestensor.models.funbat import refit_check

    loc = res.local
    residual = loc is not None and loc.residual is not None and not loc.values_kept
    small = len(df) <= refit_check.MAX_ROWS
    if ranks != "auto" or not residual or not small or max(res.ranks) == 1:
        return res
    refit, categorical, coords = _refits(res, df, given, options, memo, local=loc.residual_label)
    check = refit_check.rank_one_by_refits
    better, median = check(
        df, res.value, res.ranks, refit, given["seed"], progress, categorical, coords
    )
    out = refit(df, 1) if better else res
    if math.isfinite(median["learned"]):  # (NaN: no row could be scored, nothing was compared)
        out.rank_check = refit_check.RankCheck(
            res.ranks, res.max_ranks, median["learned"], median["rank 1"], better
        )
    return out


def _fit_parts(
    parts, coords, value, model, rank, seed, progress, kernel, max_sweeps, tol, time_unit, options
) -> Result:
    """:func:`fit` of rows given in parts (:mod:`bayestensor.models.funbat.blocked`)."""
    from bayestensor.models.funbat import FitResult, FunBaT
    from bayestensor.models.funbat.blocked import fit_parts
    from bayestensor.models.funbat.estimator import ESTIMATOR_PARAMS
    from bayestensor.models.funbat.options import check_kernel_option

    if model == "poisson-tucker":
        raise ValueError("rows in parts (a list or files) are fitted by FunBaT models only")
    if coords is None:
        raise ValueError("coords must be given (the coordinate columns)")
    if not isinstance(value, str):
        raise ValueError(f"value must be the name of the value column (a str), got {value!r}")
    check_seed(seed)
    check_bool("progress", progress)
    options = dict(options)
    sizes = {k: options.pop(k) for k in ("block_rows", "sample_rows") if k in options}
    shared = ("model", "rank", "kernel", "max_sweeps", "tol", "seed")
    check_options(model, options, [p for p in ESTIMATOR_PARAMS if p not in shared] + ["devices"])
    rank = "auto" if rank is None else rank
    if isinstance(rank, str):
        from bayestensor.models.funbat.ard import check_rank_option

        check_rank_option(rank, options.get("max_rank"), model)
    else:
        rank = check_ranks(rank, len(coords), equal=model == "cp")
    est = FunBaT(
        model=model,
        rank=rank,
        kernel=check_kernel_option("matern32" if kernel is None else kernel),
        max_sweeps=check_int("max_sweeps", 100 if max_sweeps is None else max_sweeps),
        tol=check_positive("tol", 0.02 if tol is None else tol),
        seed=seed,
        **options,
    )
    est = fit_parts(
        parts, coords, value, est, time_unit=time_unit, progress=progress,
        kernel_given=isinstance(kernel, str), **sizes,
    )  # fmt: skip
    return FitResult(est, value)
