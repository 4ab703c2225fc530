"""Format-agnostic entry points: the registry of layer classes and closed-form counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ranksearch.tensorized._base import TensorizedLayer, check_batch, check_hw, check_mode, pick_path
from ranksearch.tensorized.cp import CPConv2d, CPLinear
from ranksearch.tensorized.tr import TRConv2d, TRLinear
from ranksearch.tensorized.tt import TTConv2d, TTLinear
from ranksearch.tensorized.tucker import TuckerConv2d, TuckerLinear

FORMATS = ("tr", "tt", "tucker", "cp")
KINDS = ("linear", "conv")

_CLASSES: dict[tuple[str, str], type[TensorizedLayer]] = {
    ("tr", "linear"): TRLinear,
    ("tr", "conv"): TRConv2d,
    ("tt", "linear"): TTLinear,
    ("tt", "conv"): TTConv2d,
    ("tucker", "linear"): TuckerLinear,
    ("tucker", "conv"): TuckerConv2d,
    ("cp", "linear"): CPLinear,
    ("cp", "conv"): CPConv2d,
}


def layer_class(fmt: str, kind: str) -> type[TensorizedLayer]:
    """The layer class for a format and kind; unknown names list the valid ones."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown tensor format {fmt!r}; expected one of {FORMATS}")
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; expected one of {KINDS}")
    return _CLASSES[(fmt, kind)]


def num_ranks(fmt: str, kind: str, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """How many rank elements a layer of this format, kind and shapes has."""
    cls = layer_class(fmt, kind)
    spec = cls.make_spec(in_shape, out_shape, 1, kernel_size=1)
    return len(spec.ranks)


def make_layer(fmt: str, kind: str, in_shape: Sequence[int], out_shape: Sequence[int], ranks: Any, *,
               kernel_size: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
               bias: bool = True, mode: str = "auto") -> nn.Module:
    """A freshly initialised tensorized layer."""
    cls = layer_class(fmt, kind)
    if kind == "linear":
        return cls(in_shape, out_shape, ranks, bias=bias, mode=mode)
    return cls(in_shape, out_shape, ranks, kernel_size=kernel_size, stride=stride, padding=padding,
               dilation=dilation, bias=bias, mode=mode)


def layer_params(fmt: str, kind: str, in_shape: Sequence[int], out_shape: Sequence[int], ranks: Any, *,
                 kernel_size: Any = None, bias: bool = True) -> int:
    """Closed-form parameter count (cores + bias) of the layer `make_layer` would build."""
    cls = layer_class(fmt, kind)
    return cls.count_params(cls.make_spec(in_shape, out_shape, ranks, kernel_size=kernel_size, bias=bias))


def layer_flops(fmt: str, kind: str, in_shape: Sequence[int], out_shape: Sequence[int], ranks: Any, *,
                kernel_size: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                input_hw: Any = None, batch_size: int = 1, mode: str = "auto") -> int:
    """Closed-form FLOPs of one forward pass of `batch_size` samples along the path `mode` picks.

    Equals torch.utils.flop_counter.FlopCounterMode's total for that forward (matmuls and convs at
    2 FLOPs per multiply-add; element-wise work uncounted). 'auto' picks the path a layer would
    take for this batch (lower FLOPs + memory-traffic estimate). Convs need `input_hw`, the (H, W)
    of the layer's input.
    """
    cls = layer_class(fmt, kind)
    spec = cls.make_spec(in_shape, out_shape, ranks, kernel_size=kernel_size, stride=stride,
                         padding=padding, dilation=dilation)
    owner = cls.__name__
    n = check_batch(owner, batch_size)
    hw = check_hw(owner, input_hw) if kind == "conv" else None
    paths = cls.count_paths(spec, n, hw)
    return paths[pick_path(paths, check_mode(owner, mode))].flops


def from_dense(module: nn.Linear | nn.Conv2d, fmt: str, ranks: Any, *, in_shape: Any = None,
               out_shape: Any = None, mode: str = "auto") -> nn.Module:
    """Decompose a trained nn.Linear / nn.Conv2d into a layer of format `fmt` (bias copied)."""
    if isinstance(module, nn.Linear):
        kind = "linear"
    elif isinstance(module, nn.Conv2d):
        kind = "conv"
    else:
        raise ValueError(f"from_dense: expected an nn.Linear or nn.Conv2d, got {type(module).__name__}")
    return layer_class(fmt, kind).from_dense(module, ranks, in_shape=in_shape, out_shape=out_shape, mode=mode)
