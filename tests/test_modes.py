"""Tests for ``bayestensor.modes``: Mode invariants, equality and its JSON round trip."""

import json

import numpy as np
import pytest

from bayestensor.modes import CATEGORICAL, CONTINUOUS, Mode


@pytest.mark.parametrize(
    "mode",
    [
        Mode("t", CONTINUOUS, np.array([-1.5, 0.1, 2.0])),
        Mode("s", CATEGORICAL, np.array(["a", "b", "c"], dtype=object)),
        Mode("i", CATEGORICAL, np.array([1, 2, 7], dtype=np.int64)),
        Mode("f", CATEGORICAL, np.array([False, True])),
        Mode("m", CATEGORICAL, np.array([1, 2.5, "a"], dtype=object)),
    ],
    ids=["continuous", "str", "int", "bool", "mixed"],
)
def test_mode_json_round_trip(mode):
    d = json.loads(json.dumps(mode.to_dict()))
    back = Mode.from_dict(d)
    assert back == mode
    assert back.values.dtype == mode.values.dtype
    assert back.size == mode.size
    assert [type(v) for v in back.values] == [type(v) for v in mode.values]


def test_mode_to_dict_rejects_non_json_categories():
    mode = Mode("d", CATEGORICAL, np.array([1 + 1j, 2 - 1j]))
    with pytest.raises(ValueError, match="mode 'd' has categories of type complex"):
        mode.to_dict()


@pytest.mark.parametrize("dtype", ["datetime64[D]", "datetime64[ns]", "timedelta64[s]"])
def test_datetime_categories_round_trip_through_json(dtype):
    raw = ["2020-01-01", "2021-06-30"] if dtype.startswith("datetime") else [5, 3600]
    mode = Mode("d", CATEGORICAL, np.array(raw, dtype=dtype))
    back = Mode.from_dict(json.loads(json.dumps(mode.to_dict())))
    assert back == mode and back.values.dtype == np.dtype(dtype)


def test_mode_equality_distinguishes_values():
    a = Mode("t", CONTINUOUS, np.array([0.0, 1.0]))
    assert a == Mode("t", CONTINUOUS, np.array([0.0, 1.0]))
    assert a != Mode("t", CONTINUOUS, np.array([0.0, 2.0]))
    assert a != Mode("u", CONTINUOUS, np.array([0.0, 1.0]))
    assert Mode("c", CATEGORICAL, np.array([0, 1])) != Mode("c", CATEGORICAL, np.array([0.0, 1.0]))


@pytest.mark.parametrize(
    ("kind", "values", "match"),
    [
        ("ordinal", np.array([0.0]), "unknown kind 'ordinal'"),
        (CONTINUOUS, np.array([], dtype=np.float64), "must not be empty"),
        (CONTINUOUS, np.array([[0.0, 1.0]]), "1-D"),
        (CONTINUOUS, np.array([1, 2]), "float64"),
        (CONTINUOUS, np.array([1.0, 1.0]), "strictly increasing"),
        (CONTINUOUS, np.array([0.0, np.inf]), "finite"),
        (CATEGORICAL, np.array(["a", "a"], dtype=object), "unique"),
    ],
)
def test_mode_invariants(kind, values, match):
    with pytest.raises(ValueError, match=match):
        Mode("x", kind, values)


def test_mode_from_dict_missing_key():
    with pytest.raises(ValueError, match="missing keys"):
        Mode.from_dict({"name": "x", "kind": CONTINUOUS})
