"""FunBaT inference functions (models/funbat/inference.py): spectral initialisation and the
hyperparameter search against the evidence maximum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from conftest import TOL

from bayestensor.models.funbat import (
    spectral_init,
)
from bayestensor.ssm import gaps

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

# tolerances live in conftest.TOL (one place for the whole suite)
CLOSED_FORM = TOL["funbat_closed_form"]
TYPE2_ML = TOL["type2_ml"]


def test_spectral_init_spans_the_unfolding_subspaces(rng):
    """Fully observed rank-(2, 2) data: the start spans the true column spaces of both modes."""
    A, B = rng.normal(size=(12, 2)), rng.normal(size=(9, 2))
    i, j = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    index = np.stack([i.ravel(), j.ravel()], axis=1)
    y = np.einsum("nr,nr->n", A[index[:, 0]], B[index[:, 1]] @ np.array([[1.0, 0.3], [0.0, 0.5]]))
    means = spectral_init(index, y, (12, 9), (2, 3), seed=0)
    assert means[0].shape == (12, 2) and means[1].shape == (9, 3)
    for U, truth in ((means[0], A), (means[1][:, :2], B)):
        # the residual of projecting the truth onto span(U) vanishes
        Q = np.linalg.qr(U)[0]
        assert np.linalg.norm(truth - Q @ (Q.T @ truth)) < CLOSED_FORM * np.linalg.norm(truth)
    np.testing.assert_allclose(np.sum(means[0] ** 2, axis=0), [12.0, 12.0], rtol=CLOSED_FORM)


def test_hyper_search_climbs_to_the_evidence_maximum():
    """The pattern search on fixed messages never lowers log Z and stops at its maximiser."""
    from bayestensor.models.funbat.inference import hyper_search
    from bayestensor.models.funbat.state import FunBaTConfig, Messages
    from bayestensor.ssm import log_marginal, smooth, stacked_matern

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 10, 80))
    dt = jnp.asarray(gaps(x))
    R = 2
    B = rng.normal(size=(80, R, R))
    prec = np.einsum("nij,nkj->nik", B, B)
    f = np.sin(x)[:, None] * np.array([1.0, 0.5])  # messages carrying a smooth signal
    msg = Messages(jnp.asarray(prec), jnp.asarray(np.einsum("nij,nj->ni", prec, f)))
    cfg = FunBaTConfig("cp", (R,), (80,), (True,), "matern32", hyper_steps=1)

    def _sde(th):
        return stacked_matern("matern32", jnp.exp(th[0]), jnp.exp(th[1]), R)

    evidence = jax.jit(lambda th: log_marginal(_sde(th), dt, msg.prec, msg.shift))
    search = jax.jit(lambda th, st: hyper_search(cfg, 0, dt, msg, th, st))
    theta, step = jnp.array([np.log(3.0), 0.0]), jnp.array([1.0, 1.0])
    values = [float(evidence(theta))]
    for _ in range(60):
        post, theta, step = search(theta, step)
        values.append(float(evidence(theta)))
    assert np.all(np.diff(values) >= 0.0)
    best = scipy.optimize.minimize(
        lambda th: -float(evidence(jnp.asarray(th))),
        np.asarray(theta) + 0.3,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    np.testing.assert_allclose(np.asarray(theta), best.x, atol=TYPE2_ML)
    # the returned posterior is the smoother's at the chosen hyperparameters
    ref = smooth(_sde(theta), dt, msg.prec, msg.shift)
    np.testing.assert_allclose(post.mean, ref.mean, rtol=CLOSED_FORM, atol=CLOSED_FORM)


def test_periodic_search_moves_the_period_towards_the_evidence_maximum():
    """Messages carrying a cycle of period 12 on 1..60: a learned period started 8 % off climbs
    to within 1 % of it, log Z never decreases; a fixed period (learn_period False) stays."""
    from bayestensor.models.funbat.inference import hyper_search, mode_sde
    from bayestensor.models.funbat.state import FunBaTConfig, Messages
    from bayestensor.ssm import log_marginal

    rng = np.random.default_rng(4)
    x = np.arange(1.0, 61.0)
    dt = jnp.asarray(gaps(x))
    R = 1
    prec = np.full((x.size, R, R), 25.0)
    f = (np.sin(2 * np.pi * x / 12) + 0.4 * np.cos(4 * np.pi * x / 12))[:, None]
    f = f + 0.2 * rng.normal(size=f.shape)
    msg = Messages(jnp.asarray(prec), jnp.asarray(np.einsum("nij,nj->ni", prec, f)))
    start = jnp.log(jnp.array([1.0, 1.0, 13.0])), jnp.array([1.0, 1.0, 0.02])
    for learn in (True, False):
        cfg = FunBaTConfig("cp", (R,), (x.size,), (True,), ("periodic",), learn_period=(learn,))
        evidence = jax.jit(lambda th, cfg=cfg: log_marginal(mode_sde(cfg, 0, th), dt, *msg))
        search = jax.jit(lambda th, st, cfg=cfg: hyper_search(cfg, 0, dt, msg, th, st))
        theta, step = start
        values = [float(evidence(theta))]
        for _ in range(40):
            _, theta, step = search(theta, step)
            values.append(float(evidence(theta)))
        assert np.all(np.diff(values) >= 0.0)
        period = float(np.exp(theta[2]))
        if learn:
            assert abs(period - 12.0) < 0.01 * 12.0, period
        else:
            assert period == pytest.approx(13.0, rel=1e-12)
