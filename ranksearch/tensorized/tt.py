"""Tensor-train (matrix-product-operator) layers (Novikov et al. 2015; Garipov et al. 2016).

TT linear pairs input and output modes: with d = len(in_shape) = len(out_shape) (the shorter
shape is padded with trailing 1s), core k is (r_{k-1}, I_k, O_k, r_k) with r_0 = r_d = 1, so the
layer has d-1 rank elements. TT conv puts a spatial core (1, kh*kw, r_1) before d channel cores
(r_k, I_k, O_k, r_{k+1}) with r_{d+1} = 1: d rank elements.

The sequential path never builds W: a planner (dynamic programming over contiguous runs of
cores) picks which adjacent cores to pre-merge and in which order to apply the runs, one large
(b)mm each, for the layer's shapes, ranks and batch size. For 1250 -> 320 at rank 10 and batch
512 that is two runs of two cores: about 185 MFLOP against 410 MFLOP for the dense product.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ranksearch.tensorized import _decompose
from ranksearch.tensorized._base import (
    ConvLayer,
    LayerSpec,
    LinearLayer,
    PathCost,
    Unfoldings,
    apply_chain,
    chain_apply,
    chain_blocks,
    chain_merge,
    chain_merge_flops,
    chain_plan,
    path_cost,
)


def _pad_pair(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    d = max(len(in_shape), len(out_shape))
    return in_shape + (1,) * (d - len(in_shape)), out_shape + (1,) * (d - len(out_shape))


def _equal_length_shapes(n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Balanced factorisations with as many input as output modes (TT pairs them)."""
    from ranksearch.tensorized.factors import balanced_factors

    k = max(len(balanced_factors(n_in)), len(balanced_factors(n_out)))
    return balanced_factors(n_in, k), balanced_factors(n_out, k)


def _channel_bonds(spec: LayerSpec, conv: bool) -> list[int]:
    """Bond sizes b_0..b_d around the d channel cores (b_0 links to the spatial core in a conv)."""
    return [*spec.ranks, 1] if conv else [1, *spec.ranks, 1]


def _channel_labels(d: int) -> tuple[tuple[str, ...], ...]:
    return tuple((f"r{k}", f"i{k}", f"o{k}", f"r{k + 1}") for k in range(d))


def _sizes(spec: LayerSpec, bonds: list[int], extra: dict[str, int]) -> tuple[tuple[str, int], ...]:
    sizes = dict(extra)
    for k, (i, o) in enumerate(zip(spec.in_shape, spec.out_shape, strict=True)):
        sizes[f"i{k}"], sizes[f"o{k}"] = i, o
    for k, b in enumerate(bonds):
        sizes[f"r{k}"] = b
    return tuple(sorted(sizes.items()))


def _init_chain(cores: list[Tensor], inner_ranks: tuple[int, ...], target: float) -> None:
    """Every core ~ N(0, s^2) with s^2 = (target / prod(inner ranks))^(1/n_cores)."""
    s2 = (target / math.prod(inner_ranks)) ** (1.0 / len(cores))
    for core in cores:
        nn.init.normal_(core, 0.0, math.sqrt(s2))


class _TTGeometry:
    """TT-matrix modes ([kh*kw,] I_1*O_1, ..., I_d*O_d): the unfolding at bond k (the modes
    before it against those after) has rank <= r_k."""

    @classmethod
    def weight_tensor(cls, spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
        kk = None if spec.kernel is None else spec.kk
        return _interleaved(weight, spec.out_shape, spec.in_shape, kk)

    @classmethod
    def bond_ranks(cls, spec: LayerSpec, weight: np.ndarray, matrix_rank: Any) -> tuple[float, ...]:
        unfold = Unfoldings(cls.weight_tensor(spec, weight), matrix_rank)
        return tuple(unfold.rank(list(range(k))) for k in range(1, unfold.tensor.ndim))


def _interleaved(weight: np.ndarray, out_shape: tuple[int, ...], in_shape: tuple[int, ...],
                 kk: int | None) -> np.ndarray:
    """Dense weight as a tensor of modes ([kh*kw,] I_1*O_1, ..., I_d*O_d) (TT-matrix layout)."""
    d = len(in_shape)
    axes = [ax for k in range(d) for ax in (d + k, k)]
    modes = [i * o for i, o in zip(in_shape, out_shape, strict=True)]
    if kk is None:
        return weight.reshape(*out_shape, *in_shape).transpose(axes).reshape(modes)
    w = weight.reshape(*out_shape, *in_shape, kk)
    return w.transpose([2 * d, *axes]).reshape(kk, *modes)


class TTLinear(_TTGeometry, LinearLayer):
    """TT-matrix linear layer; ranks r_1..r_{d-1} (in_shape/out_shape padded to equal length d)."""

    fmt = "tt"

    @classmethod
    def adjust_shapes(cls, in_shape: tuple[int, ...],
                      out_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return _pad_pair(in_shape, out_shape)

    @classmethod
    def default_shapes(cls, n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return _equal_length_shapes(n_in, n_out)

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        d = max(len(in_shape), len(out_shape))
        return d - 1, f"d-1 inner TT ranks for d={d} paired modes of in_shape/out_shape"

    @staticmethod
    def _core_dims(spec: LayerSpec) -> list[tuple[int, int, int, int]]:
        b = _channel_bonds(spec, conv=False)
        return [(b[k], i, o, b[k + 1]) for k, (i, o) in enumerate(zip(spec.in_shape, spec.out_shape, strict=True))]

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return sum(math.prod(d) for d in cls._core_dims(spec)) + spec.bias_params

    @classmethod
    def _plan(cls, spec: LayerSpec, batch_size: int) -> tuple[tuple[tuple[int, int], ...], PathCost]:
        """Blocks of cores the sequential path applies, in order, and their cost."""
        d = len(spec.in_shape)
        sizes = _sizes(spec, _channel_bonds(spec, conv=False), {"n": batch_size})
        return chain_plan((*(f"i{k}" for k in range(d)), "n"), _channel_labels(d), sizes, batch_size * spec.c_in)

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: Any = None) -> dict[str, PathCost]:
        merge = chain_merge_flops([(a, i * o, b) for a, i, o, b in cls._core_dims(spec)])
        return {"sequential": cls._plan(spec, batch_size)[1],
                "reconstruct": cls.reconstruct_cost(spec, batch_size, merge)}

    def _build(self, factory: dict[str, Any]) -> None:
        self.cores = nn.ParameterList(
            [nn.Parameter(torch.empty(*d, **factory)) for d in self._core_dims(self.spec)])

    def reset_parameters(self) -> None:
        _init_chain(list(self.cores), self.ranks, self._he_target())
        self._init_bias()

    def _sequential(self, x: Tensor) -> Tensor:
        d = len(self.in_shape)
        y = apply_chain(x, self.in_shape, [f"i{k}" for k in range(d)], ("r0", *(f"o{k}" for k in range(d)), f"r{d}"),
                        self.cores, _channel_labels(d), self._plan(self.spec, x.shape[0])[0])
        return y if self.bias is None else y + self.bias

    def full_weight(self) -> Tensor:
        d = len(self.in_shape)
        merged = chain_merge([c.reshape(c.shape[0], -1, c.shape[3]) for c in self.cores])
        w = merged.reshape([s for pair in zip(self.in_shape, self.out_shape, strict=True) for s in pair])
        return w.permute(*range(1, 2 * d, 2), *range(0, 2 * d, 2)).reshape(self.out_features, self.in_features)

    def _load_dense(self, weight: np.ndarray) -> None:
        tensor = self.weight_tensor(self.spec, weight)
        for p, c in zip(self.cores, _decompose.tensor_train_cores(tensor, self.ranks), strict=True):
            self._copy_(p, c.reshape(p.shape))


class TTConv2d(_TTGeometry, ConvLayer):
    """TT convolution: spatial core (1, kh*kw, r_1), then d channel cores; ranks r_1..r_d."""

    fmt = "tt"

    @classmethod
    def adjust_shapes(cls, in_shape: tuple[int, ...],
                      out_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return _pad_pair(in_shape, out_shape)

    @classmethod
    def default_shapes(cls, n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return _equal_length_shapes(n_in, n_out)

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        d = max(len(in_shape), len(out_shape))
        return d, f"one after the spatial core and one between each of the d={d} channel cores"

    @staticmethod
    def _core_dims(spec: LayerSpec) -> list[tuple[int, ...]]:
        b = _channel_bonds(spec, conv=True)
        channel = [(b[k], i, o, b[k + 1]) for k, (i, o) in enumerate(zip(spec.in_shape, spec.out_shape, strict=True))]
        return [(1, spec.kk, b[0]), *channel]

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return sum(math.prod(d) for d in cls._core_dims(spec)) + spec.bias_params

    @classmethod
    def _plans(cls, spec: LayerSpec, n: int,
               input_hw: tuple[int, int]) -> dict[str, tuple[tuple[tuple[int, int], ...], PathCost]]:
        """Channel-chain plans (blocks, cost incl. the spatial conv) of the two sequential orders.

        'map_first' maps every input pixel through the channel chain (keeping r_1 open), then runs
        the spatial conv r_1 -> 1 over the (batch*C_out) stack; 'conv_first' runs the spatial
        conv 1 -> r_1 over the (batch*C_in) stack first, then maps every output pixel.
        """
        d, r1, kk = len(spec.in_shape), spec.ranks[0], spec.kk
        (h, w), (ho, wo) = input_hw, spec.out_hw(input_hw)
        bonds = _channel_bonds(spec, conv=True)
        ins, labels = tuple(f"i{k}" for k in range(d)), _channel_labels(d)
        steps_m, chain_m = chain_plan(("b", *ins, "p"), labels, _sizes(spec, bonds, {"b": n, "p": h * w}))
        steps_c, chain_c = chain_plan(("b", *ins, "r0", "p"), labels, _sizes(spec, bonds, {"b": n, "p": ho * wo}))
        # Convolutions with one input or one output channel run far below GEMM speed on CPU
        # (measured ~10x); charge them their im2col traffic (every input pixel read kh*kw times).
        # map_first also permutes its (b, C_out, r_1, pixels) result once before the conv.
        conv_m = path_cost(2 * n * spec.c_out * r1 * kk * ho * wo, 2 * n * spec.c_out * r1 * h * w,
                           n * spec.c_out * r1 * kk * ho * wo, n * spec.c_out * ho * wo)
        conv_c = path_cost(2 * n * spec.c_in * r1 * kk * ho * wo, n * spec.c_in * kk * ho * wo,
                           n * spec.c_in * r1 * ho * wo)
        return {"map_first": (steps_m, PathCost(chain_m.flops + conv_m.flops, chain_m.cost + conv_m.cost)),
                "conv_first": (steps_c, PathCost(chain_c.flops + conv_c.flops, chain_c.cost + conv_c.cost))}

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: tuple[int, int]) -> dict[str, PathCost]:
        dims = cls._core_dims(spec)
        merge = chain_merge_flops([dims[0], *[(a, i * o, b) for a, i, o, b in dims[1:]]])
        plans = cls._plans(spec, batch_size, input_hw)
        seq = min((p[1] for p in plans.values()), key=lambda c: (c.cost, c.flops))
        return {"sequential": seq, "reconstruct": cls.reconstruct_cost(spec, batch_size, input_hw, merge)}

    def _build(self, factory: dict[str, Any]) -> None:
        self.cores = nn.ParameterList(
            [nn.Parameter(torch.empty(*d, **factory)) for d in self._core_dims(self.spec)])

    def reset_parameters(self) -> None:
        _init_chain(list(self.cores), self.ranks, self._he_target())
        self._init_bias()

    def _sequential(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        d, r1 = len(self.in_shape), self.ranks[0]
        plans = self._plans(self.spec, n, (h, w))
        spatial = self.cores[0].reshape(self.spec.kk, r1).t()  # (r_1, kh*kw)
        ins = tuple(f"i{k}" for k in range(d))
        outs = tuple(f"o{k}" for k in range(d))
        labels, channel = _channel_labels(d), list(self.cores)[1:]
        if (plans["map_first"][1].cost, plans["map_first"][1].flops) < (plans["conv_first"][1].cost,
                                                                         plans["conv_first"][1].flops):
            blocks = chain_blocks(channel, labels, plans["map_first"][0])
            t = chain_apply(x.reshape(n, *self.in_shape, h * w), ("b", *ins, "p"), blocks,
                            ("b", *outs, "r0", "p", f"r{d}"))
            y = self._conv(t.reshape(n * self.out_channels, r1, h, w), spatial.reshape(1, r1, *self.kernel_size))
            y = y.reshape(n, self.out_channels, *y.shape[2:])
        else:
            t = self._conv(x.reshape(n * self.in_channels, 1, h, w), spatial.reshape(r1, 1, *self.kernel_size))
            ho, wo = t.shape[2:]
            blocks = chain_blocks(channel, labels, plans["conv_first"][0])
            t = chain_apply(t.reshape(n, *self.in_shape, r1, ho * wo), ("b", *ins, "r0", "p"), blocks,
                            ("b", *outs, "p", f"r{d}"))
            y = t.reshape(n, self.out_channels, ho, wo)
        return self._add_bias(y)

    def full_weight(self) -> Tensor:
        d = len(self.in_shape)
        flat = [self.cores[0], *[c.reshape(c.shape[0], -1, c.shape[3]) for c in list(self.cores)[1:]]]
        pairs = [s for pair in zip(self.in_shape, self.out_shape, strict=True) for s in pair]
        w = chain_merge(flat).reshape(self.spec.kk, *pairs)
        w = w.permute(*range(2, 2 * d + 1, 2), *range(1, 2 * d, 2), 0)
        return w.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def _load_dense(self, weight: np.ndarray) -> None:
        tensor = self.weight_tensor(self.spec, weight)
        for p, c in zip(self.cores, _decompose.tensor_train_cores(tensor, self.ranks), strict=True):
            self._copy_(p, c.reshape(p.shape))
