"""Poisson Tucker CAVI (models/poisson_tucker/vi.py): a non-decreasing ELBO that matches its
definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from bayestensor.models import poisson_tucker as pt
from bayestensor.models.poisson_tucker import vi

from .cases import dense_rate, make_problem, nonzero_data

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_cavi_elbo_never_decreases(tol):
    """Shared pair, within/between prior and a mask: every CAVI block step is exact."""
    spec, mask, factors, core, mu, obs, y, _ = make_problem("bptd", seed=4)
    data = nonzero_data(spec, y, mask)
    _, elbos = pt.cavi_fit(spec, data, jax.random.key(0), max_iter=40, tol=0.0)
    e = np.asarray(elbos)
    assert np.all(np.diff(e) >= -tol["poisson_elbo_slack"] * np.abs(e[1:]))
    assert e[-1] > e[0]


def test_elbo_matches_its_definition_at_the_optimal_allocation(tol):
    """The collapsed bound's data term equals Σ y log Σ_r exp(E log λ + Σ E log θ) (dense)."""
    spec, mask, factors, core, mu, obs, y, _ = make_problem("plain", seed=2)
    data = nonzero_data(spec, y, mask)
    st = pt.vi_init(spec, data, jax.random.key(0))
    F, counts, Ybar = vi.loglik_bound(spec, data, st)
    elt = [
        np.asarray(special.digamma(st.theta_shape[g]) - np.log(st.theta_rate[g]))
        for g in spec.group_of
    ]
    elc = np.asarray(special.digamma(st.core_shape) - np.log(st.core_rate))
    geo = dense_rate(np.exp(elc), [np.exp(e) for e in elt])
    assert float(F) == pytest.approx(
        np.sum(y * np.log(np.where(y > 0, geo, 1.0))), rel=tol["poisson_closed_form"]
    )
    assert float(jnp.sum(Ybar)) == pytest.approx(y.sum(), rel=tol["poisson_closed_form"])
