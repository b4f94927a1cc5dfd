"""FunBaT's blocked prediction (unique coordinates per mode, rows in padded blocks) against the
row-by-row computation :func:`predict_moments`."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

from bayestensor.data import encode, encode_new
from bayestensor.driver import precision
from bayestensor.models.funbat import FunBaT, predict_moments
from bayestensor.models.funbat import estimator as est_module
from bayestensor.ssm import Location, locate

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64

BLOCKED = TOL["predict_blocked_vs_rows"]


def _reference(fit, new):
    """The prediction row by row: every row's own bridge, one contraction over all rows."""
    with precision(fit.dtype):
        locs = []
        for k, mode in enumerate(fit.modes_):
            if fit.cfg_.continuous[k]:
                loc = locate(mode.values, np.asarray(new.x[k], dtype=np.float64))
                locs.append(Location(*(jnp.asarray(a) for a in loc)))
            else:
                locs.append(jnp.asarray(new.index[:, k]))
        Ef, var = predict_moments(fit.state_, fit.cfg_, locs)
    Ef, var = np.asarray(Ef, dtype=np.float64), np.asarray(var, dtype=np.float64)
    noise_var = 1.0 / float(fit.state_.noise.mean)
    mean = Ef * fit.y_scale_ + fit.y_mean_
    return mean, np.sqrt(var) * fit.y_scale_, np.sqrt(var + noise_var) * fit.y_scale_


def _data(rng, n=600):
    t = np.linspace(0.0, 1.0, 25)
    s = np.linspace(-2.0, 3.0, 15)
    cats = np.array(["a", "b", "c", "d"])
    ti, si, ci = rng.integers(0, 25, n), rng.integers(0, 15, n), rng.integers(0, 4, n)
    y = np.sin(4 * t[ti]) * np.cos(s[si]) + 0.3 * ci + 0.1 * rng.normal(size=n)
    return pd.DataFrame({"t": t[ti], "s": s[si], "g": cats[ci], "y": y}), t, s, cats


def _new_rows(rng, t, s, cats, n):
    """Rows at training coordinates, between them, beyond both ends, with repeats."""
    t_new = np.concatenate([t, (t[:-1] + t[1:]) / 2, [-0.3, -0.01, 1.02, 1.7]])
    s_new = np.concatenate([s, [-2.5, 0.123, 3.4, 9.0]])
    rows = pd.DataFrame(
        {
            "t": rng.choice(t_new, n),
            "s": rng.choice(s_new, n),
            "g": rng.choice(cats, n),
        }
    )
    return pd.concat([rows, rows.iloc[:7]], ignore_index=True)  # repeated rows


@pytest.mark.parametrize(
    ("model", "categorical"),
    [  # slow marker (CI time, 8-10 s each): each model once, with and without a category
        ("tucker", True),
        ("cp", False),
        pytest.param("tucker", False, marks=pytest.mark.slow),
        pytest.param("cp", True, marks=pytest.mark.slow),
    ],
)
def test_blocked_predict_equals_row_by_row(model, categorical, monkeypatch):
    rng = np.random.default_rng(5)
    df, t, s, cats = _data(rng)
    coords = ["t", "s", "g"] if categorical else ["t", "s"]
    enc = encode(df, coords, "y")
    fit = FunBaT(model=model, rank=2, max_sweeps=4).fit(enc)
    new_df = _new_rows(rng, t, s, cats, 330)
    new = encode_new(new_df, enc.modes)
    ref = _reference(fit, new)
    # one block, and blocks of 128 rows (337 rows: the last block is padded); tables of
    # unique coordinates in blocks too (more unique times than 128 would need a larger set)
    for chunk in (est_module._PREDICT_CHUNK, 128, 64):
        monkeypatch.setattr(est_module, "_PREDICT_CHUNK", chunk)
        got = fit.predict(new)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=BLOCKED, atol=BLOCKED)
    # a single row, and the repeated rows give the same numbers as their originals
    one = fit.predict(encode_new(new_df.iloc[[3]], enc.modes))
    for a, b in zip(one, ref, strict=True):
        np.testing.assert_allclose(a, b[[3]], rtol=BLOCKED, atol=BLOCKED)
    mean = got[0]
    np.testing.assert_allclose(mean[-7:], mean[:7], rtol=BLOCKED, atol=BLOCKED)


def test_blocked_predict_with_many_unique_coordinates(monkeypatch):
    """More unique new coordinates than rows per block: the tables come in several blocks and
    the Tucker contraction gathers every mode (no grouping through a table longer than the
    rows)."""
    rng = np.random.default_rng(6)
    df, _, _, _ = _data(rng)
    enc = encode(df, ["t", "s"], "y")
    fit = FunBaT(model="tucker", rank=2, max_sweeps=3).fit(enc)
    new_df = pd.DataFrame({"t": rng.uniform(-0.2, 1.2, 300), "s": rng.uniform(-3, 4, 300)})
    new = encode_new(new_df, enc.modes)
    ref = _reference(fit, new)
    monkeypatch.setattr(est_module, "_PREDICT_CHUNK", 64)
    for a, b in zip(fit.predict(new), ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=BLOCKED, atol=BLOCKED)


@pytest.mark.slow  # 17 s of compiles (nox -s bench runs it)
def test_a_refit_at_the_pruned_ranks_shares_the_compiled_marginals():
    """The marginals are compiled from a mode's posterior and the settings that read it alone
    (``FunBaTConfig.reading``): the ARD's pruned fit and a fixed-rank fit at its ranks (the
    rank-1 check's refits) share them, though their states and fitting settings differ."""
    import bayestensor as bt

    df = _data(np.random.default_rng(3), n=500)[0]
    programs = (est_module._sweep_jit, est_module._initial_state_jit)
    programs += (est_module._marginals_jit, est_module._rows_jit)
    for f in programs:
        f.clear_cache()
    from bayestensor import driver  # nothing else held past its bound (released as a fit begins)

    driver.release_held()
    opts = {"coords": ["t", "s", "g"], "value": "y", "local": None, "progress": False}
    auto = bt.fit(df, rank="auto", **opts)
    auto.predict(df)
    compiled = est_module._marginals_jit._cache_size()
    fixed = bt.fit(df, rank=auto.ranks, **opts)
    fixed.predict(df)
    assert auto.estimator.cfg_.ard and not fixed.estimator.cfg_.ard
    assert max(auto.max_ranks) > min(auto.ranks)  # (the ARD pruned: another state)
    assert est_module._marginals_jit._cache_size() == compiled == 3
