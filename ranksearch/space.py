"""Search-space schema: YAML in, frozen typed objects out.

A search space says which model to build, which of its layers are tensorized and how, the data,
the per-trial training budget, the objectives, constraints, strategy and resources. It is parsed
and validated once here; everything downstream sees `SearchSpace` and integer rank vectors.

The rank vector is the ordered tuple of `RankElement`s. Each element is one integer that sets
one or more rank positions (layer, position) of the tensorized layers: ties and per-layer
uniform ranks make several positions share one element.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ranksearch.errors import SpaceError

FormatName = Literal["tr", "tt", "tucker", "cp"]
OBJECTIVE_NAMES = ("val_accuracy", "params", "compression_ratio", "flops", "latency")
DEFAULT_DIRECTIONS = {
    "val_accuracy": "max",
    "params": "min",
    "compression_ratio": "max",
    "flops": "min",
    "latency": "min",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RankBounds(_Frozen):
    """Allowed values of a rank element: an inclusive range, or an explicit list."""

    min: int = Field(1, ge=1)
    max: int = Field(32, ge=1)
    choices: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> RankBounds:
        if self.choices is not None:
            if not self.choices or any(c < 1 for c in self.choices):
                raise ValueError("choices must be a non-empty list of positive integers")
            if list(self.choices) != sorted(set(self.choices)):
                raise ValueError("choices must be strictly increasing")
        elif self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self

    @property
    def values(self) -> tuple[int, ...]:
        return self.choices if self.choices is not None else tuple(range(self.min, self.max + 1))

    @property
    def low(self) -> int:
        return self.choices[0] if self.choices is not None else self.min

    @property
    def high(self) -> int:
        return self.choices[-1] if self.choices is not None else self.max


class LayerSpec(_Frozen):
    """How one layer (or every layer matching a glob pattern) is tensorized."""

    format: FormatName | None = None
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None
    ranks: RankBounds | None = None
    uniform: bool | None = None


class ModelSpec(_Frozen):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    format: FormatName = "tr"
    layers: dict[str, LayerSpec | None] = Field(default_factory=dict)

    @field_validator("layers")
    @classmethod
    def _non_empty(cls, v: dict[str, LayerSpec | None]) -> dict[str, LayerSpec | None]:
        if not v:
            raise ValueError("name at least one layer to tensorize (a module name or glob pattern)")
        return v


class TieGroup(_Frozen):
    name: str
    layers: tuple[str, ...]


class RanksSpec(_Frozen):
    """Default bounds, whether each layer has one rank for all positions, and tie groups."""

    min: int = Field(1, ge=1)
    max: int = Field(32, ge=1)
    choices: tuple[int, ...] | None = None
    uniform: bool = False
    groups: tuple[TieGroup, ...] = ()

    @property
    def bounds(self) -> RankBounds:
        return RankBounds(min=self.min, max=self.max, choices=self.choices)

    @model_validator(mode="after")
    def _check(self) -> RanksSpec:
        self.bounds  # noqa: B018 - validates min/max/choices together
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"tie group names must be unique, got {names}")
        return self


class DataSpec(_Frozen):
    dataset: str
    path: str | None = None
    val_fraction: float = Field(0.1, ge=0.0, le=0.5)
    train_subset: float | int | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class OptimizerSpec(_Frozen):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class ScheduleSpec(_Frozen):
    name: Literal["none", "multistep", "cosine", "step"] = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = Field(0.1, gt=0)
    step_size: int = Field(10, ge=1)


class TrainingSpec(_Frozen):
    """Per-trial training budget and recipe."""

    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment: bool = False
    init: Literal["scratch", "dense"] = "scratch"
    grad_clip: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Training-subset fidelity: train on this many images of the training split (a fraction
    # when < 1), a stratified subset fixed by the seed; an epoch is one pass over it.
    subset: float | None = Field(None, gt=0)
    # Knowledge distillation from the dense network trained for the warm start (the teacher):
    # loss = (1 - distill) * CE + distill * T^2 * KL(teacher || student) at temperature T.
    distill: float = Field(0.0, ge=0, le=1)
    distill_temperature: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _budget(self) -> TrainingSpec:
        if self.epochs is None and self.steps is None:
            raise ValueError("set a budget: 'epochs' or 'steps'")
        if self.epochs is not None and self.steps is not None:
            raise ValueError("set either 'epochs' or 'steps', not both")
        return self


class ObjectiveSpec(_Frozen):
    name: Literal["val_accuracy", "params", "compression_ratio", "flops", "latency"]
    direction: Literal["max", "min"] | None = None

    @property
    def sense(self) -> str:
        return self.direction or DEFAULT_DIRECTIONS[self.name]


class ConstraintsSpec(_Frozen):
    max_params: int | None = Field(None, ge=1)
    min_compression: float | None = Field(None, gt=0)
    min_accuracy: float | None = Field(None, ge=0, le=1)


class StrategySpec(_Frozen):
    """The search strategy, its budget and options, and the configurations it proposes first.

    `seeds` entries: an explicit rank vector (checked against the space when the strategy is
    made), "equal" (`seed_count` equal-rank configurations spread over the feasible range) or
    "effective" (`seed_count` configurations shaped by the trained dense model's singular-value
    spectra; needs the dense warm start). Seeds count against the budget.
    """

    name: str = "random"
    budget: int = Field(20, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    seeds: tuple[tuple[int, ...] | Literal["equal", "effective"], ...] = ()
    seed_count: int = Field(5, ge=1)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        hint = ("write 'equal', 'effective' or a list of integers (one rank per rank element), "
                "e.g. seeds: [equal, effective, [8, 14, 8]]")
        if v is None:
            return ()
        if isinstance(v, str) or not isinstance(v, list | tuple):
            raise ValueError(f"must be a list of seeds; {hint}")
        kinds: list[str] = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                if item not in ("equal", "effective"):
                    raise ValueError(f"item {i} ({item!r}) is not a seed; {hint}")
                if item in kinds:
                    raise ValueError(f"item {i} repeats {item!r}; list it once and set "
                                     "'seed_count' for more configurations")
                kinds.append(item)
            elif isinstance(item, list | tuple):
                if not item or any(isinstance(r, bool) or not isinstance(r, int) or r < 1
                                   for r in item):
                    raise ValueError(f"item {i} ({list(item)!r}) is not a rank vector; give "
                                     "positive integers, one per rank element")
            else:
                raise ValueError(f"item {i} ({item!r}) is not a seed; {hint}")
        return v


class ResourcesSpec(_Frozen):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_concurrent: int = Field(2, ge=1)


class HypervolumeSpec(_Frozen):
    """Reference point in the (val_accuracy, log10 compression ratio) plane, both maximised."""

    reference: tuple[float, float] = (0.5, 0.0)


class SchedulerSpec(_Frozen):
    """Multi-fidelity trial scheduling; `fifo` (the default) runs every trial to its budget.

    `mo_asha`: asynchronous successive halving with rungs at grace_epochs * reduction_factor**k
    epochs; at each rung a trial continues only if it ranks in the top 1/reduction_factor of the
    trials recorded there (non-dominated rank, then crowding distance, over the objectives).
    Rungs count passes over the training data, which is the `training.subset` part when set
    (the second fidelity: each pass then costs subset-size samples).
    """

    name: Literal["fifo", "mo_asha"] = "fifo"
    grace_epochs: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    fidelity: Literal["epochs"] = "epochs"


class SpaceConfig(_Frozen):
    """The YAML file's content, validated. `SearchSpace` wraps it with the resolved layout."""

    name: str
    description: str = ""
    seed: int = 0
    model: ModelSpec
    ranks: RanksSpec = Field(default_factory=RanksSpec)
    data: DataSpec
    training: TrainingSpec
    final_training: TrainingSpec | None = None
    # Recipe of the dense network behind `training.init: dense` (and distillation); defaults
    # to `training`.
    dense_training: TrainingSpec | None = None
    objectives: tuple[ObjectiveSpec, ...] = (
        ObjectiveSpec(name="val_accuracy"),
        ObjectiveSpec(name="compression_ratio"),
    )
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    hypervolume: HypervolumeSpec = Field(default_factory=HypervolumeSpec)
    scheduler: SchedulerSpec | None = None

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: tuple[ObjectiveSpec, ...]) -> tuple[ObjectiveSpec, ...]:
        names = [o.name for o in v]
        if not v:
            raise ValueError("give at least one objective")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a name: {names}")
        return v


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
        self.elements: tuple[RankElement, ...] = _build_elements(cfg, layers, resolved)
        self.fixed_params = self.dense_params - sum(lay.dense_params for lay in self.layers)
        self.fixed_flops = self.dense_flops - sum(lay.dense_flops for lay in self.layers)

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
        try:
            ranks = list(ranks)
            values = tuple(int(r) for r in ranks)
            if any(float(a) != float(b) for a, b in zip(values, ranks, strict=True)):
                raise ValueError
        except (TypeError, ValueError):
            raise SpaceError(
                "ranks must be a list of integers", file=self.source, field=field, value=ranks
            ) from None
        if len(values) != self.n_ranks:
            names = ", ".join(e.name for e in self.elements)
            raise SpaceError(
                f"has {len(values)} values but this space has {self.n_ranks} rank elements",
                file=self.source, field=field, value=list(values),
                hint=f"give one integer per element, in order: {names}",
            )
        for element, value in zip(self.elements, values, strict=True):
            if value not in element.bounds.values:
                allowed = (
                    f"one of {list(element.bounds.choices)}"
                    if element.bounds.choices is not None
                    else f"between {element.low} and {element.high}"
                )
                raise SpaceError(
                    f"rank element '{element.name}' is {value}, outside its bounds",
                    file=self.source, field=field, value=list(values),
                    hint=f"use a value {allowed}, or widen the bounds in the space's 'ranks' section",
                )
        return values

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
            "model": self.config.model.name,
            "dataset": self.config.data.dataset,
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


# -- module-level entry points --------------------------------------------------------------------
def parse_config(data: Any, *, source: str | None = None) -> SpaceConfig:
    if not isinstance(data, dict):
        raise SpaceError(
            "the file must hold a mapping of sections (name, model, data, training, ...)",
            file=source, value=type(data).__name__,
        )
    try:
        return SpaceConfig.model_validate(data)
    except ValidationError as exc:
        raise _space_error(exc, data, source) from None


def load_space(path: str | Path) -> SearchSpace:
    """Read, validate and resolve a search-space YAML file.

    `path` is a file, or the name of a space shipped with ranksearch (`quickstart_digits`)
    when no such file exists. Malformed YAML, a key given twice, binary or empty files are
    `SpaceError`s naming the file.
    """
    from ranksearch.resources import resolve_space_path

    path = resolve_space_path(path)
    source = str(path)
    return SearchSpace.from_dict(read_yaml(path), source=source)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives one key twice (PyYAML would silently keep the last one)."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        self.key = key
        self.lines = (first.line + 1, second.line + 1)
        super().__init__(None, None, f"key {key!r} is given twice (lines {self.lines[0]} and "
                         f"{self.lines[1]})", second)


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice, naming both lines."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            # Only the keys written here: a `<<: *anchor` merge may be overridden (the base
            # class flattens merges afterwards).
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise DuplicateKeyError(key, first, key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, *, source: str | None = None) -> Any:
    """Parse a YAML file with `UniqueKeyLoader`; every failure is a `SpaceError` naming the file."""
    path = Path(path)
    source = source or str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"not a text file (byte {exc.start} is not UTF-8)", file=source,
                         hint="give a search-space YAML file") from None
    except OSError as exc:
        raise SpaceError(f"cannot be read ({exc.strerror or exc})", file=source) from None
    if not text.strip():
        raise SpaceError("the file is empty", file=source,
                         hint="write the sections name, model, data and training (see search_spaces/)")
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise SpaceError(f"key '{exc.key}' is given twice (lines {exc.lines[0]} and {exc.lines[1]})",
                         file=source, field=str(exc.key),
                         hint="keep one of them; YAML would silently use the last") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(
            f"malformed YAML{where}: {problem}", file=source,
            hint="fix the YAML syntax (indentation, colons, brackets)",
        ) from None
    if data is None:
        raise SpaceError("the file is empty (it holds only comments)", file=source,
                         hint="write the sections name, model, data and training (see search_spaces/)")
    return data


def count_params(space: SearchSpace, ranks: Any) -> int:
    """Closed-form parameter count of the whole model built with `ranks`."""
    per_layer = space.layer_ranks(ranks)
    return space.fixed_params + sum(lay.params(per_layer[lay.name]) for lay in space.layers)


def count_flops(space: SearchSpace, ranks: Any, *, batch_size: int = 1) -> int:
    """Closed-form FLOPs of one forward pass over `batch_size` samples.

    Counted like torch's FlopCounterMode (2 per multiply-add of matmuls and convolutions). The
    tensorized layers' weight-only work (merging cores) is paid once per forward, so per-sample
    cost falls with the batch size; the objective uses batch 1, the worst case.
    """
    per_layer = space.layer_ranks(ranks)
    return batch_size * space.fixed_flops + sum(
        lay.flops(per_layer[lay.name], batch_size) for lay in space.layers
    )


def compression_ratio(space: SearchSpace, ranks: Any) -> float:
    """Dense whole-model parameter count over tensorized whole-model count."""
    return space.dense_params / count_params(space, ranks)


# -- helpers --------------------------------------------------------------------------------------
def _space_error(exc: ValidationError, data: dict, source: str | None) -> SpaceError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc) if loc else None
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        valid = sorted(parent_model.model_fields) if parent_model else []
        return SpaceError(
            f"unknown key '{loc[-1]}'", file=source, field=field,
            hint=f"valid keys here are: {', '.join(valid)}" if valid else "remove it",
        )
    if kind == "missing":
        return SpaceError("is required but missing", file=source, field=field,
                          hint="add it to the file")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return SpaceError("has an unsupported value", file=source, field=field, value=value,
                          hint=f"use one of {expected}")
    msg = err["msg"].removeprefix("Value error, ")
    return SpaceError(msg, file=source, field=field,
                      value=None if isinstance(value, dict) else value)


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """Walk the schema along a location path to find the model whose keys were wrong."""
    model: Any = SpaceConfig
    for part in loc:
        if model is None or not hasattr(model, "model_fields"):
            return None
        if part in model.model_fields:
            model = _inner_model(model.model_fields[part].annotation)
        else:  # a dict key or list index
            continue
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


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
