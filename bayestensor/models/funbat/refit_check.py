"""``rank="auto"`` on small data: rank 1 checked against the learned ranks by refits, and the
leniently pruned fit against the one pruned for the local stage (:func:`lenient_by_refits`).

Where the noise is tiny every direction of the data stands far above it, so the ARD keeps
many components; on some such data rank 1 with a local process on top predicts much better
(``seals``: 4×4–6×6 kept, rank 1 with the neighbour GP 1.19× better held out over 15 splits),
on others it does not (``faithfuld``: 8×8 is best). The leave-one-out estimates the local stage
uses cannot tell these apart: they leave the neighbours' residuals as the full fit made them,
and so are 4–10× too pessimistic where a strong residual process stands on a low rank
(``docs/benchmarks.md``).

So on small data (at most :data:`MAX_ROWS` rows, where a fit takes seconds) the rows are
split into :data:`FOLDS` folds of one size at random (:func:`fold_of_rows`), each fold is
predicted by the learned ranks and by rank 1 fitted to the other folds (the kernels the fit
chose, and the residual process its local stage kept: the check runs only where it kept one),
and rank 1 is taken when
the **median** absolute error of its predictions is below :data:`MARGIN` times the learned
ranks'. The median, not the mean square: on such data a few rows at the edges decide a squared
error (60–95 % of it from five rows on seals), so a mean square ranks the candidates by where
those rows fell; the median says which model fits the bulk of the data. Measured
(``docs/benchmarks.md``): rank 1's median over the learned ranks' was 0.16–0.42 on all 15
seals splits tried (rank 1 the best fixed rank there), and 0.82–2.2 on 1,500-row samples of
other data sets, where the check changed nothing; with five folds instead of two, 0.18–0.38 on
seals and 1.15–1.26 on faithfuld. With the folds of :func:`fold_of_rows` (one size, every
coordinate in every refit): 0.12–0.40 on the same 15 seals splits, 0.87–2.14 and 0.95–2.13 on
20 and 28 samples of other sets (1,500 and 800 rows), rank 1 taken on none of those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from bayestensor import io
from bayestensor.driver import progress_bar

__all__ = [
    "COVER_SHARE",
    "FOLDS",
    "LENIENT_MARGIN",
    "MARGIN",
    "MAX_ROWS",
    "RankCheck",
    "fold_of_rows",
    "lenient_by_refits",
    "medians_by_refits",
    "rank_check_from_record",
    "rank_one_by_refits",
]

#: The check runs on at most this many training rows (it costs ``2 × FOLDS`` fits on part of
#: the rows, and one more on all of them where rank 1 is taken).
MAX_ROWS = 2000
#: Folds of the refits (two: half the cost of three, and the gap held on seals).
FOLDS = 2
#: Rank 1 is taken where its median absolute error is below this fraction of the learned
#: ranks' (a clear gap: 0.16–0.42 against 0.82–2.2 measured, see the module docstring).
MARGIN = 0.5


#: The rows kept in every refit (one per coordinate value, see :func:`fold_of_rows`) may be at
#: most this share of the rows; beyond it the folds are drawn without them.
COVER_SHARE = 0.25
#: The leniently pruned fit is taken over the strict one with its residual process where its
#: refits' median absolute error is below this fraction of theirs (1: whichever predicts
#: better; measured on arrivals and on fresh sets, ``docs/benchmarks.md``).
LENIENT_MARGIN = 1.0


def fold_of_rows(df: pd.DataFrame, coords: tuple[str, ...], seed: int) -> np.ndarray:
    """Each row's fold (``0 … FOLDS − 1``, or ``−1``: in every refit's rows, scored by none).

    The folds have one size, and one row of each value of every ``coords`` column, drawn at
    random, is in none of them, so every refit has as many rows and sees every coordinate.
    Where those rows would be more than :data:`COVER_SHARE` of all (coordinates mostly seen
    once), they are not set apart: the folds still have one size. (The refits' array shapes
    do not depend on the folds: :func:`bayestensor.fit` pads their rows to all rows' count and
    encodes them on all rows' grid, so the refits at one rank share their compiled programs;
    each new shape costs a compile, ``docs/benchmarks.md``.)"""
    n = len(df)
    rng = np.random.default_rng(seed)
    kept = np.zeros(n, dtype=bool)
    for column in coords:
        order = rng.permutation(n)
        codes = pd.factorize(df[column].iloc[order])[0]
        kept[order[np.unique(codes, return_index=True)[1]]] = True
    if kept.sum() > COVER_SHARE * n:
        kept[:] = False
    free = rng.permutation(np.flatnonzero(~kept))
    size = len(free) // FOLDS  # the remainder is kept as well
    fold = np.full(n, -1)
    for k in range(FOLDS):
        fold[free[k * size : (k + 1) * size]] = k
    return fold


def medians_by_refits(
    df: pd.DataFrame,
    value: str,
    candidates: dict[str, Any],
    refit: Callable[[pd.DataFrame, Any], object],
    seed: int = 0,
    progress: bool = False,
    categorical: tuple[str, ...] = (),
    coords: tuple[str, ...] = (),
    what: str = "candidates checked by refits",
) -> dict[str, float]:
    """Each candidate's median absolute error ``|y − mean|`` on the rows of ``df`` it predicts
    when refitted without them, fold by fold (NaN where no row can be scored).
    ``refit(rows, spec)`` fits ``rows`` as the candidate ``candidates[name]`` asks (a result
    with ``predict``); the folds are drawn from ``seed`` (:func:`fold_of_rows` over the
    ``coords`` columns); ``progress``: a bar titled ``what`` over the refits. A fold's rows at
    a level of a ``categorical`` column that the other folds lack are not scored (no refit can
    predict them); a fold with none left is not refitted.

    Raises
    ------
    ValueError
        If a refit's predictions are not finite (the check would compare nothing).
    """
    y = df[value].to_numpy(np.float64)
    fold = fold_of_rows(df, coords, seed)
    folds = []
    for k in range(FOLDS):
        train, scored = df[fold != k], fold == k
        for column in categorical:
            scored &= df[column].isin(set(train[column])).to_numpy()
        if scored.any():
            folds.append((k, train, scored))
    errors: dict[str, list[np.ndarray]] = {name: [np.zeros(0)] for name in candidates}
    with progress_bar(len(candidates) * len(folds), what, progress) as bar:
        for k, train, scored in folds:
            for name, spec in candidates.items():
                mean = np.asarray(refit(train, spec).predict(df[scored])["mean"], np.float64)
                if not np.all(np.isfinite(mean)):
                    raise ValueError(f"the {name} refit of fold {k} predicted non-finite values")
                errors[name].append(y[scored] - mean)
                bar.update()
    pooled = {name: np.abs(np.concatenate(e)) for name, e in errors.items()}
    return {name: float(np.median(e)) if e.size else np.nan for name, e in pooled.items()}


def rank_one_by_refits(
    df: pd.DataFrame,
    value: str,
    ranks: tuple[int, ...],
    refit: Callable[[pd.DataFrame, int | tuple[int, ...]], object],
    seed: int = 0,
    progress: bool = False,
    categorical: tuple[str, ...] = (),
    coords: tuple[str, ...] = (),
) -> tuple[bool, dict[str, float]]:
    """Whether rank 1 predicts the rows of ``df`` clearly better than ``ranks`` when refitted
    without them, fold by fold (:func:`medians_by_refits`); and the two median absolute errors
    (``{"learned": …, "rank 1": …}``). ``refit(rows, rank)`` fits ``rows`` at ``rank``; where
    no row can be scored the medians are NaN and rank 1 is not taken.

    Raises
    ------
    ValueError
        If a refit's predictions are not finite (the check would compare nothing).
    """
    candidates = {"learned": tuple(ranks), "rank 1": 1}
    what = "rank 1 checked by refits"
    args = (refit, seed, progress, categorical, coords, what)
    median = medians_by_refits(df, value, candidates, *args)
    return bool(median["rank 1"] < MARGIN * median["learned"]), median


def lenient_by_refits(
    df: pd.DataFrame,
    value: str,
    strict: Any,
    lenient: Any,
    refit: Callable[[pd.DataFrame, Any], object],
    seed: int = 0,
    progress: bool = False,
    categorical: tuple[str, ...] = (),
    coords: tuple[str, ...] = (),
) -> tuple[bool, dict[str, float]]:
    """Whether the ``lenient`` fit predicts the rows of ``df`` better than the ``strict`` one
    when both are refitted without them, fold by fold (:func:`medians_by_refits`): its median
    absolute error below :data:`LENIENT_MARGIN` times the strict one's; and the two medians
    (``{"strict": …, "lenient": …}``, NaN where no row can be scored: then not taken).

    ``strict`` and ``lenient`` are what ``refit(rows, spec)`` takes: in
    :func:`bayestensor.fit`, the ranks of ``rank="auto"``'s fit pruned for the local stage with
    the residual process it kept there, and the ranks of its leniently pruned fit with its own
    local stage. The strict pruning leaves to the residual process what a low rank could
    carry; on small data that can predict worse (``arrivals``: 4×4×3 with a fibre GP along
    years against 4×5×4 alone, 0.90-0.97× held out), and refits tell.

    Raises
    ------
    ValueError
        If a refit's predictions are not finite (the check would compare nothing).
    """
    candidates = {"strict": strict, "lenient": lenient}
    what = "the lenient pruning checked by refits"
    args = (refit, seed, progress, categorical, coords, what)
    median = medians_by_refits(df, value, candidates, *args)
    return bool(median["lenient"] < LENIENT_MARGIN * median["strict"]), median


class RankCheck(NamedTuple):
    """What the check found, kept on the result it returned (``FitResult.rank_check``).

    Attributes
    ----------
    learned, max_ranks : tuple of int
        The ranks the ARD kept, and its upper bounds.
    median_learned, median_rank_one : float
        The median absolute error of the refits' predictions at the learned ranks and at
        rank 1 (in the value's units).
    taken : bool
        Whether rank 1 was taken (``median_rank_one < MARGIN · median_learned``); the result
        is then the fit ``rank=1`` gives.
    """

    learned: tuple[int, ...]
    max_ranks: tuple[int, ...]
    median_learned: float
    median_rank_one: float
    taken: bool

    @property
    def ratio(self) -> float:
        """Rank 1's median absolute error over the learned ranks'."""
        return self.median_rank_one / self.median_learned if self.median_learned > 0 else np.inf

    def describe(self) -> str:
        """One phrase for a result's title."""
        learned = "×".join(map(str, self.learned))
        error = f"its median absolute error {self.ratio:.2f}× the learned {learned}'s"
        if self.taken:
            return f"taken over the learned {learned} by refits ({error})"
        return f"rank 1 checked by refits, not taken ({error})"


def rank_check_from_record(raw: Any, K: int) -> RankCheck:
    """A saved ``rank_check`` header field of a ``K``-mode fit, checked.

    Raises
    ------
    ValueError
        Naming the field that is missing, mistyped or out of range.
    """
    check = io.record(RankCheck, raw, "header.rank_check")
    for name in ("learned", "max_ranks"):
        ranks = getattr(check, name)
        if len(ranks) != K or min(ranks) < 1:
            raise ValueError(
                f"saved field header.rank_check.{name} must hold {K} ranks ≥ 1, got {list(ranks)}"
            )
    if any(r > m for r, m in zip(check.learned, check.max_ranks, strict=True)):
        raise ValueError("saved field header.rank_check.learned exceeds its max_ranks")
    medians = (check.median_learned, check.median_rank_one)
    if not all(np.isfinite(m) and m >= 0 for m in medians):
        raise ValueError("saved medians of header.rank_check must be finite and ≥ 0")
    return check._replace(median_learned=float(medians[0]), median_rank_one=float(medians[1]))
