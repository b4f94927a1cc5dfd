"""Tucker sums over the grid of unique coordinates (models/funbat/grid.py) against explicit
per-row Kronecker products, and a sweep through the grid against the row-by-row sweep."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import TOL

from bayestensor.models.funbat import grid
from bayestensor.models.funbat.moments import Grouping
from bayestensor.models.funbat.state import CorePosterior

CLOSED_FORM = TOL["funbat_closed_form"]
GRID_VS_ROWS = TOL["grid_vs_rows"]


def _spd(rng, d, scale=0.3):
    B = rng.normal(size=(d, d)) * scale
    return B @ B.T + 0.05 * np.eye(d)


class _Factor:
    def __init__(self, mean, cov):
        self.mean, self.cov = mean, cov


def _problem(rng, sizes, ranks, n):
    """Rows on a grid (cells repeat), per-coordinate factor moments and a core."""
    index = np.stack([rng.integers(0, N, n) for N in sizes], 1)
    factors = [
        _Factor(rng.normal(size=(N, R)), np.stack([_spd(rng, R) for _ in range(N)]))
        for N, R in zip(sizes, ranks, strict=True)
    ]
    P = int(np.prod(ranks))
    core = CorePosterior(rng.normal(size=ranks), _spd(rng, P, scale=0.2))
    rows = [f.cov + f.mean[:, :, None] * f.mean[:, None, :] for f in factors]
    return index, factors, core, Grouping(jnp.asarray(index), [jnp.asarray(M) for M in rows])


def _kron_rows(index, mats, modes):
    """Per row, the explicit Kronecker product of ``mats[j][i_j(n)]`` over ``modes``."""
    out = []
    for row in index:
        A = np.ones((1, 1))
        for j in modes:
            A = np.kron(A, mats[j][row[j]])
        out.append(A)
    return np.stack(out)


@pytest.mark.x64  # float64 algebra against float64 references
@pytest.mark.parametrize("sizes", [(3, 4, 5), (4, 6), (2, 3, 2, 3)])
def test_gram_sum_equals_kronecker_rows(sizes, rng):
    ranks = tuple(2 + (j % 2) for j in range(len(sizes)))
    n = 3 * int(np.prod(sizes))
    index, factors, core, group = _problem(rng, sizes, ranks, n)
    weight = (rng.random(n) < 0.8).astype(float)
    c = grid.plan(sizes, ranks, n)
    assert c == int(np.argmax(sizes))
    P = int(np.prod(ranks))
    G = np.asarray(grid.grid_second(group, sizes, c, weight=jnp.asarray(weight))).reshape(P, P)
    ref = np.einsum("n,nab->ab", weight, _kron_rows(index, group.rows, range(len(sizes))))
    np.testing.assert_allclose(G, ref, rtol=CLOSED_FORM, atol=CLOSED_FORM * np.abs(ref).max())


@pytest.mark.x64  # float64 algebra against float64 references
@pytest.mark.parametrize("sizes", [(3, 4, 5), (4, 6), (2, 3, 2, 3)])
def test_message_precisions_equal_kronecker_rows(sizes, rng):
    """``Σ_{n: i_k(n)=i} E[a aᵀ]`` with ``a = W_(k) ⊗_{j≠k} u_j`` by explicit Kronecker
    products of the other modes' second moments and the mode-k unfolding of ``E[vec W vec Wᵀ]``."""
    K = len(sizes)
    ranks = tuple(2 + (j % 2) for j in range(K))
    n = 2 * int(np.prod(sizes))
    index, factors, core, group = _problem(rng, sizes, ranks, n)
    m = np.asarray(core.mean).reshape(-1)
    second = np.asarray(core.cov) + np.outer(m, m)
    for k in range(K):
        others = [j for j in range(K) if j != k]
        perm = np.moveaxis(np.arange(m.size).reshape(ranks), k, 0).reshape(-1)
        Rk, Q = ranks[k], m.size // ranks[k]
        S4 = second[np.ix_(perm, perm)].reshape(Rk, Q, Rk, Q)
        Z = _kron_rows(index, group.rows, others)
        per_row = np.einsum("rqsp,nqp->nrs", S4, Z)
        ref = np.zeros((sizes[k], Rk, Rk))
        np.add.at(ref, index[:, k], per_row)
        c = grid.plan(sizes, ranks, n, keep=k)
        assert c is not None and c != k
        sec = jnp.asarray(second.reshape(ranks * 2))
        got = np.asarray(grid.grid_message_prec(k, sec, group, sizes, c))
        np.testing.assert_allclose(got, ref, rtol=CLOSED_FORM, atol=CLOSED_FORM * np.abs(ref).max())


@pytest.mark.x64  # float64 algebra against float64 references
def test_noise_statistic_equals_explicit_expectation(rng):
    """``Σ_n E[(y_n − f_n)²]`` (the noise update's statistic) against ``(y − E f)² + Var f`` with
    ``E[f²] = tr(E[vec W vec Wᵀ] ⊗_k E[u uᵀ])`` by explicit Kronecker products."""
    sizes, ranks, n = (3, 4, 5), (2, 3, 2), 90
    index, factors, core, group = _problem(rng, sizes, ranks, n)
    y = rng.normal(size=n)
    weight = (rng.random(n) < 0.7).astype(float)
    m = np.asarray(core.mean).reshape(-1)
    z = np.stack(
        [
            np.kron(np.kron(*[factors[j].mean[row[j]] for j in (0, 1)]), factors[2].mean[row[2]])
            for row in index
        ]
    )
    Ef = z @ m
    Ef2 = np.einsum(
        "nab,ab->n", _kron_rows(index, group.rows, range(3)), np.asarray(core.cov) + np.outer(m, m)
    )
    ref = np.sum(weight * (y**2 - 2 * y * Ef + Ef2))
    c = grid.plan(sizes, ranks, n)
    G = grid.grid_second(group, sizes, c, weight=jnp.asarray(weight))
    noise = grid.grid_noise(
        jnp.asarray(y),
        jnp.asarray(Ef),
        core,
        G,
        tuple(factors),
        group,
        sizes,
        c,
        1.0,
        0.5,
        jnp.asarray(weight),
    )
    np.testing.assert_allclose(float(noise.rate), 0.5 + 0.5 * ref, rtol=CLOSED_FORM)
    np.testing.assert_allclose(float(noise.shape), 1.0 + 0.5 * weight.sum(), rtol=CLOSED_FORM)


def test_plan_skips_scattered_coordinates_and_large_intermediates(monkeypatch):
    # every mode with as many coordinates as rows: the grid would be n² cells
    assert grid.plan((500, 400, 300), (3, 3, 3), 1000) is None
    # gridded: the largest mode is summed row by row (the Gram sum) or the largest other one
    assert grid.plan((10, 48, 263), (5, 5, 5), 44_755) == 2
    assert grid.plan((10, 48, 263), (5, 5, 5), 44_755, keep=2) == 1
    monkeypatch.setattr(grid, "GRID_MAX_NUMBERS", 1000)
    assert grid.plan((10, 48, 263), (5, 5, 5), 44_755) is None


@functools.cache
def _small_fit(dtype: str):
    """A short ``rank="auto"`` fit of gridded data (6 × 7 × 9 coordinates, 300 rows)."""
    from bayestensor.data import encode
    from bayestensor.models.funbat import FunBaT

    rng = np.random.default_rng(3)
    sizes = (6, 7, 9)
    n = 300
    index = np.stack([rng.integers(0, N, n) for N in sizes], 1)
    coords = [np.sort(rng.random(N)) for N in sizes]
    X = np.stack([coords[j][index[:, j]] for j in range(3)], 1)
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) + X[:, 2] + 0.1 * rng.normal(size=n)
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y})
    return FunBaT(rank="auto", max_sweeps=2, max_rank=3, dtype=dtype).fit(
        encode(df, ["a", "b", "c"], "y")
    )


@pytest.mark.x64  # the fit's dtype is scoped by the estimator (driver.precision)
@pytest.mark.parametrize(
    ("masked", "dtype"),
    [  # slow marker (CI time, 10 s): unmasked float32; float32 runs masked, float64 both ways
        pytest.param(False, "float32", marks=pytest.mark.slow),
        (False, "float64"),
        (True, "float32"),
        (True, "float64"),
    ],
)
def test_sweep_through_grid_equals_row_by_row(masked, dtype, monkeypatch):
    """One full sweep (messages, hyperparameters, core with ARD, noise) with the grid sums and
    with the row-by-row forms (the grid switched off) gives the same posterior, in float64 and
    in float32."""
    from bayestensor.driver import precision
    from bayestensor.models.funbat.inference import sweep
    from bayestensor.ssm import gaps

    est = _small_fit(dtype)
    state, cfg = est.state_, est.cfg_
    n = len(est.train_.y)
    assert cfg.model == "tucker" and grid.plan(cfg.sizes, cfg.ranks, n) is not None
    with precision(dtype):
        idx = jnp.asarray(est.train_.index)
        yz = jnp.asarray((np.asarray(est.train_.y) - est.y_mean_) / est.y_scale_)
        mask = None
        if masked:  # padding rows as in a sharded fit
            idx = jnp.concatenate([idx, idx[:5]])
            yz = jnp.concatenate([yz, jnp.zeros(5)])
            mask = jnp.concatenate([jnp.ones(n), jnp.zeros(5)])
        dts = tuple(jnp.asarray(gaps(mode.values)) for mode in est.train_.modes)
        # a fresh jit each time: the grid is chosen while tracing
        with_grid = jax.jit(sweep, static_argnames="cfg")(state, idx, yz, dts, cfg, mask)
        monkeypatch.setattr(grid, "GRID_CELLS_PER_ROW", 0.0)
        rows = jax.jit(sweep, static_argnames="cfg")(state, idx, yz, dts, cfg, mask)
    tol = GRID_VS_ROWS if dtype == "float64" else TOL["grid_vs_rows_f32"]
    for a, b in zip(jax.tree.leaves(with_grid), jax.tree.leaves(rows), strict=True):
        scale = max(float(np.abs(np.asarray(b)).max()), 1e-300)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)
