"""``kernel="auto"``: the Matérn smoothness of each continuous mode chosen by the evidence
(bayestensor/models/funbat/select.py), on planted truth: a rough mode drawn from a Matérn-1/2
(Ornstein–Uhlenbeck) process and a smooth mode (sinusoids) in a rank-1 product."""

import numpy as np
import pandas as pd
import pytest

import bayestensor as bt
from bayestensor.models.funbat.select import CANDIDATES, MARGIN

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64


def _planted(seed):
    rng = np.random.default_rng(seed)
    a, b = np.linspace(0, 10, 100), np.linspace(0, 1, 16)
    u = np.empty(a.size)  # exact OU draw, lengthscale 1: Matérn-1/2
    u[0] = rng.normal()
    for i in range(1, a.size):
        r = np.exp(-(a[i] - a[i - 1]))
        u[i] = r * u[i - 1] + np.sqrt(1 - r * r) * rng.normal()
    v = np.sin(2 * np.pi * b) + 0.5 * np.cos(np.pi * b)
    A, B = np.meshgrid(a, b, indexing="ij")
    y = (u[:, None] * v[None, :]).ravel() + 0.05 * rng.normal(size=A.size)
    return pd.DataFrame({"a": A.ravel(), "b": B.ravel(), "y": y})


@pytest.fixture(scope="module")
def chosen():
    df = _planted(0)
    return df, bt.fit(
        df, coords=["a", "b"], value="y", rank=1, kernel="auto", progress=False, local=None
    )


def test_auto_picks_the_planted_smoothness(chosen):
    _, res = chosen
    assert res.kernels == {"a": "matern12", "b": "matern52"}
    scores = res.estimator.kernel_scores_
    assert set(scores) == {"a", "b"} and all(set(s) == set(CANDIDATES) for s in scores.values())
    # each choice won by more than the margin, over the start (Matérn-3/2)
    assert scores["a"]["matern12"] > scores["a"]["matern32"] + MARGIN
    assert scores["b"]["matern52"] > scores["b"]["matern32"] + MARGIN
    assert np.isfinite(res.history["rmse"]).all()


def test_chosen_kernels_survive_save_and_load(chosen, tmp_path):
    df, res = chosen
    back = bt.load(res.save(tmp_path / "auto.bt"))
    assert back.kernels == res.kernels
    pd.testing.assert_frame_equal(back.predict(df.head(20)), res.predict(df.head(20)))


def test_auto_in_a_dict_and_bad_names():
    df = _planted(1).iloc[:50]
    with pytest.raises(ValueError, match="kernel"):
        bt.fit(df, coords=["a", "b"], value="y", kernel="automatic")
    with pytest.raises(ValueError, match="kernel"):
        bt.fit(df, coords=["a", "b"], value="y", kernel={"a": "autox"})
