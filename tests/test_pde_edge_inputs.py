"""PDE solver input edge cases: variable names, points outside the box, grids not spanning the
box, bad ``source_fn`` / ``exact_u`` / operators, list grids, ``relative_l2`` and ``fit`` params.
"""

import io as _io
import json
import warnings
import zipfile

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayestensor as bt
from bayestensor.pde.checks import variables_of
from bayestensor.pde.problems import Problem, laplacian

# a few steps only: these tests check inputs, not accuracy
pytestmark = pytest.mark.filterwarnings("ignore:the solution may be inaccurate:RuntimeWarning")


def lap(g):
    return g["u_xx"]


@pytest.fixture(scope="module")
def solution():
    prob = Problem.manufactured(lap, lambda x: jnp.sin(x), [(0.0, 1.0)], 20)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "the solution may be inaccurate", RuntimeWarning)
        return bt.pde.solve(prob, steps=3, progress=False)


def _hand_built(n=20, box=(0.0, 1.0), grid=None, **kw):
    x = jnp.linspace(box[0], box[1], n) if grid is None else grid
    return Problem(
        ((box[0], box[1]),), (x,), lap, jnp.zeros(n), jnp.array([0.0, 1.0]), ("x",), **kw
    )


# --- 1. variable names -------------------------------------------------------------------------


def test_colliding_variable_names_refused():
    with pytest.raises(ValueError, match=r"variables.*'x', 'xx'.*'u_xx'"):
        Problem.manufactured(
            lambda g: g["u_xx"],
            lambda x, xx: x**2 + 5 * xx,
            [(0, 1), (0, 1)],
            5,
            variables=("x", "xx"),
        )
    prob = Problem.manufactured(lambda g: g["u_xx"], lambda x, y: x * y, [(0, 1)] * 2, 5)
    prob = prob._replace(variables=("x", "xx"), operator=laplacian)
    with pytest.raises(ValueError, match="colliding"):
        prob.validate()


def test_laplacian_picks_second_derivatives_of_the_variables():
    p = Problem.manufactured(laplacian, lambda a: a**3, [(0.0, 1.0)], 10, variables=("xx",))
    np.testing.assert_allclose(p.source, 6 * np.linspace(0, 1, 10), rtol=1e-5, atol=1e-5)
    p = Problem.manufactured(laplacian, lambda a: a**3, [(0.0, 1.0)], 10, variables=("ab",))
    np.testing.assert_allclose(p.source, 6 * np.linspace(0, 1, 10), rtol=1e-5, atol=1e-5)
    p = Problem.manufactured(
        laplacian, lambda s, t: s**2 + t**3, [(0.0, 1.0)] * 2, 5, variables=("s", "t")
    )
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(p.source, 2 + 6 * t[None, :] + 0 * t[:, None], rtol=1e-5, atol=1e-5)
    # names that are doubles of each other but do not collide
    assert variables_of(("u", "u_x", "u_xx", "u_xxxx", "u_xxxxxxxx")) == ("x", "xxxx")
    with pytest.raises(ValueError, match="derivative grid keys"):
        laplacian({"u": 0.0, "u_x": 0.0})


# --- 2. evaluating outside the box ---------------------------------------------------------------


def test_call_outside_box_refused(solution):
    with pytest.raises(ValueError, match=r"'x'.*outside the box \[0.0, 1.0\]"):
        solution(np.array([1.5, 10.0]))
    with pytest.raises(ValueError, match=r"'x'.*outside the box"):
        solution.predict(pd.DataFrame({"x": [-1.0, 3.0]}))
    # the edges (up to round-off) are inside
    assert np.all(np.isfinite(solution(np.array([0.0, 1.0, 1.0 + 1e-12]))))


def test_call_on_its_own_float32_grid_past_a_float64_bound():
    """A float32 grid's last point lies past the float64 bound 2π (by 1.7e-7): still the edge."""
    prob = Problem.manufactured(lap, lambda x: jnp.sin(3 * x), [(0.0, 2 * np.pi)], 20)
    x = np.asarray(prob.grid[0], np.float32)
    assert float(x[-1]) > 2 * np.pi
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "the solution may be inaccurate", RuntimeWarning)
        sol = bt.pde.solve(prob, steps=3, progress=False)
    assert np.all(np.isfinite(sol(x)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_call_nan_inf_refused(solution, bad):
    with pytest.raises(ValueError, match="NaN or inf"):
        solution(bad)


# --- 3. grid spanning the box --------------------------------------------------------------------


def test_grid_not_spanning_box_refused():
    prob = _hand_built(box=(0.0, 2.0), grid=jnp.linspace(0.0, 1.0, 20))
    with pytest.raises(ValueError, match=r"grid\[0\] must run from.*\(0.0, 2.0\)"):
        prob.validate()
    with pytest.raises(ValueError, match=r"grid\[0\]"):
        bt.pde.solve(prob, steps=2, progress=False)


def _edit_saved(path, out, edit):
    zin = zipfile.ZipFile(path)
    header = json.loads(zin.read("header.json"))
    arrays = dict(np.load(_io.BytesIO(zin.read("arrays.npz"))))
    edit(header)
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(out, "w") as z:
        for name in zin.namelist():
            if name == "header.json":
                z.writestr(name, json.dumps(header))
            elif name == "arrays.npz":
                z.writestr(name, buf.getvalue())
            else:
                z.writestr(name, zin.read(name))


def test_load_with_edited_box_refused(solution, tmp_path):
    path = solution.save(tmp_path / "s.bt")
    bt.load(path)  # the unedited file loads

    def widen(h):
        h["box"] = [[0.0, 2.0]]

    _edit_saved(path, tmp_path / "e.bt", widen)
    with pytest.raises(ValueError, match="box"):
        bt.load(tmp_path / "e.bt")


# --- 4. source_fn ---------------------------------------------------------------------------------


def test_source_fn_nan_refused():
    with pytest.raises(ValueError, match="source_fn is NaN or inf"):
        bt.pde.solve(_hand_built(source_fn=lambda x: jnp.nan * x), steps=2, progress=False)


def test_source_fn_wrong_shape_refused():
    with pytest.raises(ValueError, match=r"source_fn must be.*\(19,\).*got shape \(3,\)"):
        _hand_built(source_fn=lambda x: jnp.zeros(3)).validate()


def test_source_fn_raising_refused():
    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match="source_fn must be.*RuntimeError: boom"):
        _hand_built(source_fn=boom).validate()


def test_source_fn_constant_accepted():
    _hand_built(source_fn=lambda x: 0.0).validate()


# --- 5. exact_u and the operator in manufactured ------------------------------------------------


@pytest.mark.parametrize("exact", [lambda x: np.sin(x), lambda x: 1], ids=["numpy", "int"])
def test_manufactured_untraceable_exact_refused(exact):
    with pytest.raises(ValueError, match="exact_u must be a JAX-traceable real function"):
        Problem.manufactured(lap, exact, [(0.0, 1.0)], 10)


def test_manufactured_complex_operator_refused():
    with pytest.raises(ValueError, match="operator must return real numbers"):
        Problem.manufactured(lambda g: g["u_xx"] + 1j * g["u"], lambda x: x**2, [(0.0, 1.0)], 10)


# --- 6. small ones --------------------------------------------------------------------------------


def test_list_grid_accepted():
    x = np.linspace(0.0, 1.0, 10)
    prob = Problem(((0.0, 1.0),), (list(x),), lap, np.zeros(10), np.array([0.0, 1.0]), ("x",))
    checked = prob.validate()
    assert checked.shape == (10,)
    sol = bt.pde.solve(prob, steps=2, progress=False)
    assert sol.values.shape == (10,)


@pytest.mark.parametrize("factor", [-1, 0, 1.5, "2"])
def test_relative_l2_bad_factor_refused(solution, factor):
    with pytest.raises(ValueError, match="factor must be a positive int"):
        solution.relative_l2(factor)


def test_relative_l2_factor_one(solution):
    assert np.isfinite(solution.relative_l2(1))


def test_fit_mismatched_params_refused():
    p30 = Problem.manufactured(lap, lambda x: jnp.sin(x), [(0.0, 1.0)], 30)
    p40 = Problem.manufactured(lap, lambda x: jnp.sin(x), [(0.0, 1.0)], 40)
    config = bt.pde.GPHMConfig(n_steps=1)
    params, _ = bt.pde.fit(p30, config)
    with pytest.raises(ValueError, match=r"params must be.*\(40,\).*got.*\(30,\)"):
        bt.pde.fit(p40, config, params=params)
