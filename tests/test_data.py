"""Tests for ``bayestensor.data``: long DataFrame <-> per-mode coordinates and indices."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from bayestensor.data import (
    CATEGORICAL,
    CONTINUOUS,
    Encoded,
    Mode,
    NewEncoded,
    decode,
    encode,
    encode_new,
    parse_coords,
)


def _random_frame(rng: np.random.Generator, n: int = 60) -> pd.DataFrame:
    """Mixed long frame with repeated continuous and categorical coordinates."""
    return pd.DataFrame(
        {
            "time": rng.choice(rng.normal(size=9), size=n),
            "station": rng.choice(np.array(["north", "east", "south", "west"]), size=n),
            "depth": rng.choice(rng.uniform(0.0, 100.0, size=5), size=n),
            "sensor": rng.integers(0, 6, size=n),
            "y": rng.normal(size=n),
        }
    )


@pytest.fixture
def frame(rng):
    """A random mixed long DataFrame."""
    return _random_frame(rng)


@pytest.fixture
def small():
    """A small hand-written mixed long DataFrame."""
    return pd.DataFrame(
        {
            "lat": [0.5, 0.1, 0.5, 2.0],
            "station": ["b", "a", "b", "c"],
            "code": [3, 1, 2, 3],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )


# ---------------------------------------------------------------- parse_coords


def test_parse_coords_defaults(frame):
    kinds = parse_coords(frame, ["time", "station", "sensor"], value="y")
    assert kinds == {"time": CONTINUOUS, "station": CATEGORICAL, "sensor": CONTINUOUS}
    assert list(kinds) == ["time", "station", "sensor"]


def test_parse_coords_bool_is_categorical():
    df = pd.DataFrame({"flag": [True, False, True], "x": [1.0, 2.0, 3.0]})
    assert parse_coords(df, ("flag", "x")) == {"flag": CATEGORICAL, "x": CONTINUOUS}


def test_parse_coords_dict_overrides_default(frame):
    kinds = parse_coords(frame, {"sensor": "categorical", "time": "continuous"})
    assert kinds == {"sensor": CATEGORICAL, "time": CONTINUOUS}


def test_int_column_as_categorical(small):
    enc = encode(small, {"code": "categorical", "lat": "continuous"}, value="y")
    code = enc.modes[0]
    assert code.kind == CATEGORICAL
    assert code.values.dtype == np.int64
    np.testing.assert_array_equal(code.values, [1, 2, 3])
    np.testing.assert_array_equal(enc.index[:, 0], [2, 0, 1, 2])
    out = decode(enc)
    assert out["code"].dtype == np.int64
    pd.testing.assert_frame_equal(out, small[["code", "lat", "y"]])

    default = encode(small, ["code"])
    assert default.modes[0].kind == CONTINUOUS
    assert default.modes[0].values.dtype == np.float64


# ---------------------------------------------------------------- validation


def test_not_a_dataframe():
    with pytest.raises(ValueError, match="df must be a pandas DataFrame"):
        encode({"x": [1.0]}, ["x"])


def test_empty_frame(small):
    with pytest.raises(ValueError, match="df is empty"):
        encode(small.iloc[:0], ["lat"])
    with pytest.raises(ValueError, match="df is empty"):
        encode_new(small.iloc[:0], encode(small, ["lat"]).modes)


def test_empty_coords(small):
    with pytest.raises(ValueError, match="coords is empty"):
        encode(small, [])
    with pytest.raises(ValueError, match="coords is empty"):
        encode(small, {})


def test_bare_string_coords(small):
    with pytest.raises(ValueError, match=r"coords must be a list.*'lat'.*\['lat'\]"):
        encode(small, "lat")


def test_duplicated_coords(small):
    with pytest.raises(ValueError, match="column 'lat' appears twice in coords"):
        encode(small, ["lat", "station", "lat"])


def test_unknown_kind(small):
    with pytest.raises(ValueError, match=r"coords\['lat'\] has unknown kind 'ordinal'"):
        encode(small, {"lat": "ordinal"})


def test_missing_column_lists_available(small):
    with pytest.raises(ValueError, match=r"column 'lon' not found.*\['lat', 'station', 'code'"):
        encode(small, ["lat", "lon"])


def test_missing_value_column(small):
    with pytest.raises(ValueError, match=r"value column 'z' not found.*available columns"):
        encode(small, ["lat"], value="z")


def test_non_numeric_value_column(small):
    with pytest.raises(ValueError, match="value column 'station' has dtype (str|object)"):
        encode(small, ["lat"], value="station")


def test_bool_value_column_rejected(small):
    df = small.assign(ok=[True, False, True, True])
    with pytest.raises(ValueError, match="value column 'ok' has dtype bool"):
        encode(df, ["lat"], value="ok")


def test_value_column_in_coords(small):
    with pytest.raises(ValueError, match="value column 'y' is also listed in coords"):
        encode(small, ["lat", "y"], value="y")
    with pytest.raises(ValueError, match="value column 'y' is also listed in coords"):
        encode(small, {"y": "continuous"}, value="y")


def test_continuous_on_non_numeric(small):
    match = "column 'station' is declared continuous.*dtype (str|object)"
    with pytest.raises(ValueError, match=match):
        encode(small, {"station": "continuous"})


def test_duplicated_dataframe_column(small):
    df = pd.concat([small, small[["lat"]]], axis=1)
    with pytest.raises(ValueError, match="column 'lat' appears more than once"):
        encode(df, ["lat"])


def test_nan_inf_in_continuous_coordinate(small):
    df = small.assign(lat=[np.nan, 0.1, np.inf, -np.inf])
    with pytest.raises(ValueError, match="column 'lat' has 3 rows with NaN or inf values"):
        encode(df, ["lat", "station"])


def test_missing_in_categorical_coordinate(small):
    df = small.assign(station=pd.Series(["a", None, np.nan, "b"], dtype=object))
    with pytest.raises(ValueError, match="column 'station' has 2 rows with NaN or inf values"):
        encode(df, ["lat", "station"])


def test_nan_in_int_as_categorical(small):
    df = small.assign(code=pd.array([1, None, 2, 3], dtype="Int64"))
    with pytest.raises(ValueError, match="column 'code' has 1 row with NaN or inf values"):
        encode(df, {"code": "categorical"})


def test_nan_inf_in_value_column(small):
    df = small.assign(y=[1.0, np.nan, np.inf, 2.0])
    # the message says how to leave unobserved cells out
    msg = r"column 'y' has 2 rows with NaN or inf values; .*df\.dropna\(subset=\['y'\]\)"
    with pytest.raises(ValueError, match=msg):
        encode(df, ["lat"], value="y")


def test_encode_new_missing_column(small):
    modes = encode(small, ["lat", "station"]).modes
    with pytest.raises(ValueError, match=r"column 'station' not found.*\['lat'\]"):
        encode_new(small[["lat"]], modes)


def test_encode_new_nan_inf(small):
    modes = encode(small, ["lat", "station"]).modes
    df = pd.DataFrame({"lat": [0.1, np.nan], "station": ["a", "b"]})
    with pytest.raises(ValueError, match="column 'lat' has 1 row with NaN or inf values"):
        encode_new(df, modes)
    df = pd.DataFrame({"lat": [0.1, 0.2], "station": ["a", None]})
    with pytest.raises(ValueError, match="column 'station' has 1 row with NaN or inf values"):
        encode_new(df, modes)


def test_encode_new_unseen_category(small):
    modes = encode(small, ["lat", "station"]).modes
    df = pd.DataFrame({"lat": [0.1, 0.5, 0.3], "station": ["a", "X", "X"]})
    with pytest.raises(
        ValueError, match=r"column 'station' has categories not seen in training: \['X'\]"
    ):
        encode_new(df, modes)


def test_encode_new_unseen_categories_listed_up_to_five(small):
    modes = encode(small, ["station"]).modes
    unseen = ["p", "q", "r", "s", "t", "u", "v"]
    df = pd.DataFrame({"station": ["a", *unseen]})
    with pytest.raises(ValueError, match="column 'station'") as info:
        encode_new(df, modes)
    message = str(info.value)
    assert "['p', 'q', 'r', 's', 't', ...] (7 in total)" in message
    assert "'u'" not in message


def test_encode_new_unseen_int_category(small):
    modes = encode(small, {"code": "categorical"}).modes
    with pytest.raises(ValueError, match=r"column 'code' has categories not seen.*\[7\]"):
        encode_new(pd.DataFrame({"code": [1, 7]}), modes)


def test_encode_new_non_numeric_continuous(small):
    modes = encode(small, ["lat"]).modes
    with pytest.raises(ValueError, match="column 'lat' is continuous in the model"):
        encode_new(pd.DataFrame({"lat": ["a", "b"]}), modes)


def test_encode_new_bad_modes(small):
    modes = encode(small, ["lat"]).modes
    with pytest.raises(ValueError, match="modes is empty"):
        encode_new(small, [])
    with pytest.raises(ValueError, match="column 'lat' appears twice in modes"):
        encode_new(small, [modes[0], modes[0]])


# ---------------------------------------------------------------- round trips


def _check_modes(enc: Encoded, df: pd.DataFrame) -> None:
    """Modes are sorted unique and ``values[index]`` reproduces every column."""
    for k, mode in enumerate(enc.modes):
        column = df[mode.name].to_numpy()
        assert len(pd.unique(mode.values)) == mode.size
        if mode.kind == CONTINUOUS:
            assert mode.values.dtype == np.float64
            assert np.all(np.diff(mode.values) > 0)
            np.testing.assert_array_equal(mode.values, np.unique(column.astype(np.float64)))
        else:
            assert list(mode.values) == sorted(set(column))
        assert enc.index.dtype == np.int64
        assert enc.index[:, k].min() >= 0
        assert enc.index[:, k].max() < mode.size
        np.testing.assert_array_equal(mode.values[enc.index[:, k]], column)
        np.testing.assert_array_equal(enc.coordinates(k), column)
        np.testing.assert_array_equal(enc.coordinates(mode.name), column)


def test_round_trip_continuous(frame):
    df = frame[["time", "depth", "y"]]
    enc = encode(df, ["time", "depth"], value="y")
    _check_modes(enc, df)
    assert enc.shape == (len(np.unique(df["time"])), len(np.unique(df["depth"])))
    pd.testing.assert_frame_equal(decode(enc), df)


def test_round_trip_categorical(frame):
    df = frame[["station", "sensor"]]
    enc = encode(df, {"station": "categorical", "sensor": "categorical"})
    _check_modes(enc, df)
    assert enc.y is None
    assert enc.value is None
    pd.testing.assert_frame_equal(decode(enc), df)


def test_round_trip_mixed(frame):
    coords = ["time", "station", "depth"]
    enc = encode(frame, coords, value="y")
    _check_modes(enc, frame)
    assert enc.n == len(frame)
    assert enc.K == 3
    assert enc.index.shape == (len(frame), 3)
    assert enc.y.dtype == np.float64
    assert [mode.kind for mode in enc.modes] == [CONTINUOUS, CATEGORICAL, CONTINUOUS]
    pd.testing.assert_frame_equal(decode(enc), frame[[*coords, "y"]])


def test_round_trip_shuffled(frame, rng):
    shuffled = frame.iloc[rng.permutation(len(frame))]
    enc = encode(shuffled, ["station", "time", "sensor"], value="y")
    expected = shuffled[["station", "time", "sensor", "y"]].reset_index(drop=True)
    expected["sensor"] = expected["sensor"].astype(np.float64)
    pd.testing.assert_frame_equal(decode(enc), expected)
    # Same modes as the unshuffled frame: encoding does not depend on row order.
    assert encode(frame, ["station", "time", "sensor"]).modes == enc.modes


def test_round_trip_int_value_column_is_float(small):
    df = small.assign(count=[1, 0, 4, 2])
    enc = encode(df, ["lat"], value="count")
    assert enc.y.dtype == np.float64
    np.testing.assert_array_equal(enc.y, [1.0, 0.0, 4.0, 2.0])


def test_encoding_known_values(small):
    enc = encode(small, ["lat", "station"], value="y")
    np.testing.assert_array_equal(enc.modes[0].values, [0.1, 0.5, 2.0])
    np.testing.assert_array_equal(enc.modes[1].values, ["a", "b", "c"])
    np.testing.assert_array_equal(enc.index, [[1, 1], [0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(enc.y, [1.0, 2.0, 3.0, 4.0])


def test_mixed_type_categories_sorted_by_str():
    df = pd.DataFrame({"m": pd.Series(["b", 2.5, "a", 1, "b"], dtype=object)})
    enc = encode(df, ["m"])
    assert list(enc.modes[0].values) == [1, 2.5, "a", "b"]
    np.testing.assert_array_equal(enc.index[:, 0], [3, 1, 2, 0, 3])
    assert list(decode(enc)["m"]) == ["b", 2.5, "a", 1, "b"]


def test_pandas_categorical_column():
    df = pd.DataFrame({"c": pd.Categorical(["y", "x", "y"], categories=["y", "x", "unused"])})
    enc = encode(df, ["c"])
    assert enc.modes[0].kind == CATEGORICAL
    assert list(enc.modes[0].values) == ["x", "y"]
    np.testing.assert_array_equal(enc.index[:, 0], [1, 0, 1])


# ---------------------------------------------------------------- no mutation


def test_caller_frame_unchanged(frame):
    df = frame.set_index(pd.Index(np.arange(len(frame)) * 3 + 7))
    before = copy.deepcopy(df)
    columns = df.columns
    n_columns = len(df.columns)

    enc = encode(df, {"sensor": "categorical", "time": "continuous"}, value="y")
    pd.testing.assert_frame_equal(df, before)
    assert df.columns is columns
    assert len(df.columns) == n_columns

    encode_new(df, enc.modes)
    pd.testing.assert_frame_equal(df, before)
    assert df.columns is columns
    assert len(df.columns) == n_columns


# ---------------------------------------------------------------- encode_new


def _brute_force(values: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact-match index (or -1) and count of known values ``<= x`` minus one."""
    index = np.full(x.size, -1, dtype=np.int64)
    left = np.empty(x.size, dtype=np.int64)
    for i, xi in enumerate(x):
        left[i] = sum(1 for v in values if v <= xi) - 1
        for j, v in enumerate(values):
            if v == xi:
                index[i] = j
    return index, left


def test_encode_new_continuous_against_brute_force(frame, rng):
    enc = encode(frame, ["time", "station"], value="y")
    times = enc.modes[0].values
    x = np.concatenate(
        [
            times,  # every known coordinate
            rng.uniform(times.min(), times.max(), size=20),  # inside the range
            times.min() - rng.uniform(0.1, 3.0, size=5),  # left of the range
            times.max() + rng.uniform(0.1, 3.0, size=5),  # right of the range
        ]
    )
    station = rng.choice(enc.modes[1].values, size=x.size)
    new = encode_new(pd.DataFrame({"station": station, "time": x, "y": 0.0}), enc.modes)
    assert isinstance(new, NewEncoded)
    assert new.n == x.size
    assert new.index.dtype == np.int64
    assert new.left.dtype == np.int64
    assert new.modes == enc.modes

    index, left = _brute_force(times, x)
    np.testing.assert_array_equal(new.x[0], x)
    np.testing.assert_array_equal(new.index[:, 0], index)
    np.testing.assert_array_equal(new.left[:, 0], left)
    # Sanity of the brute force itself: seen points found, outside points at the ends.
    np.testing.assert_array_equal(index[: times.size], np.arange(times.size))
    assert np.all(left[-10:-5] == -1)
    assert np.all(left[-5:] == times.size - 1)
    assert np.all(index[-10:] == -1)

    codes = np.array([list(enc.modes[1].values).index(s) for s in station])
    np.testing.assert_array_equal(new.index[:, 1], codes)
    np.testing.assert_array_equal(new.left[:, 1], codes)
    np.testing.assert_array_equal(new.x[1], codes.astype(np.float64))
    assert new.x[1].dtype == np.float64


def test_encode_new_known_values(small):
    modes = encode(small, ["lat", "station"]).modes  # lat: [0.1, 0.5, 2.0]
    df = pd.DataFrame({"lat": [-1.0, 0.1, 0.3, 0.5, 2.0, 3.0], "station": list("abcabc")})
    new = encode_new(df, modes)
    np.testing.assert_array_equal(new.index[:, 0], [-1, 0, -1, 1, 2, -1])
    np.testing.assert_array_equal(new.left[:, 0], [-1, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(new.index[:, 1], [0, 1, 2, 0, 1, 2])


def test_encode_new_value_column_optional(small):
    modes = encode(small, ["lat"], value="y").modes
    with_value = encode_new(small, modes)
    without = encode_new(small[["lat"]], modes)
    np.testing.assert_array_equal(with_value.left, without.left)
    np.testing.assert_array_equal(with_value.index, without.index)


# ---------------------------------------------------------------- modes built by encode


def test_mode_json_round_trip_from_encode(frame):
    enc = encode(frame, {"time": "continuous", "station": "categorical", "sensor": "categorical"})
    text = json.dumps([mode.to_dict() for mode in enc.modes])
    back = tuple(Mode.from_dict(d) for d in json.loads(text))
    assert back == enc.modes
    new = encode_new(frame, back)
    np.testing.assert_array_equal(new.index, enc.index)


def test_coordinates_unknown_name(small):
    enc = encode(small, ["lat"])
    with pytest.raises(ValueError, match="no mode named 'lon'"):
        enc.coordinates("lon")


def test_row_order_is_one_order_for_the_same_rows():
    """``row_order`` sorts by the coordinate indices (the first mode slowest), then the value:
    the same rows in any order come out as one sequence (ties are identical rows)."""
    from bayestensor.data import row_order

    rng = np.random.default_rng(0)
    index = rng.integers(0, 3, size=(40, 2))
    y = rng.integers(0, 4, size=40).astype(float)  # (repeated values: ties broken by y)
    order = row_order(index, y)
    rows = np.column_stack([index, y])[order]
    assert all(tuple(a) <= tuple(b) for a, b in zip(rows[:-1], rows[1:], strict=True))
    perm = rng.permutation(40)
    again = np.column_stack([index[perm], y[perm]])[row_order(index[perm], y[perm])]
    np.testing.assert_array_equal(again, rows)
