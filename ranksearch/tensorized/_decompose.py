"""Tensorly decompositions of dense weights into cores of the requested ranks.

All decompositions run in float64 with tensorly's numpy backend inside a local backend context
(so they neither depend on nor change a backend another library set globally) and are
deterministic. When a requested rank exceeds what the decomposition can produce, the cores are
padded so the represented weight is unchanged while training can still grow the extra slices:
for each bond, slices of the core to its right are zero and slices of the core to its left get
small noise from a fixed seed (any product term through a padded bond index hits a zero).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

_SEED = 0


def _backend():
    import tensorly as tl

    return tl, tl.backend_context("numpy", local_threadsafe=True)


def _rng() -> np.random.Generator:
    return np.random.default_rng(_SEED)


def balance_chain(cores: list[np.ndarray]) -> list[np.ndarray]:
    """Rescale cores to equal Frobenius norms (their product, hence the weight, is unchanged)."""
    norms = [float(np.linalg.norm(c)) for c in cores]
    if min(norms) == 0.0:
        return cores
    geo = math.exp(sum(math.log(n) for n in norms) / len(norms))
    return [c * (geo / n) for c, n in zip(cores, norms, strict=True)]


def pad_chain(cores: list[np.ndarray], bonds: Sequence[int], ring: bool) -> list[np.ndarray]:
    """Pad cores (left bond, ..., right bond) to bond sizes `bonds` without changing their product.

    Core k sits between bond k and bond k+1 (for a ring, the last core's right bond is bond 0).
    """
    rng = _rng()
    out = []
    d = len(cores)
    for k, core in enumerate(cores):
        left = bonds[k]
        right = bonds[(k + 1) % d] if ring else bonds[k + 1]
        a, b = core.shape[0], core.shape[-1]
        if (a, b) == (left, right):
            out.append(core)
            continue
        new = np.zeros((left, *core.shape[1:-1], right))
        new[:a, ..., :b] = core
        if right > b:
            rms = float(np.sqrt(np.mean(core ** 2))) or 1.0
            new[:a, ..., b:] = rng.normal(0.0, rms, size=(a, *core.shape[1:-1], right - b))
        out.append(new)
    return out


def tensor_ring_cores(tensor: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    """TR-SVD cores (r_k, s_k, r_{k+1}) of `tensor`, ring closed by ranks[0], padded to `ranks`.

    TR-SVD splits the first unfolding's rank as r_0 * r_1 <= min(s_1, rest); when the requested
    pair is larger, the largest feasible product (most balanced split) is used and padded.
    """
    tl, ctx = _backend()
    from tensorly.decomposition import tensor_ring

    shape = tensor.shape
    limit = min(shape[0], math.prod(shape[1:]))
    r0, r1 = ranks[0], ranks[1 % len(ranks)]
    if r0 * r1 > limit:
        pairs = [(a, b) for a in range(1, r0 + 1) for b in range(1, r1 + 1) if a * b <= limit]
        r0, r1 = max(pairs, key=lambda ab: (ab[0] * ab[1], -abs(ab[0] - ab[1]), ab[1]))
    req = [r0, r1, *ranks[2:], r0] if len(shape) > 1 else [1, 1]
    with ctx:
        if len(shape) == 1:
            cores = [tensor.reshape(1, -1, 1).astype(np.float64)]
        else:
            cores = [np.asarray(f) for f in tensor_ring(tensor.astype(np.float64), rank=req)]
    return pad_chain(balance_chain(cores), list(ranks), ring=True)


def tensor_train_cores(tensor: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    """TT-SVD cores (r_{k-1}, s_k, r_k) with r_0 = r_d = 1 and inner ranks padded to `ranks`."""
    tl, ctx = _backend()
    from tensorly.decomposition import tensor_train  # (a.k.a. matrix_product_state)

    full = [1, *ranks, 1]
    with ctx:
        if tensor.ndim == 1:
            cores = [tensor.reshape(1, -1, 1).astype(np.float64)]
        else:
            cores = [np.asarray(f) for f in tensor_train(tensor.astype(np.float64), rank=full)]
    return pad_chain(balance_chain(cores), full, ring=False)


def tucker2(tensor: np.ndarray, r_out: int, r_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tucker-2 of (C_out, C_in, ...): core (r_out, r_in, ...), U_out (C_out, r_out), U_in (C_in, r_in).

    Ranks above a mode's size are capped for the decomposition; the extra factor columns get noise
    and the matching core slices stay zero, so the weight is unchanged.
    """
    tl, ctx = _backend()
    from tensorly.decomposition import partial_tucker

    c_out, c_in = tensor.shape[:2]
    kk = math.prod(tensor.shape[2:])
    ro, ri = min(r_out, c_out, c_in * kk), min(r_in, c_in, c_out * kk)
    while ro > ri * kk or ri > ro * kk:  # HOOI unfoldings bound each rank by the other's
        ro, ri = min(ro, ri * kk), min(ri, ro * kk)
    with ctx:
        (core, factors), _ = partial_tucker(tensor.astype(np.float64), rank=[ro, ri], modes=[0, 1],
                                            init="svd", random_state=_SEED, n_iter_max=100, tol=1e-12)
    core, u_out, u_in = np.asarray(core), np.asarray(factors[0]), np.asarray(factors[1])
    rng = _rng()
    if r_out > ro or r_in > ri:
        new = np.zeros((r_out, r_in, *core.shape[2:]))
        new[:ro, :ri] = core
        core = new
    u_out = np.concatenate([u_out, rng.normal(0, 1 / math.sqrt(c_out), (c_out, r_out - ro))], axis=1)
    u_in = np.concatenate([u_in, rng.normal(0, 1 / math.sqrt(c_in), (c_in, r_in - ri))], axis=1)
    return core, u_out, u_in


def cp_factors(tensor: np.ndarray, rank: int, n_iter_max: int = 200) -> list[np.ndarray]:
    """CP-ALS factors (s_k, R), weights folded in and column norms balanced across factors."""
    tl, ctx = _backend()
    from tensorly.decomposition import parafac

    with ctx, warnings.catch_warnings():
        # R above a mode's size: the SVD init fills the missing columns randomly (seeded), as intended.
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs", category=UserWarning)
        weights, factors = parafac(tensor.astype(np.float64), rank=rank, init="svd", n_iter_max=n_iter_max,
                                   tol=1e-12, random_state=_SEED, normalize_factors=False)
    factors = [np.asarray(f).copy() for f in factors]
    factors[0] = factors[0] * np.asarray(weights)[None, :]
    norms = np.stack([np.linalg.norm(f, axis=0) for f in factors])  # (n_factors, R)
    norms = np.where(norms == 0.0, 1.0, norms)
    geo = np.exp(np.log(norms).mean(axis=0))
    return [f * (geo / n)[None, :] for f, n in zip(factors, norms, strict=True)]
