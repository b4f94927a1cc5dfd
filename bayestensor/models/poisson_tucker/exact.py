"""Exact samplers for large counts, drawn on the host with NumPy (float64/int64) through
:func:`jax.pure_callback`: the multinomial allocation of the large cells and the CRT counts of
large core cells. Seeded from a JAX key, so a run is reproducible from its seed. Their inputs
are small (the large cells, the core), so they run once per sweep on the host whatever the
number of devices the tokens are split over.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from bayestensor.models.poisson_tucker.spec import PoissonData, PoissonTuckerSpec

#: Rows × core cells of one block of the large-cell multinomial draws (bounded memory).
BIG_BLOCK = 1 << 20


def _seed(key: jax.Array) -> jax.Array:
    return jax.random.bits(key, (4,), jnp.uint32)


def _host_rng(seed) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.asarray(seed, dtype=np.uint64)))


def _allocate_big_host(shape, ranks, dtype, seed, index, y, core, *factors):
    """NumPy side of :func:`allocate_big`: exact multinomials in float64/int64, by blocks,
    returned in the declared integer ``dtype``."""
    rng = _host_rng(seed)
    K = len(ranks)
    index = np.asarray(index, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    core = np.asarray(core, dtype=np.float64).reshape(-1)
    factors = [np.asarray(f, dtype=np.float64) for f in factors]
    Y = np.zeros(core.size, dtype=np.int64)
    counts = [np.zeros((shape[k], ranks[k]), dtype=np.int64) for k in range(K)]
    step = max(1, BIG_BLOCK // core.size)
    for start in range(0, y.size, step):
        idx, n = index[start : start + step], y[start : start + step]
        p = np.broadcast_to(core, (n.size, core.size)).reshape(n.size, *ranks)
        for k in range(K):
            sh = [n.size] + [1] * K
            sh[k + 1] = ranks[k]
            p = p * factors[k][idx[:, k]].reshape(sh)
        p = p.reshape(n.size, -1)
        tot = p.sum(1, keepdims=True)
        p = np.where(tot > 0, p / np.where(tot > 0, tot, 1.0), 1.0 / core.size)
        draws = rng.multinomial(n, p).reshape(n.size, *ranks)
        Y += draws.reshape(n.size, -1).sum(0)
        for k in range(K):
            per = draws.sum(axis=tuple(j + 1 for j in range(K) if j != k))
            np.add.at(counts[k], idx[:, k], per)
    return (Y.reshape(ranks).astype(dtype), *(c.astype(dtype) for c in counts))


def allocate_big(spec: PoissonTuckerSpec, data: PoissonData, factors, core, key):
    """Allocation of the large cells: one ``Multinomial(y, p(· | x))`` per cell.

    ``p(r | x) ∝ λ[r] Π_k θ^k[x_k, r_k]`` over all core cells, drawn exactly (conditional
    binomials in float64/int64 with NumPy's generator, seeded from ``key``, through
    :func:`jax.pure_callback`; JAX's float32 binomial sampler is not accurate for counts in
    the millions). Cost and memory: O(large cells · Π_k R_k) per sweep, in blocks of
    :data:`BIG_BLOCK`, whatever the counts.

    Returns the same sufficient statistics as :func:`allocate` (for these cells only).
    """
    int_dtype = data.big_y.dtype
    out_types = (jax.ShapeDtypeStruct(spec.ranks, int_dtype),) + tuple(
        jax.ShapeDtypeStruct((n, r), int_dtype) for n, r in zip(spec.shape, spec.ranks, strict=True)
    )
    out = jax.pure_callback(
        partial(_allocate_big_host, spec.shape, spec.ranks, np.dtype(int_dtype)),
        out_types,
        _seed(key),
        data.index[data.big],
        data.big_y,
        core,
        *factors,
        vmap_method="sequential",
    )
    return out[0], list(out[1:])


#: Explicit Bernoulli terms per round of :func:`crt_big`.
CRT_HEAD = 256


def _crt_host(seed, Y, s, dtype=None):
    """NumPy side of :func:`crt_big`; ``dtype``: the declared result dtype (the host may see
    ``Y`` in another integer width when the caller's 64-bit scope does not reach the callback's
    thread)."""
    rng = _host_rng(seed)
    shape = np.shape(Y)
    m = np.asarray(Y, dtype=np.int64).reshape(-1).copy()
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    ell = np.zeros_like(m)
    m[~(s > 0)] = 0  # s = 0: no table ever opens
    n = np.arange(CRT_HEAD, dtype=np.float64)
    while np.any(m > 0):
        act = np.flatnonzero(m > 0)
        ma, sa = m[act], s[act]
        head = np.minimum(ma, CRT_HEAD)
        u = rng.random((act.size, CRT_HEAD))
        hits = (u * (sa[:, None] + n) < sa[:, None]) & (n < head[:, None])
        ell[act] += hits.sum(1)
        rest = ma - head
        w = rng.beta(sa, float(CRT_HEAD))
        m[act] = np.where(rest > 0, rng.binomial(rest, w), 0)
    return ell.reshape(shape).astype(np.asarray(Y).dtype if dtype is None else dtype)


def crt_big(key: jax.Array, Y: jax.Array, s: jax.Array) -> jax.Array:
    """``ℓ[r] ~ CRT(Y[r], s[r])`` exactly, in time independent of ``Σ Y`` (for large counts).

    The first ``H`` = :data:`CRT_HEAD` customers are explicit Bernoullis ``s / (s + n)``. The
    later ``Y − H`` customers each join the first ``H``'s tables or not as in a Pólya urn with
    weights ``H`` and ``s``: ``m ~ Binomial(Y − H, W)``, ``W ~ Beta(s, H)``, do not, and those
    ``m`` seat themselves as a fresh ``CRP(s)``, so ``ℓ = Σ_{n<H} Bernoulli + CRT(m, s)``,
    repeated until nothing is left (``E m ≈ Y s / H``: a few rounds). Drawn with NumPy
    (float64/int64) through :func:`jax.pure_callback`, seeded from ``key``.
    """
    return jax.pure_callback(
        partial(_crt_host, dtype=np.dtype(Y.dtype)),
        jax.ShapeDtypeStruct(Y.shape, Y.dtype),
        _seed(key),
        Y,
        s,
        vmap_method="sequential",
    )
