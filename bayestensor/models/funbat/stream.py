"""The new-rows update of a FunBaT fit (``FitResult.update(..., scope="new")``).

What the old rows said is held in their messages: per mode and coordinate, the sums
``Σ τ E[a aᵀ]`` and ``Σ τ y E[a]`` that the fitted state keeps (:class:`Messages`). An update
sweep adds the new rows' messages, computed from the current posteriors, to those held sums and
recomputes each mode's posterior — Kalman smoothing with the fitted hyperparameters for a
continuous mode, the closed form for a categorical one. The core (or CP weights), the noise,
the hyperparameters and the ARD precisions stay at their fitted values. A sweep then costs the
new rows plus one pass over each mode's unique coordinates, whatever the number of old rows.

Before the first sweep every mode's posterior is recomputed from the held messages alone on the
grown coordinates: at the fitted coordinates that is the fitted posterior, at new ones of a
continuous mode the SDE bridge (inside the range) or the Kalman prediction (beyond it), at a new
category the prior ``N(0, I)``.

Compiled once per size bucket: the modes' coordinates are padded to :func:`bucket` sizes (a
continuous mode at its end, with no messages there: a smoother's posterior at the real
coordinates does not depend on later coordinates without data; a categorical mode with unused
categories) and the new rows likewise (padding rows masked out). A stream of daily updates then
reuses one compiled sweep for many days instead of compiling one per day.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor._export import CachedJit
from bayestensor.driver import bound_compiled
from bayestensor.models.funbat.grid import mode_messages
from bayestensor.models.funbat.inference import mode_sde
from bayestensor.models.funbat.moments import (
    categorical_posterior,
    expected_f,
    gather,
    grouping,
)
from bayestensor.models.funbat.state import CategoricalPosterior, Messages, auto_chunk
from bayestensor.sharding import resolve_devices, shard_rows
from bayestensor.ssm import gaps, smooth

#: Smallest padded sizes: coordinates of a mode, new rows.
MIN_COORDS, MIN_ROWS = 16, 128


def bucket(n: int, minimum: int) -> int:
    """``n`` rounded up to a multiple of ``2^(⌊log₂ n⌋ − 3)`` (at most 12.5 % more), at least
    ``minimum``: eight sizes per doubling, so few distinct shapes as ``n`` grows by small steps
    (and compiled programs are shared)."""
    if n <= minimum:
        return minimum
    step = 2 ** max(n.bit_length() - 4, 0)  # 2^j / 8 for 2^j <= n < 2^(j+1)
    return -(-n // step) * step


def _posterior(cfg, k: int, msg: Messages, theta, dt):
    """Mode ``k``'s posterior given its messages: Kalman smoothing (continuous) or the closed
    form (categorical)."""
    if cfg.continuous[k]:
        return smooth(mode_sde(cfg, k, theta), dt, msg.prec, msg.shift)
    return categorical_posterior(msg)


def _posteriors(held: tuple, log_hyper: tuple, dts: tuple, cfg) -> tuple:
    """Every mode's posterior given its messages ``held`` (one :class:`Messages` per mode)."""
    return tuple(_posterior(cfg, k, msg, log_hyper[k], dts[k]) for k, msg in enumerate(held))


def _sweep(factors, held, core, tau, log_hyper, index, y, mask, dts, cfg):
    """One sweep over the new rows: per mode, their messages at the current posteriors plus
    the held sums, then the mode's posterior. Returns factors, messages and ``E[f]`` there."""
    factors, messages = list(factors), []
    for k in range(len(cfg.ranks)):
        means, seconds = gather(tuple(factors), index)
        group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
        new = mode_messages(
            k, y, tau, means, seconds, core, index, group, cfg.sizes, cfg.chunk, mask
        )
        msg = Messages(held[k].prec + new.prec, held[k].shift + new.shift)
        messages.append(msg)
        factors[k] = _posterior(cfg, k, msg, log_hyper[k], dts[k])
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
    Ef, _ = expected_f(means, seconds, core, cfg.chunk, group)
    return tuple(factors), tuple(messages), Ef


def _messages_at(factors, core, tau, index, y, mask, cfg) -> tuple:
    """Every mode's message sums from the rows ``index, y`` at the posteriors ``factors``
    (each mode's from the others' as given)."""
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index) if cfg.model == "tucker" else None
    out = []
    for k in range(len(cfg.ranks)):
        out.append(
            mode_messages(k, y, tau, means, seconds, core, index, group, cfg.sizes, cfg.chunk, mask)
        )
    return tuple(out)


def held_messages(est) -> tuple:
    """The old rows' message sums of a fitted estimator, consistent with its posteriors.

    A fit's state keeps each mode's messages from its last sweep, from which that mode's
    posterior was computed — except after ``rank="auto"`` pruned and rotated the components
    (:func:`~bayestensor.models.funbat.ard.prune_fit`): the rotated, truncated messages no
    longer give the kept posterior. Then they are recomputed from the training rows at the
    fitted posteriors (one pass over the rows, once: an update's state is consistent again,
    ``est.messages_current_``).
    """
    state, cfg = est.state_, est.cfg_
    if not cfg.ard or getattr(est, "messages_current_", False):
        return state.messages
    train = est.train_
    y = (np.asarray(train.y, dtype=np.float64) - est.y_mean_) / est.y_scale_
    index, mask = np.asarray(train.index), None
    devices = resolve_devices(est.devices)
    if len(devices) > 1:
        (index, y), mask = shard_rows([index, y], devices)
    else:
        index, y = jnp.asarray(index), jnp.asarray(y)
    return _messages_at_jit(state.factors, state.core, state.noise.mean, index, y, mask, cfg)


# traced programs kept on disk with the fit's (bayestensor._export): a fresh process's first
# update does not trace them again
_messages_at_jit = CachedJit(_messages_at, static_argnames=("cfg",))
_posteriors_jit = CachedJit(_posteriors, static_argnames=("cfg",))
_sweep_jit = CachedJit(_sweep, static_argnames=("cfg",))


def _padded_messages(msg: Messages, pos: np.ndarray, size: int) -> Messages:
    """The fitted messages at positions ``pos`` of a grid of ``size`` coordinates, zero
    elsewhere (built on the host: no program per size)."""
    out = []
    for a in msg:
        a = np.asarray(a)
        grid = np.zeros((size,) + a.shape[1:], a.dtype)
        grid[pos] = a
        out.append(jnp.asarray(grid))
    return Messages(*out)


def _padded_gaps(values: np.ndarray, size: int) -> jax.Array:
    """The gaps of ``values`` (:func:`~bayestensor.ssm.gaps`), then steps of the largest gap (1
    for a single coordinate) up to ``size``."""
    dt = gaps(np.asarray(values, dtype=np.float64))
    fill = float(dt.max()) if dt.size > 1 and dt.max() > 0 else 1.0
    return jnp.asarray(np.concatenate([dt, np.full(size - dt.size, fill)]))


def _first(a, n: int) -> jax.Array:
    """The first ``n`` rows of ``a`` (sliced on the host: no program per size)."""
    return jnp.asarray(np.asarray(a)[:n])


def _unpad(f, n: int):
    """A mode's posterior at its first ``n`` coordinates."""
    if isinstance(f, CategoricalPosterior):
        return CategoricalPosterior(_first(f.mean, n), _first(f.cov, n))
    return f._replace(
        state_mean=_first(f.state_mean, n),
        state_cov=_first(f.state_cov, n),
        cross_cov=_first(f.cross_cov, max(n - 1, 0)),
        mean=_first(f.mean, n),
        cov=_first(f.cov, n),
    )


def new_rows_update(est, cfg, modes, positions, index_new, y_new, sweeps: int, on_sweep):
    """Sweeps over the new rows from the fitted state of ``est`` (see the module docstring).

    Parameters
    ----------
    est : FunBaT
        The fitted estimator (not modified).
    cfg : FunBaTConfig
        The fit's configuration with the grown modes' sizes.
    modes : tuple of Mode
        The grown modes.
    positions : list of ndarray
        Per mode, where each fitted coordinate sits among the grown mode's.
    index_new : ndarray ``(m, K)``
        The new rows' coordinate indices in the grown modes.
    y_new : ndarray ``(m,)``
        Their z-scored values.
    sweeps : int
    on_sweep : callable
        Called after each sweep with the (padded) state and ``E[f]`` at the new rows.

    Returns
    -------
    FunBaTState
        The updated state on the grown modes.
    """
    state = est.state_
    sizes = tuple(bucket(m.size, MIN_COORDS) for m in modes)
    held = tuple(
        _padded_messages(msg, pos, size)
        for msg, pos, size in zip(held_messages(est), positions, sizes, strict=True)
    )
    dts = tuple(
        _padded_gaps(m.values, size) if cfg.continuous[k] else None
        for k, (m, size) in enumerate(zip(modes, sizes, strict=True))
    )
    m = y_new.shape[0]
    rows = bucket(m, MIN_ROWS)
    index = np.zeros((rows, index_new.shape[1]), dtype=index_new.dtype)
    index[:m] = index_new
    y = np.zeros(rows)
    y[:m] = y_new
    mask = (np.arange(rows) < m).astype(np.float64)
    devices = resolve_devices(est.devices)
    if len(devices) > 1:  # as in the fit: rows split over the devices, padded (mask 0)
        (index, y, mask), shard_mask = shard_rows([index, y, mask], devices)
        mask = mask * shard_mask
    else:
        index, y, mask = jnp.asarray(index), jnp.asarray(y), jnp.asarray(mask)
    chunk = auto_chunk(rows, cfg.ranks, cfg.model) if est.chunk == "auto" else est.chunk
    pad_cfg = cfg._replace(sizes=sizes, chunk=chunk)
    bound_compiled(_posteriors_jit, _sweep_jit, _messages_at_jit)
    factors = _posteriors_jit(held, state.log_hyper, dts, pad_cfg)
    messages = held
    for _ in range(sweeps):
        factors, messages, Ef = _sweep_jit(
            factors,
            held,
            state.core,
            state.noise.mean,
            state.log_hyper,
            index,
            y,
            mask,
            dts,
            pad_cfg,
        )
        on_sweep(state, np.asarray(Ef, dtype=np.float64)[:m])
    n = [mode.size for mode in modes]
    factors = tuple(_unpad(f, size) for f, size in zip(factors, n, strict=True))
    messages = tuple(
        Messages(_first(msg.prec, size), _first(msg.shift, size))
        for msg, size in zip(messages, n, strict=True)
    )
    return state._replace(factors=factors, messages=messages)
