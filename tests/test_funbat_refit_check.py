"""rank="auto" on small data: rank 1 checked against the learned ranks by refits
(bayestensor.models.funbat.refit_check, wired into bayestensor.fit)."""

import json
import math
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

import bayestensor as bt
import bayestensor.models.funbat.refit_check as check


class _Fixed:
    """A stand-in fit predicting ``truth + error`` at every row it is asked about."""

    def __init__(self, error):
        self.error = error

    def predict(self, rows):
        return {"mean": rows["v"].to_numpy() + self.error}


class _Learned:
    """A stand-in fit erring by 1.0, and by 50 at every tenth ``x``."""

    def predict(self, rows):
        err = np.where(rows["x"].to_numpy() % 10 == 0, 50.0, 1.0)
        return {"mean": rows["v"].to_numpy() + err}


def _rows(n=60):
    return pd.DataFrame({"x": np.arange(n, dtype=float), "v": np.sin(np.arange(n))})


@pytest.mark.parametrize(("rank_one", "taken"), [(0.4, True), (0.6, False)])
def test_rank_one_is_taken_below_the_margin_of_the_median(rank_one, taken):
    """Learned ranks err by 1.0 on every row but by 50 on a tenth of them (the mean square
    is theirs to lose), rank 1 by ``rank_one`` everywhere: the medians decide, 1.0 against
    ``rank_one``, and rank 1 is taken only below MARGIN (0.5) of the learned ranks'."""
    df = _rows()
    seen = []

    def refit_rows(rows, rank):
        seen.append((rank, set(rows["x"])))
        return _Fixed(rank_one) if rank == 1 else _Learned()

    better, median = check.rank_one_by_refits(df, "v", (3, 3), refit_rows, seed=1)
    assert better is taken
    assert median == pytest.approx({"learned": 1.0, "rank 1": rank_one})
    # FOLDS refits per candidate, each on the rows outside one fold: the folds cover every
    # row once
    assert [r for r, _ in seen] == [(3, 3), 1] * check.FOLDS
    held = [set(df["x"]) - rows for _, rows in seen[::2]]
    assert sum(len(h) for h in held) == len(df) and set().union(*held) == set(df["x"])


def test_a_refit_that_predicts_nan_is_an_error():
    def refit(rows, rank):
        return _Fixed(np.nan if rank == 1 else 0.0)

    with pytest.raises(ValueError, match="rank 1 refit of fold 0 predicted non-finite"):
        check.rank_one_by_refits(_rows(), "v", (2,), refit)


def test_rows_at_a_level_the_other_folds_lack_are_not_scored():
    """A level seen in one row only can never be predicted by a refit without it: that row is
    left out of the scores (a refit asked for it would raise, as predict does), every other
    row is scored once per candidate."""
    df = _rows().assign(g=["a", "b"] * 29 + ["c", "b"])
    scored = []

    class _Refit:
        def __init__(self, rows):
            self.levels = set(rows["g"])

        def predict(self, rows):
            if not set(rows["g"]) <= self.levels:
                raise ValueError("column 'g' has categories not seen in training")
            scored.append(len(rows))
            return {"mean": rows["v"].to_numpy()}

    check.rank_one_by_refits(df, "v", (2,), lambda rows, rank: _Refit(rows), categorical=("g",))
    assert sum(scored) == 2 * (len(df) - 1)


@pytest.mark.parametrize("levels", [7, 150])
def test_the_refits_of_one_rank_have_the_same_rows_count_and_coordinates(levels):
    """Both refits of a rank get as many rows and (where one row per value is at most
    COVER_SHARE of them) every value of every coordinate, so they share compiled programs;
    the rows set apart for that are scored by neither, every other row once. With a value
    per row or two (150 levels over 203 rows) the folds are drawn without that, one size."""
    rng = np.random.default_rng(5)
    n = 203  # odd: the row left over is in both refits
    df = pd.DataFrame({"x": rng.integers(0, 12, n) / 12.0, "g": rng.integers(0, levels, n)})
    df = df.assign(g=lambda d: "l" + d["g"].astype(str), v=rng.normal(size=n))
    seen, scored = {}, []

    class _Refit:
        def __init__(self, rows, rank):
            seen.setdefault(rank, []).append(rows)

        def predict(self, rows):
            scored.append(rows.index.to_numpy())
            return {"mean": rows["v"].to_numpy()}

    check.rank_one_by_refits(df, "v", (2, 2), _Refit, categorical=("g",), coords=("x", "g"))
    covered = levels == 7
    for refits in seen.values():
        assert len(refits) == check.FOLDS and len({len(r) for r in refits}) == 1
        every = [set(r[c]) == set(df[c]) for r in refits for c in ("x", "g")]
        assert all(every) is covered  # (uncovered: some level seen once is missing)
    held = np.concatenate(scored[::2])  # one candidate's scored rows, fold by fold
    assert len(held) == len(np.unique(held)) and len(held) % check.FOLDS == 0
    kept = n - len(held)
    if covered:
        assert 12 <= kept <= check.COVER_SHARE * n  # a row per value of x (12), g (7)
    else:  # (unscorable rows aside) only the row left over by the division is kept
        assert (check.fold_of_rows(df, ("x", "g"), 0) < 0).sum() == n % check.FOLDS


def test_where_no_row_can_be_scored_nothing_is_refitted_and_rank_one_not_taken(monkeypatch):
    """Every level seen once: no refit could predict any row, so none is made (a predict on no
    rows would raise), the medians are NaN and rank 1 is not taken; bt.fit then keeps no
    rank_check (a NaN one could not be saved and loaded)."""
    df = _rows().assign(g=[f"l{i}" for i in range(60)])
    refits = []
    taken, median = check.rank_one_by_refits(
        df, "v", (2,), lambda rows, rank: refits.append(rank), categorical=("g",)
    )
    assert not taken and refits == [] and all(np.isnan(m) for m in median.values())
    monkeypatch.setattr(check, "rank_one_by_refits", lambda *a, **k: (taken, median))
    res = bt.fit(_surface(), coords=["x", "y"], value="v", progress=False)
    assert max(res.ranks) > 1 and res.rank_check is None


@pytest.fixture(autouse=True)
def _no_exact_values_gp(monkeypatch):
    """The checks run where the local stage keeps a residual process and no GP on the values.
    On this module's small surfaces (256 rows) the exact GP on the values would blend in, and
    the checks would not run (``tests/test_funbat_anova.py`` tests that GP): held off here."""
    import bayestensor.models.funbat.local_cavity as cavity

    monkeypatch.setattr(cavity, "ANOVA_MAX_ROWS", 0)


def _surface(seed=3, n_side=16):
    rng = np.random.default_rng(seed)
    g = np.linspace(0.0, 1.0, n_side)
    X, Y = np.meshgrid(g, g, indexing="ij")
    f = np.sin(3 * X) * np.cos(2 * Y) + 0.5 * np.sin(5 * X * Y)
    return pd.DataFrame({"x": X.ravel(), "y": Y.ravel(), "v": f.ravel()}).assign(
        v=lambda d: d["v"] + 0.01 * rng.normal(size=len(d))
    )


@pytest.mark.slow  # 20 s of compiles (CI time; nox -s bench runs it)
def test_fitting_the_same_rows_again_compiles_nothing(monkeypatch):
    """``bt.fit`` with defaults on small data refits at several ranks (the rank checks): more
    compiled variants than a bound per function keeps (here 2; 4 by default, which the checks
    on prices passed). Fitting the same rows again in the session compiles nothing (with the bound
    per function it released its programs halfway through every fit and compiled them all
    again: ``driver.call_scope``)."""
    import jax

    from bayestensor import driver
    from bayestensor.models.funbat.local import PROGRAMS, _fibre_post_jit, _fibre_vg

    monkeypatch.setitem(driver.bound_compiled.__kwdefaults__, "keep", 2)
    # what earlier tests in the process left held past its bound would be released as the
    # second fit begins: start from nothing held
    driver.release_held()
    local_programs = (*PROGRAMS, _fibre_vg, _fibre_post_jit)
    for f in local_programs:
        f.clear_cache()

    df = _surface()
    fit = dict(coords=["x", "y"], value="v", progress=False)
    first = bt.fit(df, **fit)
    assert first.rank_check is not None  # the check by refits ran
    # the refits' local processes ran the fit's own programs (padded_local; on a square grid
    # the fibres along x and along y have one shape, and the refits' neighbour likelihoods have
    # the fit's bucket of rows): without it, three neighbour krigings
    assert max(f._cache_size() for f in local_programs) == 1
    expected = first.predict(df)["mean"]
    compiled = []

    def listen(name, seconds, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiled.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        again = bt.fit(df, **fit)
        again.predict(df)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []
    np.testing.assert_allclose(again.predict(df)["mean"], expected, rtol=1e-6)


def test_fit_takes_the_rank_one_refit_only_where_the_check_says_so(monkeypatch):
    """bt.fit with defaults on small data asks the check and, where rank 1 is better, returns
    the rank-1 fit with the same local= (its predictions those of rank=1 itself); with a rank
    given, local=None or more than MAX_ROWS rows it does not ask."""
    df = _surface()
    asked = []

    def says(answer):
        def fake(rows, value, ranks, refit, seed=0, progress=False, categorical=(), coords=()):
            asked.append(tuple(ranks))
            assert coords == ("x", "y")  # the folds keep every coordinate in each refit
            return answer, {"learned": 1.0, "rank 1": 0.1 if answer else 1.0}

        return fake

    monkeypatch.setattr(check, "rank_one_by_refits", says(True))
    taken = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 1 and max(asked[0]) > 1
    assert taken.ranks == (1, 1) and taken.local is not None
    one = bt.fit(df, coords=["x", "y"], value="v", rank=1, local=taken.local.label, progress=False)
    assert len(asked) == 1  # a given rank: no check
    np.testing.assert_allclose(taken.predict(df)["mean"], one.predict(df)["mean"], rtol=1e-10)
    # what the check found is kept, and shown
    found = taken.rank_check
    assert found.taken and found.learned == asked[0] and one.rank_check is None
    assert (found.median_learned, found.median_rank_one) == (1.0, 0.1)
    assert all(r <= m for r, m in zip(found.learned, found.max_ranks, strict=True))
    table = taken.summary()
    assert table["rank"].tolist() == [1, 1] and table["learned_rank"].tolist() == [*asked[0]]
    assert table["max_rank"].tolist() == list(found.max_ranks)
    assert "taken over the learned" in taken.title() and "0.10×" in taken.title()

    monkeypatch.setattr(check, "rank_one_by_refits", says(False))
    kept = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 2 and kept.ranks == asked[1]
    assert not kept.rank_check.taken and kept.rank_check.learned == kept.ranks
    assert "learned_rank" not in kept.summary() and "not taken" in kept.title()
    bt.fit(df, coords=["x", "y"], value="v", local=None, progress=False)
    monkeypatch.setattr(check, "MAX_ROWS", len(df) - 1)
    bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 2


def _rewrite(path, edit):
    with zipfile.ZipFile(path) as zf:
        header = json.loads(zf.read("header.json"))
        arrays = zf.read("arrays.npz")
    edit(header["rank_check"])
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(header))
        zf.writestr("arrays.npz", arrays)


#: Broken ``rank_check`` fields of a saved file, and what the error says.
BROKEN = [
    (lambda c: c.update(learned=[2]), "learned must hold 2 ranks"),
    (lambda c: c.update(learned=[9, 9]), "exceeds its max_ranks"),
    (lambda c: c.update(median_rank_one=-1.0), "finite and ≥ 0"),
    (lambda c: c.update(taken="yes"), "taken"),
    (lambda c: c.pop("median_learned"), "median_learned"),
    (lambda c: c.update(extra=1), "unknown fields"),
]


def test_the_check_is_saved_and_validated_on_load(monkeypatch, tmp_path):
    """save → load and update() keep what the check found (title and summary alike); a file
    whose rank_check field is broken is refused, naming the field."""
    df = _surface()
    monkeypatch.setattr(
        check, "rank_one_by_refits", lambda *a, **k: (True, {"learned": 2.0, "rank 1": 0.5})
    )
    res = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    path = res.save(tmp_path / "checked.bt")
    back = bt.load(path)
    assert back.rank_check == res.rank_check and back.title() == res.title()
    pd.testing.assert_frame_equal(back.summary(), res.summary())
    more = df.iloc[:8].assign(
        x=lambda d: d["x"] + 0.01
    )  # new rows: the ranks are not checked again
    assert res.update(more).rank_check == res.rank_check
    for i, (edit, match) in enumerate(BROKEN):
        broken = tmp_path / f"broken{i}.bt"
        shutil.copy(path, broken)
        _rewrite(broken, edit)
        with pytest.raises(ValueError, match=match):
            bt.load(broken)


@pytest.mark.slow
def test_seals_takes_rank_one_and_predicts_better(monkeypatch):
    """seals (a smooth field with tiny noise), split 1 of the battery's seed 0: the ARD keeps
    4×4, rank 1 with the neighbour GP is far better on the bulk of the refits (median 0.00048
    against 0.00137, measured) and held out (0.0021 against 0.0046)."""
    rng = np.random.default_rng(1)
    df = bt.datasets.load("seals")[["lat", "long", "delta_long"]]
    test = rng.random(len(df)) < 0.2
    train, held = df[~test], df[test]
    fit = bt.fit(train, coords=["lat", "long"], value="delta_long", progress=False)
    monkeypatch.setattr(check, "MAX_ROWS", 0)  # the learned ranks, without the check
    learned = bt.fit(train, coords=["lat", "long"], value="delta_long", progress=False)
    assert fit.ranks == (1, 1) and min(learned.ranks) >= 3

    def rmse(res):
        return float(np.sqrt(np.mean((res.predict(held)["mean"] - held["delta_long"]) ** 2)))

    assert rmse(fit) < 0.6 * rmse(learned)


@pytest.mark.parametrize(("lenient", "taken"), [(0.9, True), (1.1, False)])
def test_the_lenient_fit_is_taken_where_its_refits_predict_better(lenient, taken):
    """The strictly pruned fit (with its process) errs by 1.0 on every row but by 50 on a tenth
    of them, the lenient one by ``lenient`` everywhere: the medians decide, taken only below
    LENIENT_MARGIN (1) of the strict one's; each fold refits both, as ``refit`` is asked."""
    df = _rows()
    seen = []
    strict_spec, lenient_spec = ((3, 3), "fibre:x"), ((4, 4), "auto")

    def refit_rows(rows, spec):
        seen.append((spec, set(rows["x"])))
        return _Fixed(lenient) if spec == lenient_spec else _Learned()

    better, median = check.lenient_by_refits(df, "v", strict_spec, lenient_spec, refit_rows, 1)
    assert better is taken
    assert median == pytest.approx({"strict": 1.0, "lenient": lenient})
    assert [s for s, _ in seen] == [strict_spec, lenient_spec] * check.FOLDS
    held = [set(df["x"]) - rows for _, rows in seen[::2]]
    assert sum(len(h) for h in held) == len(df) and set().union(*held) == set(df["x"])


def test_fit_takes_the_lenient_pruning_only_where_the_check_says_so(monkeypatch):
    """With the local stage's pruning made strict enough to drop components the lenient rule
    keeps (PRUNE_NOISE_LOCAL raised), and the strict fit's process not still needed on top of
    the lenient one, bt.fit with defaults on small data asks the check, with the strict ranks
    and their process against the lenient ranks; where it says so the result is the lenient
    fit (the low-rank part of local=None's fit, which prunes leniently), else the strict one
    with its process. With local=None, a local process named, or more than MAX_ROWS rows it
    does not ask."""
    import bayestensor.models.funbat.ard as ard
    import bayestensor.models.funbat.local as local

    df = _surface()
    monkeypatch.setattr(ard, "PRUNE_NOISE_LOCAL", 5.0)
    monkeypatch.setattr(local, "still_needed", lambda *a: False)  # (else the lenient fit's own)
    nan = {"learned": np.nan, "rank 1": np.nan}
    monkeypatch.setattr(check, "rank_one_by_refits", lambda *a, **k: (False, nan))
    plain = bt.fit(df, coords=["x", "y"], value="v", local=None, progress=False)
    asked = []

    def says(answer):
        def fake(rows, value, strict, lenient, refit, seed=0, progress=False, *rest):
            asked.append((strict, lenient))
            return answer, {"strict": 1.0, "lenient": 0.5 if answer else 2.0}

        return fake

    monkeypatch.setattr(check, "lenient_by_refits", says(False))
    strict = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 1, "the check was not asked: no strict fit with a residual process"
    (strict_ranks, process), (lenient_ranks, how) = asked[0]
    assert strict.ranks == strict_ranks and process == strict.local.residual_label != "none"
    assert lenient_ranks == plain.ranks and how == "auto"
    assert math.prod(strict_ranks) < math.prod(lenient_ranks)

    monkeypatch.setattr(check, "lenient_by_refits", says(True))
    taken = bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 2 and taken.ranks == plain.ranks and taken.local is not None
    low = taken.predict(df, local=False)["mean"]
    np.testing.assert_allclose(low, plain.predict(df)["mean"], rtol=1e-10)

    for kwargs in ({"local": None}, {"local": process}):
        bt.fit(df, coords=["x", "y"], value="v", progress=False, **kwargs)
    monkeypatch.setattr(check, "MAX_ROWS", len(df) - 1)
    bt.fit(df, coords=["x", "y"], value="v", progress=False)
    assert len(asked) == 2


def test_the_checks_refit_the_same_rows_with_the_same_arguments_once(monkeypatch):
    """Both checks of ``bt.fit`` refit the folds at the learned ranks with the residual
    process the local stage kept (where the lenient pruning is not taken): one ``memo`` per
    fit holds each refit, so the second check asks again and fits nothing; other rows, ranks
    or arguments are fitted."""
    from types import SimpleNamespace

    from bayestensor import api, distributed
    from bayestensor.models.funbat import local

    df = _surface(n_side=6)
    modes = distributed.encode(df, ["x", "y"], "v").modes
    theta = np.array([0.1, -0.2, -3.0])
    process = SimpleNamespace(residual=SimpleNamespace(theta=theta), values_kept=False)
    process.residual_label = "fibre:x"
    res = SimpleNamespace(modes=modes, kernels=None, ranks=(2, 2), local=process)
    fitted, starts = [], []

    def fake_fit(rows, **kwargs):
        fitted.append((len(rows), kwargs["rank"], kwargs.get("local")))
        starts.append(local._STARTS.get())
        return object()

    monkeypatch.setattr(api, "fit", fake_fit)
    given = {"coords": ["x", "y"], "value": "v", "seed": 0}
    memo = api._Refits({}, (2, 2))
    lenient, _, _ = api._refits(res, df, given, {}, memo)
    rank_one, _, _ = api._refits(res, df, given, {}, memo, local="fibre:x")
    half, other = df.iloc[::2], df.iloc[1::2]
    first = lenient(half, (2, 2), local="fibre:x")
    assert rank_one(half, (2, 2)) is first  # the same refit: not fitted again
    rank_one(half, 1)
    rank_one(other, (2, 2))
    lenient(half, (2, 2), local="auto")
    lenient(half.assign(v=half["v"] + 1.0), (2, 2), local="fibre:x")
    assert fitted == [
        (18, (2, 2), "fibre:x"),
        (18, 1, "fibre:x"),
        (18, (2, 2), "fibre:x"),
        (18, (2, 2), "auto"),
        (18, (2, 2), "fibre:x"),
    ]
    assert len(memo.fits) == 5
    # the refits at the fit's own ranks start its residual process where the fit's ended
    # (local.warm_starts), the others from the data
    assert [list(s) for s in starts] == [["fibre:x"], [], ["fibre:x"], ["fibre:x"], ["fibre:x"]]
    assert all(s["fibre:x"] is theta for s in starts if s)
    assert local._STARTS.get() is None


def test_a_warm_start_is_where_the_hyperparameter_search_begins(monkeypatch):
    """Inside ``local.warm_starts`` the local stage's candidate of that label searches from the
    given hyperparameters, as with ``start=`` itself (and from the data outside the block or
    for another label); from a fit's own optimum it ends there, in fewer evaluations."""
    from bayestensor.models.funbat import local, local_fibre

    df = _surface(n_side=12)
    rng = np.random.default_rng(0)
    r = np.sin(9 * df["x"].to_numpy()) + 0.3 * rng.normal(size=len(df))
    r = r / np.sqrt(np.mean(r**2))
    kinds = {"x": "continuous", "y": "continuous"}
    calls = []
    lbfgs = local_fibre._lbfgs

    def counted(vg, theta0, lo, hi, maxiter):
        calls.append(0)

        def vg_(th):
            calls[-1] += 1
            return vg(th)

        return lbfgs(vg_, theta0, lo, hi, maxiter)

    monkeypatch.setattr(local_fibre, "_lbfgs", counted)
    cold = local._candidate("fibre:x", df[["x", "y"]], r, 0.1, kinds)
    with local.warm_starts({"fibre:x": cold.theta, "fibre:y": np.zeros(3)}):
        warm = local._candidate("fibre:x", df[["x", "y"]], r, 0.1, kinds)
    given = local._candidate("fibre:x", df[["x", "y"]], r, 0.1, kinds, start=cold.theta)
    np.testing.assert_array_equal(warm.theta, given.theta)
    np.testing.assert_allclose(warm.theta, cold.theta, atol=1e-3)
    assert calls[1] == calls[2] < calls[0]
