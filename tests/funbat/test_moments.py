"""FunBaT moments and closed-form updates (models/funbat/moments.py) against explicit Kronecker
references, Monte Carlo and dense Gaussian posteriors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL

from bayestensor.models.funbat import (
    CorePosterior,
    core_update,
    expected_contraction,
    expected_f,
    noise_update,
)

#: float64 algebra against float64 references (conftest: the x64 marker)
pytestmark = pytest.mark.x64

# tolerances live in conftest.TOL (one place for the whole suite)
CLOSED_FORM = TOL["funbat_closed_form"]
MC_SIGMAS = TOL["mc_sigmas"]


def _spd(rng, d, scale=0.3):
    B = rng.normal(size=(d, d)) * scale
    return B @ B.T + 0.05 * np.eye(d)


def _moments(rng, ranks, n):
    """Random factor-row means and covariances (per mode, per observation) and a core."""
    means = [rng.normal(size=(n, R)) for R in ranks]
    covs = [np.stack([_spd(rng, R) for _ in range(n)]) for R in ranks]
    P = int(np.prod(ranks))
    core = CorePosterior(rng.normal(size=ranks), _spd(rng, P, scale=0.2))
    return means, covs, core


def _superdiag(ranks):
    W = np.zeros(ranks)
    for r in range(ranks[0]):
        W[(r,) * len(ranks)] = 1.0
    return W


def _reference_contraction(k, means, covs, Wmean, Wcov):
    """E[a], E[a aᵀ] by explicit Kronecker products: a = W_(k) z, z = ⊗_{j≠k} u_j."""
    K = len(means)
    ranks = Wmean.shape
    n = means[0].shape[0]
    others = [j for j in range(K) if j != k]
    # permutation of vec W (C order) into the rows of the mode-k unfolding W_(k) (C order)
    perm = np.moveaxis(np.arange(Wmean.size).reshape(ranks), k, 0).reshape(-1)
    m = Wmean.reshape(-1)[perm]
    S = (Wcov + np.outer(Wmean.reshape(-1), Wmean.reshape(-1)))[np.ix_(perm, perm)]
    Rk, Q = ranks[k], Wmean.size // ranks[k]
    S4 = S.reshape(Rk, Q, Rk, Q)
    Ea = np.zeros((n, Rk))
    Eaa = np.zeros((n, Rk, Rk))
    for i in range(n):
        z = np.ones(1)
        Ezz = np.ones((1, 1))
        for j in others:
            z = np.kron(z, means[j][i])
            Ezz = np.kron(Ezz, covs[j][i] + np.outer(means[j][i], means[j][i]))
        Ea[i] = m.reshape(Rk, Q) @ z
        for r in range(Rk):
            for s in range(Rk):
                Eaa[i, r, s] = np.sum(S4[r, :, s, :] * Ezz)
    return Ea, Eaa


def _second(means, covs):
    return [c + m[:, :, None] * m[:, None, :] for m, c in zip(means, covs, strict=True)]


@pytest.mark.parametrize("model", ["tucker", "cp"])
@pytest.mark.parametrize("jit", [False, True])
def test_expected_contraction_matches_kronecker_reference(model, jit, rng):
    ranks = (2, 3, 2) if model == "tucker" else (3, 3, 3)
    means, covs, core = _moments(rng, ranks, n=4)
    if model == "cp":
        Wmean, Wcov, core = _superdiag(ranks), np.zeros((27, 27)), None
    else:
        Wmean, Wcov = np.asarray(core.mean), np.asarray(core.cov)
    seconds = _second(means, covs)
    fn = jax.jit(expected_contraction, static_argnums=0) if jit else expected_contraction
    for k in range(3):
        Ea, Eaa = fn(k, means, seconds, core)
        Ea_ref, Eaa_ref = _reference_contraction(k, means, covs, Wmean, Wcov)
        np.testing.assert_allclose(Ea, Ea_ref, rtol=CLOSED_FORM, atol=CLOSED_FORM)
        np.testing.assert_allclose(Eaa, Eaa_ref, rtol=CLOSED_FORM, atol=CLOSED_FORM)
        # E[f] and E[f²] follow from mode k: f = a_kᵀ u_k
        Ef, Ef2 = expected_f(means, seconds, core)
        np.testing.assert_allclose(Ef, np.sum(Ea_ref * means[k], -1), rtol=CLOSED_FORM)
        np.testing.assert_allclose(
            Ef2, np.einsum("nrs,nrs->n", Eaa_ref, seconds[k]), rtol=CLOSED_FORM
        )


def test_blocked_contractions_equal_unblocked(rng):
    """Observation blocks (11 = 4 + 4 + 3, the last one zero-padded) change nothing."""
    ranks = (2, 3, 2)
    n = 11
    means, covs, core = _moments(rng, ranks, n)
    seconds = _second(means, covs)
    y = rng.normal(size=n)

    def everything(chunk):
        return (
            [expected_contraction(k, means, seconds, core, chunk) for k in range(3)],
            expected_f(means, seconds, core, chunk),
            core_update(y, 2.0, means, seconds, chunk),
        )

    blocked = jax.tree.leaves(jax.jit(lambda: everything(4))())
    whole = jax.tree.leaves(jax.jit(lambda: everything(None))())
    for a, b in zip(blocked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)


def test_expected_contraction_matches_monte_carlo(key):
    """Sample W and every factor row; the empirical moments of a and f agree."""
    ranks = (2, 3, 2)
    rng = np.random.default_rng(1)
    means, covs, core = _moments(rng, ranks, n=1)
    S = 200_000

    @jax.jit
    def sample(key):
        keys = jax.random.split(key, 4)
        W = jax.random.multivariate_normal(keys[0], core.mean.reshape(-1), core.cov, (S,))
        W = W.reshape((S,) + ranks)
        u = [
            jax.random.multivariate_normal(keys[j + 1], means[j][0], covs[j][0], (S,))
            for j in range(3)
        ]
        a = jnp.einsum("sabc,sa,sc->sb", W, u[0], u[2])  # mode k = 1
        f = jnp.einsum("sb,sb->s", a, u[1])
        return a, a[:, :, None] * a[:, None, :], f, f**2

    seconds = _second(means, covs)
    Ea, Eaa = expected_contraction(1, means, seconds, core)
    Ef, Ef2 = expected_f(means, seconds, core)
    for samples, exact in zip(sample(key), (Ea[0], Eaa[0], Ef[0], Ef2[0]), strict=True):
        se = np.std(samples, axis=0) / np.sqrt(S)
        assert np.all(
            np.abs(np.mean(samples, axis=0) - exact) < MC_SIGMAS * se + TOL["mc_abs_slack"]
        )


@pytest.mark.parametrize("jit", [False, True])
def test_core_update_matches_dense_gaussian_posterior(jit, rng):
    ranks = (2, 3, 2)
    n, tau = 30, 4.0
    means, covs, _ = _moments(rng, ranks, n)
    y = rng.normal(size=n)
    fn = jax.jit(core_update) if jit else core_update
    # fixed factors (zero covariance): W | y is the Bayesian linear regression y = Φ w + ε
    zero = [np.zeros_like(c) for c in covs]
    post = fn(y, tau, means, _second(means, zero))
    Phi = np.stack([np.kron(np.kron(means[0][i], means[1][i]), means[2][i]) for i in range(n)])
    prec = np.eye(12) + tau * Phi.T @ Phi
    cov = np.linalg.inv(prec)
    mean = cov @ (tau * Phi.T @ y)
    np.testing.assert_allclose(post.cov, cov, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    np.testing.assert_allclose(post.mean.reshape(-1), mean, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    # uncertain factors: precision I + τ Σ_n ⊗_k E[u uᵀ]_n
    post = fn(y, tau, means, _second(means, covs))
    M = _second(means, covs)
    G = sum(np.kron(np.kron(M[0][i], M[1][i]), M[2][i]) for i in range(n))
    cov = np.linalg.inv(np.eye(12) + tau * G)
    np.testing.assert_allclose(post.cov, cov, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    np.testing.assert_allclose(
        post.mean.reshape(-1), cov @ (tau * Phi.T @ y), rtol=CLOSED_FORM, atol=CLOSED_FORM
    )


@pytest.mark.parametrize("ranks", [(3, 2), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("chunk", [None, 7])
def test_core_sums_are_sums_of_kronecker_products(ranks, chunk, rng):
    """The Gram sum over packed symmetric pairs against ``Σ_n ⊗_k M^k_n`` formed explicitly."""
    from functools import reduce

    from bayestensor.models.funbat.moments import core_sums, packed_pairs

    n = 23
    means, covs, _ = _moments(rng, ranks, n)
    M = _second(means, covs)
    y = rng.normal(size=n)
    G, h = jax.jit(core_sums, static_argnums=3)(y, means, M, chunk)
    P = int(np.prod(ranks))
    G_ref = sum(reduce(np.kron, [m[i] for m in M]) for i in range(n))
    h_ref = sum(y[i] * reduce(np.kron, [m[i] for m in means]) for i in range(n))
    np.testing.assert_allclose(np.asarray(G).reshape(P, P), G_ref, rtol=CLOSED_FORM, atol=1e-12)
    np.testing.assert_allclose(np.asarray(h).reshape(P), h_ref, rtol=CLOSED_FORM, atol=1e-12)
    i, j, tri = packed_pairs(4)
    assert len(i) == 10 and np.array_equal(tri, tri.T)
    assert np.array_equal(tri[i, j], np.arange(10)) and np.all(i <= j)


def test_noise_update_uses_exact_second_moment(rng):
    y = rng.normal(size=7)
    Ef = rng.normal(size=7)
    Ef2 = Ef**2 + rng.uniform(0.1, 1.0, size=7)
    q = noise_update(jnp.asarray(y), Ef, Ef2, 1e-3, 2e-3)
    np.testing.assert_allclose(q.shape, 1e-3 + 3.5)
    expected = 2e-3 + 0.5 * np.sum((y - Ef) ** 2 + (Ef2 - Ef**2))
    np.testing.assert_allclose(q.rate, expected, rtol=CLOSED_FORM)


@pytest.mark.parametrize("ranks", [(2, 3, 2), (3, 2), (2, 2, 3, 2)])
@pytest.mark.parametrize("chunk", [None, 4])
def test_grouped_contractions_equal_per_observation(ranks, chunk, rng):
    """Contracting through one mode's unique coordinates gives the same moments."""
    from bayestensor.models.funbat.moments import Grouping, gather, grouping
    from bayestensor.models.funbat.state import CategoricalPosterior

    K, n = len(ranks), 13
    sizes = [3, 4, 2, 3][:K]
    index = jnp.asarray(np.stack([rng.integers(0, N, n) for N in sizes], axis=1))
    factors = []
    for N, R in zip(sizes, ranks, strict=True):
        L = rng.normal(size=(N, R, R)) * 0.3
        factors.append(
            CategoricalPosterior(
                jnp.asarray(rng.normal(size=(N, R))), jnp.asarray(L @ np.swapaxes(L, 1, 2))
            )
        )
    P = int(np.prod(ranks))
    Lw = rng.normal(size=(P, P)) * 0.2
    core = CorePosterior(jnp.asarray(rng.normal(size=ranks)), jnp.asarray(Lw @ Lw.T))
    means, seconds = gather(tuple(factors), index)
    group = grouping(tuple(factors), index)
    assert isinstance(group, Grouping)
    for k in range(K):
        plain = expected_contraction(k, means, seconds, core, chunk)
        grouped = expected_contraction(k, means, seconds, core, chunk, group)
        for a, b in zip(plain, grouped, strict=True):
            np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)
    for a, b in zip(
        expected_f(means, seconds, core, chunk),
        expected_f(means, seconds, core, chunk, group),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=CLOSED_FORM, atol=CLOSED_FORM)
