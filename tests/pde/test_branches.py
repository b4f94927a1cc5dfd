"""The search for another solution next to a nonlinear solve (pde/branches.py).

The reference is Bratu's problem ``u'' + λ eᵘ = 0`` on [0, 1] with ``u(0) = u(1) = 0``: for
``λ`` below ``λ_c ≈ 3.514`` it has exactly two solutions, both in closed form,
``u(x) = −2 log(cosh((x − ½) θ/2) / cosh(θ/4))`` for the two roots ``θ`` of
``θ = √(2λ) cosh(θ/4)``; they meet at the fold ``λ_c`` and do not exist beyond it.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import bayestensor as bt
from bayestensor.pde.branches import NEAR_SOLUTION, fd4_matrices, nearby_solution
from bayestensor.pde.problems import Problem, allen_cahn


def bratu(lam):
    def op(grids):
        return grids["u_xx"] + lam * jnp.exp(grids["u"])

    return op


def bratu_thetas(lam):
    """The two roots θ of θ = √(2λ) cosh(θ/4), either side of the minimum of the difference."""
    a = np.sqrt(2 * lam)
    g = lambda t: t - a * np.cosh(t / 4)  # noqa: E731
    top = 4 * np.arcsinh(4 / a)  # where g' = 0
    return brentq(g, 1e-12, top), brentq(g, top, 100.0)


def bratu_solution(theta):
    def u(x):
        return -2 * jnp.log(jnp.cosh((x - 0.5) * theta / 2) / np.cosh(theta / 4))

    return u


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_fd4_matrices_are_exact_for_quartics(tol):
    x = np.sort(np.random.default_rng(3).uniform(-1.0, 2.0, 23))
    D1, D2 = fd4_matrices(x)
    for p in range(5):
        d1 = p * x ** max(p - 1, 0)
        d2 = p * (p - 1) * x ** max(p - 2, 0)
        np.testing.assert_allclose((D1 @ x**p)[1:-1], d1[1:-1], atol=tol["fd4_vs_exact"])
        np.testing.assert_allclose((D2 @ x**p)[1:-1], d2[1:-1], atol=tol["fd4_vs_exact"])
    # and no more: a quintic is not differentiated exactly
    assert np.abs((D2 @ x**5)[1:-1] - 20 * x[1:-1] ** 3).max() > 1e3 * tol["fd4_vs_exact"]


@pytest.mark.parametrize("start", [0, 1])
def test_deflation_finds_the_other_bratu_solution(start, tol):
    x = np.linspace(0.0, 1.0, 201)
    u = [np.asarray(bratu_solution(t)(x)) for t in bratu_thetas(3.5)]
    found = nearby_solution(bratu(3.5), ("x",), [x], u[start], np.zeros_like(x), 1.0)
    assert found == pytest.approx(_rel(u[1 - start], u[start]), rel=tol["fd4_branch_distance"])
    assert found < NEAR_SOLUTION


def test_no_warning_distance_when_the_other_solution_is_far():
    # λ = 1: the second solution is 26 times as large as the first
    x = np.linspace(0.0, 1.0, 201)
    low = np.asarray(bratu_solution(bratu_thetas(1.0)[0])(x))
    assert nearby_solution(bratu(1.0), ("x",), [x], low, np.zeros_like(x), 1.0) > NEAR_SOLUTION


def test_past_the_fold_there_is_no_solution_to_find():
    # beyond λ_c no solution exists: Newton from the last one before the fold finds none
    x = np.linspace(0.0, 1.0, 201)
    low = np.asarray(bratu_solution(bratu_thetas(3.5)[0])(x))
    assert nearby_solution(bratu(3.6), ("x",), [x], low, np.zeros_like(x), 1.0) == 0.0


@pytest.mark.parametrize("lam", [3.5, 1.0])
def test_solve_warns_when_another_solution_is_near(lam, tol):
    thetas = bratu_thetas(lam)
    prob = Problem.manufactured(bratu(lam), bratu_solution(thetas[0]), [(0.0, 1.0)], 101)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = bt.pde.solve(prob, steps=20, progress=False)
    near = [str(w.message) for w in caught if "another solution" in str(w.message)]
    x = np.asarray(prob.grid[0])
    u = [np.asarray(bratu_solution(t)(x)) for t in thetas]
    landed = int(np.argmin([_rel(np.asarray(sol.values), v) for v in u]))
    assert _rel(np.asarray(sol.values), u[landed]) < tol["pde_low_freq_rel_l2"]
    distance = _rel(u[1 - landed], u[landed])
    if distance < NEAR_SOLUTION:
        assert len(near) == 1
        other = sol.reliability.other_solution
        assert other == pytest.approx(distance, rel=tol["fd4_branch_distance"])
        assert f"another solution {other:.0%} away" in sol.title()
        assert sol.summary()["other_solution"].iloc[0] == other
    else:
        assert not near
        assert sol.reliability.other_solution > NEAR_SOLUTION


def test_a_zero_solution_is_searched_without_dividing_by_zero():
    # Allen–Cahn with zero data: u = 0 solves it (and so do ±(nonzero) ones far away)
    x = np.linspace(0.0, 1.0, 41)
    found = nearby_solution(allen_cahn, ("x",), [x], np.zeros_like(x), np.zeros_like(x), 1.0)
    assert found > NEAR_SOLUTION
