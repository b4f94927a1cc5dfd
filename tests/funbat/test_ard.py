"""Automatic rank determination (models/funbat/ard.py, ``rank="auto"``): planted ranks
recovered, unused components switched off, the closed-form updates against direct
computations, the pruned/rotated posterior against the unpruned one, save → load, bad input."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.models.funbat.ard import (
    ARD_A0,
    ARD_B0,
    ard_update,
    init_ard,
    prior_precision,
    rotate_tucker,
    tucker_rotations,
)
from bayestensor.models.funbat.moments import core_update, expected_f, weight_update
from bayestensor.models.funbat.state import CorePosterior, FunBaTConfig, WeightPosterior

# FunBaT computes in float64 whatever JAX's flag says: the float32 pass would repeat these
# fits (nox -s tests_f32 still runs them with x64 off)
pytestmark = pytest.mark.x64


def _planted(ranks, model="tucker", shape=(8, 10, 12), noise=0.05, seed=0):
    """Every cell of a grid holding a planted Tucker (random core) or CP (weights 1 … 0.6)
    tensor of smooth, well-separated, zero-mean components (a zero-mean tensor: z-scoring then
    adds no constant direction), plus noise of ``noise`` times its sd."""
    rng = np.random.default_rng(seed)
    grids = [np.linspace(0.0, 1.0, N) for N in shape]
    U = []
    for k, (g, R) in enumerate(zip(grids, ranks, strict=True)):
        shift = 0.4 * k if model == "cp" else 0.0  # CP: different shapes in every mode
        F = np.stack([np.cos(np.pi * (r + 0.7 + shift) * g + r) for r in range(R)], 1)
        Q, _ = np.linalg.qr(F - F.mean(0))
        U.append(Q * np.sqrt(len(g)))
    if model == "tucker":
        f = np.einsum("abc,ia,jb,kc->ijk", rng.normal(size=ranks), *U)
    else:
        f = np.einsum("r,ir,jr,kr->ijk", np.linspace(1.0, 0.6, ranks[0]), *U)
    idx = np.argwhere(np.ones(shape, bool))
    fv = f[tuple(idx.T)]
    y = fv + noise * fv.std() * rng.normal(size=fv.size)
    return pd.DataFrame(
        {
            "a": grids[0][idx[:, 0]],
            "b": grids[1][idx[:, 1]],
            "c": grids[2][idx[:, 2]],
            "value": y,
            "f": fv,
        }
    )


def _fit(df, **kw):
    kw = {"local": None, **kw}  # the low-rank part alone (the local process: its own tests)
    return bt.fit(df, coords=["a", "b", "c"], value="value", rank="auto", progress=False, **kw)


@pytest.mark.slow
def test_planted_tucker_ranks_recovered():
    """Tucker 2 × 3 × 4 truth, fitted with upper bounds 5: ranks (2, 3, 4), the dropped
    directions hold a negligible share, and the pruned fit predicts the truth to the noise."""
    df = _planted((2, 3, 4))
    res = _fit(df, max_rank=5)
    assert res.ranks == (2, 3, 4) and res.max_ranks == (5, 5, 5) and res.auto_rank
    for s, R in zip(res.estimator.shares_, res.ranks, strict=True):
        assert s[R - 1] > TOL["ard_kept_share"] and np.all(s[R:] < TOL["ard_dropped_share"])
    err = res.predict(df)["mean"] - df["f"]
    assert np.sqrt(np.mean(err**2)) < TOL["ard_planted_rmse"] * df["f"].std()


@pytest.mark.slow
def test_planted_cp_rank_recovered():
    """CP with 3 true components fitted with upper bound 5: 3 kept, the others switched off."""
    df = _planted((3, 3, 3), model="cp", shape=(8, 9, 10))
    res = _fit(df, model="cp", max_rank=5)
    assert res.ranks == (3, 3, 3) and res.max_ranks == (5, 5, 5)
    shares = res.estimator.shares_[0]
    kept = np.sort(res.active[0])
    assert np.all(shares[kept] > TOL["ard_kept_share"])
    assert np.all(np.delete(shares, kept) < TOL["ard_dropped_share"])
    err = res.predict(df)["mean"] - df["f"]
    assert np.sqrt(np.mean(err**2)) < TOL["ard_planted_rmse"] * df["f"].std()


@pytest.mark.parametrize("model", ["cp", pytest.param("tucker", marks=pytest.mark.slow)])
def test_rank_one_truth_switches_off_the_other_components(model):
    """A rank-1 truth fitted with at most 4 components: one is kept, the others hold a
    negligible share."""
    df = _planted((1, 1, 1), model="cp", shape=(6, 7, 8))
    res = _fit(df, model=model, max_rank=4)
    assert res.ranks == (1, 1, 1) and res.max_ranks == (4, 4, 4)
    assert res.core.shape == (1, 1, 1)
    assert set(res.factors()["component"]) == {0}
    for s in res.estimator.shares_:
        assert np.sort(s)[-2] < TOL["ard_dropped_share"]
    if model == "cp" and importlib.util.find_spec("arviz") is not None:
        # the learned CP weight is drawn as the superdiagonal core W = diag(w)
        post = res.to_inference_data(df.head(20), draws=8, chains=2).posterior
        assert post["W"].shape == (2, 8, 1, 1, 1)  # chains, draws per chain, core
        np.testing.assert_allclose(
            post["W"].values.mean(), res.core[0, 0, 0], rtol=TOL["ard_weight_draws_mean"]
        )


@pytest.mark.parametrize("model", ["tucker", pytest.param("cp", marks=pytest.mark.slow)])
def test_save_load_round_trip_keeps_ranks_and_predictions(tmp_path, model):
    df = _planted((1, 2, 2), shape=(6, 7, 8))
    kw = {"max_rank": (2, 3, 3)} if model == "tucker" else {"max_rank": 3}
    res = _fit(df, model=model, max_sweeps=15, **kw)
    path = tmp_path / f"{model}.bt"
    res.save(path)
    back = bt.load(path)
    assert back.ranks == res.ranks and back.max_ranks == res.max_ranks and back.auto_rank
    for a, b in zip(back.active, res.active, strict=True):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(back.predict(df.head(50)), res.predict(df.head(50)))
    assert back.summary()["max_rank"].tolist() == list(res.max_ranks)
    assert "learned of at most" in back.title()


@pytest.mark.x64
def test_tucker_ard_update_matches_direct_sums():
    """q(λ^k_r) = Gamma(c₀ + ½ Π_{j≠k} R_j, d₀ + ½ Σ_{r_k = r} E[W²] Π_{j≠k} E[λ^j]) with the
    modes updated in turn, against loops over the core's entries."""
    rng = np.random.default_rng(1)
    ranks = (2, 3, 4)
    P = int(np.prod(ranks))
    cfg = FunBaTConfig("tucker", ranks, (5, 6, 7), (True,) * 3, ard=True)
    A = rng.normal(size=(P, P))
    core = CorePosterior(jnp.asarray(rng.normal(size=ranks)), jnp.asarray(A @ A.T / P))
    ard = init_ard(cfg, jnp.float64)
    ard = tuple(a._replace(rate=jnp.asarray(rng.uniform(0.5, 2.0, a.rate.shape))) for a in ard)
    new = ard_update(cfg, core, ard)
    second = np.asarray(core.mean) ** 2 + np.diag(np.asarray(core.cov)).reshape(ranks)
    lam = [np.asarray(a.mean) for a in ard]  # well below the cap MAX_PRECISION
    for k in range(3):
        rate = np.full(ranks[k], ARD_B0)
        for idx in np.ndindex(*ranks):
            w = np.prod([lam[j][idx[j]] for j in range(3) if j != k])
            rate[idx[k]] += 0.5 * second[idx] * w
        shape = ARD_A0 + 0.5 * P / ranks[k]
        np.testing.assert_allclose(np.asarray(new[k].rate), rate, rtol=TOL["closed_form_rel"])
        np.testing.assert_allclose(np.asarray(new[k].shape), shape, rtol=TOL["closed_form_rel"])
        lam[k] = shape / rate
    # the prior precision of entry r is Π_k E[λ^k_{r_k}]
    prec = np.asarray(prior_precision(cfg, new))
    for idx in np.ndindex(*ranks):
        expect = np.prod([lam[j][idx[j]] for j in range(3)])
        np.testing.assert_allclose(prec[idx], expect, rtol=TOL["closed_form_rel"])


@pytest.mark.x64
def test_cp_weight_update_is_the_tucker_update_on_a_diagonal_core():
    """CP weights w (W = diag(w), w ~ N(0, diag(λ)⁻¹)): the Gaussian update equals the Tucker
    core update restricted to the superdiagonal (a dense solve), and E[f], E[f²] equal the
    Tucker ones with that diagonal core."""
    rng = np.random.default_rng(2)
    n, R, K = 40, 3, 3
    means = [jnp.asarray(rng.normal(size=(n, R))) for _ in range(K)]
    covs = []
    for _ in range(K):
        B = rng.normal(size=(n, R, R)) * 0.3
        covs.append(jnp.asarray(np.einsum("nij,nkj->nik", B, B)))
    seconds = [c + m[:, :, None] * m[:, None, :] for m, c in zip(means, covs, strict=True)]
    y, tau = jnp.asarray(rng.normal(size=n)), 2.5
    lam = jnp.asarray(rng.uniform(0.5, 3.0, R))
    w = weight_update(y, tau, means, seconds, lam)
    # dense reference: Λ = diag(λ) + τ Σ_n Π_k M^k_n (elementwise), h = τ Σ_n y_n Π_k μ^k_n
    G = np.prod(np.stack([np.asarray(s) for s in seconds]), axis=0).sum(0)
    h = tau * np.asarray(y) @ np.prod(np.stack([np.asarray(m) for m in means]), axis=0)
    prec = np.diag(np.asarray(lam)) + tau * G
    np.testing.assert_allclose(np.asarray(w.cov), np.linalg.inv(prec), rtol=TOL["kron_vs_dense"])
    np.testing.assert_allclose(
        np.asarray(w.mean), np.linalg.solve(prec, h), rtol=TOL["kron_vs_dense"]
    )
    # E[f], E[f²] with W = diag(w) as a Tucker core (covariance on the diagonal entries)
    diag = np.ravel_multi_index((np.arange(R),) * K, (R,) * K)
    core_cov = np.zeros((R**K, R**K))
    core_cov[np.ix_(diag, diag)] = np.asarray(w.cov)
    core_mean = np.zeros(R**K)
    core_mean[diag] = np.asarray(w.mean)
    tucker = CorePosterior(jnp.asarray(core_mean.reshape((R,) * K)), jnp.asarray(core_cov))
    for got, ref in zip(
        expected_f(means, seconds, w), expected_f(means, seconds, tucker, None), strict=True
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=TOL["kron_vs_dense"])
    assert isinstance(w, WeightPosterior)


@pytest.mark.x64
def test_core_update_prior_precision_against_dense_solve():
    """Λ_W = diag(prior) + τ Σ_n ⊗_k M^k_n: the diagonal ARD prior enters the core update."""
    rng = np.random.default_rng(3)
    n, ranks = 30, (2, 3)
    means = [jnp.asarray(rng.normal(size=(n, R))) for R in ranks]
    seconds = [m[:, :, None] * m[:, None, :] + 0.1 * jnp.eye(m.shape[1]) for m in means]
    y, tau = jnp.asarray(rng.normal(size=n)), 1.7
    prior = jnp.asarray(rng.uniform(0.5, 5.0, ranks))
    core = core_update(y, tau, means, seconds, None, prior)
    G = sum(np.kron(np.asarray(seconds[0][i]), np.asarray(seconds[1][i])) for i in range(n))
    h = sum(
        float(y[i]) * np.kron(np.asarray(means[0][i]), np.asarray(means[1][i])) for i in range(n)
    )
    prec = np.diag(np.asarray(prior).ravel()) + tau * G
    np.testing.assert_allclose(
        np.asarray(core.mean).ravel(), np.linalg.solve(prec, tau * h), rtol=TOL["kron_vs_dense"]
    )


@pytest.mark.x64
def test_tucker_rotation_keeps_the_fitted_tensor():
    """Rotating a Tucker posterior onto all its singular directions (no pruning) leaves E[f]
    and E[f²] unchanged, and the shares are the squared singular values of the fitted tensor's
    unfoldings on the grid of unique coordinates (a dense SVD)."""
    rng = np.random.default_rng(4)
    sizes, ranks = (5, 6, 7), (2, 3, 2)
    cfg = FunBaTConfig("tucker", ranks, sizes, (False,) * 3, ard=True)
    from bayestensor.models.funbat.inference import init_state

    state = init_state(cfg, (None,) * 3, [None] * 3, [None] * 3, __import__("jax").random.key(0))
    factors = tuple(
        f._replace(cov=f.cov * 5.0, mean=jnp.asarray(rng.normal(size=f.mean.shape)))
        for f in state.factors
    )
    P = int(np.prod(ranks))
    A = rng.normal(size=(P, P)) * 0.1
    core = CorePosterior(jnp.asarray(rng.normal(size=ranks)), jnp.asarray(A @ A.T))
    state = state._replace(factors=factors, core=core)
    rot = tucker_rotations(cfg, state)
    new, new_cfg = rotate_tucker(state, cfg, ranks, rot)
    index = np.argwhere(np.ones(sizes, bool))
    mom = [[f.mean[index[:, k]] for k, f in enumerate(s.factors)] for s in (state, new)]
    sec = [
        [
            f.cov[index[:, k]] + m[:, :, None] * m[:, None, :]
            for k, (f, m) in enumerate(zip(s.factors, ms, strict=True))
        ]
        for s, ms in zip((state, new), mom, strict=True)
    ]
    before = expected_f(mom[0], sec[0], state.core, None)
    after = expected_f(mom[1], sec[1], new.core, None)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=TOL["kron_vs_dense"], atol=TOL["kron_vs_dense"]
        )
    T = np.asarray(before[0]).reshape(sizes)
    for k in range(3):
        sv = np.linalg.svd(np.moveaxis(T, k, 0).reshape(sizes[k], -1), compute_uv=False)
        energy = sv[: ranks[k]] ** 2
        np.testing.assert_allclose(
            rot[k][0], energy / energy.sum(), rtol=TOL["kron_vs_dense"], atol=1e-14
        )


def test_truncated_tucker_rotation_is_the_hosvd_truncation():
    """Keeping fewer directions than the ranks gives the fitted mean tensor projected, mode by
    mode, onto its leading left singular vectors on the grid of unique coordinates (a dense
    SVD), even with nearly collinear components (an ill-conditioned Gram matrix, where mixing
    the dropped directions back in through the QR's off-diagonal block is amplified)."""
    rng = np.random.default_rng(7)
    sizes, ranks, keep = (6, 7, 8), (3, 3, 3), (2, 3, 1)
    cfg = FunBaTConfig("tucker", ranks, sizes, (False,) * 3, ard=True)
    from bayestensor.models.funbat.inference import init_state

    state = init_state(cfg, (None,) * 3, [None] * 3, [None] * 3, __import__("jax").random.key(0))
    factors = []
    for f in state.factors:
        m = rng.normal(size=f.mean.shape)
        m[:, 2] = m[:, 0] + 1e-4 * rng.normal(size=m.shape[0])  # nearly collinear
        factors.append(f._replace(mean=jnp.asarray(m)))
    core = CorePosterior(jnp.asarray(rng.normal(size=ranks)), jnp.eye(int(np.prod(ranks))))
    state = state._replace(factors=tuple(factors), core=core)
    new, _ = rotate_tucker(state, cfg, keep, tucker_rotations(cfg, state))
    means = [np.asarray(f.mean) for f in factors]
    T = np.einsum("abc,ia,jb,kc->ijk", np.asarray(core.mean), *means)
    expected = T
    for k, r in enumerate(keep):
        Y = np.linalg.svd(np.moveaxis(T, k, 0).reshape(sizes[k], -1))[0][:, :r]
        expected = np.moveaxis(np.tensordot(Y @ Y.T, expected, axes=(1, k)), 0, k)
    got = np.einsum(
        "abc,ia,jb,kc->ijk", np.asarray(new.core.mean), *(np.asarray(f.mean) for f in new.factors)
    )
    scale = np.abs(T).max()
    np.testing.assert_allclose(got / scale, expected / scale, atol=TOL["ard_truncation"])


@pytest.mark.x64
def test_rotation_of_a_fit_that_switched_everything_off_keeps_the_core_covariance():
    """A fit whose every component was switched off ends with factor means near 1e-150 and
    1e-90 (igf, seed 450): their Gram matrices underflow. The rotation does not depend on a
    mode's scale, so the pruned core's covariance is that of the same posterior with its means
    at unit scale (igf's came out 1.9e19 where it was 0.03-0.05 before the rotation: predictive
    sds of 1e7), and the fitted values' mean square is the unit-scale one times the scales
    squared (here 0)."""
    rng = np.random.default_rng(11)
    sizes, ranks, keep = (10, 12), (2, 2), (1, 1)
    cfg = FunBaTConfig("tucker", ranks, sizes, (False,) * 2, ard=True)
    from bayestensor.models.funbat.inference import init_state

    state = init_state(cfg, (None,) * 2, [None] * 2, [None] * 2, __import__("jax").random.key(0))
    means = [rng.normal(size=f.mean.shape) for f in state.factors]
    A = rng.normal(size=(4, 4)) * 0.2
    core = CorePosterior(
        jnp.asarray(rng.normal(size=ranks)), jnp.asarray(A @ A.T + 0.05 * np.eye(4))
    )

    def rotated(scales, core_scale):
        factors = tuple(
            f._replace(mean=jnp.asarray(m * s))
            for f, m, s in zip(state.factors, means, scales, strict=True)
        )
        st = state._replace(factors=factors, core=core._replace(mean=core.mean * core_scale))
        rot = tucker_rotations(cfg, st)
        return rotate_tucker(st, cfg, keep, rot)[0], rot

    unit, unit_rot = rotated((1.0, 1.0), 1.0)
    tiny, tiny_rot = rotated((1e-150, 1e-90), 1e-100)
    np.testing.assert_allclose(
        np.asarray(tiny.core.cov), np.asarray(unit.core.cov), rtol=TOL["kron_vs_dense"]
    )
    for (s_unit, *_, ms_unit), (s_tiny, *_, ms_tiny) in zip(unit_rot, tiny_rot, strict=True):
        np.testing.assert_allclose(s_tiny, s_unit, rtol=TOL["kron_vs_dense"])
        assert ms_unit > 0.0 and ms_tiny == 0.0  # 1e-680 of the unit one: below float64


def _diagonal_tucker(diagonal, sizes=(6, 7, 8)):
    """A Tucker posterior with orthonormal factor means and the superdiagonal core
    ``diagonal`` (so the directions' energies are its squares); config and state."""
    from bayestensor.models.funbat.inference import init_state

    rng = np.random.default_rng(9)
    ranks = (len(diagonal),) * 3
    cfg = FunBaTConfig("tucker", ranks, sizes, (False,) * 3, ard=True)
    state = init_state(cfg, (None,) * 3, [None] * 3, [None] * 3, __import__("jax").random.key(0))
    factors = tuple(
        f._replace(mean=jnp.asarray(np.linalg.qr(rng.normal(size=f.mean.shape))[0]))
        for f in state.factors
    )  # orthonormal columns: the shares are the core's squared diagonal, normalised
    W = np.zeros(ranks)
    for r, w in enumerate(diagonal):
        W[r, r, r] = w
    core = CorePosterior(jnp.asarray(W), jnp.eye(int(np.prod(ranks))) * 1e-6)
    return cfg, state._replace(factors=factors, core=core)


def test_a_small_share_above_the_noise_is_kept():
    """A Tucker direction with an energy share below PRUNE_SHARE is kept when its part of the
    fitted values is above PRUNE_NOISE noise sds, and pruned when it is below."""
    from bayestensor.models.funbat.ard import PRUNE_NOISE, PRUNE_SHARE, prune_fit

    sizes = (6, 7, 8)
    cfg, state = _diagonal_tucker([1.0, 0.5, 3e-3], sizes)
    energy = np.array([1.0, 0.25, 9e-6])
    assert energy[2] / energy.sum() < PRUNE_SHARE
    rms_small = np.sqrt(energy[2] / np.prod(sizes))  # its part's RMS over the grid
    for noise_sd, expect in [(0.5 * rms_small / PRUNE_NOISE, 3), (2 * rms_small / PRUNE_NOISE, 2)]:
        noise = state.noise._replace(shape=jnp.asarray(1.0), rate=jnp.asarray(noise_sd**2))
        _, pruned, _, _ = prune_fit(state._replace(noise=noise), cfg, None, False)
        assert pruned.ranks == (expect,) * 3


def test_with_a_local_stage_a_direction_under_half_a_noise_sd_is_pruned():
    """``prune_fit(local=True)`` (a fit followed by a local residual stage) keeps a Tucker
    direction only when its part of the fitted values is at least PRUNE_NOISE_LOCAL noise
    sds; the default rule keeps every one of these (shares above PRUNE_SHARE)."""
    from bayestensor.models.funbat.ard import PRUNE_NOISE_LOCAL, prune_fit

    sizes = (6, 7, 8)
    cfg, state = _diagonal_tucker([1.0, 0.5, 0.1], sizes)
    rms = np.sqrt(np.array([1.0, 0.25, 0.01]) / np.prod(sizes))  # each direction's part's RMS
    cases = [  # noise sd -> (kept by default, kept with a local stage)
        (rms[2] / (0.5 * PRUNE_NOISE_LOCAL), (3, 2)),  # the third at 0.25 noise sd
        (rms[2] / (2 * PRUNE_NOISE_LOCAL), (3, 3)),  # the third at 1 noise sd
        # the second at 0.25, the third at 0.05 (its share 0.008 keeps it by default)
        (rms[1] / (0.5 * PRUNE_NOISE_LOCAL), (3, 1)),
    ]
    for noise_sd, expect in cases:
        noise = state.noise._replace(shape=jnp.asarray(1.0), rate=jnp.asarray(noise_sd**2))
        got = tuple(
            prune_fit(state._replace(noise=noise), cfg, None, False, local=local)[1].ranks[0]
            for local in (False, True)
        )
        assert got == expect, (noise_sd, got)


def _weighted(w, noise, shape=(24, 20)):
    """A grid holding the matrix ``Σ_r w_r u_r v_rᵀ`` (smooth components of RMS 1) plus iid
    noise of sd ``noise`` (not relative)."""
    rng = np.random.default_rng(0)
    grids = [np.linspace(0.0, 1.0, N) for N in shape]
    U = []
    for k, g in enumerate(grids):
        F = np.stack([np.cos(np.pi * (r + 0.7 + 0.4 * k) * g + r) for r in range(len(w))], 1)
        U.append(np.linalg.qr(F - F.mean(0))[0] * np.sqrt(len(g)))
    f = np.einsum("r,ir,jr->ij", np.asarray(w), *U)
    idx = np.argwhere(np.ones(shape, bool))
    y = f[tuple(idx.T)] + noise * rng.normal(size=len(idx))
    return pd.DataFrame({"a": grids[0][idx[:, 0]], "b": grids[1][idx[:, 1]], "value": y})


@pytest.mark.slow  # 20 s (nox -s bench runs it)
def test_a_local_stage_takes_over_the_components_under_half_a_noise_sd():
    """A planted third component at 0.4 noise sd: kept without a local stage; with
    ``local="fibre:a"`` the fit prunes it (under PRUNE_NOISE_LOCAL) and the local process
    carries it; with ``local="auto"`` the local stage keeps no process for it, so the fit
    falls back to the ranks (and predictions) without a local stage."""
    from bayestensor.models.funbat.ard import PRUNE_NOISE, PRUNE_NOISE_LOCAL

    w, noise = [1.0, 0.7, 0.08], 0.2
    assert PRUNE_NOISE < w[2] / noise < PRUNE_NOISE_LOCAL
    df = _weighted(w, noise)

    def fit(local):
        return bt.fit(df, coords=["a", "b"], value="value", max_rank=3, local=local)

    alone = fit(None)
    assert alone.ranks == (3, 3)
    fibre = fit("fibre:a")
    assert fibre.ranks == (2, 2) and fibre.local.label == "fibre:a"
    assert fibre.max_ranks == alone.max_ranks
    auto = fit("auto")
    assert auto.local.label == "none" and auto.ranks == (3, 3)
    pd.testing.assert_frame_equal(auto.predict(df.head(30)), alone.predict(df.head(30)))
    assert fibre.estimator._unpruned is None and auto.estimator._unpruned is None


def test_scattered_counts_the_rows_per_coordinate_of_every_mode():
    """``scattered``: some mode with fewer than DENSE_ROWS training rows per unique coordinate
    on average (codes that no row uses do not count)."""
    from bayestensor.models.funbat.ard import DENSE_ROWS, scattered

    rng = np.random.default_rng(3)

    def index(n):  # mode 0: 4 coordinates, mode 1: 7 (codes 0, 10, ..., 60), every one used
        a = np.concatenate([np.arange(4), rng.integers(0, 4, n - 4)])
        b = 10 * np.concatenate([np.arange(7), rng.integers(0, 7, n - 7)])
        return np.stack([a, b], axis=1)

    assert not scattered(index(7 * DENSE_ROWS))  # 7 x DENSE_ROWS rows: DENSE_ROWS per code
    assert scattered(index(7 * DENSE_ROWS - 1))  # mode 1 falls short by one row
    assert not scattered(index(50 * DENSE_ROWS))
    one = index(7 * DENSE_ROWS)
    one[:, 1] = 0  # one coordinate in mode 1: mode 0's 4 decide
    assert not scattered(one) and scattered(one[: 4 * DENSE_ROWS - 1])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rank": "automatic"}, "rank"),
        ({"rank": 3, "max_rank": 4}, "max_rank"),
        ({"rank": "auto", "max_rank": 0}, "max_rank"),
        ({"rank": "auto", "max_rank": 2.5}, "max_rank"),
        ({"rank": "auto", "max_rank": "4"}, "max_rank"),
        ({"rank": "auto", "max_rank": (2, 3), "model": "cp"}, "max_rank"),
        ({"rank": "auto", "max_rank": (2, 3)}, "max_rank"),
    ],
)
def test_bad_rank_options_are_refused(kw, match):
    df = _planted((1, 1, 1), shape=(4, 4, 4))
    with pytest.raises(ValueError, match=match):
        bt.fit(df, coords=["a", "b", "c"], value="value", progress=False, **kw)


def test_auto_tucker_bound_on_small_data_is_small_max_rank():
    """Under SMALL_ROWS rows the default Tucker bound is SMALL_MAX_RANK (a mode's size still
    caps it); from SMALL_ROWS on it is the usual one; max_rank= and CP are not affected; and
    bt.fit on such data fits with that bound unless max_rank= is given."""
    from bayestensor.models.funbat.ard import SMALL_MAX_RANK, SMALL_ROWS, auto_ranks

    shape = (12, 10, 6)
    small = SMALL_MAX_RANK
    assert auto_ranks("tucker", shape, n_obs=SMALL_ROWS - 1) == (small,) * 3
    assert auto_ranks("tucker", (12, 1, 6), n_obs=50) == (small, 1, small)
    assert min(auto_ranks("tucker", shape, n_obs=SMALL_ROWS)) > small
    assert auto_ranks("tucker", shape, max_rank=4, n_obs=50) == (4, 4, 4)
    assert auto_ranks("cp", shape, n_obs=50) == auto_ranks("cp", shape, n_obs=10**4)
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"a": rng.integers(0, 12, 120), "t": rng.random(120)})
    df = df.assign(y=np.sin(3 * df["t"]) * (df["a"] - 5) + 0.1 * rng.normal(size=120))
    res = bt.fit(df, coords=["a", "t"], value="y", local=None, progress=False)
    assert res.max_ranks == (small, small)
    more = bt.fit(df, coords=["a", "t"], value="y", local=None, max_rank=3, progress=False)
    assert more.max_ranks == (3, 3)


@pytest.mark.parametrize("n", [500, 40_000, 300_000, 5_000_000, 10**9])
def test_auto_tucker_bound_is_the_largest_a_sweep_can_afford(n):
    """The default Tucker bound R is the largest R ≤ AUTO_MAX_RANK with n·R^(2K) within the
    work budget (never below 2), so rank="auto" stays affordable on large data — where the
    coordinates are scattered (no grid of unique coordinates to sum on, funbat.grid) ..."""
    from bayestensor.models.funbat.ard import AUTO_MAX_RANK, AUTO_TUCKER_WORK, auto_ranks
    from bayestensor.models.funbat.grid import plan

    shape = (50_000, 60_000, 70_000)
    (R, *rest) = auto_ranks("tucker", shape, n_obs=n)
    assert rest == [R, R]
    assert plan(shape, (R, R, R), n) is None
    affordable = [r for r in range(2, AUTO_MAX_RANK["tucker"] + 1) if n * r**6 <= AUTO_TUCKER_WORK]
    assert R == (max(affordable) if affordable else 2)
    assert (
        auto_ranks("tucker", (4, 60_000, 70_000), n_obs=500)[0] == 4
    )  # a mode's size still caps it
    # ... while on a grid the sweep's sums cost far less, and the bound stays AUTO_MAX_RANK
    # until the grid's intermediates outgrow grid.GRID_MAX_NUMBERS
    cap = AUTO_MAX_RANK["tucker"]
    (R_grid,) = set(auto_ranks("tucker", (50, 60, 70), n_obs=n))
    on_grid = plan((50, 60, 70), (cap,) * 3, n) is not None
    assert R_grid == (cap if on_grid else R)
    assert on_grid == (n >= 3000)  # the grid (50·60 cells besides the largest mode) pays
