"""The FunBaT estimator: z-scoring, settings, the sweep loop (through the shared driver) and
prediction in the data's units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor import distributed
from bayestensor._export import CachedJit
from bayestensor.checks import (
    CONTINUOUS,
    cap_ranks,
    check_bool,
    check_int,
    check_nonnegative,
    check_positive,
    check_ranks,
    check_seed,
    is_int,
)
from bayestensor.data import Encoded, NewEncoded
from bayestensor.driver import DTYPES, Step, bound_compiled, iterate, precision
from bayestensor.models.funbat.ard import auto_ranks, check_rank_option, prune_fit
from bayestensor.models.funbat.inference import (
    factor_marginals,
    initial_state,
    row_moments,
    spectral_init,
    sweep,
)
from bayestensor.models.funbat.options import (
    AUTO_KERNEL,
    DEFAULT_KERNEL,
    PERIODIC_KERNELS,
    InterceptSteps,
    Stopping,
    check_kernel_option,
    check_period_option,
    mode_periods,
)
from bayestensor.models.funbat.padded import fit_ranks, padded_means, unpadded
from bayestensor.models.funbat.select import SELECT_SWEEPS, choose_kernels
from bayestensor.models.funbat.select import START as SELECT_START
from bayestensor.models.funbat.state import MODELS, FunBaTConfig, auto_chunk
from bayestensor.sharding import placed_rows, resolve_devices
from bayestensor.ssm import (
    Location,
    gaps,
    locate,
)

#: Constructor arguments of :class:`FunBaT` (saved with a fitted model).
ESTIMATOR_PARAMS = (
    "model rank kernel max_sweeps tol damping seed learn_hyper init init_scale init_cov_scale "
    "init_noise_sd lengthscale variance lengthscale_fraction hyper_steps hyper_step a0 b0 chunk "
    "dtype period max_rank intercept"
).split()


class FunBaT:
    """Functional Bayesian Tucker (or CP) decomposition fitted by conditional EP sweeps.

    Parameters
    ----------
    model : {"tucker", "cp"}
        Learned Gaussian core (Tucker) or fixed superdiagonal core (CP).
    rank : int, tuple of int or "auto"
        ``R`` for every mode, or ``(R_1, …, R_K)`` (Tucker only; CP needs equal ranks), or
        ``"auto"`` (default): learned by ARD, unused components pruned (:mod:`~.funbat.ard`).
    max_rank : int or tuple of int, optional
        Upper bound(s) for ``rank="auto"`` (default :func:`~.funbat.ard.auto_ranks`).
    kernel : str or dict
        Prior of the latent functions of the continuous modes: ``"matern12"``, ``"matern32"``,
        ``"matern52"`` (Matérn ν = 1/2, 3/2, 5/2), ``"periodic"`` (``σ² exp(−2 sin²(π τ/p)/ℓ²)``,
        its Fourier series truncated after 7 harmonics; ℓ is then relative to the period) or
        ``"quasiperiodic"`` (periodic × Matérn-3/2 envelope: a cycle whose shape drifts) — one
        name for every continuous mode, or ``{column: name}`` (continuous modes not named get
        ``"matern32"``). ``"auto"`` (as the name or a dict value): the Matérn smoothness chosen
        per mode by the evidence of its messages after the first sweeps
        (:mod:`~bayestensor.models.funbat.select`; scores in ``kernel_scores_``). See
        :mod:`bayestensor.kernels`.
    period : float or dict, optional
        Period of the (quasi-)periodic modes, in the coordinate's units: one value for all of
        them, or ``{column: value}``. A given period is kept fixed. A period not given starts
        at the mode's coordinate range plus its median spacing — the period of a regular grid
        that covers one cycle (months 1–12 → 12) — and is learned by the hyperparameter search,
        locally (at most 10 % per sweep): give it when the data span several cycles.
    max_sweeps : int
        Cap on the number of sweeps.
    tol : float
        Stop when the fitted values move by less than ``tol`` noise standard deviations
        between sweeps: ``RMS(E[f]_new − E[f]_old) · E[τ]^{1/2} < tol`` on the training rows
        (scale-free; moves far below the noise level do not change predictions). Noiseless
        data make ``E[τ]`` large, so such fits run longer, as they should. A sweep in which
        the hyperparameter search took a step does not count (at most
        :data:`~.options.MAX_SEARCH_SWEEPS` times: a step changes what the next sweeps converge to).
    intercept : bool
        Learn a constant ``b`` beside the low-rank part, ``y = b + f + ε`` (flat prior; updated
        after every sweep by :class:`~.options.InterceptSteps`; fixed by ``update``). ``False``:
        the values centred at their mean (a rank-R tensor with a nonzero mean needs rank R+1).
    damping : float
        ρ ∈ (0, 1]: weight of the new messages (1, the default, is no damping; lower it if
        sweeps oscillate).
    seed : int
        Seeds the random initial factor and core means.
    learn_hyper : bool
        Learn ℓ_k, σ²_k (pattern search on the log marginal of the messages) or keep their
        initial values.
    init : {"spectral", "random"}
        Initial factor means: leading singular vectors of the unfoldings
        (:func:`spectral_init`; the Tucker core then starts at its conditional posterior mean)
        or ``init_scale · N(0, 1)`` draws (the core mean too, unscaled).
    init_scale : float
        Scale of the random initial factor means, ``init_scale · N(0, 1)``. Much smaller values
        start the sweeps near the saddle point ``U = 0``, from which a weak component can take
        many sweeps to grow (the convergence test may then stop on the plateau).
    init_cov_scale : float
        Initial factor and core covariances as a fraction of the prior ones (see
        :func:`init_state`).
    init_noise_sd : float
        Noise sd assumed by the first sweep, as a fraction of the data sd (see
        :func:`init_state`: too large a value lets the first sweeps switch components off).
    lengthscale : float or sequence of float, optional
        Initial ℓ_k (one for all modes, or one per mode; entries of categorical modes are
        ignored). Default: ``lengthscale_fraction`` times the coordinate range of the mode for
        a Matérn kernel, 1 for a (quasi-)periodic one (whose ℓ is relative to the period; the
        quasi-periodic envelope's lengthscale starts at the coordinate range).
    variance : float or sequence of float
        Initial σ²_k (of the z-scored values), one for all modes or one per mode.
    lengthscale_fraction : float
        Default initial ℓ_k as this fraction of the coordinate range of mode ``k``.
    hyper_steps, hyper_step : int, float
        Pattern-search iterations per mode per sweep, and the initial search step on
        ``log ℓ, log σ²`` (it then adapts: halved when the centre wins, doubled at the edge).
    a0, b0 : float
        Gamma prior on the noise precision (of the z-scored values).
    chunk : int, None or "auto"
        Observations per block in the Tucker contractions; bounds their memory. ``"auto"``
        (default) picks one block when it is small enough (see :func:`auto_chunk`).
    dtype : {"float64", "float32"}
        What the fit and predictions compute in, whatever JAX's global ``jax_enable_x64``
        says (the setting is restored afterwards). float64 (default) gives the same answer in
        JAX's default mode as with x64 on, at little cost on CPUs; float32 is for speed on
        accelerators whose float64 is slow.
    devices : None, "auto", int or list of jax.Device
        Devices the fit's observations are split over (data parallel, one host; see
        :mod:`bayestensor.sharding`): ``None``/``"auto"`` (default) every visible device, an
        int the first ``n``, or a list of devices. With one device the fit is the plain
        single-device one; with several it gives the same posterior up to rounding. Not saved
        with the model.

    Attributes
    ----------
    state_ : FunBaTState
        Fitted posterior (z-scored units).
    history_ : list of dict
        Per sweep: ``rmse`` (training, original units), ``tau`` (``E[τ]``, z-scored units),
        ``noise_sd`` (``E[τ]^{-1/2}`` in original units), ``lengthscale`` and ``variance``
        (per mode, ``None`` for categorical modes), ``change`` (relative change of ``E[f]``);
        with a (quasi-)periodic mode also ``period`` and ``envelope`` (per mode, ``None``
        where the kernel has none).
    n_sweeps_ : int
        Number of sweeps run.
    converged_ : bool
        Whether the tolerance was reached before ``max_sweeps``.
    max_ranks_, active_, shares_
        The ranks the sweeps ran with; per mode the kept components among them (by decreasing
        share; ``state_`` and ``cfg_`` hold only these); with ``rank="auto"`` their shares
        (:func:`~.funbat.ard.prune_fit`).
    """

    def __init__(
        self,
        model: str = "tucker",
        rank: int | tuple[int, ...] | str = "auto",
        kernel: str | dict[str, str] = "matern32",
        max_sweeps: int = 100,
        tol: float = 0.02,
        damping: float = 1.0,
        seed: int = 0,
        learn_hyper: bool = True,
        init: str = "spectral",
        init_scale: float = 1.0,
        init_cov_scale: float = 0.01,
        init_noise_sd: float = 0.1,
        lengthscale=None,
        variance=1.0,
        lengthscale_fraction: float = 0.1,
        hyper_steps: int = 1,
        hyper_step: float = 1.0,
        a0: float = 1e-3,
        b0: float = 1e-3,
        chunk: int | str | None = "auto",
        dtype: str = "float64",
        period: float | dict[str, float] | None = None,
        max_rank: int | tuple[int, ...] | None = None,
        devices=None,
        intercept: bool = True,
    ):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.model = model
        check_rank_option(rank, max_rank, model)
        self.rank = rank
        self.max_rank = max_rank
        self.kernel = check_kernel_option(kernel)
        self.period = check_period_option(period)
        self.max_sweeps = check_int("max_sweeps", max_sweeps)
        self.tol = check_positive("tol", tol)
        try:
            self.damping = float(damping)
        except (TypeError, ValueError):
            self.damping = float("nan")
        if not 0.0 < self.damping <= 1.0:
            raise ValueError(f"damping must be in (0, 1], got {damping!r}")
        self.seed = check_seed(seed)
        self.learn_hyper = check_bool("learn_hyper", learn_hyper)
        self.intercept = check_bool("intercept", intercept)
        if init not in ("spectral", "random"):
            raise ValueError(f"init must be 'spectral' or 'random', got {init!r}")
        self.init = init
        self.init_scale = check_positive("init_scale", init_scale)
        self.init_cov_scale = check_positive("init_cov_scale", init_cov_scale)
        self.init_noise_sd = check_positive("init_noise_sd", init_noise_sd)
        self.lengthscale = lengthscale
        self.variance = variance
        self.lengthscale_fraction = check_positive("lengthscale_fraction", lengthscale_fraction)
        self.hyper_steps = check_int("hyper_steps", hyper_steps)
        self.hyper_step = check_positive("hyper_step", hyper_step)
        # a0 = b0 = 0 is the improper scale-invariant prior (type-II maximum likelihood)
        self.a0 = check_nonnegative("a0", a0)
        self.b0 = check_nonnegative("b0", b0)
        if not (chunk is None or chunk == "auto" or (is_int(chunk) and chunk > 0)):
            raise ValueError(f"chunk must be a positive int, None or 'auto', got {chunk!r}")
        self.chunk = chunk
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        resolve_devices(devices)  # validated now, resolved again at fit time
        self.devices = devices

    def _ranks(self, enc: Encoded) -> tuple[int, ...]:
        """Per-mode ranks, validated against the number of modes and the model, and capped at
        what the data can identify (:func:`bayestensor.checks.cap_ranks`); upper bounds with
        ``rank="auto"``."""
        if isinstance(self.rank, str):
            n_obs = distributed.row_count(len(enc.index))  # all processes' rows
            return auto_ranks(self.model, enc.shape, self.max_rank, n_obs=n_obs)
        ranks = check_ranks(self.rank, enc.K, equal=self.model == "cp")
        return cap_ranks(ranks, enc.shape, self.model)

    def _mode_kernels(self, modes) -> tuple[str | None, ...]:
        """Per mode, the kernel name (``None`` for a categorical mode)."""
        continuous = [m.name for m in modes if m.kind == CONTINUOUS]
        if isinstance(self.kernel, str):
            return tuple(self.kernel if m.kind == CONTINUOUS else None for m in modes)
        unknown = [c for c in self.kernel if c not in continuous]
        if unknown:
            raise ValueError(
                f"kernel names {unknown}, which are not continuous coordinates of the data "
                f"(continuous: {continuous})"
            )
        return tuple(
            self.kernel.get(m.name, DEFAULT_KERNEL) if m.kind == CONTINUOUS else None for m in modes
        )

    @staticmethod
    def _per_mode(value, K: int, name: str) -> list:
        """Broadcast a scalar (or ``None``) to ``K`` modes; check a sequence's length and sign."""
        values = [value] * K if value is None or np.ndim(value) == 0 else list(value)
        if len(values) != K:
            raise ValueError(f"{name} has {len(values)} entries but the data have {K} modes")
        return [None if v is None else check_positive(name, v) for v in values]

    def fit(
        self, enc: Encoded, callback=None, progress: bool = False, keep_unpruned: bool = False
    ) -> FunBaT:
        """Fit to encoded training data.

        The fit computes in ``self.dtype`` (float64 by default) whatever JAX's global
        ``jax_enable_x64`` says (:func:`bayestensor.driver.precision`).

        Parameters
        ----------
        enc : Encoded
            Output of :func:`bayestensor.data.encode` (with a value column).
            With several JAX processes: this process's rows, encoded by
            :func:`bayestensor.distributed.encode` (see that module).
        callback : callable, optional
            Called after every sweep with that sweep's history record (see ``history_``).
        progress : bool
            Show a progress bar over the sweeps.
        keep_unpruned : bool
            Keep the unpruned posterior for :func:`~.ard.pruned_for_local` (``bt.fit``: local).

        Returns
        -------
        FunBaT
            ``self``.
        """
        with precision(self.dtype):
            return self._fit(enc, callback, progress, keep_unpruned)

    def _fit(self, enc: Encoded, callback, progress: bool, keep_unpruned: bool) -> FunBaT:
        """The fit, inside the precision scope."""
        if enc.y is None:
            raise ValueError("enc has no values (y is None); encode with a value column")
        K = enc.K
        ranks = self._ranks(enc)
        continuous = tuple(mode.kind == CONTINUOUS for mode in enc.modes)
        self.modes_ = enc.modes
        distributed.check_same_modes(enc.modes)  # (multi-process fits: distributed.py)
        self.y_mean_, self.y_scale_ = distributed.standardisation(enc.y)
        y = jax.device_put((enc.y - self.y_mean_) / self.y_scale_)
        y_np = np.asarray(y)
        index_all, y_all = distributed.all_rows(enc.index, y_np)  # every process's rows
        # split over the devices, or padded to a common size (sharding.padded_rows), mask 0
        (index, y), mask = placed_rows(enc.index, y, resolve_devices(self.devices))
        ell_given = self._per_mode(self.lengthscale, K, "lengthscale")
        var_given = self._per_mode(self.variance, K, "variance")
        kernels = self._mode_kernels(enc.modes)
        auto = tuple(k for k, name in enumerate(kernels) if name == AUTO_KERNEL)
        kernels = tuple(SELECT_START if name == AUTO_KERNEL else name for name in kernels)
        period_given = mode_periods(self.period, enc.modes, kernels)
        dts, ell0, var0, period0, envelope0 = [], [], [], [], []
        for k, mode in enumerate(enc.modes):
            if continuous[k]:
                span = mode.values[-1] - mode.values[0]
                periodic = kernels[k] in PERIODIC_KERNELS
                if periodic:
                    default = 1.0
                else:
                    default = self.lengthscale_fraction * span if span > 0 else 1.0
                dts.append(jax.device_put(gaps(mode.values)))
                ell0.append(default if ell_given[k] is None else ell_given[k])
                var0.append(var_given[k])
                # one cycle over a regular grid: span + spacing (months 1..12 -> 12)
                spacing = float(np.median(np.diff(mode.values))) if mode.size > 1 else 1.0
                period0.append(span + spacing if period_given[k] is None else period_given[k])
                envelope0.append(span if span > 0 else 1.0)
            else:
                for lst in (dts, ell0, var0, period0, envelope0):
                    lst.append(None)
        dts = tuple(dts)
        # inside padded.padded_ranks a fixed-rank Tucker fit runs at those ranks (shared programs)
        tucker_fixed = self.model == "tucker" and not isinstance(self.rank, str)
        run_ranks, kept = fit_ranks(ranks, tucker_fixed and self.init == "spectral" and not auto)
        cfg = FunBaTConfig(
            self.model,
            run_ranks,
            enc.shape,
            continuous,
            kernels,
            self.damping,
            self.learn_hyper,
            self.hyper_steps,
            self.hyper_step,
            self.a0,
            self.b0,
            auto_chunk(len(y_all), run_ranks, self.model) if self.chunk == "auto" else self.chunk,
            tuple(p is None for p in period_given),
            ard=isinstance(self.rank, str),
        )
        init_means = None
        if self.init == "spectral":
            init_means = spectral_init(index_all, y_all, enc.shape, ranks, self.seed)
            init_means = init_means if kept is None else padded_means(init_means, run_ranks)
        bound_compiled(_initial_state_jit, _sweep_jit, _marginals_jit, _rows_jit, modes=K)
        state = _initial_state_jit(
            cfg,
            dts,
            [None if v is None else float(v) for v in ell0],
            [None if v is None else float(v) for v in var0],
            jax.random.key(self.seed),
            self.init_scale,
            self.init_cov_scale,
            init_means,
            self.init_noise_sd,
            index,
            y,
            [None if v is None else float(v) for v in period0],
            [None if v is None else float(v) for v in envelope0],
            mask,
            kept,
        )
        extra_hyper = [
            name
            for name in ("period", "envelope")
            if any(name in cfg.hyper_names(k) for k in range(K))
        ]

        def _step(i, carry):
            # one compiled sweep; the change is the RMS move of the fitted values in units of
            # the current noise sd (both z-scored)
            state, Ef_old, history = carry
            state, Ef = _sweep_jit(state, index, values.rows[1], dts, cfg, mask, kept)
            Ef, mse, moved, b = distributed.row_errors(Ef, Ef_old, *values.rows, mask, len(y_all))
            step = values(b) if self.intercept else 0.0  # the intercept's, z-scored units
            self.y_mean_ += step * self.y_scale_
            tau = float(jax.tree.map(np.asarray, state.noise).mean)  # on the host, not eager JAX
            hyper = [None if th is None else np.asarray(th) for th in state.log_hyper]
            change = np.inf if moved is None else float(np.sqrt(max(moved, step**2) * tau))
            record = {
                "rmse": float(np.sqrt(mse)) * self.y_scale_,
                "tau": tau,
                "noise_sd": self.y_scale_ / np.sqrt(tau),
                "lengthscale": [None if th is None else float(np.exp(th[0])) for th in hyper],
                "variance": [None if th is None else float(np.exp(th[1])) for th in hyper],
                "change": change,
            }
            for name in extra_hyper:
                record[name] = [
                    float(np.exp(th[cfg.hyper_names(k).index(name)]))
                    if name in cfg.hyper_names(k)
                    else None
                    for k, th in enumerate(hyper)
                ]
            history.append(record)
            if callback is not None:
                callback(record)
            postfix = {"rmse": record["rmse"], "change": change}
            return Step((state, Ef, history), stopping(history, change), postfix)

        stopping = Stopping(self.tol, ("lengthscale", "variance", *extra_hyper))
        values = InterceptSteps(y_np, y, mask)  # the values less the learned intercept

        (state, _, history), _, converged = iterate(
            _step,
            (state, None, []),
            self.max_sweeps,
            desc=f"FunBaT-{self.model}",
            progress=progress,
        )
        self.kernel_scores_ = {}
        if auto:  # choose the auto modes' Matérn smoothness, then continue the sweeps
            cfg, state, scores = choose_kernels(cfg, state, dts, auto)
            self.kernel_scores_ = {enc.modes[k].name: v for k, v in scores.items()}
            (state, _, history), _, converged = iterate(
                _step,
                (state, None, history),
                SELECT_SWEEPS,
                desc=f"FunBaT-{self.model} (kernels chosen)",
                progress=progress,
            )
        state = distributed.to_local(state)
        if not np.isfinite(history[-1]["rmse"]) or not all(
            np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state)
        ):
            raise ValueError(
                "the fit came out non-finite (NaN or inf in the posterior); likely causes: "
                f"coordinates spanning too many orders of magnitude for the fit's {self.dtype} "
                "(rescale or log-transform them), values far from O(1) after centring, or "
                "extreme settings (lengthscale, init_scale, init_noise_sd)"
            )
        if kept is not None:  # the fit at its own ranks
            state, cfg = unpadded(state, cfg, ranks, len(y_all), self.chunk == "auto")
        self.max_ranks_ = ranks
        self.active_ = tuple(np.arange(R) for R in ranks)
        self.shares_ = None
        self._unpruned = None
        if cfg.ard:  # drop the components the ARD switched off
            if keep_unpruned:  # for ard.pruned_for_local (it releases it)
                self._unpruned = (state, cfg, index_all)
            state, cfg, self.active_, self.shares_ = prune_fit(
                state, cfg, index_all, self.chunk == "auto"
            )
        self.cfg_ = cfg
        self.state_ = state
        self.history_ = history
        self.n_sweeps_ = len(history)
        self.converged_ = converged
        self.train_ = enc  # the rows, for update() (kept in memory, not saved)
        return self

    @property
    def noise_sd_(self) -> float:
        """Posterior-mean noise sd ``E[τ]^{-1/2}`` in the data's units."""
        return float(self.y_scale_ / np.sqrt(float(self.state_.noise.mean)))

    def factor_moments(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and sds ``(N_k, R_k)`` of mode ``k``'s latent functions (z-scored)."""
        post = self.state_.factors[k]
        var = np.diagonal(np.asarray(post.cov), axis1=1, axis2=2)
        return np.asarray(post.mean), np.sqrt(np.clip(var, 0.0, None))

    def predict(self, new: NewEncoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predictive mean and standard deviations at new rows, in original units.

        Parameters
        ----------
        new : NewEncoded
            Output of :func:`bayestensor.data.encode_new` with the fitted modes.

        Returns
        -------
        mean : numpy.ndarray
            ``E[f*]``.
        sd_f : numpy.ndarray
            ``sqrt(Var[f*])`` (latent function).
        sd_y : numpy.ndarray
            ``sqrt(Var[f*] + 1/E[τ])`` (a new noisy observation).
        """
        with precision(self.dtype):
            return self._predict(new)

    def _predict(self, new: NewEncoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prediction, inside the precision scope."""
        if not hasattr(self, "state_"):
            raise ValueError("call fit before predict")
        if tuple(m.name for m in new.modes) != tuple(m.name for m in self.modes_):
            raise ValueError("new rows were encoded with different modes than the fit")
        M = new.index.shape[0]
        # each mode's marginals once per unique new coordinate (categorical: every category),
        # then the rows in blocks of one padded size, each reading its modes' tables by index
        index = np.empty((M, len(self.modes_)), dtype=np.int32)
        means, seconds = [], []
        for k, mode in enumerate(self.modes_):
            if self.cfg_.continuous[k]:
                uniq, index[:, k] = _unique_coordinates(new, k, mode.size)
                # in blocks of a padded size (repeating the first): few sizes to compile
                size = min(_PREDICT_CHUNK, _bucket(uniq.size))
                pad = np.full(-uniq.size % size, uniq[0])
                loc = locate(mode.values, np.concatenate([uniq, pad]))
                parts = [
                    _marginals_jit(
                        self.state_.factors[k],
                        self.state_.log_hyper[k],
                        self.cfg_.reading(),
                        k,
                        Location(*(jax.device_put(a[b : b + size]) for a in loc)),
                    )
                    for b in range(0, loc.index.shape[0], size)
                ]
                m = jnp.concatenate([p[0] for p in parts])
                S = jnp.concatenate([p[1] for p in parts])
            else:
                index[:, k] = new.index[:, k]
                f, theta = self.state_.factors[k], self.state_.log_hyper[k]
                m, S = _marginals_jit(f, theta, self.cfg_.reading(), k, jnp.arange(mode.size))
            means.append(m)
            seconds.append(S)
        rows = min(_PREDICT_CHUNK, _bucket(M))
        blocks = -(-M // rows)
        # pad the last block with row 0 (any valid index; dropped below)
        index = np.concatenate([index, np.zeros((blocks * rows - M, index.shape[1]), np.int32)])
        core = self.state_.core
        out = [
            _rows_jit(core, self.cfg_.reading(), means, seconds, index[b * rows : (b + 1) * rows])
            for b in range(blocks)
        ]
        # back to the data's units in float64 on the host (in float32, y_mean + Ef · y_scale
        # would round away everything below y_mean's last digit)
        Ef = np.concatenate([np.asarray(e, dtype=np.float64) for e, _ in out])[:M]
        var = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in out])[:M]
        noise_var = 1.0 / float(self.state_.noise.mean)
        mean = Ef * self.y_scale_ + self.y_mean_
        sd_f = np.sqrt(var) * self.y_scale_
        sd_y = np.sqrt(var + noise_var) * self.y_scale_
        return mean, sd_f, sd_y


# jitted here, at the driver, with the config static: one compiled function per model layout,
# whose traced program is kept on disk beside the compiled one (bayestensor/_export.py)
_initial_state_jit = CachedJit(initial_state, static_argnames=("cfg",))
_sweep_jit = CachedJit(sweep, static_argnames=("cfg",))
_marginals_jit = CachedJit(factor_marginals, static_argnames=("cfg", "k"), per_fit="mode")
_rows_jit = CachedJit(row_moments, static_argnames=("cfg",), per_fit=2)  # rows and new rows
#: Smallest padded size of a prediction block and of a mode's table (see
#: :meth:`FunBaT.predict`).
_MIN_PREDICT_BUCKET = 64
#: Rows per prediction block: memory stays bounded and every block runs one compiled function.
_PREDICT_CHUNK = 2**16


def _unique_coordinates(new: NewEncoded, k: int, n_known: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct coordinates of continuous mode ``k`` among the new rows, and each row's
    position among them.

    Rows at training coordinates (``new.index >= 0``, most rows usually) are found by a mask
    over the known coordinates, without a sort; only the others go through ``np.unique``.
    """
    x = np.asarray(new.x[k], dtype=np.float64)
    known = new.index[:, k]
    seen = known >= 0
    used = np.zeros(n_known, dtype=bool)
    used[known[seen]] = True
    at = np.cumsum(used) - 1  # position of each used known coordinate among the used ones
    other, inverse = np.unique(x[~seen], return_inverse=True)
    pos = np.empty(x.shape[0], dtype=np.int64)
    pos[seen] = at[known[seen]]
    pos[~seen] = int(used.sum()) + inverse.reshape(-1)
    return np.concatenate([new.modes[k].values[used], other]), pos


def _bucket(n: int) -> int:
    """``n`` rounded up to a power of two, at least :data:`_MIN_PREDICT_BUCKET`."""
    return max(_MIN_PREDICT_BUCKET, 1 << max(n - 1, 0).bit_length())
