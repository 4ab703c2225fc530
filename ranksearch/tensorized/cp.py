"""CP (canonical polyadic) layers (Lebedev et al. 2015).

W[o, i(, h, w)] = sum_r prod_k A_k[i_k, r] (* K[hw, r]) * prod_j B_j[o_j, r]: one factor (s x R)
per mode of in_shape, a kernel factor (kh*kw x R) for a conv, one per mode of out_shape; a single
rank element R. The sequential path maps x to R channels (the input factors' Khatri-Rao
product), runs a depthwise k x k conv on them (conv only), then maps to C_out.
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
    khatri_rao,
    modes_tensor,
    path_cost,
)

_LAYOUT = (1, "the CP rank R")


def _modes(spec: LayerSpec) -> tuple[int, ...]:
    kernel = () if spec.kernel is None else (spec.kk,)
    return (*spec.in_shape, *kernel, *spec.out_shape)


class _CPMixin:
    """Parameters, init and weight reconstruction shared by the linear and conv variants."""

    spec: LayerSpec
    factors: nn.ParameterList

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        return _LAYOUT

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return sum(_modes(spec)) * spec.ranks[0] + spec.bias_params

    @classmethod
    def weight_tensor(cls, spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
        return modes_tensor(spec, weight)

    @classmethod
    def bond_ranks(cls, spec: LayerSpec, weight: np.ndarray, matrix_rank: Any) -> tuple[float, ...]:
        """The CP rank bounds every unfolding's rank: the largest over single-mode unfoldings."""
        unfold = Unfoldings(modes_tensor(spec, weight), matrix_rank)
        return (max(unfold.rank([k]) for k in range(unfold.tensor.ndim)),)

    def _build(self, factory: dict[str, Any]) -> None:
        rank = self.spec.ranks[0]
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(s, rank, **factory)) for s in _modes(self.spec)])

    def reset_parameters(self) -> None:
        """Every factor ~ N(0, s^2) with R * s^(2 n_factors) = 2 / fan_in."""
        n = len(self.factors)
        std = math.sqrt((self._he_target() / self.spec.ranks[0]) ** (1.0 / n))
        for f in self.factors:
            nn.init.normal_(f, 0.0, std)
        self._init_bias()

    def _groups(self) -> tuple[list[Tensor], Tensor | None, list[Tensor]]:
        m, n = len(self.spec.in_shape), len(self.spec.out_shape)
        factors = list(self.factors)
        kernel = factors[m] if self.spec.kernel is not None else None
        return factors[:m], kernel, factors[len(factors) - n:]

    def _load_dense(self, weight: np.ndarray) -> None:
        spec = self.spec
        m, n = len(spec.in_shape), len(spec.out_shape)
        has_k = spec.kernel is not None
        w = weight.reshape(*spec.out_shape, *spec.in_shape, spec.kk)
        w = w.transpose(*range(n, n + m), *((n + m,) if has_k else ()), *range(n), *(() if has_k else (n + m,)))
        w = w.reshape(_modes(spec))
        for p, f in zip(self.factors, _decompose.cp_factors(w, spec.ranks[0]), strict=True):
            self._copy_(p, f)


class CPLinear(_CPMixin, LinearLayer):
    """CP linear layer: x -> x KR(A) (N x R) -> KR(B)^T (+ bias)."""

    fmt = "cp"

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: Any = None) -> dict[str, PathCost]:
        rank, n = spec.ranks[0], batch_size
        seq = path_cost(2 * n * rank * (spec.c_in + spec.c_out), n * (spec.c_in + 2 * rank + spec.c_out))
        rec = cls.reconstruct_cost(spec, n, 2 * spec.c_out * rank * spec.c_in)
        return {"sequential": seq, "reconstruct": rec}

    def _sequential(self, x: Tensor) -> Tensor:
        ins, _, outs = self._groups()
        t = x @ khatri_rao(ins)
        kb = khatri_rao(outs)
        return torch.addmm(self.bias, t, kb.t()) if self.bias is not None else t @ kb.t()

    def full_weight(self) -> Tensor:
        ins, _, outs = self._groups()
        return khatri_rao(outs) @ khatri_rao(ins).t()


class CPConv2d(_CPMixin, ConvLayer):
    """CP convolution: 1x1 (C_in -> R), depthwise k x k on R channels, 1x1 (R -> C_out)."""

    fmt = "cp"

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: tuple[int, int]) -> dict[str, PathCost]:
        rank, n = spec.ranks[0], batch_size
        (h, w), (ho, wo) = input_hw, spec.out_hw(input_hw)
        seq = path_cost(
            2 * n * (rank * spec.c_in * h * w + rank * spec.kk * ho * wo + spec.c_out * rank * ho * wo),
            n * (spec.c_in * h * w + 2 * rank * h * w + 2 * rank * ho * wo + spec.c_out * ho * wo))
        rec = cls.reconstruct_cost(spec, n, input_hw, 2 * spec.c_out * rank * spec.c_in * spec.kk)
        return {"sequential": seq, "reconstruct": rec}

    def _sequential(self, x: Tensor) -> Tensor:
        ins, kernel, outs = self._groups()
        rank = self.ranks[0]
        t = F.conv2d(x, khatri_rao(ins).t().reshape(rank, self.in_channels, 1, 1))
        t = self._conv(t, kernel.t().reshape(rank, 1, *self.kernel_size), groups=rank)
        return F.conv2d(t, khatri_rao(outs).reshape(self.out_channels, rank, 1, 1), self.bias)

    def full_weight(self) -> Tensor:
        ins, kernel, outs = self._groups()
        w = khatri_rao(outs) @ khatri_rao([*ins, kernel]).t()
        return w.reshape(self.out_channels, self.in_channels, *self.kernel_size)
