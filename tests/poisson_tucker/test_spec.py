"""prepare_data (models/poisson_tucker/spec.py): tokens for small cells only, bounded memory for
large counts, no allocation arrays for CAVI, clear errors beyond exact integer counts."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.models import poisson_tucker as pt
from bayestensor.models.poisson_tucker.spec import count_limit


def _cells(shape):
    return (
        np.array(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
        .reshape(len(shape), -1)
        .T
    )


# x64: totals beyond 2**31 − 1 need 64-bit integer statistics (prepare_data refuses them without)
@pytest.mark.x64
def test_large_cells_are_not_tokens():
    spec = pt.make_spec((4, 4, 3), (2, 2, 2))
    idx = _cells(spec.shape)
    y = np.arange(1, 49) * 3_000_000
    y[:5] = [1, 2, 3, 999, 1000]
    data = pt.prepare_data(spec, idx, y)
    assert data.tok_x.shape[1] == 1 + 2 + 3 + 999 + 1000
    np.testing.assert_array_equal(np.asarray(data.big), np.arange(5, 48))
    np.testing.assert_array_equal(np.asarray(data.big_y), y[5:])


def test_token_budget_moves_the_largest_cells():
    spec = pt.make_spec((4, 4, 3), (2, 2, 2))
    idx = _cells(spec.shape)
    y = np.full(48, 10)
    y[7] = 500
    data = pt.prepare_data(spec, idx, y, token_budget=400)
    assert data.tok_x.shape[1] <= 400
    assert 7 in np.asarray(data.big).tolist()
    assert data.tok_x.shape[1] + int(np.sum(np.asarray(data.big_y))) == y.sum()


def test_cavi_data_have_no_tokens_and_any_counts():
    spec = pt.make_spec((4, 4, 3), (2, 2, 2))
    idx = _cells(spec.shape)
    y = np.arange(1, 49) * 1e20
    data = pt.prepare_data(spec, idx, y, allocation=False)
    assert data.tok_x is None and not data.has_allocation
    np.testing.assert_allclose(np.asarray(data.y, dtype=float), y, rtol=1e-6)
    lenient = pt.prepare_data(spec, idx, y)  # allocation=None: built only when possible
    assert not lenient.has_allocation
    with pytest.raises(ValueError, match="exceeds"):
        pt.prepare_data(spec, idx, y, allocation=True)
    with pytest.raises(ValueError, match="allocation"):
        pt.PoissonTuckerGibbs(spec, data)


def test_count_limit_is_exact_integer_range():
    spec = pt.make_spec((2, 2), (1, 1))
    idx = _cells(spec.shape)
    limit = count_limit()
    ok = pt.prepare_data(spec, idx[:1], np.asarray([limit]), allocation=True)
    assert int(np.asarray(ok.big_y)[0]) == limit
    assert ok.big_y.dtype == jnp.zeros((), dtype=int).dtype
    with pytest.raises(ValueError, match="exceeds"):
        pt.prepare_data(spec, idx[:2], np.asarray([limit, 2]), allocation=True)
