"""PDE problems (pde/problems.py): manufactured sources and boundary data, the benchmarks."""

import jax.numpy as jnp
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


def _exact_1d(x):
    return jnp.sin(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"box": [(0.0, np.nan)]}, "box bounds must be finite"),
        ({"box": [(0.0, np.inf)]}, "box bounds must be finite"),
        ({"box": [(3.0, 0.0)]}, "box: lower bound must be below upper bound"),
        ({"box": [(1.0, 1.0)]}, "box: lower bound must be below upper bound"),
        ({"box": (0, 3)}, r"box must be a non-empty list of \(lower, upper\) pairs"),
        ({"box": []}, r"box must be a non-empty list of \(lower, upper\) pairs"),
        ({"box": [(0, 1, 2)]}, r"box must be a non-empty list of \(lower, upper\) pairs"),
        ({"box": [("a", 1)]}, "box bounds must be numbers"),
        ({"grid": "abc"}, "grid must be an int ≥ 3 or one int ≥ 3 per dimension"),
        ({"grid": 3.9}, "grid must be an int ≥ 3 or one int ≥ 3 per dimension"),
        ({"grid": [10.0]}, "grid must be an int ≥ 3 or one int ≥ 3 per dimension"),
        ({"grid": (10, 10)}, "grid gives 2 sizes for a box of dimension 1"),
        ({"grid": 2}, "at least 3 points"),
        ({"variables": ("x", "y")}, "variables must be 1 names"),
        ({"exact_u": None}, "exact_u must be the exact solution"),
        ({"operator": "laplacian"}, "operator must be a function of the dict of derivative"),
        ({"operator": lambda g: jnp.sum(g["u_xx"])}, r"grid shape \(10,\).*got shape \(\)"),
        ({"operator": lambda g: g["u_tt"]}, "operator failed on the derivative grids.*u_tt"),
        ({"exact_u": lambda x: jnp.log(x - 0.5)}, "exact_u is NaN or inf at 5 of 10 grid points"),
        ({"exact_u": lambda x: 1.0 / x}, "at 1 of 10 grid points \\(1 of them on the boundary"),
        ({"exact_u": jnp.sqrt}, r"source \(the operator applied to exact_u\) is NaN or inf"),
        ({"exact_u": lambda x: jnp.stack([x, x])}, "exact_u must return a scalar"),
        ({"exact_u": lambda x, y: x * y}, "exact_u failed on the centre of the box"),
    ],
)
def test_manufactured_refuses_bad_inputs(kwargs, match):
    args = {
        "operator": laplacian,
        "exact_u": _exact_1d,
        "box": [(0.0, 1.0)],
        "grid": 10,
        "variables": None,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        Problem.manufactured(**args)


def test_manufactured_refuses_an_operator_returning_the_transposed_grid():
    with pytest.raises(ValueError, match=r"grid shape \(5, 6\).*got shape \(6, 5\)"):
        problem_2d(operator=lambda g: g["u_xx"].T)
    with pytest.raises(ValueError, match="variables must be distinct"):
        Problem.manufactured(laplacian, exact_2d, [(0, 1), (0, 1)], 5, ("x", "x"))


def test_manufactured_accepts_numpy_ints_and_int_bounds():
    prob = Problem.manufactured(laplacian, exact_2d, np.array([[0, 1], [0, 2]]), np.int64(4))
    assert prob.shape == (4, 4) and prob.box == ((0.0, 1.0), (0.0, 2.0))
    assert prob.validate() is prob


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: p._replace(source=p.source.at[3].set(jnp.nan)), "source is NaN or inf at 1"),
        (lambda p: p._replace(source=p.source[:-1]), "source must have the grid shape"),
        (
            lambda p: p._replace(boundary_values=p.boundary_values.at[0].set(jnp.inf)),
            r"boundary values \(boundary_values\) are NaN or inf at 1 of 2",
        ),
        (
            lambda p: p._replace(boundary_values=p.boundary_values[:1]),
            "boundary_values must hold one value per boundary grid point",
        ),
        (lambda p: p._replace(box=((0.0, np.nan),)), "box bounds must be finite"),
        (lambda p: p._replace(box=((3.0, 0.0),)), "box: lower bound must be below upper bound"),
        (lambda p: p._replace(box=()), "box must be a non-empty list"),
        (lambda p: p._replace(grid=(p.grid[0][::-1],)), r"grid\[0\] must be finite and strictly"),
        (lambda p: p._replace(grid=(p.grid[0], p.grid[0])), "grid must be 1 1-D coordinate"),
        (lambda p: p._replace(variables=("x", "y")), "variables must be 1 names"),
        (lambda p: p._replace(operator="laplacian"), "operator must be a function"),
        (lambda p: p._replace(operator=lambda g: 1.0), r"grid shape \(12,\).*got shape \(\)"),
        (lambda p: p._replace(exact=1.0), "exact must be a function"),
    ],
)
def test_validate_refuses_bad_hand_built_problems(change, match):
    prob = poisson_1d(grid=12)
    assert prob.validate() is prob
    with pytest.raises(ValueError, match=match):
        change(prob).validate()
