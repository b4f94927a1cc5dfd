"""The FunBaT NumPyro model (models/funbat/model.py): prior draws and the fast inference against
NUTS on a tiny problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

from bayestensor.data import encode, encode_new
from bayestensor.models.funbat import (
    FunBaT,
    funbat_model,
)

# tolerances live in conftest.TOL (one place for the whole suite)
CLOSED_FORM = TOL["funbat_closed_form"]
VS_NUTS = TOL["vs_nuts"]


@pytest.mark.parametrize("model", ["tucker", "cp"])
def test_numpyro_model_prior_draw_is_consistent(model, key):
    import numpyro

    rng = np.random.default_rng(5)
    coords = [np.sort(rng.uniform(size=6)), 4]  # continuous mode, categorical mode (4 levels)
    index = np.stack([rng.integers(0, 6, 25), rng.integers(0, 4, 25)], axis=1)

    @jax.jit  # one compilation instead of ~100 op-by-op ones
    def draw(key):
        with numpyro.handlers.trace() as tr, numpyro.handlers.seed(rng_seed=key):
            funbat_model(index, coords, model=model, rank=2, lengthscales=[0.3, None])
        return {name: site["value"] for name, site in tr.items()}

    v = draw(key)
    U0, U1 = v["U0"].T, v["U1"]
    assert U0.shape == (6, 2) and U1.shape == (4, 2)
    W = v["W"] if model == "tucker" else np.eye(2)
    f = np.einsum("ab,na,nb->n", W, U0[index[:, 0]], U1[index[:, 1]])
    np.testing.assert_allclose(v["f"], f, rtol=CLOSED_FORM)
    assert v["y"].shape == (25,) and v["tau"].shape == ()


@pytest.mark.slow
def test_posterior_mean_matches_nuts(key):
    """Rank-1 CP on 100 points with fixed hyperparameters: our E[f] vs NUTS (≈ 20 s)."""
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(4)
    G = 15
    g = np.linspace(0.0, 1.0, G)
    cells = rng.choice(G * G, 100, replace=False)
    i, j = cells // G, cells % G
    y = np.sin(2 * np.pi * g[i]) * (1 + g[j]) + 0.05 * rng.normal(size=100)
    y = (y - y.mean()) / y.std()  # z-scored, so both see the same prior scale
    df = pd.DataFrame({"a": g[i], "b": g[j], "value": y})
    enc = encode(df, ["a", "b"], "value")
    ell, var = [0.3, 0.5], [1.0, 1.0]
    fit = FunBaT(
        model="cp", rank=1, learn_hyper=False, lengthscale=ell, variance=var, tol=1e-6
    ).fit(enc)
    ours, _, _ = fit.predict(encode_new(df, enc.modes))
    mcmc = MCMC(NUTS(funbat_model), num_warmup=200, num_samples=200, progress_bar=False)
    coords = [m.values for m in enc.modes]
    mcmc.run(
        key,
        enc.index,
        coords,
        jnp.asarray(enc.y),
        model="cp",
        rank=1,
        lengthscales=ell,
        variances=var,
    )
    nuts = np.asarray(mcmc.get_samples()["f"].mean(0))
    assert np.max(np.abs(ours - nuts)) < VS_NUTS * np.ptp(nuts)


def test_numpyro_model_takes_per_mode_kernels(key):
    """A periodic continuous mode next to a Matérn one: each prior covariance is its kernel's
    explicit formula (the exact periodic kernel, plus the model's 1e-8 σ² jitter)."""
    import numpyro

    rng = np.random.default_rng(6)
    x0, x1 = np.sort(rng.uniform(0, 5, 7)), np.sort(rng.uniform(0, 1, 5))
    index = np.stack([rng.integers(0, 7, 20), rng.integers(0, 5, 20)], axis=1)
    with numpyro.handlers.trace() as tr, numpyro.handlers.seed(rng_seed=key):
        funbat_model(
            index,
            [x0, x1],
            rank=2,
            kernel=["periodic", "matern52"],
            lengthscales=[0.8, 0.3],
            variances=[1.5, 1.0],
            periods=[2.0, None],
        )
    tau = x0[:, None] - x0[None, :]
    K0 = 1.5 * np.exp(-2 * np.sin(np.pi * tau / 2.0) ** 2 / 0.8**2) + 1.5e-8 * np.eye(7)
    r = np.sqrt(5) * np.abs(x1[:, None] - x1[None, :]) / 0.3
    K1 = (1 + r + r**2 / 3) * np.exp(-r) + 1e-8 * np.eye(5)
    for site, K in (("U0", K0), ("U1", K1)):
        cov = tr[site]["fn"].base_dist.base_dist.covariance_matrix
        np.testing.assert_allclose(cov, K, rtol=CLOSED_FORM, atol=CLOSED_FORM)
