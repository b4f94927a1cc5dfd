"""A seeded random family of manufactured PDE problems (``random_problem(seed, kind)``).

Used by the tests and ``benchmarks/bench_pde.py --family`` to judge the solver on problems
nobody tuned it for: sums of 1–3 sinusoids with random frequencies, phases, envelopes and
polynomial terms on random boxes, every draw resolvable (at least :data:`POINTS_PER_PERIOD`
grid points per period of its highest frequency).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bayestensor.checks import is_int
from bayestensor.pde.problems import Problem, advection, allen_cahn, laplacian

#: Kinds of :func:`random_problem` and the dimension of each.
RANDOM_KINDS = {
    "poisson_1d": 1,
    "allen_cahn_1d": 1,
    "poisson_2d": 2,
    "allen_cahn_2d": 2,
    "advection_2d": 2,
}

#: Fewest grid points per period of the highest frequency of a :func:`random_problem`.
POINTS_PER_PERIOD = 6

#: Range of the angular frequencies of a :func:`random_problem` (radians per unit length).
FREQUENCY_RANGE = (1.0, 200.0)


def _random_terms(rng: np.random.Generator, lo: float, length: float, n: int):
    """A random 1-D function on ``[lo, lo + length]`` resolvable on ``n`` points.

    Returns ``(fn, top)``: ``fn(x) = Σ_k a_k e_k(x) sin(ω_k x + φ_k) + p(x)`` with 1–3 terms,
    angular frequencies uniform in ``[1, ω_max]`` where ``ω_max = min(200, 2π (n − 1) /
    (6 length))`` (at least :data:`POINTS_PER_PERIOD` points per period), optional exponential
    or linear envelopes ``e_k`` and an optional low-order polynomial ``p``; ``top`` is the
    highest frequency drawn.
    """
    w_cap = min(FREQUENCY_RANGE[1], 2 * np.pi * (n - 1) / (POINTS_PER_PERIOD * length))
    k = int(rng.integers(1, 4))
    w = rng.uniform(FREQUENCY_RANGE[0], max(w_cap, FREQUENCY_RANGE[0]), k)
    amp = rng.uniform(0.2, 1.0, k) * rng.choice([-1.0, 1.0], k)
    phase = rng.uniform(0.0, 2 * np.pi, k)
    kinds = rng.choice(["none", "exp", "linear"], k)
    rate = rng.uniform(-1.5, 1.5, k) / length
    slope = rng.uniform(-0.8, 0.8, k)
    poly = rng.uniform(-0.5, 0.5, 3) * (rng.random() < 0.5)
    mid = lo + 0.5 * length

    def fn(x):
        s = (x - mid) / length  # in [−½, ½]
        out = poly[0] + poly[1] * s + poly[2] * s**2
        for j in range(k):
            if kinds[j] == "exp":
                env = jnp.exp(rate[j] * (x - mid))
            elif kinds[j] == "linear":
                env = 1.0 + slope[j] * s
            else:
                env = 1.0
            out = out + amp[j] * env * jnp.sin(w[j] * x + phase[j])
        return out

    return fn, float(w.max())


def random_problem(seed: int, kind: str = "poisson_1d") -> Problem:
    """A random manufactured problem from a seeded family (for tests and benchmarks).

    1-D kinds (``"poisson_1d"``, ``"allen_cahn_1d"``): ``u`` is a sum of 1–3 sinusoids with
    angular frequencies uniform in [1, 200] per unit length (capped so that the grid has at
    least :data:`POINTS_PER_PERIOD` points per period), random amplitudes and phases, optional
    exponential or linear envelopes and an optional quadratic term, on ``[a, a + L]`` with
    ``a`` uniform in [−1, 1], ``L`` uniform in [0.5, 2π] and 200–600 grid points. 2-D kinds
    (``"poisson_2d"``, ``"allen_cahn_2d"``): ``u(x, y) = f₁(x) g₁(y) + c (f₂(x) + g₂(y))`` from
    such 1-D terms, on 40–100 points per dimension. ``"advection_2d"``: ``β u_x + u_y = f`` with
    ``u = sin(ω (x − β y) + φ)`` plus a smooth term, ``β`` uniform in [1, 50] (capped for
    resolution in y).

    Parameters
    ----------
    seed : int
        Seed of the draw (``numpy.random.default_rng``); the same seed gives the same problem.
    kind : str, default "poisson_1d"
        One of :data:`RANDOM_KINDS`.

    Returns
    -------
    Problem
        Manufactured from the drawn exact solution (:meth:`Problem.manufactured`).
    """
    if not isinstance(kind, str) or kind not in RANDOM_KINDS:
        raise ValueError(f"kind must be one of {sorted(RANDOM_KINDS)}, got {kind!r}")
    if not is_int(seed) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    rng = np.random.default_rng([int(seed), sorted(RANDOM_KINDS).index(kind)])
    operator = allen_cahn if kind.startswith("allen_cahn") else laplacian
    if RANDOM_KINDS[kind] == 1:
        a, length, n = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 2 * np.pi), rng.integers(200, 601)
        fn, _ = _random_terms(rng, a, length, int(n))
        return Problem.manufactured(operator, fn, [(a, a + length)], int(n))
    box, sizes = [], []
    for _ in range(2):
        a, length = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 2.0)
        box.append((a, a + length))
        sizes.append(int(rng.integers(40, 101)))
    (ax, bx), (ay, by) = box
    if kind == "advection_2d":
        # β up to 50, but slow enough that a wave of angular frequency 2 stays resolvable in y
        beta_cap = 2 * np.pi * (sizes[1] - 1) / (POINTS_PER_PERIOD * (by - ay) * 2.0)
        beta = rng.uniform(1.0, max(min(50.0, beta_cap), 1.0))
        # along x the wave has ω per unit; along y (time) β ω: both resolvable
        w_cap = (
            2
            * np.pi
            / POINTS_PER_PERIOD
            * min((sizes[0] - 1) / (bx - ax), (sizes[1] - 1) / (beta * (by - ay)))
        )
        w = rng.uniform(1.0, max(min(FREQUENCY_RANGE[1], w_cap), 1.0))
        phase, c = rng.uniform(0, 2 * np.pi), rng.uniform(-0.5, 0.5)

        def exact(x, y):
            return jnp.sin(w * (x - beta * y) + phase) + c * x * y

        return Problem.manufactured(advection(beta), exact, box, sizes)
    f1, _ = _random_terms(rng, ax, bx - ax, sizes[0])
    g1, _ = _random_terms(rng, ay, by - ay, sizes[1])
    f2, _ = _random_terms(rng, ax, bx - ax, sizes[0])
    g2, _ = _random_terms(rng, ay, by - ay, sizes[1])
    c = rng.uniform(0.0, 0.5)

    def exact2(x, y):
        return f1(x) * g1(y) + c * (f2(x) + g2(y))

    return Problem.manufactured(operator, exact2, box, sizes)
