"""Fixed-rank Tucker fits run at larger ranks with the extra components switched off
(:func:`padded_ranks`), so that fits at several ranks share one compiled sweep.

The check refits of :func:`bayestensor.fit` on small data fit the same rows at two or three
ranks (the learned ranks, the leniently pruned ones, rank 1); each rank is its own compiled
sweep, initial state and more, 1.5–2.5 s of compiling each (``docs/benchmarks.md``). Inside
:func:`padded_ranks`, a fixed-rank Tucker fit at ranks ``r ≤ R`` runs at ``R`` with the core
entries of the components past ``r_k`` held at exactly zero (mean and covariance: every core
update is followed by :func:`kept_core`), and its initial factor means are those of the rank-``r``
fit with zero columns beside them. Then the extra components contribute nothing:

- every message to an extra component is exactly zero (its core entries are), so its posterior
  stays the prior (mean zero, no covariance with the kept ones: the precisions are block
  diagonal, and the factorisations keep the blocks apart);
- every product over the modes that reaches an extra component meets a zero core entry, so the
  Gram sums, the fitted values, the noise update and the evidence of the hyperparameter search
  (a zero message adds ``log 1``) are those of the rank-``r`` fit.

After the sweeps the extra components are dropped (:func:`~.ard.prune`): the fit is the rank-``r``
fit, to rounding (``tests/test_sharding.py``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor.checks import is_int
from bayestensor.models.funbat.state import CorePosterior, auto_chunk

__all__ = ["fit_ranks", "kept_core", "padded_means", "padded_ranks", "unpadded"]

#: The ranks that fixed-rank Tucker fits run at (:func:`padded_ranks`); None: their own.
_PAD_RANKS: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar(
    "pad_ranks", default=None
)


@contextmanager
def padded_ranks(ranks) -> Iterator[None]:
    """Within this block, fixed-rank Tucker fits (spectral start, no kernel left to choose) at
    ranks no larger than ``ranks`` in any mode, and with as many modes, run at ``ranks`` with
    the extra components switched off (see the module docstring), so that they share one
    compiled sweep and initial state; their results are their own ranks' fits."""
    ranks = tuple(ranks) if isinstance(ranks, (tuple, list)) else ()
    if not ranks or not all(is_int(r) and r >= 1 for r in ranks):
        raise ValueError(f"ranks must be a non-empty sequence of ints ≥ 1, got {ranks!r}")
    token = _PAD_RANKS.set(tuple(int(r) for r in ranks))
    try:
        yield
    finally:
        _PAD_RANKS.reset(token)


def fit_ranks(ranks: tuple[int, ...], padded: bool) -> tuple[tuple[int, ...], jax.Array | None]:
    """The ranks a fit at ``ranks`` runs at, and the 0/1 mask of its core entries (flattened,
    C order; None: not padded). ``padded``: the fit may be padded (a fixed-rank Tucker fit with
    the spectral start and its kernels given)."""
    pad = _PAD_RANKS.get()
    if not padded or pad is None or len(pad) != len(ranks):
        return ranks, None
    if any(r > p for r, p in zip(ranks, pad, strict=True)):
        return ranks, None
    # (at ``pad`` itself too: all ones, so the same compiled sweep as the smaller ranks')
    kept = np.zeros(pad, dtype=float)
    kept[tuple(slice(0, r) for r in ranks)] = 1.0
    return pad, jax.device_put(kept.reshape(-1))  # (placed once, not at every sweep)


def padded_means(means: list[np.ndarray], ranks: tuple[int, ...]) -> list[np.ndarray]:
    """Initial factor means ``(N_k, r_k)`` with zero columns up to ``ranks``."""
    return [np.pad(m, ((0, 0), (0, R - m.shape[1]))) for m, R in zip(means, ranks, strict=True)]


def kept_core(core: CorePosterior, kept) -> CorePosterior:
    """The core posterior with the entries ``kept`` marks 0 set to exactly zero (mean and
    covariance rows and columns); ``kept`` None: unchanged."""
    if kept is None:
        return core
    kept = jnp.asarray(kept, core.mean.dtype)
    mean = core.mean * kept.reshape(core.mean.shape)
    return CorePosterior(mean, core.cov * kept[:, None] * kept[None, :])


def unpadded(state, cfg, ranks: tuple[int, ...], rows: int, rechunk: bool):
    """The fit run at ``cfg.ranks`` with the components past ``ranks`` switched off, as the fit
    at ``ranks``: those components dropped (:func:`~.ard.prune`); with ``rechunk``, the block
    size recomputed for ``rows`` rows at ``ranks`` (as :func:`~.ard.prune_fit`)."""
    from bayestensor.models.funbat.ard import prune

    state, cfg = prune(state, cfg, tuple(np.arange(r) for r in ranks))
    return state, cfg._replace(chunk=auto_chunk(rows, ranks, cfg.model)) if rechunk else cfg
