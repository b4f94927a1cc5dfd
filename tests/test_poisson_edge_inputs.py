"""bt.fit(..., model="poisson-tucker") at the edges of its inputs: counts beyond float32's exact
integers, all-zero counts, and new rows in an empty DataFrame."""

import re
import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayestensor as bt
from bayestensor.models.poisson_tucker import make_spec, prepare_data, with_exact_counts

#: Quick runs of each method (the tests check inputs and reporting, not the fit).
QUICK = {"vi": {"max_iter": 20}, "gibbs": {"num_warmup": 5, "num_samples": 5}}

#: 2**24 + 1 is the first integer float32 does not hold: it rounds to 2**24.
BIG = 2**24 + 1


def _cells(counts):
    """Four cells of a 2 × 2 table with the given counts."""
    return pd.DataFrame({"a": list("ppqq"), "b": list("uvuv"), "n": counts})


def _fit(df, method):
    return bt.fit(
        df,
        coords=["a", "b"],
        value="n",
        model="poisson-tucker",
        method=method,
        rank=2,
        progress=False,
        **QUICK[method],
    )


@pytest.fixture(scope="module")
def fitted():
    """A CAVI fit of four small counts."""
    return _fit(_cells([1, 2, 3, 4]), "vi")


# -- counts beyond 2**24 ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vi", "gibbs"])
def test_counts_beyond_float32_integers_are_reported_exactly(method, tmp_path):
    counts = [BIG, 1, 3, 5]
    res = _fit(_cells(counts), method)
    total = sum(counts)  # 16777226; in float32 the counts sum to 16777224
    assert f": {total} events in 4 nonzero cells; " in res.title()
    assert res.data.y.dtype == np.int64
    assert sorted(res.data.y.tolist()) == sorted(counts)
    back = bt.load(res.save(tmp_path / "big.bt"))
    assert back.data.y.dtype == np.int64
    np.testing.assert_array_equal(back.data.y, res.data.y)
    assert back.title() == res.title()


def test_exact_counts_come_from_the_host_not_the_working_dtype():
    spec = make_spec((2, 2), (1, 1))
    index = np.array([[0, 0], [0, 1], [1, 0]])
    counts = np.array([BIG, 0, 7], dtype=np.float64)
    data = prepare_data(spec, index, counts, dtype=jnp.float32, allocation=False)
    assert np.asarray(data.y).tolist() == [2**24, 7]  # the device's copy: rounded
    exact = with_exact_counts(data, counts)
    assert exact.y.dtype == np.int64
    assert exact.y.tolist() == [BIG, 7]
    np.testing.assert_array_equal(exact.index, data.index)
    with pytest.raises(ValueError, match="must hold the 2 nonzero integer counts of data, got 1"):
        with_exact_counts(data, counts[:2])


# -- all-zero counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vi", "gibbs"])
def test_all_zero_counts_are_refused_and_one_nonzero_count_is_enough(method):
    msg = (
        "count column 'n' has no nonzero count (all 4 rows are 0); a Poisson Tucker model of "
        "all-zero counts has nothing to decompose"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        _fit(_cells([0, 0, 0, 0]), method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero in the component shares
        res = _fit(_cells([0, 0, 7, 0]), method)
        mass = res.component_mass()
        eff = res.effective_components()
    assert ": 7 events in 1 nonzero cells; " in res.title()
    for m in mass.values():
        assert np.all(np.isfinite(m))
        assert m.sum() == pytest.approx(1.0, rel=1e-5)
    assert set(eff) == {"a", "b"}
    assert all(v >= 1 for v in eff.values())


# -- new rows: empty frames ---------------------------------------------------------------------


@pytest.mark.parametrize("call", ["predict", "rates"])
def test_empty_new_rows_are_refused(fitted, call):
    empty = _cells([1, 2, 3, 4]).iloc[:0]
    with pytest.raises(ValueError, match=re.escape("df is empty (0 rows); at least one row")):
        getattr(fitted, call)(empty)


@pytest.mark.parametrize("call", ["predict", "rates"])
def test_new_rows_not_in_a_dataframe_are_refused(fitted, call):
    with pytest.raises(ValueError, match="df must be a pandas DataFrame, got list"):
        getattr(fitted, call)([["p", "u"]])


def test_heldout_region_must_be_a_nonempty_frame_of_coords_but_may_have_no_events(fitted):
    held = _cells([1, 2, 3, 4]).iloc[:1]  # cell (p, u) lies in the slice a = p
    with pytest.raises(ValueError, match=re.escape("mask is empty (0 rows); at least one row")):
        fitted.heldout_loglik(held, pd.DataFrame({"a": []}))
    with pytest.raises(ValueError, match=re.escape("mask must have columns among the coords")):
        fitted.heldout_loglik(held, held[["n"]])
    # no held-out event: an empty df is a valid input, the log-likelihood is -Σ μ over the slice
    out = fitted.heldout_loglik(held.iloc[:0], pd.DataFrame({"a": ["p"]}))
    slice_rates = fitted.rates(pd.DataFrame({"a": ["p", "p"], "b": ["u", "v"]}))
    assert out["n_cells"] == 2
    assert out["total"] == pytest.approx(-slice_rates.sum(), rel=1e-5)
