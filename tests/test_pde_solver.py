"""GP-HM problems and solver: manufactured data, structured pieces vs dense, solves."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from conftest import TOL

import bayestensor as bt
from bayestensor.pde import solver
from bayestensor.pde.kernels import init_spectral_mixture, sm_kernel
from bayestensor.pde.problems import (
    Problem,
    allen_cahn,
    benchmark,
    boundary_mask,
    derivative_keys,
    laplacian,
    poisson_1d,
)

matplotlib.use("Agg")
STRUCT = TOL["pde_structured_vs_dense"]


def _exact_2d(x, y):
    return jnp.sin(x) * jnp.cos(2 * y)


def _problem_2d(grid=(5, 6), operator=laplacian):
    return Problem.manufactured(operator, _exact_2d, [(0.0, 1.0), (-0.5, 0.7)], grid)


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
    prob = _problem_2d(operator=allen_cahn)
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
        Problem.manufactured(laplacian, _exact_2d, [(0, 1), (0, 1)], (2, 5))


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


@pytest.mark.parametrize("spectrum", ["gaussian", "student_t"])
def test_kernel_matrices_toeplitz_match_dense(spectrum):
    config = solver.GPHMConfig(spectrum=spectrum)
    params = init_spectral_mixture(5, 3.0)
    uniform = jnp.linspace(-1.0, 2.0, 9)
    uneven = jnp.asarray(np.sort(np.random.default_rng(0).uniform(-1, 2, 7)))
    for x in (uniform, uneven):
        for n in range(3):
            ref = sm_kernel(params, x, x, spectrum, order=(n, 0))
            got = solver.kernel_matrix(params, x, config, n)
            np.testing.assert_allclose(got, ref, rtol=STRUCT, atol=STRUCT)
            mid = 0.5 * (x[1:] + x[:-1])
            ref_mid = sm_kernel(params, mid, x, spectrum, order=(n, 0))
            got_mid = solver._midpoint_kernel(params, x, config, n)
            np.testing.assert_allclose(got_mid, ref_mid, rtol=STRUCT, atol=STRUCT)


def _dense_pieces(prob, config, kernels):
    """Dense Gram matrices of a 2-D problem: K (jittered), and derivative maps K^{(i)} K⁻¹."""
    Ks = []
    for k, x in zip(kernels, prob.grid, strict=True):
        G = [np.asarray(sm_kernel(k, x, x, config.spectrum, order=(n, 0))) for n in range(3)]
        G[0] = G[0] + config.jitter * G[0][0, 0] * np.eye(len(x))
        Ks.append(G)
    (Kx, Kx1, Kx2), (Ky, Ky1, Ky2) = Ks
    K = np.kron(Kx, Ky)
    maps = {
        "u": np.eye(K.shape[0]),
        "u_x": np.kron(Kx1, Ky) @ np.linalg.inv(K),
        "u_xx": np.kron(Kx2, Ky) @ np.linalg.inv(K),
        "u_y": np.kron(Kx, Ky1) @ np.linalg.inv(K),
        "u_yy": np.kron(Kx, Ky2) @ np.linalg.inv(K),
    }
    return K, maps


def _random_kernels(prob, config, rng):
    base = solver.init_params(prob, config)
    return tuple(
        k._replace(freq=k.freq + 0.1 * rng.standard_normal(k.freq.shape)) for k in base.kernels
    )


@pytest.mark.parametrize("jit", [False, True])
def test_derivative_grids_and_loss_match_dense(jit, rng):
    config = solver.resolve_config(
        _problem_2d(),
        solver.GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-3, precision=30.0),
    )
    prob = _problem_2d(operator=lambda g: g["u_xx"] + 0.3 * g["u_y"] + g["u"] ** 3)
    kernels = _random_kernels(prob, config, rng)
    U = rng.standard_normal(prob.shape)
    K, maps = _dense_pieces(prob, config, kernels)
    dense = {k: M @ U.ravel() for k, M in maps.items()}
    lam_r, lam_b = solver.precisions(prob, config)
    residual = dense["u_xx"] + 0.3 * dense["u_y"] + U.ravel() ** 3 - np.asarray(prob.source).ravel()
    boundary = U.ravel()[boundary_mask(prob.shape).ravel()] - np.asarray(prob.boundary_values)
    expected = (
        0.5 * U.ravel() @ np.linalg.solve(K, U.ravel())
        + 0.5 * np.linalg.slogdet(K)[1]
        + 0.5 * lam_b * np.sum(boundary**2)
        + 0.5 * lam_r * np.sum(residual**2)
    )

    def structured(kernels, U):
        factors = solver.all_factors(kernels, prob, config)
        grids = solver.derivative_grids(U, factors, prob.variables)
        value = solver.loss(solver.GPHMParams(U, kernels), prob, config)
        return grids, value

    grids, value = (jax.jit(structured) if jit else structured)(kernels, U)
    for key, ref in dense.items():
        if key in ("u_x", "u_yy"):  # grids the operator does not read are not formed (zeros)
            np.testing.assert_array_equal(grids[key], 0.0)
            continue
        np.testing.assert_allclose(grids[key].ravel(), ref, rtol=STRUCT, atol=STRUCT, err_msg=key)
    np.testing.assert_allclose(value, expected, rtol=STRUCT)


def test_loss_gradient_matches_dense_autodiff(rng):
    # the hand-written reverse mode of K⁻¹U and log|K| against autodiff of dense kron algebra
    prob = _problem_2d(operator=lambda g: g["u_xx"] + 0.3 * g["u_y"] + g["u"] ** 3)
    config = solver.resolve_config(
        prob, solver.GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-3, precision=30.0)
    )
    kernels = _random_kernels(prob, config, rng)
    U = jnp.asarray(rng.standard_normal(prob.shape))
    lam_r, lam_b = solver.precisions(prob, config)
    mask = boundary_mask(prob.shape).ravel()

    def dense(kernels, U):
        mats = []
        for k, x in zip(kernels, prob.grid, strict=True):
            G = [sm_kernel(k, x, x, config.spectrum, order=(n, 0)) for n in range(3)]
            G[0] = G[0] + config.jitter * G[0][0, 0] * jnp.eye(len(x))
            mats.append(G)
        (Kx, _, Kx2), (Ky, Ky1, _) = mats
        K = jnp.kron(Kx, Ky)
        a = jnp.linalg.solve(K, U.ravel())
        r = (
            jnp.kron(Kx2, Ky) @ a
            + 0.3 * jnp.kron(Kx, Ky1) @ a
            + U.ravel() ** 3
            - prob.source.ravel()
        )
        b = U.ravel()[mask] - prob.boundary_values
        return (
            0.5 * U.ravel() @ a
            + 0.5 * jnp.linalg.slogdet(K)[1]
            + 0.5 * lam_b * b @ b
            + 0.5 * lam_r * r @ r
        )

    def structured(kernels, U):
        return solver.loss(solver.GPHMParams(U, kernels), prob, config)

    got = jax.grad(structured, argnums=(0, 1))(kernels, U)
    ref = jax.grad(dense, argnums=(0, 1))(kernels, U)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(g, r, rtol=STRUCT, atol=STRUCT * float(jnp.abs(r).max()))


@pytest.mark.parametrize("n", [7, 64, 150])
def test_blocked_triangular_solve_and_inverse(n, rng):
    L = np.tril(rng.standard_normal((n, n))) + n * np.eye(n)
    B = rng.standard_normal((n, 5))
    np.testing.assert_allclose(
        solver.triangular_solve(L, B), np.linalg.solve(L, B), rtol=TOL["triangular_vs_numpy"]
    )
    np.testing.assert_allclose(
        solver.triangular_solve(L, B, trans=True),
        np.linalg.solve(L.T, B),
        rtol=TOL["triangular_vs_numpy"],
    )
    W = np.asarray(solver.triangular_inverse(L))
    np.testing.assert_allclose(
        W, np.linalg.inv(L), rtol=TOL["triangular_vs_numpy"], atol=TOL["triangular_inverse_abs"]
    )
    assert np.all(np.triu(W, 1) == 0.0)


@pytest.mark.parametrize("lsq", ["auto", "qr"])
def test_dense_u_step_is_the_exact_minimiser(rng, lsq):
    # linear operator: U* = (K⁻¹ + λ_r DᵀD + λ_b BᵀB)⁻¹ (λ_r Dᵀf + λ_b Bᵀg), formed densely
    prob = _problem_2d(operator=lambda g: g["u_xx"] + g["u_yy"] - 2.0 * g["u_x"])
    config = solver.resolve_config(
        prob, solver.GPHMConfig(n_components=4, max_freq=2.0, jitter=1e-6, precision=1e3)
    )
    kernels = _random_kernels(prob, config, rng)
    K, maps = _dense_pieces(prob, config, kernels)
    A = maps["u_xx"] + maps["u_yy"] - 2.0 * maps["u_x"]
    B = np.eye(K.shape[0])[boundary_mask(prob.shape).ravel()]
    lam_r, lam_b = solver.precisions(prob, config)
    H = np.linalg.inv(K) + lam_r * A.T @ A + lam_b * B.T @ B
    rhs = lam_r * A.T @ np.asarray(prob.source).ravel() + lam_b * B.T @ prob.boundary_values
    U_ref = np.linalg.solve(H, rhs)
    factors = solver.all_factors(kernels, prob, config)
    U = solver.solve_grid(jnp.zeros(prob.shape), factors, prob, config, lsq=lsq)
    np.testing.assert_allclose(
        U.ravel(),
        U_ref,
        rtol=TOL["pde_u_step_vs_dense"],
        atol=TOL["pde_u_step_vs_dense"] * np.abs(U_ref).max(),
    )


def test_gauss_newton_reaches_a_stationary_point(rng):
    prob = _problem_2d((6, 6), operator=allen_cahn)
    config = solver.resolve_config(
        prob, solver.GPHMConfig(n_components=4, max_freq=1.0, precision=1e3)
    )
    kernels = solver.init_params(prob, config).kernels
    factors = solver.all_factors(kernels, prob, config)
    U = solver.solve_grid(jnp.zeros(prob.shape), factors, prob, config, n_iter=15, linear=False)

    def J(U):
        return sum(solver.loss_terms(U, factors, prob, config).values())

    grad = float(jnp.abs(jax.grad(J)(U)).max())
    # ∂𝒥/∂U at the result is 10⁻⁶ of its size at the start, and one GN step is not enough
    start = float(jnp.abs(jax.grad(J)(jnp.zeros(prob.shape))).max())
    one = solver.solve_grid(jnp.zeros(prob.shape), factors, prob, config, n_iter=1, linear=False)
    assert (
        grad < TOL["gauss_newton_grad_reduction"] * start < float(jnp.abs(jax.grad(J)(one)).max())
    )
    assert solver.is_linear(_problem_2d()) and not solver.is_linear(prob)


def test_kron_u_step_matches_dense_collocation(rng):
    # λ → ∞ limit: boundary exact and residual 0 at interior points, vs a dense square solve
    prob = _problem_2d((7, 8), operator=lambda g: g["u_xx"] + g["u_yy"] + 0.5 * g["u_y"])
    config = solver.resolve_config(
        prob, solver.GPHMConfig(n_components=5, max_freq=1.5, jitter=1e-8, method="kron")
    )
    assert config.method == "kron"
    kernels = solver.init_params(prob, config).kernels
    _, maps = _dense_pieces(prob, config, kernels)
    A = maps["u_xx"] + maps["u_yy"] + 0.5 * maps["u_y"]
    mask = boundary_mask(prob.shape).ravel()
    C = np.where(mask[:, None], np.eye(len(mask)), A)
    b = np.where(mask, 0.0, np.asarray(prob.source).ravel())
    b[mask] = prob.boundary_values
    U_ref = np.linalg.solve(C, b)
    factors = solver.all_factors(kernels, prob, config)
    U = jax.jit(lambda f: solver.solve_grid(jnp.zeros(prob.shape), f, prob, config))(factors)
    np.testing.assert_allclose(
        U.ravel(),
        U_ref,
        rtol=TOL["pde_kron_u_step_vs_dense"],
        atol=TOL["pde_kron_u_step_vs_dense"] * np.abs(U_ref).max(),
    )


def test_solve_low_frequency_poisson_1d(tol):
    prob = Problem.manufactured(laplacian, lambda x: jnp.sin(2 * jnp.pi * x), [(0.0, 1.0)], 64)
    sol = bt.pde.solve(prob, steps=5, patience=100)
    assert sol.relative_l2() < tol["pde_low_freq_rel_l2"]
    assert sol.trace.n_adam == 5 and len(sol.loss_history) == 6
    assert np.all(np.isfinite(sol.loss_history)) and np.all(np.isfinite(sol.residual_history))
    # the callable, the tensor-grid evaluation and the grid values agree
    x = np.array([0.0, 0.123, 0.5, 0.77])
    np.testing.assert_allclose(
        sol(x),
        sol.on_grid(x),
        rtol=tol["pde_callable_vs_on_grid"],
        atol=tol["pde_callable_vs_on_grid"],
    )
    # grid values and the mean there (K (K + εI)⁻¹ U) both approximate the exact solution
    u_grid = np.sin(2 * np.pi * sol.grid[0])
    np.testing.assert_allclose(sol(sol.grid[0]), u_grid, atol=tol["pde_low_freq_rel_l2"])
    np.testing.assert_allclose(sol.values, u_grid, atol=10 * tol["pde_low_freq_rel_l2"])
    np.testing.assert_allclose(sol(x), np.sin(2 * np.pi * x), atol=tol["pde_pointwise_abs"])


def test_solve_low_frequency_poisson_1d_student_t(tol):
    # Matérn-5/2 × cosine mixture; with components as wide as the Gaussian default the error
    # was 0.17, the narrow initial scale (STUDENT_T_INIT_SCALE) gives ~1e-5
    prob = Problem.manufactured(laplacian, lambda x: jnp.sin(2 * jnp.pi * x), [(0.0, 1.0)], 64)
    sol = bt.pde.solve(prob, kernel="student-t", steps=5, patience=100)
    assert sol.config.spectrum == "student_t"
    assert sol.relative_l2() < tol["pde_low_freq_rel_l2"]


@pytest.mark.parametrize("method", ["dense", "kron"])
def test_solve_low_frequency_poisson_2d(method, tol, tmp_path):
    def exact(x, y):
        return jnp.sin(jnp.pi * x) * jnp.cos(1.5 * y) + 0.5 * x * y

    # the dense U-step minimises the full objective; the kron U-step is its λ → ∞ limit
    # (exact boundary, zero interior residual), less accurate on coarse grids
    grid, bound = {
        "dense": ((20, 22), tol["pde_low_freq_rel_l2"]),
        "kron": ((36, 40), tol["pde_kron_low_freq_rel_l2"]),
    }[method]
    prob = Problem.manufactured(laplacian, exact, [(0.0, 1.0), (-1.0, 1.0)], grid)
    sol = bt.pde.solve(prob, steps=2, method=method, max_freq=1.5)
    assert sol.config.method == method
    assert sol.relative_l2() < bound
    x, y = np.array([0.3, 0.9]), np.array([-0.2, 0.6])
    np.testing.assert_allclose(sol(x, y), np.asarray(jax.vmap(exact)(x, y)), atol=10 * bound)
    fig = sol.plot(tmp_path / "sol.png")
    assert (tmp_path / "sol.png").stat().st_size > 0
    matplotlib.pyplot.close(fig)


def test_lbfgs_polish_lowers_the_loss():
    prob = Problem.manufactured(laplacian, lambda x: jnp.sin(2 * jnp.pi * x), [(0, 1)], 48)
    sol = bt.pde.solve(prob, steps=3, lbfgs_steps=4, max_freq=3.0, patience=100)
    losses = sol.loss_history
    assert len(losses) == 1 + 3 + 4
    assert losses[-1] < losses[3]  # L-BFGS steps after the last Adam step lowered 𝒥


def test_solve_runs_in_float32(tol):
    # float32: jitter and precision are capped by the dtype's eps; accuracy is limited
    with jax.enable_x64(False):
        prob = Problem.manufactured(laplacian, lambda x: jnp.sin(2 * jnp.pi * x), [(0, 1)], 64)
        sol = bt.pde.solve(prob, steps=3, max_freq=3.0)
        assert sol.values.dtype == np.float32
        assert np.all(np.isfinite(sol.loss_history))
        assert sol.relative_l2() < tol["pde_float32_rel_l2"]


def test_early_stopping_needs_no_exact_solution():
    prob = Problem.manufactured(laplacian, lambda x: jnp.sin(3 * x), [(0.0, 2.0)], 40)
    blind = prob._replace(exact=None)
    sol = bt.pde.solve(blind, steps=40, patience=5)
    best = sol.trace.best_step
    assert sol.residual_history[best] == sol.residual_history.min()
    assert sol.trace.n_adam <= 40
    x = np.linspace(0, 2, 9)
    np.testing.assert_allclose(sol(x), np.sin(3 * x), atol=TOL["pde_pointwise_abs"])
    with pytest.raises(ValueError, match="no exact solution"):
        sol.relative_l2()


def test_invalid_arguments_raise():
    prob = poisson_1d(grid=20)
    with pytest.raises(ValueError, match="kernel must be one of"):
        bt.pde.solve(prob, kernel="cauchy")
    with pytest.raises(ValueError, match="method must be"):
        bt.pde.solve(prob, method="lu")
    with pytest.raises(ValueError, match="max_freq must be positive"):
        bt.pde.solve(prob, max_freq=-1.0)
    with pytest.raises(ValueError, match="manufactured problems only"):
        bt.pde.solve(prob._replace(exact=None), grid=30)
    with pytest.raises(ValueError, match="problem must be"):
        bt.pde.solve("poisson")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in bt.pde.BENCHMARKS if "_1d_" in n])
def test_benchmark_1d_problems(name, tol):
    sol = bt.pde.solve(benchmark(name), steps=30)
    assert sol.relative_l2() <= tol["pde_benchmark_1d_rel_l2"]


@pytest.mark.slow
def test_benchmark_allen_cahn_2d(tol):
    # nonlinear 2-D: the dense solver (GP prior kept) on the benchmark's 50 × 50 grid
    sol = bt.pde.solve(benchmark("allen_cahn_2d"), steps=0)
    assert sol.config.method == "dense"
    assert sol.relative_l2() <= tol["pde_benchmark_2d_rel_l2"]


def test_kron_warns_for_a_nonlinear_operator():
    prob = _problem_2d((6, 6), operator=allen_cahn)
    with pytest.warns(RuntimeWarning, match="drops the GP prior"):
        bt.pde.solve(prob, steps=0, method="kron", n_components=4, max_freq=1.0)
