"""Kalman filter and RTS smoother for R stacked state-space GPs fed Gaussian messages.

The state stacks R independent latent functions ``u_1 … u_R`` (each a state-space GP of
dimension ``d`` from :mod:`bayestensor.kernels`: Matérn, periodic or quasi-periodic), so the
dynamics are block diagonal in a ``D = R d`` dimensional state ``s(x)``, and
``f(x) = H s(x) ∈ ℝ^R`` collects the function values. At each sorted coordinate ``x_t`` the state
receives a Gaussian *message* in natural parameters — a factor

.. math:: t_t(f) = \\exp\\big(-\\tfrac12 f^\\top Λ_t f + η_t^\\top f\\big),

with ``Λ_t`` positive semi-definite (R × R). ``Λ_t = 0, η_t = 0`` means "no message": the step
is a pure prediction. This is exactly what FunBaT's conditional EP sends to each mode.

The posterior is ``p(s | messages) ∝ p(s) Π_t t_t(f(x_t))`` and the log marginal likelihood is
the log normaliser ``log Z = log ∫ p(s) Π_t t_t(f(x_t)) ds``. When every ``Λ_t`` is invertible,
``log Z`` equals the Gaussian pseudo-observation likelihood ``Σ log N(ỹ_t | ·, ·)`` with
``ỹ_t = Λ_t⁻¹ η_t`` and noise ``Λ_t⁻¹`` minus terms that depend only on the messages
(``Σ_t ½ log|Λ_t / 2π| − ½ η_tᵀ Λ_t⁻¹ η_t``), so both give the same hyperparameter gradients.

Precise messages make ``log Z`` a difference of large numbers (``½ ηᵀΛ⁻¹η`` grows like
``y²/noise``). The filter therefore accumulates, per step, the whitened innovation
``e_t = C_t⁺η_t − C_tᵀμ_t`` (``Λ_t = C_t C_tᵀ``) and
``log_lik = Σ_t [−½ log|M_t| − ½ e_tᵀ M_t⁻¹ e_t]`` with ``M_t = I + C_tᵀ S_t C_t``; then
``log Z = log_lik + ½ Σ_t |C_t⁺ η_t|²``. ``log_lik`` has the gradients of ``log Z`` without the
cancellation: optimise it, in float32 especially.

Everything is a pure function over NamedTuple pytrees, vectorised with ``lax.scan``,
jit-compatible and differentiable in the lengthscales and variances. Covariances are
symmetrised after each step; the update never inverts ``Λ`` or the predicted covariance of
``f``, it factorises ``I + Cᵀ S C`` (eigenvalues ≥ 1) where ``Λ = C Cᵀ``.

References
----------
.. [1] S. Särkkä, *Bayesian Filtering and Smoothing*, CUP 2013 (filter §4.3, RTS §8.2).
.. [2] S. Fang et al., "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor
   Data", ICLR 2024.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from bayestensor.kernels import (
    PERIODIC_HARMONICS,
    StateSpaceKernel,
    check_kernel_name,
    kernel_sde,
)


def _sym(P):
    """Symmetric part of a (batch of) square matrix(ces)."""
    return 0.5 * (P + jnp.swapaxes(P, -1, -2))


#: Largest ``R`` for which the filter factorises ``M = I + Cᵀ S C`` in unrolled array operations
#: (:func:`_cholesky_lower_solve`) instead of LAPACK's ``potrf`` + ``trsm``: for the small ``R``
#: of a FunBaT mode a custom call per step costs more than the arithmetic, and under ``vmap``
#: (the hyperparameter search filters nine candidates at once) it becomes the batched kernel
#: :mod:`bayestensor._xla` works around. The unrolled code grows like ``R³``; beyond this the
#: LAPACK calls.
SMALL_CHOLESKY = 8


def _cholesky_lower_solve(M: Float[Array, "R R"], B: Float[Array, "R p"]):
    """``(diag L, L⁻¹ B)`` for the Cholesky factor ``M = L Lᵀ`` of a positive definite ``M``.

    Up to :data:`SMALL_CHOLESKY` rows the factor and the forward substitution are written out
    entry by entry (``R³/6`` multiply-adds, fused by XLA into a few kernels); larger ``M`` go to
    :func:`jax.numpy.linalg.cholesky` and :func:`jax.scipy.linalg.solve_triangular`.
    """
    R = M.shape[-1]
    if R > SMALL_CHOLESKY:
        L = jnp.linalg.cholesky(M)
        return jnp.diagonal(L), jax.scipy.linalg.solve_triangular(L, B, lower=True)
    L = [[None] * R for _ in range(R)]
    X = []
    for j in range(R):  # column j of L, then row j of L⁻¹B (it needs rows < j only)
        d = M[j, j]
        for k in range(j):
            d = d - L[j][k] ** 2
        L[j][j] = jnp.sqrt(d)
        for i in range(j + 1, R):
            v = M[i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k]
            L[i][j] = v / L[j][j]
        x = B[j]
        for k in range(j):
            x = x - L[j][k] * X[k]
        X.append(x / L[j][j])
    return jnp.stack([L[j][j] for j in range(R)]), jnp.stack(X)


def _block_diag(blocks: Float[Array, "R a b"]) -> Float[Array, "Ra Rb"]:
    """Block-diagonal matrix from a stack of R equally shaped blocks."""
    R, a, b = blocks.shape
    eye = jnp.eye(R, dtype=blocks.dtype)
    return jnp.einsum("rij,rs->risj", blocks, eye).reshape(R * a, R * b)


class StackedSDE(NamedTuple):
    """R independent state-space GPs stacked into one block-diagonal state-space model.

    Attributes
    ----------
    blocks : StateSpaceKernel, PeriodicSDE or QuasiPeriodicSDE
        The R per-function kernels (one kind), each leaf with a leading axis of length R.
    """

    blocks: StateSpaceKernel

    def _each(self, fn):
        """``fn`` applied to every block (vmapped over the leading axis)."""
        return jax.vmap(fn)(self.blocks)

    @property
    def noiseless(self) -> bool:
        """Whether ``Q(Δ) = 0`` (a purely periodic kernel): the state moves deterministically."""
        return type(self.blocks).noiseless

    @property
    def num_functions(self) -> int:
        """Number R of stacked latent functions."""
        return jax.tree.leaves(self.blocks)[0].shape[0]

    @property
    def state_dim(self) -> int:
        """Dimension D = R d of the stacked state."""
        return self.H.shape[-1]

    @property
    def H(self) -> Float[Array, "R D"]:
        """Measurement matrix: ``f = H s`` picks each function value from its block."""
        return _block_diag(self._each(lambda b: b.H))

    @property
    def Pinf(self) -> Float[Array, "D D"]:
        """Stationary covariance of the stacked state."""
        return _block_diag(self._each(lambda b: b.Pinf))

    def transition(self, dt: Float[Array, ""]) -> tuple[Float[Array, "D D"], Float[Array, "D D"]]:
        """Block-diagonal ``A(dt), Q(dt)`` of the stacked state (see ``StateSpaceKernel``)."""
        A, Q = jax.vmap(type(self.blocks).transition, in_axes=(0, None))(self.blocks, dt)
        return _block_diag(A), _block_diag(Q)


def stacked_sde(
    kernel: str, hyper, num_functions: int, harmonics: int = PERIODIC_HARMONICS
) -> StackedSDE:
    """Stack ``num_functions`` state-space GPs of one kernel.

    Parameters
    ----------
    kernel : str
        A key of :data:`bayestensor.kernels.KERNELS`.
    hyper : sequence of (float or Float[Array, "R"])
        The kernel's hyperparameters in the order of ``KERNELS[kernel]``, each shared (scalar)
        or one per function.
    num_functions : int
        R.
    harmonics : int
        J of the (quasi-)periodic kernels.

    Returns
    -------
    StackedSDE
    """
    hyper = [jnp.asarray(h) for h in hyper]
    dtype = jnp.result_type(hyper[0], float)
    per_function = [jnp.broadcast_to(jnp.asarray(h, dtype), (num_functions,)) for h in hyper]
    blocks = jax.vmap(lambda *h: kernel_sde(kernel, *h, harmonics=harmonics))(*per_function)
    return StackedSDE(blocks)


def stacked_matern(kernel: str, lengthscale, variance, num_functions: int) -> StackedSDE:
    """Stack ``num_functions`` Matérn SDEs.

    Parameters
    ----------
    kernel : {"matern12", "matern32", "matern52"}
        Smoothness of every function.
    lengthscale : float or Float[Array, "R"]
        Lengthscale(s) ℓ, shared (scalar) or one per function.
    variance : float or Float[Array, "R"]
        Variance(s) σ², shared (scalar) or one per function.
    num_functions : int
        R.

    Returns
    -------
    StackedSDE
    """
    check_kernel_name(kernel)
    return stacked_sde(kernel, (lengthscale, variance), num_functions)


class FilterResult(NamedTuple):
    """Output of :func:`kalman_filter` (per coordinate t).

    Attributes
    ----------
    pred_mean, pred_cov : state mean (N, D) and covariance (N, D, D) before the message at t
    filt_mean, filt_cov : state mean and covariance after the message at t
    log_marginal : log Z of all messages (scalar)
    log_lik : log Z − ½ Σ_t η_tᵀ Λ_t⁺ η_t (same gradients, no cancellation; see module doc)
    """

    pred_mean: Float[Array, "N D"]
    pred_cov: Float[Array, "N D D"]
    filt_mean: Float[Array, "N D"]
    filt_cov: Float[Array, "N D D"]
    log_marginal: Float[Array, ""]
    log_lik: Float[Array, ""]


class Posterior(NamedTuple):
    """Smoothed posterior of the stacked state at the sorted coordinates.

    Attributes
    ----------
    state_mean : Float[Array, "N D"]
        Smoothed state means ``E[s(x_t) | all messages]``.
    state_cov : Float[Array, "N D D"]
        Smoothed state covariances.
    cross_cov : Float[Array, "N-1 D D"]
        ``Cov(s(x_t), s(x_{t+1}) | all messages)`` (the RTS gain times the next covariance).
    mean : Float[Array, "N R"]
        Posterior means of the R function values, ``H state_mean``.
    cov : Float[Array, "N R R"]
        Posterior covariances of the R function values, ``H state_cov Hᵀ``.
    log_marginal : Float[Array, ""]
        Log normaliser of prior × messages (see the module docstring).
    log_lik : Float[Array, ""]
        ``log_marginal`` minus the message-only constant ``½ Σ_t η_tᵀ Λ_t⁺ η_t``.
    """

    state_mean: Float[Array, "N D"]
    state_cov: Float[Array, "N D D"]
    cross_cov: Float[Array, "N-1 D D"]
    mean: Float[Array, "N R"]
    cov: Float[Array, "N R R"]
    log_marginal: Float[Array, ""]
    log_lik: Float[Array, ""]


def _psd_factor(prec, shift):
    """Factor ``C`` with ``C Cᵀ = Λ`` and ``u = C⁺ η`` for PSD ``Λ``.

    Eigenvalues below ``10 R ε_mach max(w)`` are treated as zero (directions with no
    information), so a rank-deficient ``Λ`` is handled without inverting anything.
    """
    w, V = jnp.linalg.eigh(_sym(prec))
    R = prec.shape[-1]
    floor = 10.0 * R * jnp.finfo(prec.dtype).eps * jnp.max(w, axis=-1, keepdims=True)
    keep = w > floor
    sqrt_w = jnp.sqrt(jnp.where(keep, w, 0.0))
    C = V * sqrt_w[..., None, :]
    u = jnp.where(
        keep, jnp.einsum("...ji,...j->...i", V, shift) / jnp.where(keep, sqrt_w, 1.0), 0.0
    )
    return C, u


def gaps(x):
    """Gaps ``dt_t = x_t − x_{t−1}`` with ``dt_0 = 0`` (the first step is then the identity).

    Compute gaps on the host in float64 (pass a NumPy array) and cast them afterwards: a float32
    coordinate near 10⁶ cannot resolve a gap of 10⁻⁶, but a float32 gap can.

    Parameters
    ----------
    x : array of shape (N,)
        Strictly increasing coordinates (NumPy or JAX).

    Returns
    -------
    array of shape (N,)
        Same array type and dtype as ``x``.
    """
    xp = np if isinstance(x, np.ndarray) else jnp
    return xp.concatenate([xp.zeros((1,), x.dtype), xp.diff(x)])


def kalman_filter(
    sde: StackedSDE,
    dt: Float[Array, " N"],
    prec: Float[Array, "N R R"],
    shift: Float[Array, "N R"],
) -> FilterResult:
    """Kalman filter over sorted coordinates with natural-parameter messages.

    Parameters
    ----------
    sde : StackedSDE
        Prior dynamics of the R functions.
    dt : Float[Array, "N"]
        Gaps between consecutive sorted coordinates, ``dt[0] = 0`` (see :func:`gaps`).
    prec : Float[Array, "N R R"]
        Message precisions Λ_t (PSD; zero for "no message").
    shift : Float[Array, "N R"]
        Message precision-means η_t.

    Returns
    -------
    FilterResult

    Notes
    -----
    Differentiable in the kernel hyperparameters (through ``sde``) and in ``shift``. Gradients
    with respect to ``prec`` pass through an eigendecomposition and are undefined where ``Λ_t``
    has repeated eigenvalues (e.g. ``Λ_t = 0``).
    """
    H = sde.H
    R = H.shape[0]
    eye_R = jnp.eye(R, dtype=H.dtype)
    C, u = _psd_factor(prec, shift)

    def _step(carry, inp):
        m, P, loglik = carry
        A, Q, C_t, u_t = inp
        # predict across the gap from the previous coordinate (identity at t = 0)
        m_p = A @ m
        P_p = _sym(A @ P @ A.T + Q)
        # moments of f = H s under the prediction
        PHt = P_p @ H.T
        S = _sym(H @ PHt)
        mu = H @ m_p
        # M = I + Cᵀ S C has eigenvalues ≥ 1; G = (Λ⁻¹ + S)⁻¹ = C M⁻¹ Cᵀ
        # whitened innovation e = Cᵀ(ỹ − μ) = C⁺η − Cᵀμ, with ỹ = Λ⁻¹η
        e = u_t - C_t.T @ mu
        K = PHt @ C_t  # P Hᵀ C
        # M = cM cMᵀ and one triangular solve for both: W = cM⁻¹ Kᵀ, z = cM⁻¹ e, so that
        # K M⁻¹ e = Wᵀ z, K M⁻¹ Kᵀ = Wᵀ W and eᵀ M⁻¹ e = |z|²
        diag, Wz = _cholesky_lower_solve(_sym(eye_R + C_t.T @ S @ C_t), jnp.column_stack([K.T, e]))
        W, z = Wz[:, :-1], Wz[:, -1]
        m_f = m_p + W.T @ z
        P_f = _sym(P_p - W.T @ W)
        loglik_t = -jnp.sum(jnp.log(diag)) - 0.5 * z @ z
        return (m_f, P_f, loglik + loglik_t), (m_p, P_p, m_f, P_f)

    D = sde.state_dim
    m0 = jnp.zeros((D,), H.dtype)
    init = (m0, sde.Pinf, jnp.zeros((), H.dtype))
    # every step's transition at once, outside the sequential scan
    A_all, Q_all = jax.vmap(sde.transition)(dt)
    (_, _, loglik), (m_p, P_p, m_f, P_f) = lax.scan(_step, init, (A_all, Q_all, C, u))
    logz = loglik + 0.5 * jnp.sum(u**2)
    return FilterResult(m_p, P_p, m_f, P_f, logz, loglik)


def rts_smoother(sde: StackedSDE, dt: Float[Array, " N"], filt: FilterResult) -> Posterior:
    """Rauch–Tung–Striebel smoother on the output of :func:`kalman_filter`.

    Parameters
    ----------
    sde : StackedSDE
        The same dynamics the filter used.
    dt : Float[Array, "N"]
        The same gaps.
    filt : FilterResult
        Filter output.

    Returns
    -------
    Posterior
        Smoothed state moments, neighbour cross-covariances and function-value moments.
    """
    H = sde.H

    def _step(carry, inp):
        m_next, P_next = carry
        A, m_f, P_f, m_p_next, P_p_next = inp
        if sde.noiseless:
            # Q = 0 and A orthogonal: P_pred = A P_f Aᵀ, so J = A⁻¹ = Aᵀ exactly (no solve of
            # the ill-conditioned P_pred, whose high harmonics have tiny variances)
            J = A.T
        else:
            # RTS gain J = P_f Aᵀ P_pred⁻¹ (P_pred symmetric, so solve with it on the left)
            J = jnp.linalg.solve(P_p_next, A @ P_f).T
        m_s = m_f + J @ (m_next - m_p_next)
        P_s = _sym(P_f + J @ (P_next - P_p_next) @ J.T)
        cross = J @ P_next  # Cov(s_t, s_{t+1} | all)
        return (m_s, P_s), (m_s, P_s, cross)

    last = (filt.filt_mean[-1], filt.filt_cov[-1])
    inputs = (
        jax.vmap(sde.transition)(dt[1:])[0],  # every step's transition, outside the scan
        filt.filt_mean[:-1],
        filt.filt_cov[:-1],
        filt.pred_mean[1:],
        filt.pred_cov[1:],
    )
    _, (m_s, P_s, cross) = lax.scan(_step, last, inputs, reverse=True)
    m_s = jnp.concatenate([m_s, last[0][None]], axis=0)
    P_s = jnp.concatenate([P_s, last[1][None]], axis=0)
    mean = m_s @ H.T
    cov = _sym(H @ P_s @ H.T)
    return Posterior(m_s, P_s, cross, mean, cov, filt.log_marginal, filt.log_lik)


def smooth(
    sde: StackedSDE,
    dt: Float[Array, " N"],
    prec: Float[Array, "N R R"],
    shift: Float[Array, "N R"],
) -> Posterior:
    """Filter then smooth: the posterior of R stacked GPs given natural-parameter messages.

    Parameters
    ----------
    sde : StackedSDE
        Prior dynamics.
    dt : Float[Array, "N"]
        Gaps between consecutive sorted coordinates, ``dt[0] = 0`` (see :func:`gaps`).
    prec : Float[Array, "N R R"]
        Message precisions Λ_t.
    shift : Float[Array, "N R"]
        Message precision-means η_t.

    Returns
    -------
    Posterior
    """
    return rts_smoother(sde, dt, kalman_filter(sde, dt, prec, shift))


def log_marginal(
    sde: StackedSDE,
    dt: Float[Array, " N"],
    prec: Float[Array, "N R R"],
    shift: Float[Array, "N R"],
) -> Float[Array, ""]:
    """Log marginal likelihood of the messages (filter only; cheaper than :func:`smooth`)."""
    return kalman_filter(sde, dt, prec, shift).log_marginal


class Location(NamedTuple):
    """Where new coordinates fall relative to the sorted known coordinates (see :func:`locate`).

    Attributes
    ----------
    index : Int[Array, "M"]
        ``t`` with ``x_t ≤ x* < x_{t+1}``: −1 left of the range, N−1 at or right of the last.
    d_left : Float[Array, "M"]
        ``x* − x_t`` (0 when ``t = −1``).
    d_right : Float[Array, "M"]
        ``x_{t+1} − x*`` (``x_0 − x*`` when ``t = −1``; 0 when ``t = N−1``).
    gap : Float[Array, "M"]
        ``x_{t+1} − x_t`` inside the range, else 0.
    """

    index: Array
    d_left: Float[Array, " M"]
    d_right: Float[Array, " M"]
    gap: Float[Array, " M"]


def locate(x, xnew) -> Location:
    """Locate new coordinates between known ones, with the offsets the bridge needs.

    Pass NumPy float64 arrays to compute the offsets on the host at full precision (then cast
    the result for a float32 model); JAX arrays work too and keep this jit-compatible.

    Parameters
    ----------
    x : array of shape (N,)
        Strictly increasing known coordinates.
    xnew : array of shape (M,)
        New coordinates, any order.

    Returns
    -------
    Location
    """
    xp = np if isinstance(x, np.ndarray) and isinstance(xnew, np.ndarray) else jnp
    N = x.shape[0]
    t = xp.searchsorted(x, xnew, side="right") - 1
    lo = x[xp.clip(t, 0, N - 1)]
    hi = x[xp.clip(t + 1, 0, N - 1)]
    zero = xp.zeros_like(xnew)
    d_left = xp.where(t >= 0, xnew - lo, zero)
    d_right = xp.where(t < N - 1, hi - xnew, zero)
    gap = xp.where((t >= 0) & (t < N - 1), hi - lo, zero)
    return Location(t, d_left, d_right, gap)


def interpolate(
    sde: StackedSDE, post: Posterior, loc: Location
) -> tuple[Float[Array, "M R"], Float[Array, "M R R"]]:
    """Exact posterior of the R functions at new coordinates.

    By the Markov property ``s(x*)`` depends on the messages only through the smoothed states of
    its neighbours:

    - inside the range, ``x_t ≤ x* < x_{t+1}``: the SDE bridge
      ``s* | s_t, s_{t+1} ~ N(Ψ s_t + B s_{t+1}, Q₁ − B A₂ Q₁)`` with ``A₁, Q₁ = A, Q(x* − x_t)``,
      ``A₂ = A(x_{t+1} − x*)``, ``B = Q₁ A₂ᵀ Q(x_{t+1} − x_t)⁻¹``, ``Ψ = A₁ − B A₂ A₁``,
      averaged over the smoothed joint of ``(s_t, s_{t+1})`` (which uses ``cross_cov``);
    - right of the range: forward prediction ``s* = A(x* − x_N) s_N + w``;
    - left of the range: backward conditioning of the stationary prior,
      ``s* | s_1 ~ N(G s_1, P∞ − G A P∞)`` with ``G = P∞ Aᵀ P∞⁻¹``, ``A = A(x_1 − x*)``.

    Parameters
    ----------
    sde : StackedSDE
        The prior dynamics used for ``post``.
    post : Posterior
        Output of :func:`smooth`.
    loc : Location
        Output of :func:`locate` for the new coordinates (offsets cast to the model's dtype).

    Returns
    -------
    mean : Float[Array, "M R"]
        Posterior means of the R function values.
    cov : Float[Array, "M R R"]
        Posterior covariances of the R function values.
    """
    N = post.state_mean.shape[0]
    H = sde.H
    Pinf = sde.Pinf
    m_all, P_all, X_all = post.state_mean, post.state_cov, post.cross_cov

    def _one(t, d_left, d_right, gap):
        # right of (or at) the last coordinate: forward prediction
        A_r, Q_r = sde.transition(d_left)
        m_r = A_r @ m_all[-1]
        P_r = A_r @ P_all[-1] @ A_r.T + Q_r
        # left of the first coordinate: condition the stationary prior backwards
        A_l, _ = sde.transition(d_right)
        G = jnp.linalg.solve(Pinf, A_l @ Pinf).T
        m_l = G @ m_all[0]
        P_l = G @ P_all[0] @ G.T + Pinf - G @ A_l @ Pinf
        if N == 1:
            m, P = jnp.where(t < 0, m_l, m_r), jnp.where(t < 0, P_l, P_r)
            return H @ m, _sym(H @ P @ H.T)
        # inside: SDE bridge between the smoothed neighbours ti and ti + 1
        ti = jnp.clip(t, 0, N - 2)
        A1, Q1 = sde.transition(d_left)
        A2, _ = sde.transition(d_right)
        _, Qf = sde.transition(gap)
        inside = (t >= 0) & (t <= N - 2)
        if sde.noiseless:
            # s* = A₁ s_t exactly (Q = 0): the bridge gain B is zero
            B = jnp.zeros_like(A1)
        else:
            # outside the range Qf = 0: swap in Pinf so the (discarded) solve stays finite
            Qf = jnp.where(inside, Qf, Pinf)
            B = jnp.linalg.solve(Qf, A2 @ Q1).T
        Psi = A1 - B @ A2 @ A1
        m_i = Psi @ m_all[ti] + B @ m_all[ti + 1]
        PsiX = Psi @ X_all[ti] @ B.T
        P_i = Psi @ P_all[ti] @ Psi.T + B @ P_all[ti + 1] @ B.T + PsiX + PsiX.T + Q1 - B @ A2 @ Q1
        m = jnp.where(t < 0, m_l, jnp.where(inside, m_i, m_r))
        P = jnp.where(t < 0, P_l, jnp.where(inside, P_i, P_r))
        return H @ m, _sym(H @ P @ H.T)

    return jax.vmap(_one)(jnp.asarray(loc.index), loc.d_left, loc.d_right, loc.gap)
