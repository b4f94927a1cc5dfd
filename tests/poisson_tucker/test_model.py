"""The Poisson Tucker NumPyro model (models/poisson_tucker/model.py): the Gibbs sampler against
NUTS on the rate tensor."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

from bayestensor.models import poisson_tucker as pt

from .cases import dense_rate, nonzero_data

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _batch_se(x, n_batches=20):
    b = x[: len(x) // n_batches * n_batches].reshape(n_batches, -1, *x.shape[1:]).mean(1)
    return b.std(0, ddof=1) / math.sqrt(n_batches)


def _rates_at(spec, z, cells):
    return pt.cell_rates(spec, pt.mode_factors(spec, z), z["core"], cells)


@pytest.mark.slow
def test_gibbs_matches_nuts_on_the_rate_tensor(tol):
    rng = np.random.default_rng(11)
    shape, ranks = (6, 6, 3), (2, 2, 2)
    spec = pt.make_spec(shape, ranks, gamma0=2.0)
    th = [rng.gamma(1.0, 1.0, (n, r)) for n, r in zip(shape, ranks, strict=True)]
    mu = dense_rate(rng.gamma(1.0, 1.0, ranks), th)
    y = rng.poisson(mu)
    data = nonzero_data(spec, y, None)
    cells = np.argwhere(np.ones(shape, bool))

    kernel = pt.PoissonTuckerGibbs(spec, data)
    mcmc = numpyro.infer.MCMC(kernel, num_warmup=500, num_samples=6000, progress_bar=False)
    mcmc.run(jax.random.key(0))
    zs = mcmc.get_samples()
    rates_g = jax.vmap(lambda z: _rates_at(spec, z, cells))(zs)

    nuts = numpyro.infer.MCMC(
        numpyro.infer.NUTS(pt.poisson_tucker_model, target_accept_prob=0.9),
        num_warmup=800,
        num_samples=3000,
        progress_bar=False,
    )
    nuts.run(jax.random.key(1), spec, cells=cells, y=jnp.asarray(y[tuple(cells.T)]))
    rates_n = jax.vmap(lambda z: _rates_at(spec, z, cells))(nuts.get_samples())
    rg, rn = np.asarray(rates_g), np.asarray(rates_n)
    se = np.sqrt(_batch_se(rg) ** 2 + _batch_se(rn) ** 2)
    z = np.abs(rg.mean(0) - rn.mean(0)) / se
    assert np.max(z) < tol["poisson_vs_nuts_max_z"]
