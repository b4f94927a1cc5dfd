"""Poisson Tucker closed forms (models/poisson_tucker/rates.py): total rate, exposures and cell
rates against dense references."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayestensor.models import poisson_tucker as pt

from .cases import CONFIGS, make_problem, nonzero_data

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_total_rate_exposures_and_cell_rates_match_dense(name, tol):
    spec, mask, factors, core, mu, obs, y, _ = make_problem(name)
    data = nonzero_data(spec, y, mask)
    fs = [jnp.asarray(f) for f in factors]
    c = jnp.asarray(core)
    assert float(pt.total_rate(spec, fs, c, data.mask)) == pytest.approx(
        np.sum(mu * obs), rel=tol["poisson_closed_form"]
    )
    E, Z = pt.exposures(spec, fs, c, data.mask)
    K = spec.K
    letters = "abcdefgh"[:K]
    up = "ABCDEFGH"[:K]
    for k in range(K):
        # E^k[i, c] = Σ_{observed x, x_k = i} Σ_{r_k = c} λ[r] Π_{k'≠k} θ^{k'}[x_k', r_k']
        ops = [factors[j] for j in range(K) if j != k]
        subs = [up[j] + letters[j] for j in range(K) if j != k]
        ref = np.einsum(
            ",".join([letters, *subs, up]) + f"->{up[k]}{letters[k]}",
            core,
            *ops,
            obs,
            optimize=True,
        )
        np.testing.assert_allclose(E[k], ref, rtol=tol["poisson_closed_form"])
    subs = [up[j] + letters[j] for j in range(K)]
    Zref = np.einsum(",".join([*subs, up]) + "->" + letters, *factors, obs, optimize=True)
    np.testing.assert_allclose(Z, Zref, rtol=tol["poisson_closed_form"])
    idx = np.argwhere(y > 0)
    np.testing.assert_allclose(
        pt.cell_rates(spec, fs, c, idx), mu[tuple(idx.T)], rtol=tol["poisson_closed_form"]
    )
