"""Shared test configuration: float64, fixed seeds, and every tolerance in one place.

The suite runs in float64 (``jax_enable_x64`` on). ``BAYESTENSOR_TEST_X64=0`` runs it as users
run the library, with JAX's default float32 (``nox -s tests_f32``). A plain ``pytest`` (what CI
runs) does both: the float64 run, then the tests not marked ``x64`` with x64 off
(``tests/float32_pass.py``; ``--no-float32-pass`` for the first alone).
"""

import os

# Not the user's persistent compilation cache (it would write into their home): the run's own
# temporary one instead (float32_pass.shared_compile_cache, below). The cache itself is tested in
# tests/test_cache.py, in subprocesses with a temporary folder.
os.environ.setdefault("BAYESTENSOR_COMPILE_CACHE", "0")

# XLA's CPU backend without its expensive LLVM passes: the suite's time is mostly compiling
# small programs, and -O0 code gives the same numbers to round-off (measured: test_ssm.py and
# test_update.py 144 -> 105 s, the PDE estimator and reliability tests 68 -> 54 s). A flag the
# caller set is kept. Tests that start their own processes with their own XLA_FLAGS (forced
# host devices) compile as users do.
for _flag in ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

import jax  # noqa: E402

#: Whether this run has JAX's 64-bit mode on (the default; ``BAYESTENSOR_TEST_X64=0`` turns it off).
X64 = os.environ.get("BAYESTENSOR_TEST_X64", "1") != "0"
jax.config.update("jax_enable_x64", X64)

import float32_pass  # noqa: E402 (tests/ is on the path: pytest's rootdir-relative imports)

# one persistent compilation cache for the run's processes, float64 and float32 runs alike
# (made by the pytest controller in pytest_configure, handed down through the environment)
float32_pass.shared_compile_cache(jax)

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

#: Tolerances used across the test suite (float64 unless named otherwise).
TOL = {
    # HOSVD truncation of a Tucker posterior vs dense SVD projection (relative to max |f|)
    "ard_truncation": 1e-8,
    # the standard library's normal quantile against scipy.stats (relative)
    "normal_quantile": 1e-12,
    # the local residual process after update() (its state-space posterior) vs a dense GP mean
    "local_dense": 1e-8,
    # the GP on the values rescaled from a fit in other units vs fitted again there: L-BFGS-B
    # stops elsewhere in other units (its rule is relative to the likelihood, which shifts by
    # n log c): hyperparameters (relative), leave-one-out error (relative), nats per row
    "gp_refit_hyper": 0.1,
    "gp_refit_loo": 0.01,
    "gp_refit_nll_per_row": 0.01,
    # the GP on the values rescaled vs the first fit in the new units: the same numbers times
    # c² (hyperparameters, relative) and the same kriging in the value's units (relative)
    "gp_rescaled_exact": 1e-12,
    "gp_rescaled_kriging": 1e-10,
    # --- exact algebra: structured / closed-form results vs explicit references (float64) ---
    # fixed-seed outputs through the public API vs tests/fixtures/behaviour.npz (relative)
    "behaviour_rel": 1e-6,
    # a fit on 2 or 4 host devices (rows sharded) vs the one-device fit: the same sums in another
    # order, relative to the largest entry (predictions, factor means, noise, CAVI parameters)
    "sharded_vs_single": 1e-8,
    # a fit padded with zero-mask rows (sharding.padded_rows) vs the plain fit: the same sums
    # with zeros added, relative to the largest entry (predictions)
    "padded_vs_plain": 1e-8,
    # a fit encoded on a wider grid (distributed.on_modes: coordinates no row has) vs on its
    # own: the same posterior at the fixed point, reached slowly along Tucker's scale ridge
    # (relative to the largest prediction, the test's problem: 2.0e-4 at the default tol, and
    # at tol 1e-12 1.7e-4 after 100 sweeps, 3.2e-5 after 2,000)
    "on_modes_vs_own": 1e-3,
    # a local process padded to other rows' shapes (padded_local) vs the plain fit: the same
    # likelihood with zero terms added, L-BFGS-B's path moved by rounding only (hyperparameters,
    # likelihood and predictions, relative; 1e-13 measured on the test's fibre GP)
    "padded_local_vs_plain": 1e-10,
    # bt.fit of the same rows in another order: one canonical order, the same arithmetic
    "row_order": 1e-12,
    # a fit with a coordinate on the log scale vs the fit of the column logged beforehand: the
    # same coordinates (np.log of the same floats), the same arithmetic
    "log_scale_vs_prelogged": 1e-12,
    # the neighbour GP fitted to residuals changed by 1e-15 (relative) on gridded data: its
    # hyperparameters (absolute, log scale) and predictions (relative to the residuals' sd);
    # the round-off of the likelihood and kriging, amplified by nothing
    "neighbour_perturbed": 1e-9,
    # a FunBaT sweep with its Tucker sums through the grid of unique coordinates vs row by row:
    # the same sums in another order, relative to the largest entry
    "grid_vs_rows": 1e-8,
    # ... the same with the fit in float32 (FunBaT(dtype="float32"))
    "grid_vs_rows_f32": 1e-4,
    # FunBaT's blocked prediction (unique coordinates, padded row blocks) vs row by row
    "predict_blocked_vs_rows": 1e-10,
    # Poisson Tucker rates predicted in chunks of another size (relative; float32 in its pass)
    "poisson_chunks": 1e-6,
    # a fit of y·scale + shift vs the fit of y, in units of y (z-scoring makes them one fit)
    "rescaled_fit_vs_unit": 1e-6,
    # float32 fit of y + 1e8 (noise sd 0.1): training RMSE and predictive sd bound
    "float32_offset_rmse": 0.2,
    # jnp tensor operations (unfold, mode_dot, Tucker, Khatri–Rao) vs NumPy definitions
    "tensor_vs_numpy": 1e-12,
    # Kronecker solve / logdet / quad / mode-wise prediction vs the dense product (relative)
    "kron_vs_dense": 1e-10,
    # kron_predict vs the dense product: absolute floor for entries near 0 (derivative kernels)
    "kron_vs_dense_abs": 1e-12,
    # Kronecker-sum solve by (complex) eigendecompositions of nonsymmetric terms vs dense solve
    "kron_sum_vs_dense": 1e-8,
    # gradients through kron_eig (eigh) vs gradients of dense slogdet + solve (relative)
    "kron_grad_vs_dense": 1e-8,
    # a FunBaT fit run through its exported (serialized, reloaded) programs vs plain jax.jit:
    # the same StableHLO compiled twice (relative)
    "exported_vs_jit": 1e-12,
    # blocked triangular solve / inverse vs np.linalg.solve / inv (relative)
    "triangular_vs_numpy": 1e-12,
    # blocked triangular inverse vs np.linalg.inv: absolute floor for the zero upper part
    "triangular_inverse_abs": 1e-15,
    # closed-form kernel pieces vs scipy (expm, Lyapunov) and k(tau)
    "closed_form": 1e-10,
    # relative part of the same: Pinf vs scipy's Lyapunov solve, k(τ) (SDE, ours, GPJax) vs Bessel
    "closed_form_rel": 1e-9,
    # process noise Q = Pinf − A Pinf Aᵀ vs the same from scipy's expm (relative)
    "process_noise_vs_expm": 1e-8,
    # Q(Δ) at Δ = 1e-9 vs its first-order expansion Δ L Qc Lᵀ (relative)
    "small_gap_first_order": 1e-5,
    # the same comparison, absolute part per unit kernel variance
    "small_gap_abs_per_var": 1e-12,
    # periodic kernel truncated after 7 harmonics vs the exact kernel, max |error| / σ², for
    # ℓ ≥ 0.7 and for ℓ = 0.5 (the lower end of FunBaT's search)
    "periodic_truncation_ell07": 1e-5,
    "periodic_truncation_ell05": 5e-4,
    # jax.grad of the transition vs central finite differences, h = 1e-6 (relative)
    "grad_vs_finite_diff": 1e-6,
    # state-space posterior vs dense Cholesky GP (relative)
    "ssm_vs_dense": 1e-8,
    # state-space posterior mean vs dense Cholesky GP: absolute floor for entries near 0
    "ssm_vs_dense_abs": 1e-10,
    # gradients of the log marginal likelihood vs dense (relative)
    "grad_vs_dense": 1e-6,
    # smoother with no messages vs the prior: mean and log marginal vs exact 0 (absolute)
    "ssm_prior_abs": 1e-14,
    # smoother with no messages vs the prior: covariance vs the stationary variance (relative)
    "ssm_prior_cov": 1e-12,
    # fit_gp: stored standardisation (y_mean, y_scale) vs NumPy's mean and std (relative)
    "standardisation": 1e-12,
    # predict(): interval half-widths vs z · sd, in the same float64 numbers (relative)
    "interval_halfwidth": 1e-12,
    # predict(): sd² − f_sd² vs the fitted noise variance (relative)
    "predict_noise_var": 1e-9,
    # CLI predictions read back from CSV: interval half-width vs z (7 digits) · sd (relative)
    "csv_interval_halfwidth": 1e-4,
    # CLI predict (CSV round trip) vs the Python API's predictions (relative)
    "cli_vs_api": 1e-6,
    # additive baseline (backfitting) vs dummy-variable least squares: mean (abs.), sd (rel.)
    "backfitting_vs_lstsq": 1e-8,
    # FunBaT: closed-form contractions / core update vs explicit Kronecker references
    "funbat_closed_form": 1e-10,
    # Poisson Tucker: closed forms (total rate, exposures, sequential shared rows, the
    # collapsed bound's data term) vs dense
    "poisson_closed_form": 1e-10,
    # Poisson Tucker: component-mass draws sum to 1 per draw (relative)
    "mass_normalised": 1e-10,
    # Poisson API: held-out log-likelihood vs a direct scipy.stats.poisson sum (relative)
    "heldout_loglik_vs_scipy": 1e-8,
    # --- GP-HM PDE solver ---
    # GP-HM: closed-form derivative kernels vs nested jax.grad (relative to max |k|)
    "pde_deriv_vs_autodiff": 1e-10,
    # GP-HM: parameter gradients of derivative kernels vs autodiff: absolute floor near 0
    "pde_deriv_vs_autodiff_abs": 1e-12,
    # spectral-mixture k(0) vs Σ w, K vs Kᵀ, k(x, y) vs k(y, x)ᵀ (relative)
    "pde_kernel_symmetry": 1e-14,
    # K vs Kᵀ: absolute floor for entries near 0
    "pde_kernel_symmetry_abs": 1e-15,
    # derivative kernels k^{(i,j)}(x, y) vs k^{(j,i)}(y, x)ᵀ (relative and absolute)
    "pde_deriv_symmetry": 1e-12,
    # spectral-mixture kernel and its spectral moments vs numerical quadrature (relative)
    "pde_kernel_vs_quadrature": 1e-7,
    # Gram matrices: min eigenvalue ≥ −slack · trace
    "pde_gram_psd_slack": 1e-10,
    # spectral densities (ours and the scalar reference) vs scipy.stats (relative)
    "pde_spectrum_vs_scipy": 1e-12,
    # init_spectral_mixture parameters vs their defining formulas (relative)
    "pde_init_params": 1e-14,
    # problem grid vs np.linspace (relative)
    "pde_grid": 1e-14,
    # manufactured source (autodiff) vs the analytic source (relative)
    "pde_source_vs_analytic": 1e-10,
    # the same comparison, absolute floor for entries near 0
    "pde_source_vs_analytic_abs": 1e-12,
    # manufactured source of an exact solution of a homogeneous PDE vs 0 (absolute)
    "pde_zero_source_abs": 1e-10,
    # source_fn at the grid points vs the stored source grid (relative and absolute)
    "pde_source_fn_vs_grid": 1e-12,
    # boundary values and exact_on_grid vs the exact solution evaluated by NumPy (absolute)
    "pde_exact_values_abs": 1e-14,
    # GP-HM PDE solver: structured (Kronecker / Toeplitz / whitened) pieces vs dense (relative)
    "pde_structured_vs_dense": 1e-9,
    # dense U-step vs the exact minimiser formed densely (relative; absolute · max |U|)
    "pde_u_step_vs_dense": 1e-7,
    # Kronecker U-step vs the dense collocation solve (relative; absolute · max |U|)
    "pde_kron_u_step_vs_dense": 1e-6,
    # Kronecker Gauss–Newton (CG on the normal equations, cg_tol 1e-13) vs the dense QR step
    "pde_kron_gn_vs_dense": 1e-7,
    # Gauss–Newton: max |∂𝒥/∂U| at the result vs at the start (factor)
    "gauss_newton_grad_reduction": 1e-6,
    # solution callable vs its tensor-grid evaluation on_grid (relative and absolute)
    "pde_callable_vs_on_grid": 1e-12,
    # GP-HM: relative L2 of the low-frequency 1-D and 2-D Poisson solves (issue 5)
    "pde_low_freq_rel_l2": 1e-4,
    # GP-HM: the same 2-D solve with the Kronecker (λ → ∞ collocation) U-step
    "pde_kron_low_freq_rel_l2": 2e-3,
    # GP-HM: solution callable at off-grid points vs the exact solution, 1-D solves (absolute)
    "pde_pointwise_abs": 1e-4,
    # GP-HM: the low-frequency 1-D solve in float32
    "pde_float32_rel_l2": 2e-2,
    # GP-HM reliability check: estimated relative error vs the true one (factor either way)
    "pde_estimate_factor": 3.0,
    # GP-HM: a solve the reliability check must flag has a true relative L2 error above this
    "pde_untrustworthy_rel_l2": 1e-2,
    # the reliability check's error solve (upwind where transport dominates, first order) vs a
    # known error on a 63 × 81 grid (relative L2; central differences gave 1e11)
    "upwind_error_solve": 0.1,
    # three-point finite differences on a non-uniform grid vs exact derivatives of a quadratic
    "fd_vs_exact": 1e-9,
    # fourth-order finite differences on a non-uniform grid vs exact derivatives of a quartic
    "fd4_vs_exact": 1e-8,
    # distance to the other solution of Bratu's problem found by deflated Newton vs the closed
    # form (relative; fourth-order differences on 101-201 points)
    "fd4_branch_distance": 1e-3,
    # GP-HM: relative L2 of every 1-D benchmark problem (slow test, issue 5)
    "pde_benchmark_1d_rel_l2": 1e-3,
    # issue 5: every 2-D benchmark problem reaches relative L2 ≤ 1e-2
    "pde_benchmark_2d_rel_l2": 1e-2,
    # --- float32 vs float64 ---
    # float32 filter vs float64 filter, as a fraction of max |mean|
    "float32_vs_float64": 1e-3,
    # FunBaT float32 fit: RMSE of the predicted mean vs the noiseless truth (noise sd 0.05)
    "float32_fit_rmse": 0.05,
    # --- Monte Carlo checks ---
    # FunBaT: Monte Carlo check, allowed deviation in Monte Carlo standard errors
    "mc_sigmas": 5.0,
    # Monte Carlo mean vs exact: absolute slack on the standard error and on the bound
    # (components with zero variance)
    "mc_abs_slack": 1e-12,
    # the same for the Poisson allocation counts (integer-valued draws)
    "mc_alloc_abs_slack": 1e-9,
    # gamma draws vs scipy's gamma law: Kolmogorov–Smirnov p-value must exceed this
    "kstest_pvalue": 1e-3,
    # Poisson Tucker: Gibbs vs NUTS posterior mean rates, max |difference| in Monte Carlo sds
    "poisson_vs_nuts_max_z": 5.0,
    # --- optimisation ---
    # learned hyperparameters vs the dense GP's type-II maximum likelihood (relative)
    "type2_ml": 1e-4,
    # fit_gp: max |∇ dense log evidence| at the fitted hyperparameters (stationary point)
    "dense_evidence_stationary": 1e-2,
    # CAVI: allowed decrease of the ELBO between iterations, relative (rounding only)
    "poisson_elbo_slack": 1e-10,
    # CAVI through the public API (with a mask): allowed ELBO decrease, relative
    "poisson_api_elbo_slack": 1e-9,
    # FunBaT: training RMSE at the last sweep vs the first (factor)
    "train_rmse_decrease": 0.5,
    # FunBaT: a learned lengthscale vs its initial value (factor it must exceed)
    "hyper_learned_factor": 1.5,
    # FunBaT: a learned lengthscale vs its initial value 0.1 (|difference| it must exceed)
    "hyper_learned_abs": 0.05,
    # --- statistical accuracy of fits ---
    # FunBaT, seasonal months × sites: held-out RMSE of f with a (quasi-)periodic month kernel
    # vs the Matérn-3/2 one (factor; measured 0.43 periodic, 0.56 quasi-periodic)
    "seasonal_rmse_vs_matern": 0.75,
    # FunBaT: noiseless rank-1 pattern, held-out RMSE bound
    "noiseless_rmse": 1e-2,
    # FunBaT: noisy fits, held-out RMSE of y within this factor of the noise sd
    "noisy_rmse_factor": 1.1,
    # FunBaT: learned noise sd vs the true noise sd (relative)
    "noise_sd_rel": 0.1,
    # FunBaT: median sd of f vs the noise sd (factor)
    "f_sd_vs_noise": 0.5,
    # FunBaT mixed modes: each category's predicted curve vs its planted curve, correlation
    "curve_corr": 0.99,
    # the same curves: RMSE vs the noise sd (factor)
    "curve_rmse_factor": 0.5,
    # 95 % predictive intervals of y must cover this fraction of held-out points
    "coverage95": (0.90, 0.98),
    # 95 % bands of the latent f (mean-field posteriors are slightly overconfident)
    "f_coverage95": (0.80, 1.0),
    # FunBaT single-mode fit vs dense GP regression (converged sweeps, absolute, O(1) values)
    "funbat_vs_dense_gp": 1e-8,
    # posterior mean of f vs NUTS, as a fraction of the range of f
    "vs_nuts": 0.02,
    # bt.fit: in-sample RMSE vs the noise sd 0.05 (factor)
    "api_rmse_noise_sds": 3,
    # CLI predictions: max |mean − noiseless truth| (noise sd 0.05)
    "cli_max_abs_error": 0.1,
    # demo --tiny: FunBaT's held-out RMSE vs the location + month baseline's (factor)
    "demo_rmse_vs_baseline": 0.8,
    # floats written to CSV by one pandas and parsed by another (pandas 2.2 parses the last
    # digit differently in one value of 1 155: 2.8e-13 relative)
    "csv_float_rel": 1e-12,
    # a figure printed with 3 decimals vs the same figure computed independently
    "printed_3_decimals": 6e-4,
    # demo --tiny: coverage of FunBaT's 95 % intervals on the held-out ozone cells
    "demo_coverage95": (0.88, 0.99),
    # README quick start: held-out ozone RMSE bound (Dobson units)
    "readme_rmse": 8.0,
    # split(): held-out fraction vs the requested 0.2 (absolute, 10 000 rows)
    "split_fraction_abs": 0.015,
    # Poisson API: posterior mean rates vs true rates, correlation
    "poisson_rate_corr": 0.9,
    # Poisson API: total posterior mean rate vs the true total (relative)
    "poisson_total_rel": 0.1,
    # Poisson API: fraction of true rates inside the posterior intervals (lower bound)
    "poisson_interval_coverage_min": 0.7,
    # Poisson API VI: held-out log-likelihood per cell vs the true rates' (nats below)
    "heldout_ll_vs_truth": 1.5,
    # Poisson shrinkage: core mass on the top 8 components (lower bound)
    "shrinkage_top8_mass": 0.95,
    # a fit on datetime columns vs the same fit on float hours, in units of the data's sd
    "time_vs_float_fit": 1e-6,
    # a fit on an xarray DataArray with NaN cells vs the equivalent DataFrame (units of sd)
    "xarray_vs_frame": 1e-10,
    # --- data sets ---
    # weather: time in days × 24 vs whole hours (absolute)
    "dataset_time_hourly": 1e-4,
    # weather: time in days vs an exact expected time (assertion and row selection, absolute)
    "dataset_time_match": 1e-6,
    # component shares from Gram matrices vs the energies of the dense parts f^(k,r) (relative)
    "shares_vs_dense": 1e-10,
    # plot_prediction_map's panels (predict on a mesh) vs predict_grid's variables (relative)
    "map_vs_predict_grid": 1e-9,
    # rank="auto" (ARD) on planted low-rank tensors with 5 % noise: the weakest kept direction
    # or component holds more than this share of the fit, every dropped one less (measured:
    # kept ≥ 0.047, dropped ≤ 3e-8 Tucker, ≤ 1e-60 CP), and the pruned fit's RMSE against the
    # noiseless truth stays below this fraction of its sd (the noise is 0.05)
    "ard_kept_share": 1e-2,
    "ard_dropped_share": 1e-5,
    "ard_planted_rmse": 0.05,
    # FitResult.update with rows at fitted coordinates vs the fit's sweep continued on the
    # combined rows from the fitted state (the same sums in the same order; relative)
    "update_vs_continued": 1e-10,
    # FunBaT on rows in parts: blocked sweeps vs the in-memory sweeps (the same sums in another
    # order; relative to the largest entry; measured 6e-15 Tucker, 1.5e-14 CP), and the fit's
    # RMSE against the noiseless function (noise sd 0.05; measured 0.0084 from parts and
    # 0.0082 with a 400-row warm-start sample, the in-memory fit 0.0084)
    "blocked_vs_in_memory": 1e-10,
    "blocked_truth_rmse": 0.02,
    # the last update sweep's recorded RMSE over the new rows vs predict() there (relative)
    "update_history_rmse": 1e-8,
    # update with scope="new": a new category's posterior vs the closed form N(0, I) × its rows'
    # messages (numpy), relative to the largest entry
    "update_new_rows_closed_form": 1e-10,
    # update with one new day beyond the fitted times: RMSE of f there vs before (factor it
    # must be below; measured 0.29)
    "update_new_times_gain": 0.5,
    # update at a new category: RMSE of f at its rows vs the noise sd 0.05 (factor; measured
    # 0.36)
    "update_new_category_rmse": 1.0,
    # update run to convergence vs a fresh fit of the combined rows: predicted f, in units of
    # the data's sd (slow test; measured 5.0e-3 with scope="all"); scope="new" holds the old
    # rows' messages, core, noise and hyperparameters (measured 1.0e-2)
    "update_vs_refit_all": 1e-2,
    "update_vs_refit_new": 5e-2,
    # mean of 16 draws of the learned CP weight (to_inference_data) vs its posterior mean
    # (relative; the weight's posterior sd is far below its mean on these data)
    "ard_weight_draws_mean": 0.5,
}


#: In the float32 pass (``BAYESTENSOR_TEST_X64=0``), tolerances tighter than this — the checks of
#: algebra against float64 references — are raised to it: float32 round-off (eps 1.2e-7)
#: accumulated over a solve or a contraction. Tests whose reference itself needs float64 (a
#: dense GP by Cholesky, finite differences, a float64 fixture) carry the ``x64`` marker instead
#: and run with 64-bit scoped on in both passes, as the library's own solvers do.
F32_FLOOR = 1e-4
if not X64:
    TOL = {k: max(v, F32_FLOOR) if isinstance(v, float) else v for k, v in TOL.items()}


def count_frame(y: np.ndarray, columns: list[str], value: str) -> pd.DataFrame:
    """Nonzero cells of a count array as a long frame; the first two modes get string labels."""
    idx = np.argwhere(y > 0)
    data = {
        c: [f"{c}{v}" for v in idx[:, k]] if k < 2 else idx[:, k] for k, c in enumerate(columns)
    }
    data[value] = y[y > 0]
    return pd.DataFrame(data)


def _glibc():
    """glibc (for ``malloc_trim``), or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled():
    """Drop JAX's compiled-function caches after every test module: the suite compiles for
    hundreds of shapes, and nothing compiled for one module is needed by the next."""
    yield
    jax.clear_caches()
    gc.collect()
    if _LIBC is not None:  # hand freed heap pages back to the OS: two test processes share 6 GB
        _LIBC.malloc_trim(0)


@pytest.fixture(autouse=True)
def _x64_marked(request):
    """Tests marked ``x64`` (float64 references) run with 64-bit scoped on in the float32 pass."""
    if X64 or request.node.get_closest_marker("x64") is None:
        yield
    else:
        with jax.enable_x64(True):
            yield


def pytest_addoption(parser):
    float32_pass.addoption(parser)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        float32_pass.shared_compile_cache(jax, create=True)


@pytest.hookimpl(trylast=True)  # after xdist's own, which stops the worker processes
def pytest_sessionfinish(session, exitstatus):
    float32_pass.run(session, X64)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    float32_pass.summary(terminalreporter, config)


def pytest_unconfigure(config):
    float32_pass.cleanup(config)


@pytest.fixture
def tol():
    """Tolerances dictionary (see ``TOL``)."""
    return TOL


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    """A JAX PRNG key with a fixed seed."""
    return jax.random.key(0)
