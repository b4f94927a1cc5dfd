"""1-D state-space GP regression against the dense GP (Cholesky)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.gp import fit_gp, log_evidence
from bayestensor.kernels import matern_cov
from bayestensor.ssm import gaps

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64


def _data(rng, n=40):
    x = np.round(rng.uniform(0, 5, n), 1)  # repeated coordinates on purpose
    y = np.sin(2 * x) + 0.3 * x + rng.normal(scale=0.2, size=n)
    return x, y


def _dense_log_evidence(params, kernel, x, y):
    ell, var, noise = jnp.exp(params)
    K = matern_cov(kernel, x, x, ell, var) + noise * jnp.eye(x.size)
    L = jnp.linalg.cholesky(K)
    a = jax.scipy.linalg.solve_triangular(L, y, lower=True)
    return -0.5 * a @ a - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * x.size * jnp.log(2 * jnp.pi)


@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52"])
def test_log_evidence_and_gradient_equal_dense(kernel, rng, tol):
    x, y = _data(rng)
    xu, index = np.unique(x, return_inverse=True)
    params = jnp.log(jnp.array([0.7, 1.3, 0.05]))
    ours = jax.value_and_grad(log_evidence)(params, kernel, gaps(xu), index, y)
    ref = jax.value_and_grad(_dense_log_evidence)(params, kernel, x, y)
    np.testing.assert_allclose(ours[0], ref[0], rtol=tol["ssm_vs_dense"])
    np.testing.assert_allclose(ours[1], ref[1], rtol=tol["grad_vs_dense"])


def test_fit_reaches_dense_optimum_and_predicts_like_dense_gp(rng, tol):
    x, y = _data(rng)
    fit = fit_gp(x, y, kernel="matern32", steps=400)
    # the fit runs on standardised values; its hyperparameters are in those units
    z = (y - y.mean()) / y.std()
    np.testing.assert_allclose(
        [fit.y_mean, fit.y_scale], [y.mean(), y.std()], rtol=tol["standardisation"]
    )
    p = jnp.log(jnp.array([fit.lengthscale, fit.variance, fit.noise]))
    # a stationary point of the dense evidence, whose value (in y's units) it reports
    g = jax.grad(_dense_log_evidence)(p, "matern32", x, z)
    assert np.max(np.abs(g)) < tol["dense_evidence_stationary"]
    ev_ref = _dense_log_evidence(p, "matern32", x, z) - x.size * np.log(y.std())
    np.testing.assert_allclose(fit.log_evidence, ev_ref, rtol=tol["ssm_vs_dense"])
    assert fit.history[-1] < fit.history[0]
    # predictions equal the dense GP posterior with the fitted hyperparameters
    xs = np.array([-1.0, 0.05, 1.23, 2.5, 4.99, 6.0])
    K = matern_cov("matern32", x, x, fit.lengthscale, fit.variance) + fit.noise * np.eye(x.size)
    Ks = matern_cov("matern32", xs, x, fit.lengthscale, fit.variance)
    mean_ref = y.mean() + y.std() * (Ks @ np.linalg.solve(K, z))
    var_ref = y.var() * (fit.variance - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T)))
    mean, sd_u, sd_y = fit.predict(xs)
    np.testing.assert_allclose(
        mean, mean_ref, rtol=tol["ssm_vs_dense"], atol=tol["ssm_vs_dense_abs"]
    )
    np.testing.assert_allclose(sd_u**2, var_ref, rtol=tol["ssm_vs_dense"])
    np.testing.assert_allclose(sd_y**2, var_ref + y.var() * fit.noise, rtol=tol["ssm_vs_dense"])


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ([0.0, 1.0, 2.0], [1.0, 2.0], "same length"),
        ([0.0, 1.0], [1.0, 2.0], "at least 3"),
        ([0.0, np.nan, 2.0], [1.0, 2.0, 3.0], "x has 1 NaN"),
        ([0.0, 1.0, 2.0], [1.0, np.inf, 3.0], "y has 1 NaN"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "2 distinct"),
    ],
)
def test_fit_gp_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_gp(x, y)
