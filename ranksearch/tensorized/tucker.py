"""Tucker-2 layers (Kim et al. 2016): only the two channel modes are factorised.

W = U_out . core . U_in^T with U_in (C_in, r_in), core (r_out, r_in[, kh, kw]), U_out (C_out, r_out).
Ranks are (r_in, r_out); in_shape/out_shape are accepted for a uniform API but only their
products matter. The sequential path is the classic 1x1 -> k x k -> 1x1 pipeline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ranksearch.tensorized import _decompose
from ranksearch.tensorized._base import ConvLayer, LayerSpec, LinearLayer, PathCost, Unfoldings, path_cost

_LAYOUT = (2, "(r_in, r_out): the input and output factor ranks")


def _params(spec: LayerSpec) -> int:
    r_in, r_out = spec.ranks
    return spec.c_in * r_in + r_out * r_in * spec.kk + spec.c_out * r_out + spec.bias_params


def _weight_orders(spec: LayerSpec) -> dict[str, int]:
    """FLOPs of building W: U_out . core first ('out') or core . U_in^T first ('in')."""
    r_in, r_out = spec.ranks
    ci, co, kk = spec.c_in, spec.c_out, spec.kk
    return {"out": 2 * co * r_out * r_in * kk + 2 * co * kk * r_in * ci,
            "in": 2 * ci * r_in * r_out * kk + 2 * co * r_out * ci * kk}


class _TuckerMixin:
    """Parameters, init and weight reconstruction shared by the linear and conv variants."""

    spec: LayerSpec
    factor_in: nn.Parameter
    core: nn.Parameter
    factor_out: nn.Parameter

    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        return _LAYOUT

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        return _params(spec)

    @classmethod
    def weight_tensor(cls, spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
        """(C_out, C_in, kh*kw): Tucker-2 factorises the two channel modes only."""
        return weight.reshape(weight.shape[0], weight.shape[1], -1)

    @classmethod
    def bond_ranks(cls, spec: LayerSpec, weight: np.ndarray, matrix_rank: Any) -> tuple[float, ...]:
        """(r_in, r_out): the ranks of the C_in and C_out unfoldings."""
        unfold = Unfoldings(cls.weight_tensor(spec, weight), matrix_rank)
        return (unfold.rank([1]), unfold.rank([0]))

    def _build(self, factory: dict[str, Any]) -> None:
        spec = self.spec
        r_in, r_out = spec.ranks
        kernel = () if spec.kernel is None else spec.kernel
        self.factor_in = nn.Parameter(torch.empty(spec.c_in, r_in, **factory))
        self.core = nn.Parameter(torch.empty(r_out, r_in, *kernel, **factory))
        self.factor_out = nn.Parameter(torch.empty(spec.c_out, r_out, **factory))

    def reset_parameters(self) -> None:
        """Three N(0, s^2) tensors with r_in * r_out * s^6 = 2 / fan_in."""
        r_in, r_out = self.spec.ranks
        std = math.sqrt((self._he_target() / (r_in * r_out)) ** (1.0 / 3.0))
        for p in (self.factor_in, self.core, self.factor_out):
            nn.init.normal_(p, 0.0, std)
        self._init_bias()

    def _weight_matrix(self) -> Tensor:
        """W as (C_out, C_in * kh * kw)."""
        spec = self.spec
        r_in, r_out = spec.ranks
        ci, co, kk = spec.c_in, spec.c_out, spec.kk
        orders = _weight_orders(spec)
        if orders["out"] <= orders["in"]:
            t = (self.factor_out @ self.core.reshape(r_out, r_in * kk)).reshape(co, r_in, kk)
            w = (t.permute(0, 2, 1).reshape(co * kk, r_in) @ self.factor_in.t()).reshape(co, kk, ci)
            return w.permute(0, 2, 1).reshape(co, ci * kk)
        t = self.factor_in @ self.core.reshape(r_out, r_in, kk).permute(1, 0, 2).reshape(r_in, r_out * kk)
        return self.factor_out @ t.reshape(ci, r_out, kk).permute(1, 0, 2).reshape(r_out, ci * kk)

    def _load_dense(self, weight: np.ndarray) -> None:
        r_in, r_out = self.spec.ranks
        core, u_out, u_in = _decompose.tucker2(weight, r_out, r_in)
        self._copy_(self.factor_in, u_in)
        self._copy_(self.core, core.reshape(self.core.shape))
        self._copy_(self.factor_out, u_out)


class TuckerLinear(_TuckerMixin, LinearLayer):
    """Tucker-2 linear layer: x -> x U_in -> core -> U_out (+ bias)."""

    fmt = "tucker"

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: Any = None) -> dict[str, PathCost]:
        r_in, r_out = spec.ranks
        n = batch_size
        seq = path_cost(2 * n * (spec.c_in * r_in + r_in * r_out + r_out * spec.c_out),
                        n * (spec.c_in + 2 * r_in + 2 * r_out + spec.c_out))
        rec = cls.reconstruct_cost(spec, n, min(_weight_orders(spec).values()))
        return {"sequential": seq, "reconstruct": rec}

    def _sequential(self, x: Tensor) -> Tensor:
        t = (x @ self.factor_in) @ self.core.t()
        return torch.addmm(self.bias, t, self.factor_out.t()) if self.bias is not None else t @ self.factor_out.t()

    def full_weight(self) -> Tensor:
        return self._weight_matrix()


class TuckerConv2d(_TuckerMixin, ConvLayer):
    """Tucker-2 convolution: 1x1 (C_in -> r_in), k x k (r_in -> r_out), 1x1 (r_out -> C_out)."""

    fmt = "tucker"

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int, input_hw: tuple[int, int]) -> dict[str, PathCost]:
        r_in, r_out = spec.ranks
        (h, w), (ho, wo) = input_hw, spec.out_hw(input_hw)
        n = batch_size
        seq = path_cost(
            2 * n * (r_in * spec.c_in * h * w + r_out * r_in * spec.kk * ho * wo + spec.c_out * r_out * ho * wo),
            n * (spec.c_in * h * w + 2 * r_in * h * w + 2 * r_out * ho * wo + spec.c_out * ho * wo))
        rec = cls.reconstruct_cost(spec, n, input_hw, min(_weight_orders(spec).values()))
        return {"sequential": seq, "reconstruct": rec}

    def _sequential(self, x: Tensor) -> Tensor:
        r_in, r_out = self.ranks
        t = F.conv2d(x, self.factor_in.t().reshape(r_in, self.in_channels, 1, 1))
        t = self._conv(t, self.core)
        return F.conv2d(t, self.factor_out.reshape(self.out_channels, r_out, 1, 1), self.bias)

    def full_weight(self) -> Tensor:
        return self._weight_matrix().reshape(self.out_channels, self.in_channels, *self.kernel_size)
