"""Streaming updates of a fitted FunBaT model: new rows, warm-started sweeps.

:func:`update` adds observations to a fit — at known coordinates, at new coordinates of a
continuous mode (inside or beyond the fitted range, e.g. the next days of a time mode) and at
new levels of a categorical mode — and refines the posterior with a few sweeps that start
from the fitted state instead of refitting from scratch:

- the factor posteriors of the known coordinates, their messages, the core, the noise, the
  hyperparameters (and their search steps) and the ARD precisions are carried over; the ranks
  stay those of the fit (with ``rank="auto"``, the kept components);
- a new coordinate of a continuous mode starts at the fitted posterior's marginal there (the
  SDE bridge between known coordinates, the Kalman prediction beyond the last one, see
  :func:`bayestensor.ssm.interpolate`), a new category at the prior ``N(0, I)``; their
  messages start at zero;
- the values are z-scored with the fit's mean and scale (not re-standardised), so the old
  and new posteriors are in the same units.

Two scopes:

- ``scope="new"`` (the default) sweeps over the **new rows only**. The old rows' messages are
  held at their sums in the fitted state (``FunBaTState.messages``: per mode and coordinate,
  the old rows' ``Σ τ E[a aᵀ]`` and ``Σ τ y E[a]``); each sweep adds the new rows' messages,
  computed from the current posteriors, and recomputes every mode's posterior (Kalman smoothing
  with the fitted hyperparameters, or the categorical closed form). The core (or CP weights),
  the noise, the hyperparameters and the ARD precisions stay at their fitted values. The cost
  is ``O(m)`` in the ``m`` new rows plus the per-mode passes over the unique coordinates,
  whatever the number of old rows — the assumed-density-filtering step of streaming
  factorisations: what the old rows said is summarised by their messages, not re-read.
- ``scope="all"`` runs the fit's own sweep over all rows, old and new: everything is refined
  (the old rows' messages too, the core, noise and hyperparameters), at ``O(n)`` a sweep.

Either costs far below a refit, which runs from a cold start until convergence (typically tens
of sweeps); new sizes (rows, coordinates) compile the sweep once. Both keep the combined rows
(a one-off ``O(n)`` copy), so that a later update (or ``scope="all"``) sees every row.

The training rows (encoded, :class:`bayestensor.data.Encoded`) are kept with the fitted
estimator in memory (``FunBaT.train_``) but not saved with the model: a loaded model cannot be
updated (fit it again, then update).
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayestensor.checks import (
    CATEGORICAL,
    CONTINUOUS,
    check_column,
    check_finite,
    check_finite_result,
    check_frame,
    check_int,
    check_value_column,
    float_array,
)
from bayestensor.data import category_levels, encode_new
from bayestensor.distributed import single_process_only
from bayestensor.driver import bound_compiled, precision
from bayestensor.models.funbat.inference import _prior_posterior, mode_sde
from bayestensor.models.funbat.state import (
    CategoricalPosterior,
    FunBaTState,
    Messages,
    auto_chunk,
)
from bayestensor.models.funbat.stream import new_rows_update
from bayestensor.modes import Encoded, Mode
from bayestensor.sharding import resolve_devices, shard_rows
from bayestensor.ssm import gaps, interpolate, locate

#: Sweeps an update runs unless told.
DEFAULT_SWEEPS = 3
#: What an update sweeps over: the new rows (old rows' messages held), or all rows.
SCOPES = ("new", "all")


def update(result, df: pd.DataFrame, sweeps: int | None = None, scope: str = "new"):
    """A new fitted result with the rows of ``df`` added, refined by warm-started sweeps.

    Parameters
    ----------
    result : FitResult
        The fitted model (not modified).
    df : pandas.DataFrame
        New rows with the fit's coordinate columns and value column (not modified). Continuous
        coordinates may be new (between or beyond the fitted ones; times as times of the same
        kind), categories may be new.
    sweeps : int, optional
        Sweeps, starting from the fitted state (default :data:`DEFAULT_SWEEPS`).
    scope : {"new", "all"}
        ``"new"`` (default): sweep over the new rows only, the old rows' messages held at their
        fitted sums and the core, noise and hyperparameters at their fitted values (cost
        independent of the number of old rows); ``"all"``: the fit's sweep over all rows,
        refining everything (see the module docstring).

    Returns
    -------
    FitResult
        The model of the combined rows; its ``history`` continues the fit's with one record
        per update sweep (with ``scope="new"``, its ``rmse`` and ``change`` are over the new
        rows, and it says so: ``"rows": "new"``; the title then names them), ``converged``
        says whether the last one moved the fitted values by less than ``tol`` noise sds.

    Raises
    ------
    ValueError
        For a bad ``sweeps`` or ``scope``; ``df`` not a non-empty DataFrame, a missing
        coordinate or value column, a column of the wrong type (non-numeric value or continuous
        coordinate, times of another kind) or with NaN/inf values; or a model without its
        training rows (loaded from a file); in a multi-process run (``jax.process_count() > 1``).

    Notes
    -----
    A fit with a local residual process (``bt.fit(..., local=...)``) keeps one: with
    ``scope="new"`` the process and its hyperparameters are held and its posterior conditions
    on every row's residual under the updated low-rank part; with ``scope="all"`` the local
    stage is fitted again on all rows (:func:`.funbat.local.update_local`).
    """
    single_process_only("FitResult.update")
    sweeps = DEFAULT_SWEEPS if sweeps is None else check_int("sweeps", sweeps)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    est = result.estimator
    train = getattr(est, "train_", None)
    if train is None:
        raise ValueError(
            "update needs the model's training rows, which a fit of rows in memory keeps but "
            "a model loaded from a file or fitted from rows in parts does not; fit the "
            "combined data instead (or fit again, then update)"
        )
    modes, index_new, y_new = _encode_rows(df, tuple(est.modes_), result.value)
    with precision(est.dtype):
        out = _update(result, train, modes, index_new, y_new, sweeps, scope)
    local = getattr(result, "local", None)
    if local is not None:
        from bayestensor.models.funbat.local import update_local

        out.local = update_local(local, out, df, scope)
    out.rank_check = getattr(result, "rank_check", None)  # (the ranks stay: not checked again)
    return out


def _encode_rows(df: pd.DataFrame, modes: tuple[Mode, ...], value: str):
    """The modes extended by the new rows' coordinates, the rows' indices in them (``(m, K)``)
    and their values; every check before anything is computed."""
    check_frame(df)
    names = [m.name for m in modes]
    for name in names:
        check_column(df, name)
    check_value_column(df, value, names)
    check_finite(df[value], value, CONTINUOUS, value=True)
    # categorical modes get the union of their levels first, so that encode_new accepts the
    # new ones; it then checks every column's type and values
    grown = []
    for mode in modes:
        if mode.kind == CATEGORICAL:
            check_finite(df[mode.name], mode.name, CATEGORICAL)
            mode = _categorical_union(mode, df[mode.name])
        grown.append(mode)
    new = encode_new(df, grown)
    out, index = [], np.empty(new.index.shape, dtype=np.int64)
    for k, mode in enumerate(grown):
        if mode.kind == CATEGORICAL:
            out.append(mode)
            index[:, k] = new.index[:, k]
            continue
        x = np.asarray(new.x[k], dtype=np.float64)
        if mode.log:  # (x: the logs of the new rows' coordinates, encode_new's)
            raw = np.union1d(mode.raw, float_array(df[mode.name]))
            grown_mode = Mode.on_log_scale(mode.name, raw)
        else:
            grown_mode = Mode(mode.name, CONTINUOUS, np.union1d(mode.values, x), time=mode.time)
        out.append(grown_mode)
        index[:, k] = np.searchsorted(grown_mode.values, x)
    return tuple(out), index, float_array(df[value])


def _categorical_union(mode: Mode, column: pd.Series) -> Mode:
    """``mode`` with the new categories of ``column`` among its levels (sorted as in
    :func:`bayestensor.data.encode`); the mode itself when there are none."""
    levels = category_levels(mode.values, column.to_numpy(), name=mode.name)
    if levels.size == mode.values.size:
        return mode
    if mode.values.dtype != object:  # keep the column's dtype (e.g. integer categories)
        try:
            cast = np.asarray(levels.tolist(), dtype=mode.values.dtype)
            if len(pd.unique(cast)) == levels.size:
                levels = cast
        except (TypeError, ValueError, OverflowError):
            pass
    return Mode(mode.name, CATEGORICAL, levels)


def _positions(old: Mode, new: Mode) -> np.ndarray:
    """Where each of ``old``'s coordinates sits among ``new``'s (a superset)."""
    if old.kind == CONTINUOUS:
        return np.searchsorted(new.values, old.values)
    return pd.Index(np.asarray(new.values, dtype=object)).get_indexer(
        np.asarray(old.values, dtype=object)
    )


def _grown_state(state: FunBaTState, cfg, new_cfg, old_modes, modes, dts) -> FunBaTState:
    """The fitted state on the grown modes: known rows copied, new continuous coordinates at
    the fitted marginal there, new categories at the prior, their messages zero."""
    factors, messages = [], []
    for k, (old, mode) in enumerate(zip(old_modes, modes, strict=True)):
        f, msg = state.factors[k], state.messages[k]
        if mode.size == old.size:
            factors.append(f)
            messages.append(msg)
            continue
        pos = _positions(old, mode)
        fresh = np.ones(mode.size, dtype=bool)
        fresh[pos] = False
        R = cfg.ranks[k]
        dtype = f.mean.dtype
        if cfg.continuous[k]:
            loc = locate(old.values, mode.values[fresh])
            loc = type(loc)(*(jnp.asarray(a) for a in loc))
            m_new, P_new = interpolate(mode_sde(cfg, k, state.log_hyper[k]), f, loc)
        else:
            m_new = jnp.zeros((int(fresh.sum()), R), dtype)
            P_new = jnp.broadcast_to(jnp.eye(R, dtype=dtype), (int(fresh.sum()), R, R))
        where = jnp.asarray(np.flatnonzero(fresh))
        mean = jnp.zeros((mode.size, R), dtype).at[pos].set(f.mean).at[where].set(m_new)
        cov = jnp.zeros((mode.size, R, R), dtype).at[pos].set(f.cov).at[where].set(P_new)
        if cfg.continuous[k]:
            # the smoother's layout on the new grid; the next sweep reads only mean and cov
            factors.append(_prior_posterior(new_cfg, k, dts[k], mean, 1.0)._replace(cov=cov))
        else:
            factors.append(CategoricalPosterior(mean, cov))
        messages.append(
            Messages(
                jnp.zeros((mode.size, R, R), dtype).at[pos].set(msg.prec),
                jnp.zeros((mode.size, R), dtype).at[pos].set(msg.shift),
            )
        )
    return state._replace(factors=tuple(factors), messages=tuple(messages))


def _update(result, train: Encoded, modes, index_new, y_new, sweeps: int, scope: str):
    """The update, inside the fit's precision scope."""
    est = result.estimator
    cfg = est.cfg_
    old_modes = tuple(est.modes_)
    remap = [_positions(old, mode) for old, mode in zip(old_modes, modes, strict=True)]
    index_old = np.stack([remap[k][train.index[:, k]] for k in range(len(modes))], axis=1)
    index_all = np.concatenate([index_old, index_new])
    y_all = np.concatenate([np.asarray(train.y, dtype=np.float64), y_new])
    n = y_all.shape[0]
    chunk = auto_chunk(n, cfg.ranks, cfg.model) if est.chunk == "auto" else est.chunk
    new_cfg = cfg._replace(sizes=tuple(m.size for m in modes), chunk=chunk)
    y_np = (y_all - est.y_mean_) / est.y_scale_
    history = list(est.history_)
    rows_y = y_np[n - len(y_new) :] if scope == "new" else y_np
    last = []  # E[f] at the swept rows after the previous sweep

    def on_sweep(state, Ef):
        record = _record(state, new_cfg, Ef, last[-1] if last else None, rows_y, est.y_scale_)
        history.append(record if scope == "all" else {**record, "rows": "new"})
        last.append(Ef)

    if scope == "new":
        state = new_rows_update(est, new_cfg, modes, remap, index_new, rows_y, sweeps, on_sweep)
    else:
        dts = tuple(  # the continuous modes' gaps (the new-rows path pads its own)
            jnp.asarray(gaps(m.values)) if new_cfg.continuous[k] else None
            for k, m in enumerate(modes)
        )
        state = _all_rows_sweeps(
            est, new_cfg, old_modes, modes, dts, index_all, y_np, sweeps, on_sweep
        )
    check_finite_result("the update's posterior", *jax.tree.leaves(state))
    change = history[-1]["change"]
    new_est = copy.copy(est)
    new_est.modes_ = modes
    new_est.cfg_ = new_cfg
    new_est.state_ = state
    new_est.history_ = history
    new_est.n_sweeps_ = len(history)
    new_est.converged_ = bool(np.isfinite(change) and change < est.tol)
    new_est.messages_current_ = True  # the state's messages give its posteriors
    new_est.train_ = Encoded(modes=modes, index=index_all, y=y_all, value=train.value)
    return type(result)(new_est, result.value, n_missing=result.n_missing)


def _all_rows_sweeps(est, cfg, old_modes, modes, dts, index, y, sweeps: int, on_sweep):
    """``scope="all"``: the fit's sweep over all rows from the grown fitted state; calls
    ``on_sweep(state, E[f] at the rows)`` after each sweep and returns the last state."""
    from bayestensor.models.funbat import estimator as funbat_estimator

    state = _grown_state(est.state_, est.cfg_, cfg, old_modes, modes, dts)
    n = y.shape[0]
    index_j, y_j, mask = jnp.asarray(index), jnp.asarray(y), None
    devices = resolve_devices(est.devices)
    if len(devices) > 1:  # as in the fit: rows split over the devices, padded (mask 0)
        (index_j, y_j), mask = shard_rows([index, y], devices)
    sweep = funbat_estimator._sweep_jit
    bound_compiled(sweep)
    for _ in range(sweeps):
        state, Ef = sweep(state, index_j, y_j, dts, cfg, mask)
        on_sweep(state, np.asarray(Ef, dtype=np.float64)[:n])
    return state


def _record(state: FunBaTState, cfg, Ef, Ef_old, y, y_scale: float) -> dict:
    """One sweep's history record, with the keys of ``FunBaT.history_``."""
    tau = float(state.noise.mean)
    change = np.inf if Ef_old is None else float(np.sqrt(np.mean((Ef - Ef_old) ** 2) * tau))
    record = {
        "rmse": float(np.sqrt(np.mean((Ef - y) ** 2))) * y_scale,
        "tau": tau,
        "noise_sd": y_scale / np.sqrt(tau),
        "lengthscale": [None if th is None else float(np.exp(th[0])) for th in state.log_hyper],
        "variance": [None if th is None else float(np.exp(th[1])) for th in state.log_hyper],
        "change": change,
    }
    for name in ("period", "envelope"):
        if any(name in cfg.hyper_names(k) for k in range(len(cfg.ranks))):
            record[name] = [
                float(np.exp(th[cfg.hyper_names(k).index(name)]))
                if name in cfg.hyper_names(k)
                else None
                for k, th in enumerate(state.log_hyper)
            ]
    return record
