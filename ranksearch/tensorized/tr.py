"""Tensor-ring layers (Wang et al. 2018; PSTRN, Li et al. 2021).

TR linear, modes s = (I_1..I_m, O_1..O_n), ranks r_0..r_{m+n-1}: core k is (r_k, s_k, r_{k+1}),
the ring closed by r_0, and W[o, i] = trace(G_1[i_1] ... G_m[i_m] G_{m+1}[o_1] ... G_{m+n}[o_n]).
TR conv inserts a kernel core (r_m, kh*kw, r_{m+1}) between the input and output cores, so it has
m+n+1 ranks r_0..r_{m+n}.

The sequential path never builds W. Linear: the input cores merge into an (r_0, C_in, r_m)
tensor and the output cores into (r_m, C_out, r_0), and x meets them in two large matmuls (at
small batches a planner may instead apply smaller runs of cores, whichever costs fewer FLOPs).
Conv: per-pixel map by the merged input cores, k x k conv r_m -> r_{m+1} over the batch*r_0
stack, per-pixel map by the merged output cores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ranksearch.tensorized import _decompose
from ranksearch.tensorized._base import (
    ConvLayer,
    LayerSpec,
    LinearLayer,
    PathCost,
    Unfoldings,
    apply_chain,
    chain_merge,
    chain_merge_flops,
    chain_plan,
    modes_tensor,
    path_cost,
)


def _ring_dims(modes: tuple[int, ...], ranks: tuple[int, ...]) -> list[tuple[int, int, int]]:
    d = len(modes)
    return [(ranks[k], modes[k], ranks[(k + 1) % d]) for k in range(d)]


def _ring_params(spec: LayerSpec, modes: tuple[int, ...]) -> int:
    return sum(a * s * b for a, s, b in _ring_dims(modes, spec.ranks)) + spec.bias_params


def _ring_bond_ranks(t: np.ndarray, matrix_rank: Any) -> tuple[float, ...]:
    """Cutting a ring at bonds a and b splits its modes into two arcs whose unfolding has rank
    <= r_a * r_b. Bond k reads the two half-ring arcs (d // 2 of the d modes) that start and end
    there and takes the square root of the geometric mean of their ranks: each cut is assumed
    to share its rank evenly between its two bonds (for even d both arcs are one unfolding)."""
    unfold = Unfoldings(t, matrix_rank)
    d = t.ndim
    h = max(1, d // 2)
    ranks = []
    for k in range(d):
        after = unfold.rank([(k + j) % d for j in range(h)])  # arc from bond k to bond k+h
        before = unfold.rank([(k - h + j) % d for j in range(h)])  # from bond k-h to bond k
        ranks.append(math.sqrt(math.sqrt(after * before)))
    return tuple(ranks)


class _TRGeometry:
    """The ring's modes (I_1..I_m, [kh*kw,] O_1..O_n) and the bond r_k before mode k."""

    @classmethod
    def weight_tensor(cls, spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
        return modes_tensor(spec, weight)

    @classmethod
    def bond_ranks(cls, spec: LayerSpec, weight: np.ndarray, matrix_rank: Any) -> tuple[float, ...]:
        return _ring_bond_ranks(modes_tensor(spec, weight), matrix_rank)


def _init_ring(cores: nn.ParameterList, target: float) -> None:
    """Core k ~ N(0, target^(1/d) / r_k): the merged weight then has variance `target`."""
    d = len(cores)
    for core in cores:
        nn.init.normal_(core, 0.0, math.sqrt(target ** (1.0 / d) / core.shape[0]))


class TRLinear(_TRGeometry, LinearLayer):
    """Tensor-ring linear layer; ranks r_0..r_{m+n-1} over the modes of in_shape + out_shape."""

    fmt = "tr"

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        return len(in_shape) + len(out_shape), "one per mode of in_shape+out_shape"

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return _ring_params(spec, spec.in_shape + spec.out_shape)

    @staticmethod
    def _labels(spec: LayerSpec) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        d = len(spec.in_shape) + len(spec.out_shape)
        return (tuple(f"s{k}" for k in range(len(spec.in_shape))),
                tuple((f"r{k}", f"s{k}", f"r{(k + 1) % d}") for k in range(d)))

    @classmethod
    def _plan(cls, spec: LayerSpec, batch_size: int) -> tuple[tuple[tuple[int, int], ...], PathCost]:
        """Blocks of cores the sequential path applies, in order, and their cost.

        At training batch sizes this is the merged input half then the merged output half
        (two large matmuls); at small batches contracting core by core can be cheaper, since
        merging a half costs about r_0 * C_in * r_m * (rank) regardless of the batch.
        """
        in_labels, core_labels = cls._labels(spec)
        sizes = {"n": batch_size, **{f"s{k}": s for k, s in enumerate(spec.in_shape + spec.out_shape)},
                 **{f"r{k}": r for k, r in enumerate(spec.ranks)}}
        return chain_plan((*in_labels, "n"), core_labels, tuple(sorted(sizes.items())), batch_size * spec.c_in)

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: Any = None) -> dict[str, PathCost]:
        m, r = len(spec.in_shape), spec.ranks
        dims = _ring_dims(spec.in_shape + spec.out_shape, r)
        pair = r[0] * r[m]
        build = chain_merge_flops(dims[:m]) + chain_merge_flops(dims[m:]) + 2 * spec.c_out * pair * spec.c_in
        rec = cls.reconstruct_cost(spec, batch_size, build, 2 * pair * (spec.c_in + spec.c_out))
        return {"sequential": cls._plan(spec, batch_size)[1], "reconstruct": rec}

    def _build(self, factory: dict[str, Any]) -> None:
        dims = _ring_dims(self.in_shape + self.out_shape, self.ranks)
        self.cores = nn.ParameterList([nn.Parameter(torch.empty(*d, **factory)) for d in dims])

    def reset_parameters(self) -> None:
        _init_ring(self.cores, self._he_target())
        self._init_bias()

    def _merged(self) -> tuple[Tensor, Tensor]:
        """(r_0, C_in, r_m) input and (r_m, C_out, r_0) output halves of the ring."""
        m = len(self.in_shape)
        return chain_merge(self.cores[:m]), chain_merge(self.cores[m:])

    def _sequential(self, x: Tensor) -> Tensor:
        in_labels, core_labels = self._labels(self.spec)
        out_labels = [lab for _, lab, _ in core_labels[len(in_labels):]]
        y = apply_chain(x, self.in_shape, in_labels, out_labels, self.cores, core_labels,
                        self._plan(self.spec, x.shape[0])[0])
        return y if self.bias is None else y + self.bias

    def full_weight(self) -> Tensor:
        a, b = self._merged()
        pair = a.shape[0] * a.shape[2]
        return b.permute(1, 0, 2).reshape(self.out_features, pair) @ a.permute(2, 0, 1).reshape(pair, -1)

    def _load_dense(self, weight: np.ndarray) -> None:
        w = self.weight_tensor(self.spec, weight)
        for p, c in zip(self.cores, _decompose.tensor_ring_cores(w, self.ranks), strict=True):
            self._copy_(p, c)


class TRConv2d(_TRGeometry, ConvLayer):
    """Tensor-ring convolution; ranks r_0..r_{m+n}, kernel core (r_m, kh*kw, r_{m+1})."""

    fmt = "tr"

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        return (len(in_shape) + len(out_shape) + 1,
                "one per mode of in_shape+out_shape plus one for the kernel core")

    @staticmethod
    def _modes(spec: LayerSpec) -> tuple[int, ...]:
        return (*spec.in_shape, spec.kk, *spec.out_shape)

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return _ring_params(spec, cls._modes(spec))

    @staticmethod
    def _weight_orders(spec: LayerSpec) -> dict[str, int]:
        """FLOPs of building W from the merged halves and the kernel core, two association orders."""
        m, r = len(spec.in_shape), spec.ranks
        r0, rm, rk = r[0], r[m], r[m + 1]
        ci, co, kk = spec.c_in, spec.c_out, spec.kk
        return {"ak": 2 * r0 * ci * rm * kk * rk + 2 * co * r0 * rk * ci * kk,
                "kb": 2 * rm * kk * rk * co * r0 + 2 * ci * r0 * rm * co * kk}

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: tuple[int, int]) -> dict[str, PathCost]:
        m, r = len(spec.in_shape), spec.ranks
        dims = _ring_dims(cls._modes(spec), r)
        merge = chain_merge_flops(dims[:m]) + chain_merge_flops(dims[m + 1:])
        r0, rm, rk = r[0], r[m], r[m + 1]
        (h, w), (ho, wo) = input_hw, spec.out_hw(input_hw)
        n, ci, co = batch_size, spec.c_in, spec.c_out
        seq = path_cost(
            merge + 2 * n * r0 * rm * ci * h * w + 2 * n * r0 * rk * rm * spec.kk * ho * wo + 2 * n * co * r0 * rk * ho * wo,
            n * ci * h * w, 2 * n * r0 * rm * h * w, 2 * n * r0 * rk * ho * wo, n * co * ho * wo)
        halves = 2 * r0 * (ci * rm + rk * co)
        rec = cls.reconstruct_cost(spec, n, input_hw, merge + min(cls._weight_orders(spec).values()), halves)
        return {"sequential": seq, "reconstruct": rec}

    def _build(self, factory: dict[str, Any]) -> None:
        dims = _ring_dims(self._modes(self.spec), self.ranks)
        self.cores = nn.ParameterList([nn.Parameter(torch.empty(*d, **factory)) for d in dims])

    def reset_parameters(self) -> None:
        _init_ring(self.cores, self._he_target())
        self._init_bias()

    def _parts(self) -> tuple[Tensor, Tensor, Tensor]:
        """(r_0, C_in, r_m) input half, (r_m, kh*kw, r_{m+1}) kernel core, (r_{m+1}, C_out, r_0)."""
        m = len(self.in_shape)
        return chain_merge(self.cores[:m]), self.cores[m], chain_merge(self.cores[m + 1:])

    def _sequential(self, x: Tensor) -> Tensor:
        a, k, b = self._parts()
        r0, rm, rk = a.shape[0], a.shape[2], k.shape[2]
        n = x.shape[0]
        z = F.conv2d(x, a.permute(0, 2, 1).reshape(r0 * rm, self.in_channels, 1, 1))
        z = z.reshape(n * r0, rm, *z.shape[2:])
        z = self._conv(z, k.permute(2, 0, 1).reshape(rk, rm, *self.kernel_size))
        z = z.reshape(n, r0 * rk, *z.shape[2:])
        return F.conv2d(z, b.permute(1, 2, 0).reshape(self.out_channels, r0 * rk, 1, 1), self.bias)

    def full_weight(self) -> Tensor:
        a, k, b = self._parts()
        r0, rm, rk = a.shape[0], a.shape[2], k.shape[2]
        ci, co, kk = self.in_channels, self.out_channels, self.spec.kk
        orders = self._weight_orders(self.spec)
        if orders["ak"] <= orders["kb"]:
            t = (a.reshape(r0 * ci, rm) @ k.reshape(rm, kk * rk)).reshape(r0, ci, kk, rk)
            t = t.permute(0, 3, 1, 2).reshape(r0 * rk, ci * kk)
            w = b.permute(1, 2, 0).reshape(co, r0 * rk) @ t
        else:
            u = (k.reshape(rm * kk, rk) @ b.reshape(rk, co * r0)).reshape(rm, kk, co, r0)
            u = u.permute(3, 0, 2, 1).reshape(r0 * rm, co * kk)
            w = (a.permute(1, 0, 2).reshape(ci, r0 * rm) @ u).reshape(ci, co, kk).permute(1, 0, 2)
        return w.reshape(co, ci, *self.kernel_size)

    def _load_dense(self, weight: np.ndarray) -> None:
        w = self.weight_tensor(self.spec, weight)
        for p, c in zip(self.cores, _decompose.tensor_ring_cores(w, self.ranks), strict=True):
            self._copy_(p, c)
