"""The one loop every fit runs through: steps, a progress bar, early stopping.

FunBaT sweeps, Gibbs sweeps, CAVI iterations and the PDE solver's compiled chunks of Adam steps
are all ``carry = step(i, carry)`` repeated until a cap or a stopping rule; :func:`iterate` is
that loop, with the tqdm bar set up in one place (:func:`progress_bar`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, NamedTuple

__all__ = [
    "DTYPES",
    "MAX_COMPILED",
    "Step",
    "bound_compiled",
    "call_scope",
    "iterate",
    "precision",
    "progress_bar",
    "release_held",
]

#: Compiled variants (input shapes / static settings) kept per jitted function of a fit loop.
#: Each costs tens of MB of executable code that JAX never frees by itself, so a session that
#: fits many differently sized data sets (cross-validation) would grow without bound.
MAX_COMPILED = 4


class Step(NamedTuple):
    """What a step function returns to :func:`iterate`.

    Attributes
    ----------
    carry : Any
        The new state.
    stop : bool
        End the loop after this step (converged, or out of patience).
    postfix : dict
        Numbers shown beside the progress bar (e.g. ``{"rmse": 0.12}``).
    advance : int
        How far the bar moves (steps done by this call; a compiled chunk may run several).
    """

    carry: Any
    stop: bool = False
    postfix: dict | None = None
    advance: int = 1


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar (``tqdm.auto``: a widget in notebooks), hidden when ``enabled`` is false."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def iterate(
    step: Callable[[int, Any], Step],
    carry: Any,
    n_calls: int,
    *,
    desc: str,
    progress: bool = False,
    total: int | None = None,
) -> tuple[Any, int, bool]:
    """Call ``step(i, carry)`` for ``i = 0, 1, …`` until it says stop or ``n_calls`` ran.

    Parameters
    ----------
    step : callable
        ``(i, carry) -> Step``.
    carry : Any
        Initial state.
    n_calls : int
        Most calls.
    desc : str
        Label of the progress bar.
    progress : bool
        Show the bar.
    total : int, optional
        Length of the bar if it counts something other than calls (see ``Step.advance``).

    Returns
    -------
    carry : Any
        The last state.
    n_run : int
        Calls made.
    stopped : bool
        Whether a step asked to stop (rather than the cap ending the loop).
    """
    with progress_bar(n_calls if total is None else total, desc, progress) as bar:
        for i in range(n_calls):
            out = step(i, carry)
            carry = out.carry
            bar.update(out.advance)
            if out.postfix:
                bar.set_postfix({k: f"{v:.4g}" for k, v in out.postfix.items()})
            if out.stop:
                return carry, i + 1, True
    return carry, n_calls, False


#: What :func:`bound_compiled` and :func:`call_scope` know, by the function's ``id``: the
#: functions passed to ``bound_compiled``, the bound on each (``keep`` times its ``per_fit``),
#: the most variants one call (an outermost scope) has added to each since the last release, and
#: the depth of nested scopes.
_HELD: dict[str, Any] = {"fns": {}, "bounds": {}, "most": {}, "depth": 0}


def bound_compiled(*fns: Any, keep: int = MAX_COMPILED, modes: int = 1) -> None:
    """Release compiled code once one of ``fns`` (``jax.jit`` functions) holds the variants of
    more than ``keep`` fits: memory stays flat over many fits of different sizes, while
    repeated fits of one size keep reusing their compiled functions. A function that one fit
    compiles several times (``per_fit``, as :class:`~bayestensor._export.CachedJit` sets it: a
    number, or ``"mode"``: once per mode of a fit of ``modes`` modes) may hold that many times
    ``keep`` variants. (Bounded at ``keep`` variants, two 3-mode fits of different sizes
    released everything, so going back to the first recompiled all of it.)

    A fit counts as many variants as the most one call of :func:`call_scope` (a ``bt.fit`` with
    its refits) has compiled since the last release, where that is more than ``per_fit``.
    Inside such a call nothing is released here; the bound is applied when the next begins.

    Besides the executables of ``fns``, JAX keeps traced and lowered forms of every shape it has
    seen in its own caches; they are cleared too (``jax.clear_caches``), so other jitted
    functions of the session recompile on their next call — once every ``keep`` new sizes.
    """

    def bound(f) -> int:
        per_fit = getattr(f, "per_fit", 1)
        return keep * (modes if per_fit == "mode" else per_fit)

    for f in fns:
        _HELD["fns"][id(f)] = f
        _HELD["bounds"][id(f)] = bound(f)
    if not _HELD["depth"] and any(_past(id(f), f, keep) for f in fns):
        _release(fns)


def _past(i: int, f: Any, keep: int) -> bool:
    """Whether ``f`` holds more variants than its bound, or than ``keep`` of the largest call."""
    return f._cache_size() > max(_HELD["bounds"][i], keep * _HELD["most"].get(i, 0))


def _release(fns) -> None:
    """Release ``fns`` and JAX's caches; the calls' sizes are counted afresh from here (one
    large fit early in a session does not loosen the bound for good)."""
    for f in fns:
        f.clear_cache()
    release_compiled()
    _HELD["most"].clear()


def release_held() -> None:
    """Release every function :func:`bound_compiled` has seen, and JAX's caches."""
    _release(list(_HELD["fns"].values()))


@contextmanager
def call_scope(keep: int = MAX_COMPILED):
    """One fit as the user calls it: ``bt.fit``, with every refit its checks run inside it.

    Within the scope :func:`bound_compiled` releases nothing. On entering an outermost scope,
    every function passed to ``bound_compiled`` is released (its compiled code and JAX's
    caches) once one of them holds more variants than its bound, or than ``keep`` times the
    most variants one call has added to it since the last release, whichever is larger (the
    rule ``bound_compiled`` applies outside a scope too, as in a prediction). Where a call
    compiles no more variants of a function than ``per_fit`` says, that is the bound of
    :func:`bound_compiled` as before; a call that compiles more (the rank checks' refits at
    three or four ranks) keeps them all, and the same fit again compiles nothing. (Bounded
    per function inside the call, a ``bt.fit`` on small data released its programs in the
    middle of its own refits, and compiled them all again on every later fit of the same rows:
    ``docs/benchmarks.md``.)
    """
    outer = _HELD["depth"] == 0
    held, most = _HELD["fns"], _HELD["most"]
    if outer and any(_past(i, f, keep) for i, f in held.items()):
        release_held()
    before = {i: f._cache_size() for i, f in held.items()} if outer else {}
    _HELD["depth"] += 1
    try:
        yield
    finally:
        _HELD["depth"] -= 1
        if outer:
            for i, f in held.items():
                most[i] = max(most.get(i, 0), f._cache_size() - before.get(i, 0))


def release_compiled() -> None:
    """Drop JAX's caches of compiled and traced functions (``jax.clear_caches``).

    Fits call it when what they compiled cannot serve again (a PDE solve's closures over its
    problem) or when too many sizes have accumulated (:func:`bound_compiled`). Other jitted
    functions of the session recompile on their next call.
    """
    import jax

    jax.clear_caches()


#: Computation dtypes a fit can run in.
DTYPES = ("float64", "float32")


def precision(dtype: str):
    """A context in which JAX computes in ``dtype`` whatever the global ``jax_enable_x64`` says.

    ``"float64"`` turns 64-bit on for the enclosed fit or prediction only (the user's global
    setting is unchanged afterwards); ``"float32"`` keeps every array 32-bit.
    """
    import jax

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return jax.enable_x64(dtype == "float64")
