"""FunBaT on a dask-backed xarray object: ``bt.fit(chunked DataArray | Dataset)`` reads it chunk
by chunk through the parts path (:mod:`bayestensor.models.funbat.blocked`).

References: the same rows built here with NumPy, block by block, given as a list of DataFrame
parts (the fit must be that one); the rows of the in-memory conversion
(:func:`bayestensor.xr.from_xarray`) as a set; and a dask scheduler callback that counts what
each ``compute`` evaluates.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.xr import from_xarray, xarray_parts

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64

xr = pytest.importorskip("xarray")
dask = pytest.importorskip("dask")
dask_array = pytest.importorskip("dask.array")

DAYS = pd.date_range("2021-03-01", periods=20, freq="D")
S = np.linspace(0.0, 1.0, 9)
G = np.array(["a", "b", "c", "d"])
CHUNKS = {"t": 6, "s": 4, "g": 3}
OPTS = dict(rank=2, max_sweeps=3, tol=1e-12, block_rows=128, progress=False)


def _cube(seed=0) -> np.ndarray:
    """A (t, s, g) field with 20 % NaN cells, an all-NaN ``s`` slice (so that coordinate is no
    mode value) and one all-NaN chunk (an empty part, skipped)."""
    rng = np.random.default_rng(seed)
    day = np.arange(DAYS.size)
    f = (
        np.sin(day / 4)[:, None, None] * np.cos(3 * S)[None, :, None]
        + (G == "b")[None, None, :] * 0.5
    )
    y = f + 0.05 * rng.standard_normal(f.shape)
    y[rng.random(y.shape) < 0.2] = np.nan
    y[:, 5, :] = np.nan
    y[:6, :4, :3] = np.nan  # the first chunk
    return y


def _array(y, name="y") -> "xr.DataArray":
    return xr.DataArray(y, dims=("t", "s", "g"), coords={"t": DAYS, "s": S, "g": G}, name=name)


def _block_frames(y, chunks=CHUNKS, value="y") -> list[pd.DataFrame]:
    """The non-NaN cells of each chunk (block grid in C order, cells in C order), built from the
    NumPy cube and the coordinate arrays: the reference parts."""
    labels = {"t": DAYS, "s": S, "g": G}
    starts = {d: range(0, len(v), chunks[d]) for d, v in labels.items()}
    frames = []
    for i in starts["t"]:
        for j in starts["s"]:
            for k in starts["g"]:
                sl = (
                    slice(i, i + CHUNKS["t"]),
                    slice(j, j + CHUNKS["s"]),
                    slice(k, k + CHUNKS["g"]),
                )
                block = y[sl]
                grids = np.meshgrid(DAYS[sl[0]], S[sl[1]], G[sl[2]], indexing="ij")
                keep = ~np.isnan(block).ravel()
                if not keep.any():
                    continue
                frames.append(
                    pd.DataFrame(
                        {
                            "t": pd.DatetimeIndex(grids[0].ravel()[keep]),
                            "s": grids[1].ravel()[keep],
                            "g": grids[2].ravel()[keep],
                            value: block.ravel()[keep],
                        }
                    )
                )
    return frames


def _close(res, ref, df):
    """Predictions (mean and sd) and noise of two fits, within the blocked-sweeps tolerance."""
    got, want = res.predict(df), ref.predict(df)
    for c in ("mean", "sd"):
        np.testing.assert_allclose(
            got[c].to_numpy(), want[c].to_numpy(), rtol=0, atol=TOL["blocked_vs_in_memory"]
        )
    assert len(res.history) == len(ref.history)
    np.testing.assert_allclose(
        res.history["rmse"].to_numpy(),
        ref.history["rmse"].to_numpy(),
        rtol=TOL["blocked_vs_in_memory"],
    )


@pytest.mark.slow  # ~22 s (CI time; `pytest -m slow`)
def test_a_dask_array_is_the_fit_of_its_chunks_as_frames():
    """A chunked DataArray (datetime, float and string dimensions; NaN cells; an all-NaN
    chunk) is fitted as the list of its chunks' rows, and holds the rows (and modes) of the
    in-memory conversion. (Tucker only: the blocked sweeps of CP are tested in test_blocked.py;
    every fit here has the same sizes, so its programs are compiled once.)"""
    y = _cube()
    da = _array(y)
    lazy = da.chunk(CHUNKS)
    frames = _block_frames(y)
    res = bt.fit(lazy, **OPTS)
    ref = bt.fit(frames, coords=["t", "s", "g"], value="y", **OPTS)
    _close(res, ref, pd.concat(frames, ignore_index=True))
    assert res.n_missing == int(np.isnan(y).sum())
    assert isinstance(res.modes[0].values, np.ndarray)
    in_memory = from_xarray(da, None, None).df
    assert [len(m.values) for m in res.modes] == [in_memory[c].nunique() for c in ("t", "s", "g")]
    assert len(res.modes[1].values) == S.size - 1  # the all-NaN s is no mode value


def test_parts_hold_the_in_memory_rows():
    """``xarray_parts``: consecutive chunks grouped up to ``part_cells`` cells, each part's rows
    those of its chunks (the same columns and dtypes as the in-memory conversion, datetimes
    kept); together the rows of :func:`from_xarray`; nothing computed before ``read``."""
    y = _cube(seed=1)
    lazy = _array(y).chunk(CHUNKS)
    source = xarray_parts(lazy, ["t", "s", "g"], None, part_cells=150)
    assert source.value == "y" and source.n_missing == 0
    sizes = [
        sum(int(np.prod([s.stop - s.start for s in sl])) for _, sl in p.blocks)
        for p in source.parts
    ]
    assert all(
        size <= 150 or len(p.blocks) == 1 for size, p in zip(sizes, source.parts, strict=True)
    )
    assert sum(len(p.blocks) for p in source.parts) == 4 * 3 * 2 and len(source.parts) > 1
    got = pd.concat([p.read() for p in source.parts], ignore_index=True)
    want = pd.concat(_block_frames(y), ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    mem = from_xarray(_array(y), None, None).df
    pd.testing.assert_series_equal(got.dtypes, mem.dtypes)
    key = ["t", "s", "g"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True), mem.sort_values(key, ignore_index=True)
    )
    assert source.n_missing == int(np.isnan(y).sum())


@pytest.mark.slow  # 14 s; the other chunked tests stay (CI time; nox -s bench runs it)
def test_a_chunked_netcdf_dataset_with_a_named_variable(tmp_path):
    """A Dataset opened from NetCDF with ``chunks=`` (two variables, ``value=`` picks one) is the
    fit of its chunks' rows; a NumPy-backed Dataset keeps the in-memory path."""
    y = _cube()
    ds = xr.Dataset({"y": _array(y), "other": _array(np.ones_like(y))})
    path = tmp_path / "field.nc"
    try:
        ds.to_netcdf(path, engine="h5netcdf")
    except (ImportError, ValueError) as err:  # h5netcdf missing
        pytest.skip(f"cannot write NetCDF here: {err}")
    with xr.open_dataset(path, engine="h5netcdf", chunks=CHUNKS) as opened:
        assert opened["y"].chunks is not None
        res = bt.fit(opened, value="y", **OPTS)
    frames = _block_frames(y)
    ref = bt.fit(frames, coords=["t", "s", "g"], value="y", **OPTS)
    _close(res, ref, pd.concat(frames, ignore_index=True))
    in_memory = bt.fit(ds, value="y", rank=2, max_sweeps=3, progress=False)
    assert len(in_memory.history) == 3  # no blocked sweeps: the in-memory fit


class _Counter(dask.callbacks.Callback):
    """Numbers each ``compute`` (the scheduler's start)."""

    def __init__(self):
        super().__init__()
        self.computes = 0

    def _start(self, dsk):
        self.computes += 1


def test_chunks_are_computed_one_at_a_time():
    """Each ``compute`` evaluates one chunk of the array, and each chunk is computed twice (the
    two passes); the sweeps read the scratch copy, never the array."""
    y = _cube()
    calls, counter = [], _Counter()

    def chunk(block, block_info=None):
        loc = block_info[None]["array-location"]
        calls.append((counter.computes, tuple(a for a, _ in loc)))
        return y[tuple(slice(a, b) for a, b in loc)]

    shape = y.shape
    chunks = tuple(CHUNKS[d] for d in ("t", "s", "g"))
    data = dask_array.zeros(shape, chunks=chunks).map_blocks(chunk, dtype=float)
    lazy = xr.DataArray(data, dims=("t", "s", "g"), coords={"t": DAYS, "s": S, "g": G}, name="y")
    with counter:
        res = bt.fit(lazy, **OPTS)
    n_blocks = int(np.prod(data.numblocks))
    per_compute = pd.Series([c for c, _ in calls]).value_counts()
    assert per_compute.max() == 1 and counter.computes == 2 * n_blocks
    assert pd.Series([b for _, b in calls]).value_counts().eq(2).all()
    assert res.n_missing == int(np.isnan(y).sum())


def test_bad_chunked_input_is_refused():
    y = _cube(seed=4)
    lazy = _array(y).chunk(CHUNKS)
    ds = xr.Dataset({"y": lazy, "z": lazy * 2})
    with pytest.raises(ValueError, match="'w' is not a data variable"):
        bt.fit(ds, value="w", progress=False)
    with pytest.raises(ValueError, match=r"\['y', 'z'\]"):
        bt.fit(ds, progress=False)  # value missing with two variables
    labelled = lazy.assign_coords(label=("t", np.arange(DAYS.size)))
    with pytest.raises(ValueError, match="'label'"):
        bt.fit(labelled, coords=["label", "s", "g"], progress=False)  # not a dimension
    with pytest.raises(ValueError, match="'t'"):
        bt.fit(lazy, value="t", progress=False)
    with pytest.raises(ValueError, match="every cell of 'y' is NaN"):
        bt.fit(lazy * np.nan, progress=False)
    bad = y.copy()
    bad[10, 2, 3] = np.inf
    with pytest.raises(ValueError, match="'y'"):
        bt.fit(_array(bad).chunk(CHUNKS), progress=False)
    with pytest.raises(ValueError, match="block_rows"):
        bt.fit(lazy, block_rows=0, progress=False)
