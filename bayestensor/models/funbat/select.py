"""``kernel="auto"``: the Matérn smoothness of each continuous mode chosen by the evidence.

A mode marked ``"auto"`` starts as Matérn-3/2. When the sweeps have converged (or hit the cap),
the mode's current messages — what the rest of the model says about its functions — are scored
under each Matérn kernel (ν = 1/2, 3/2, 5/2): the kernel's hyperparameters are optimised for the
messages by the fit's own pattern search (:func:`~bayestensor.models.funbat.inference.hyper_search`,
:data:`SELECT_STEPS` iterations from the current ``θ`` with the initial step), and its log
evidence ``log Z`` (prior × messages, from the Kalman filter) is compared. Every auto mode takes
its best kernel, the posterior is re-smoothed under it, and the sweeps continue
(:data:`SELECT_SWEEPS` more, or until they converge). Type-II maximum likelihood per mode, the
others held at their current posterior; a kernel must beat Matérn-3/2 by :data:`MARGIN` nats to
replace it, so noise in the scores does not flip the choice.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from bayestensor._export import CachedJit
from bayestensor.models.funbat.inference import hyper_search
from bayestensor.models.funbat.options import AUTO_CANDIDATES
from bayestensor.models.funbat.state import FunBaTConfig, FunBaTState

#: The candidates, and the kernel an auto mode starts with.
CANDIDATES = AUTO_CANDIDATES
START = "matern32"
#: Pattern-search iterations when scoring a candidate.
SELECT_STEPS = 40
#: Sweeps after the choice (at most; fewer if they converge).
SELECT_SWEEPS = 30
#: Nats by which a kernel must beat the starting one to replace it.
MARGIN = 2.0


def _score(cfg: FunBaTConfig, k: int, dt, msg, theta, step):
    """Optimised log evidence of mode ``k``'s messages under ``cfg``'s kernel for it."""
    post, theta, step = hyper_search(cfg, k, dt, msg, theta, step)
    return post.log_marginal, post, theta, step


_score_jit = CachedJit(_score, static_argnames=("cfg", "k"))


def choose_kernels(
    cfg: FunBaTConfig, state: FunBaTState, dts: tuple, auto: tuple[int, ...]
) -> tuple[FunBaTConfig, FunBaTState, dict[int, dict[str, float]]]:
    """Score every candidate kernel on each auto mode's messages and switch to the best.

    Parameters
    ----------
    cfg : FunBaTConfig
        The fit's settings (auto modes at :data:`START`).
    state : FunBaTState
        The posterior after the first sweeps.
    dts : tuple
        Per mode, the gaps of its sorted coordinates (``None`` for categorical modes).
    auto : tuple of int
        The modes whose kernel is chosen.

    Returns
    -------
    cfg : FunBaTConfig
        With the chosen kernels.
    state : FunBaTState
        With each switched mode's posterior, ``θ`` and search steps under its new kernel.
    scores : dict
        Per auto mode, ``{kernel: log evidence}``.
    """
    kernels = [cfg.mode_kernel(k) for k in range(len(cfg.ranks))]
    factors, log_hyper, opt_state = (
        list(x) for x in (state.factors, state.log_hyper, state.opt_state)
    )
    scores: dict[int, dict[str, float]] = {}
    for k in auto:
        results = {}
        step0 = jnp.full_like(state.opt_state[k], cfg.hyper_step)  # the search's first step
        for name in CANDIDATES:
            trial = list(kernels)
            trial[k] = name
            c = cfg._replace(kernel=tuple(trial), hyper_steps=SELECT_STEPS)
            results[name] = _score_jit(c, k, dts[k], state.messages[k], log_hyper[k], step0)
        scores[k] = {name: float(r[0]) for name, r in results.items()}
        # a non-finite score (a failed search) never wins; the start is kept unless beaten
        usable = {n: v if math.isfinite(v) else -math.inf for n, v in scores[k].items()}
        best = max(CANDIDATES, key=usable.get)
        if not math.isfinite(usable[best]) or usable[best] < usable[START] + MARGIN:
            best = START
        _, factors[k], log_hyper[k], opt_state[k] = results[best]
        kernels[k] = best
    state = state._replace(
        factors=tuple(factors), log_hyper=tuple(log_hyper), opt_state=tuple(opt_state)
    )
    return cfg._replace(kernel=tuple(kernels)), state, scores
