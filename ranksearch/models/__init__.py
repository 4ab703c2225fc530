"""Model zoo, dense-model introspection and the tensorizing converter."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ranksearch.errors import SpaceError
from ranksearch.models.zoo import ZOO

if TYPE_CHECKING:
    from ranksearch.space import DataSpec, ModelSpec, SearchSpace

__all__ = ["ZOO", "DenseInfo", "build_dense", "build_model", "build_warm", "dense_model_info", "tensorize"]


@dataclass(frozen=True)
class DenseInfo:
    input_shape: tuple[int, ...]
    num_classes: int
    params: int
    flops: int
    modules: dict[str, nn.Module | None]  # Linear/Conv2d modules by name (None: not eligible)
    input_hw: dict[str, tuple[int, int]]  # spatial input size of each conv


def _factory(name: str) -> Callable[..., nn.Module]:
    if name in ZOO:
        return ZOO[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SpaceError(
                f"cannot import model factory '{name}': {exc}", field="model.name", value=name,
                hint="give 'package.module:callable' importable from this environment",
            ) from None
    raise SpaceError(
        "unknown model", field="model.name", value=name,
        hint=f"use one of {sorted(ZOO)} or 'package.module:callable' for your own nn.Module",
    )


def data_geometry(data: DataSpec) -> tuple[tuple[int, ...], int]:
    """Per-sample input shape and class count of a dataset, without loading it."""
    from ranksearch.data import DataError, dataset_info

    try:
        info = dataset_info(data.dataset)
    except DataError as exc:
        raise SpaceError(str(exc), field="data.dataset", value=data.dataset) from None
    shape = tuple(data.options.get("input_shape", info["input_shape"]))
    classes = int(data.options.get("num_classes", info["num_classes"]))
    return shape, classes


def build_dense(model: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    factory = _factory(model.name)
    kwargs = dict(model.options)
    params = inspect.signature(factory).parameters
    if "input_shape" in params:
        kwargs["input_shape"] = input_shape
    if "num_classes" in params:
        kwargs["num_classes"] = num_classes
    try:
        net = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"model '{model.name}' could not be built: {exc}", field="model.options",
                         value=dict(model.options),
                         hint="check the options against the model's arguments") from None
    if not isinstance(net, nn.Module):
        raise SpaceError(f"model factory '{model.name}' returned {type(net).__name__}, "
                         "not a torch.nn.Module", field="model.name", value=model.name)
    return net


_INFO_CACHE: dict[str, DenseInfo] = {}


def dense_model_info(model: ModelSpec, data: DataSpec) -> DenseInfo:
    """Build the dense model once on CPU and read its geometry, params and FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    input_shape, num_classes = data_geometry(data)
    key = f"{model.model_dump_json()}|{input_shape}|{num_classes}"
    if key in _INFO_CACHE:
        return _INFO_CACHE[key]
    net = build_dense(model, input_shape, num_classes).eval()
    modules: dict[str, nn.Module | None] = {}
    input_hw: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, mod in net.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            modules[name] = mod
            if isinstance(mod, nn.Conv2d):
                hooks.append(mod.register_forward_hook(
                    lambda m, inp, out, name=name: input_hw.__setitem__(name, tuple(inp[0].shape[-2:]))
                ))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            net(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise SpaceError(f"model '{model.name}' does not accept inputs of shape {list(input_shape)}: "
                         f"{exc}".splitlines()[0], field="model.name", value=model.name,
                         hint="pick a model that fits the dataset's input size") from None
    finally:
        for h in hooks:
            h.remove()
    info = DenseInfo(
        input_shape=input_shape, num_classes=num_classes,
        params=sum(p.numel() for p in net.parameters()), flops=int(counter.get_total_flops()),
        modules=modules, input_hw=input_hw,
    )
    _INFO_CACHE[key] = info
    return info


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def build_model(space: SearchSpace | Any, ranks: Any = None, *, dense: nn.Module | None = None,
                from_dense: bool = False) -> nn.Module:
    """The space's model with every tensorized layer built at `ranks`.

    `space` may also be a rank-config file object (`ranksearch.load_rank_config`), which
    carries its own space and ranks. With `from_dense`, cores are initialised by decomposing
    `dense`'s trained weights (the pre-train warm start); otherwise from scratch.
    """
    import copy

    from ranksearch.tensorized import from_dense as decompose

    if ranks is None:
        if not (hasattr(space, "space") and hasattr(space, "ranks")):
            raise TypeError("build_model needs (space, ranks) or a rank config from load_rank_config()")
        space, ranks = space.space, space.ranks

    per_layer = space.layer_ranks(space.resolve_ranks(ranks))
    if dense is not None:
        net = copy.deepcopy(dense)
    else:
        net = build_dense(space.config.model, space.input_shape, space.num_classes)
    for lay in space.layers:
        if from_dense:
            layer = decompose(net.get_submodule(lay.name), lay.format, per_layer[lay.name],
                              in_shape=lay.in_shape, out_shape=lay.out_shape)
        else:
            layer = lay.build(per_layer[lay.name])
        _set_submodule(net, lay.name, layer)
    return net


def build_warm(space: SearchSpace, ranks: Any, dense_state: Mapping[str, torch.Tensor], *,
               seed: int) -> tuple[nn.Module, nn.Module]:
    """The dense warm start: (the model at `ranks` with cores decomposed from the trained dense
    weights `dense_state`, that dense network). Model building is seeded by `seed` inside
    `fork_rng`, so the caller's RNG is untouched and a (ranks, seed) pair always starts alike."""
    net = build_dense(space.config.model, space.input_shape, space.num_classes)
    net.load_state_dict(dense_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(space, ranks, dense=net, from_dense=True), net


def tensorize(model: nn.Module, ranks: Mapping[str, Sequence[int] | int], *, format: str = "tr",
              formats: Mapping[str, str] | None = None,
              shapes: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
              from_dense: bool = False) -> nn.Module:
    """Replace the named Linear/Conv2d layers of any `nn.Module` by tensorized ones, in place.

    `ranks` maps layer names to a rank tuple or one int (the same rank at every position);
    shapes default to balanced factorisations of each layer's feature counts.
    """
    from ranksearch.tensorized import balanced_factors, make_layer, num_ranks
    from ranksearch.tensorized import from_dense as decompose

    formats = dict(formats or {})
    shapes = dict(shapes or {})
    for name, rank in ranks.items():
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"tensorize: model has no submodule '{name}'") from None
        fmt = formats.get(name, format)
        if isinstance(mod, nn.Linear):
            kind, n_in, n_out = "linear", mod.in_features, mod.out_features
        elif isinstance(mod, nn.Conv2d):
            kind, n_in, n_out = "conv", mod.in_channels, mod.out_channels
        else:
            raise ValueError(f"tensorize: '{name}' is a {type(mod).__name__}, not Linear or Conv2d")
        in_shape, out_shape = shapes.get(name, (balanced_factors(n_in), balanced_factors(n_out)))
        n = num_ranks(fmt, kind, in_shape, out_shape)
        rank_tuple = (rank,) * n if isinstance(rank, int) else tuple(rank)
        if from_dense:
            new = decompose(mod, fmt, rank_tuple, in_shape=in_shape, out_shape=out_shape)
        elif kind == "linear":
            new = make_layer(fmt, kind, in_shape, out_shape, rank_tuple, bias=mod.bias is not None)
        else:
            new = make_layer(fmt, kind, in_shape, out_shape, rank_tuple, kernel_size=mod.kernel_size,
                             stride=mod.stride, padding=mod.padding, dilation=mod.dilation,
                             bias=mod.bias is not None)
        _set_submodule(model, name, new)
    return model
