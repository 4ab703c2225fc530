"""A validated space resolved against its model: tensorized layers, the rank-vector layout.

The rank vector is the ordered tuple of `RankElement`s. Each element is one integer that sets
one or more rank positions (layer, position) of the tensorized layers: ties and per-layer
uniform ranks make several positions share one element. `SearchSpace` builds the dense model
once (through `ranksearch.models`) to read the layers' shapes, and normalises rank vocabulary
(lists, one integer, a fraction of the dense parameters, "same") into checked integer vectors.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import yaml

from ranksearch.errors import SpaceError
from ranksearch.space.counts import count_params
from ranksearch.space.schema import LayerSpec, ModelSpec, ObjectiveSpec, RankBounds, SpaceConfig, parse_config


@dataclass(frozen=True)
class RankElement:
    """One integer of the rank vector and the (layer, position) slots it sets."""

    name: str
    bounds: RankBounds
    members: tuple[tuple[str, int], ...]

    @property
    def low(self) -> int:
        return self.bounds.low

    @property
    def high(self) -> int:
        return self.bounds.high

    @property
    def values(self) -> tuple[int, ...]:
        return self.bounds.values


@dataclass(frozen=True)
class TensorizedLayer:
    """A resolved tensorized layer: shapes, format and its dense counterpart's geometry."""

    name: str
    kind: Literal["linear", "conv"]
    format: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    n_ranks: int
    bias: bool
    kernel_size: tuple[int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    input_hw: tuple[int, int] | None = None
    dense_params: int = 0
    dense_flops: int = 0

    def params(self, ranks: tuple[int, ...]) -> int:
        from ranksearch.tensorized import layer_params

        return layer_params(
            self.format, self.kind, self.in_shape, self.out_shape, ranks,
            kernel_size=self.kernel_size, bias=self.bias,
        )

    def flops(self, ranks: tuple[int, ...], batch_size: int = 1) -> int:
        from ranksearch.tensorized import layer_flops

        return layer_flops(
            self.format, self.kind, self.in_shape, self.out_shape, ranks,
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation, input_hw=self.input_hw, batch_size=batch_size,
        )

    def build(self, ranks: tuple[int, ...]):
        from ranksearch.tensorized import make_layer

        return make_layer(
            self.format, self.kind, self.in_shape, self.out_shape, ranks,
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation, bias=self.bias,
        )


class SearchSpace:
    """A validated search space plus its resolved rank layout and closed-form counts."""

    def __init__(self, config: SpaceConfig, *, source: str | None = None) -> None:
        self.config = config
        self.source = source
        try:
            self._resolve()
        except SpaceError as err:
            raise (err.with_file(source) if source and not err.file else err) from None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> SearchSpace:
        return cls(parse_config(data, source=source), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data; `from_dict(to_dict())` gives an equal space."""
        return self.config.model_dump(mode="json", exclude_unset=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.config == other.config

    def __hash__(self) -> int:
        return hash(self.config.model_dump_json())

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {self.n_ranks} rank elements)"

    # -- shortcuts ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def objectives(self) -> tuple[ObjectiveSpec, ...]:
        return self.config.objectives

    @property
    def n_ranks(self) -> int:
        return len(self.elements)

    @property
    def lower(self) -> tuple[int, ...]:
        return tuple(e.low for e in self.elements)

    @property
    def upper(self) -> tuple[int, ...]:
        return tuple(e.high for e in self.elements)

    # -- layout ---------------------------------------------------------------------------------
    def _resolve(self) -> None:
        from ranksearch.models import dense_model_info

        cfg = self.config
        if cfg.model is None:  # a user training function searched over hyperparameters only
            self._resolve_without_model()
            return
        info = dense_model_info(cfg.model, cfg.data)
        self.input_shape: tuple[int, ...] = info.input_shape
        self.num_classes: int = info.num_classes
        self.dense_params: int = info.params
        self.dense_flops: int = info.flops
        layers = _match_layers(cfg.model, info.modules)
        resolved = [
            _resolve_layer(name, spec, cfg.model.format, info.modules[name], info.input_hw.get(name))
            for name, spec in layers
        ]
        self.layers: tuple[TensorizedLayer, ...] = tuple(resolved)
        self._layer_index = {lay.name: i for i, lay in enumerate(self.layers)}
        elements = _build_elements(cfg, layers, resolved)
        if cfg.ranks.fixed is not None:
            _check_vector(elements, cfg.ranks.fixed, field="ranks.fixed", source=self.source)
            elements = fix_elements(elements, cfg.ranks.fixed)
        self.elements: tuple[RankElement, ...] = elements
        self.fixed_params = self.dense_params - sum(lay.dense_params for lay in self.layers)
        self.fixed_flops = self.dense_flops - sum(lay.dense_flops for lay in self.layers)
        from ranksearch.space.hyper import build_hyper

        #: The searched training settings (empty when the space searches ranks only).
        self.hyper = build_hyper(cfg, source=self.source, user_function=self.user_function is not None)

    def _resolve_without_model(self) -> None:
        from ranksearch.space.hyper import build_hyper

        self.input_shape = ()
        self.num_classes = 0
        self.dense_params = self.dense_flops = self.fixed_params = self.fixed_flops = 0
        self.layers = ()
        self._layer_index = {}
        self.elements = ()
        self.hyper = build_hyper(self.config, source=self.source, user_function=True)

    @property
    def user_function(self) -> str | None:
        """The user training function ("package.module:function") trials run, or None."""
        return self.config.training.function

    @property
    def fixed_ranks(self) -> tuple[int, ...] | None:
        """The rank vector a recipe-only search trains at (`ranks.fixed`), or None."""
        return self.config.ranks.fixed

    def with_fixed_ranks(self, ranks: Any, *, defaults: Mapping[str, Any] | None = None) -> SearchSpace:
        """This space with every rank element pinned to one value: a search of the
        hyperparameters alone. `ranks` is anything `resolve_ranks` takes; `defaults` (values of
        the space's hyperparameters, e.g. a rank-config file's) become the parameters' defaults,
        hence the first trial's values. The fixed rank vector is the strategy's only seed, so the
        first trial trains the defaults at those ranks. Element names stay; parameter counts,
        compression and FLOPs are then the same for every trial."""
        if not self.hyper:
            raise SpaceError(
                "has no 'hyperparameters' block: with fixed ranks there is nothing to search",
                file=self.source, field="hyperparameters",
                hint="add a hyperparameters block (e.g. training.optimizer.lr: {low: 1.0e-4, high: 1.0e-1, "
                     "log: true}) to search the recipe at fixed ranks")
        if not self.elements:
            raise SpaceError("has no tensorized layers, so it has no ranks to fix", file=self.source,
                             field="model.layers")
        vector = self.resolve_ranks(ranks)
        data = self.to_dict()
        data["ranks"] = {**data.get("ranks", {}), "fixed": list(vector)}
        data["strategy"] = {**data.get("strategy", {}), "seeds": [list(vector)]}
        if defaults:
            values = self.hyper.check(defaults)
            hyper = data.get("hyperparameters", {})
            data["hyperparameters"] = {
                name: ({**spec, "default": values[name]} if name in values else spec)
                for name, spec in hyper.items()
            }
        return SearchSpace.from_dict(data, source=self.source)

    @property
    def has_closed_form(self) -> bool:
        """Parameter and FLOP counts follow from the ranks (a model is built from the space)."""
        return self.config.model is not None

    def trial_config(self, hparams: Mapping[str, Any] | None = None) -> SpaceConfig:
        """The config a trial with these hyperparameter values trains under."""
        return self.hyper.apply(self.config, hparams or {}) if self.hyper else self.config

    def layer_ranks(self, ranks: tuple[int, ...] | list[int]) -> dict[str, tuple[int, ...]]:
        """Expand a rank vector into each tensorized layer's own rank tuple."""
        ranks = self.check_ranks(ranks)
        slots: dict[str, list[int]] = {lay.name: [0] * lay.n_ranks for lay in self.layers}
        for element, value in zip(self.elements, ranks, strict=True):
            for layer, pos in element.members:
                slots[layer][pos] = value
        return {k: tuple(v) for k, v in slots.items()}

    def check_ranks(self, ranks: Any, *, field: str = "ranks") -> tuple[int, ...]:
        """Validate a rank vector: right length, integers, within each element's bounds."""
        return _check_vector(self.elements, ranks, field=field, source=self.source,
                             fixed=self.fixed_ranks is not None)

    def resolve_ranks(self, spec: Any) -> tuple[int, ...]:
        """Normalise rank vocabulary into a validated rank vector.

        Accepts a sequence of ints, a comma-separated string, one int (equal ranks, clipped to
        each element's bounds), a float in (0, 1] (the largest equal rank whose whole-model
        parameter count is at most that fraction of the dense model), or "same" (fraction 1).
        """
        if isinstance(spec, str):
            text = spec.strip()
            if text == "same":
                return self.resolve_ranks(1.0)
            try:
                parsed: Any = (
                    [int(x) for x in text.split(",") if x.strip()] if "," in text
                    else float(text) if "." in text else int(text)
                )
            except ValueError:
                raise SpaceError(
                    "ranks must be integers separated by commas, one integer, a fraction "
                    "in (0, 1], or 'same'", file=self.source, field="ranks", value=spec,
                ) from None
            return self.check_ranks(parsed) if isinstance(parsed, list) else self.resolve_ranks(parsed)
        if isinstance(spec, bool):
            raise SpaceError("ranks cannot be a boolean", field="ranks", value=spec)
        if isinstance(spec, int):
            if spec < 1:
                raise SpaceError("an equal rank must be a positive integer", file=self.source, field="ranks",
                                 value=spec, hint="give 1 or more, a fraction in (0, 1], or one rank per element")
            return self.equal_ranks(spec)
        if isinstance(spec, float):
            if not 0 < spec <= 1:
                raise SpaceError(
                    "a fractional rank spec must be in (0, 1]", field="ranks", value=spec,
                    hint="give the fraction of the dense model's parameters to keep",
                )
            budget = spec * self.dense_params
            best = None
            for r in sorted({v for e in self.elements for v in e.values}):
                cand = self.equal_ranks(r)
                if count_params(self, cand) <= budget:
                    best = cand
            if best is None:
                raise SpaceError(
                    f"no equal-rank configuration has at most {budget:.0f} parameters",
                    field="ranks", value=spec, hint="use a larger fraction",
                )
            return best
        return self.check_ranks(spec)

    def equal_ranks(self, r: int) -> tuple[int, ...]:
        """Every element set to the allowed value closest to `r`."""
        return tuple(min(e.values, key=lambda v: (abs(v - r), v)) for e in self.elements)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "model": self.config.model.name if self.config.model else None,
            "dataset": self.config.data.dataset if self.config.data else None,
            "function": self.user_function,
            "layers": [lay.name for lay in self.layers],
            "rank_elements": self.n_ranks,
            "dense_params": self.dense_params,
            "objectives": [f"{o.sense} {o.name}" for o in self.objectives],
            "strategy": self.config.strategy.name,
            "budget": self.config.strategy.budget,
        }

    @cached_property
    def search_size(self) -> int:
        return math.prod(len(e.values) for e in self.elements)



# -- resolving layers and rank elements ----------------------------------------------------------
def _check_vector(elements: tuple[RankElement, ...], ranks: Any, *, field: str, source: str | None,
                  fixed: bool = False) -> tuple[int, ...]:
    """A rank vector checked against these elements: right length, integers, within bounds."""
    try:
        ranks = list(ranks)
        values = tuple(int(r) for r in ranks)
        if any(float(a) != float(b) for a, b in zip(values, ranks, strict=True)):
            raise ValueError
    except (TypeError, ValueError):
        raise SpaceError(
            "ranks must be a list of integers", file=source, field=field, value=ranks
        ) from None
    if len(values) != len(elements):
        names = ", ".join(e.name for e in elements)
        raise SpaceError(
            f"has {len(values)} values but this space has {len(elements)} rank elements",
            file=source, field=field, value=list(values),
            hint=f"give one integer per element, in order: {names}",
        )
    for element, value in zip(elements, values, strict=True):
        if value not in element.bounds.values:
            allowed = (
                f"one of {list(element.bounds.choices)}"
                if element.bounds.choices is not None
                else f"between {element.low} and {element.high}"
            )
            hint = (f"this space's ranks are fixed (ranks.fixed): give {[e.low for e in elements]}" if fixed
                    else f"use a value {allowed}, or widen the bounds in the space's 'ranks' section")
            raise SpaceError(f"rank element '{element.name}' is {value}, outside its bounds",
                             file=source, field=field, value=list(values), hint=hint)
    return values


def fix_elements(elements: tuple[RankElement, ...], ranks: tuple[int, ...]) -> tuple[RankElement, ...]:
    """The elements, each allowing exactly its value of `ranks` (checked by the caller)."""
    return tuple(RankElement(e.name, RankBounds(min=int(v), max=int(v)), e.members)
                 for e, v in zip(elements, ranks, strict=True))


def _match_layers(model: ModelSpec, modules: dict[str, Any]) -> list[tuple[str, LayerSpec]]:
    """Expand layer names and glob patterns into concrete (module name, spec), in model order."""
    chosen: dict[str, LayerSpec] = {}
    eligible = [n for n, m in modules.items() if m is not None]
    for pattern, spec in model.layers.items():
        spec = spec or LayerSpec()
        hits = [n for n in eligible if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise SpaceError(
                f"layer '{pattern}' matches no Linear or Conv2d module of model '{model.name}'",
                field=f"model.layers.{pattern}",
                hint=f"use one of: {', '.join(eligible[:40])}",
            )
        for name in hits:
            chosen[name] = spec
    return [(n, chosen[n]) for n in eligible if n in chosen]


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _resolve_layer(name, spec, default_format, module, input_hw) -> TensorizedLayer:
    import torch.nn as nn

    from ranksearch.tensorized import balanced_factors, num_ranks

    field = f"model.layers.{name}"
    fmt = spec.format or default_format
    if isinstance(module, nn.Linear):
        kind, n_in, n_out = "linear", module.in_features, module.out_features
    else:
        if module.groups != 1:
            raise SpaceError(f"conv layer '{name}' uses groups={module.groups}", field=field,
                             hint="only ordinary (groups=1) convolutions can be tensorized")
        kind, n_in, n_out = "conv", module.in_channels, module.out_channels
    in_shape = spec.in_shape or balanced_factors(n_in)
    out_shape = spec.out_shape or balanced_factors(n_out)
    for key, shape, n in (("in_shape", in_shape, n_in), ("out_shape", out_shape, n_out)):
        if any(s < 1 for s in shape) or math.prod(shape) != n:
            what = "in_features" if kind == "linear" else "in_channels"
            if key == "out_shape":
                what = "out_features" if kind == "linear" else "out_channels"
            raise SpaceError(
                f"product {math.prod(shape)} differs from {name}'s {n} {what}",
                field=f"{field}.{key}", value=list(shape),
                hint=f"give positive factors whose product is {n}, e.g. {list(balanced_factors(n))}",
            )
    if kind == "conv" and isinstance(module.padding, str):
        raise SpaceError(f"conv layer '{name}' uses padding='{module.padding}'", field=field,
                         hint="use integer padding")
    bias = module.bias is not None
    dense_params = sum(p.numel() for p in module.parameters())
    if kind == "linear":
        dense_flops = 2 * n_in * n_out
        geometry: dict[str, Any] = {}
    else:
        kh, kw = _pair(module.kernel_size)
        if input_hw is None:
            raise SpaceError(f"conv layer '{name}' never ran on a sample input", field=field)
        ho, wo = _conv_out_hw(input_hw, (kh, kw), module.stride, module.padding, module.dilation)
        dense_flops = 2 * n_in * n_out * kh * kw * ho * wo
        geometry = dict(
            kernel_size=(kh, kw), stride=_pair(module.stride), padding=_pair(module.padding),
            dilation=_pair(module.dilation), input_hw=tuple(input_hw),
        )
    return TensorizedLayer(
        name=name, kind=kind, format=fmt, in_shape=tuple(in_shape), out_shape=tuple(out_shape),
        n_ranks=num_ranks(fmt, kind, in_shape, out_shape), bias=bias,
        dense_params=dense_params, dense_flops=dense_flops, **geometry,
    )


def _conv_out_hw(hw, k, stride, padding, dilation) -> tuple[int, int]:
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    return tuple(
        (hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)
    )  # type: ignore[return-value]


def _build_elements(cfg, layers, resolved) -> tuple[RankElement, ...]:
    ranks = cfg.ranks
    default = ranks.bounds
    specs = dict(layers)
    grouped: dict[str, str] = {}
    for group in ranks.groups:
        hits = [lay.name for lay in resolved
                if any(fnmatch.fnmatchcase(lay.name, p) for p in group.layers)]
        if not hits:
            raise SpaceError(f"tie group '{group.name}' matches no tensorized layer",
                             field="ranks.groups", value=list(group.layers),
                             hint="list names or glob patterns of layers under model.layers")
        for name in hits:
            if name in grouped:
                raise SpaceError(f"layer '{name}' is in two tie groups ('{grouped[name]}' and "
                                 f"'{group.name}')", field="ranks.groups",
                                 hint="put each layer in at most one group")
            grouped[name] = group.name
    elements: list[RankElement] = []
    done_groups: set[str] = set()
    for lay in resolved:
        spec = specs[lay.name]
        bounds = spec.ranks or default
        if lay.name in grouped:
            gname = grouped[lay.name]
            if gname in done_groups:
                continue
            done_groups.add(gname)
            members = tuple(
                (other.name, pos) for other in resolved if grouped.get(other.name) == gname
                for pos in range(other.n_ranks)
            )
            elements.append(RankElement(gname, bounds, members))
            continue
        uniform = spec.uniform if spec.uniform is not None else ranks.uniform
        if uniform:
            elements.append(RankElement(lay.name, bounds,
                                        tuple((lay.name, p) for p in range(lay.n_ranks))))
        else:
            elements.extend(
                RankElement(f"{lay.name}.r{p}", bounds, ((lay.name, p),))
                for p in range(lay.n_ranks)
            )
    return tuple(elements)
