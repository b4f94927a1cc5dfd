"""PDE problems (pde/problems.py): manufactured sources and boundary data, the benchmarks."""

import numpy as np
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.pde.problems import (
    Problem,
    allen_cahn,
    benchmark,
    boundary_mask,
    derivative_keys,
    laplacian,
    poisson_1d,
)

from .cases import exact_2d, problem_2d


def test_manufactured_poisson_1d():
    prob = poisson_1d(grid=50)
    x = np.linspace(0, 2 * np.pi, 50)
    np.testing.assert_allclose(prob.grid[0], x, rtol=TOL["pde_grid"])
    np.testing.assert_allclose(
        prob.source,
        -36 * np.sin(6 * x),
        rtol=TOL["pde_source_vs_analytic"],
        atol=TOL["pde_source_vs_analytic_abs"],
    )
    np.testing.assert_allclose(
        prob.boundary_values, np.sin(6 * x[[0, -1]]), atol=TOL["pde_exact_values_abs"]
    )
    np.testing.assert_allclose(
        prob.exact_on_grid(), np.sin(6 * x), atol=TOL["pde_exact_values_abs"]
    )
    # the source at arbitrary points, from the same autodiff
    xs = np.array([0.1, 1.3, 2.9])
    np.testing.assert_allclose(
        prob.source_fn(xs), -36 * np.sin(6 * xs), rtol=TOL["pde_source_vs_analytic"]
    )


def test_manufactured_2d_source_boundary_and_keys():
    prob = problem_2d(operator=allen_cahn)
    X, Y = np.meshgrid(*(np.asarray(g) for g in prob.grid), indexing="ij")
    u = np.sin(X) * np.cos(2 * Y)
    np.testing.assert_allclose(
        prob.source,
        -5 * u + u * (u**2 - 1),
        rtol=TOL["pde_source_vs_analytic"],
        atol=TOL["pde_source_vs_analytic_abs"],
    )
    mask = boundary_mask(prob.shape)
    assert mask.sum() == 2 * 5 + 2 * 6 - 4
    assert not mask[1:-1, 1:-1].any()
    np.testing.assert_allclose(prob.boundary_values, u[mask], atol=TOL["pde_exact_values_abs"])
    assert derivative_keys(prob.variables) == ("u", "u_x", "u_xx", "u_y", "u_yy")
    np.testing.assert_allclose(
        prob.source_fn(X, Y),
        prob.source,
        rtol=TOL["pde_source_fn_vs_grid"],
        atol=TOL["pde_source_fn_vs_grid"],
    )
    with pytest.raises(ValueError, match="3 points"):
        Problem.manufactured(laplacian, exact_2d, [(0, 1), (0, 1)], (2, 5))


def test_benchmark_problems_are_consistent():
    assert len(bt.pde.BENCHMARKS) == 11
    prob = benchmark("advection_2d", grid=(5, 7))
    X, Y = np.meshgrid(*(np.asarray(g) for g in prob.grid), indexing="ij")
    # 200 u_x + u_y = 0
    np.testing.assert_allclose(prob.source, 0.0, atol=TOL["pde_zero_source_abs"])
    np.testing.assert_allclose(
        prob.exact_on_grid(), np.sin(X - 200 * Y), atol=TOL["pde_exact_values_abs"]
    )
    with pytest.raises(ValueError, match="name must be one of"):
        benchmark("heat")
