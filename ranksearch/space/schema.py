"""The search-space schema: the YAML file's sections as frozen, typed pydantic models.

`parse_config` validates plain data (a parsed YAML file) into a `SpaceConfig` and turns the
first validation error into a `SpaceError` naming the field, the value and what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ranksearch.errors import SpaceError

if TYPE_CHECKING:
    from ranksearch.budget import Budget

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
    """Default bounds, whether each layer has one rank for all positions, and tie groups.

    `fixed` (one value per rank element, in element order) pins every element to one value:
    a search of the recipe alone at those ranks (`SearchSpace.with_fixed_ranks`)."""

    min: int = Field(1, ge=1)
    max: int = Field(32, ge=1)
    choices: tuple[int, ...] | None = None
    uniform: bool = False
    groups: tuple[TieGroup, ...] = ()
    fixed: tuple[int, ...] | None = None

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
    # dense: cores decomposed from the dense network trained once per search; learned: cores cut
    # from the gated run behind `strategy.seeds: [learned]` (ranksearch.learned.warm)
    init: Literal["scratch", "dense", "learned"] = "scratch"
    grad_clip: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Training-subset fidelity: train on this many images of the training split (a fraction
    # when < 1), a stratified subset fixed by the seed; an epoch is one pass over it.
    subset: float | None = Field(None, gt=0)
    # Knowledge distillation from the dense network trained for the warm start (the teacher):
    # loss = (1 - distill) * CE + distill * T^2 * KL(teacher || student) at temperature T.
    distill: float = Field(0.0, ge=0, le=1)
    distill_temperature: float = Field(4.0, gt=0)
    # A user training function "package.module:function" that trains one configuration
    # (`ranksearch.userfn`); the recipe fields above then do not apply, the budget is optional.
    function: str | None = None

    @model_validator(mode="after")
    def _budget(self) -> TrainingSpec:
        if self.function is not None:
            if self.epochs is not None and self.steps is not None:
                raise ValueError("set either 'epochs' or 'steps', not both")
            return self
        if self.epochs is None and self.steps is None:
            raise ValueError("set a budget: 'epochs' or 'steps'")
        if self.epochs is not None and self.steps is not None:
            raise ValueError("set either 'epochs' or 'steps', not both")
        return self


class ObjectiveSpec(_Frozen):
    """A built-in objective, or (with a user training function) any metric it reports."""

    name: str
    direction: Literal["max", "min"] | None = None
    #: The scale a strategy compares values on: None = log10 for counts (params, compression,
    #: FLOPs: they span orders of magnitude), linear for everything else.
    scale: Literal["log", "linear"] | None = None

    @property
    def sense(self) -> str:
        return self.direction or DEFAULT_DIRECTIONS.get(self.name, "max")


class ConstraintsSpec(_Frozen):
    max_params: int | None = Field(None, ge=1)
    min_compression: float | None = Field(None, gt=0)
    min_accuracy: float | None = Field(None, ge=0, le=1)


class StrategySpec(_Frozen):
    """The search strategy, its budget and options, and the configurations it proposes first.

    `seeds` entries: an explicit rank vector (checked against the space when the strategy is
    made), "equal" (`seed_count` equal-rank configurations spread over the feasible range) or
    "effective" (`seed_count` configurations shaped by the trained dense model's singular-value
    spectra; needs the dense warm start) or "learned" (`seed_count` configurations read off the
    gates of one short learned-rank run, `ranksearch.learned.seeds`). Seeds count against the budget.
    """

    name: str = "random"
    #: trials (40), full-epoch equivalents ("600ep") or training samples ("2e6 samples")
    budget: int | str = 20
    #: the trials a strategy plans for under a cost budget, and a cap on them (unset: estimated
    #: from the recipe, and extended while the budget still fits a trial)
    max_trials: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    seeds: tuple[tuple[int, ...] | Literal["equal", "effective", "learned"], ...] = ()
    seed_count: int = Field(5, ge=1)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> int | str:
        from ranksearch.budget import BudgetError, parse_budget

        try:
            return parse_budget(v).to_json()
        except BudgetError as exc:
            raise ValueError(str(exc)) from None

    @property
    def cost_budget(self) -> Budget:
        """The budget as a `ranksearch.budget.Budget` (trials, epochs or samples)."""
        from ranksearch.budget import parse_budget

        return parse_budget(self.budget)

    @property
    def trial_budget(self) -> int | None:
        """The number of trials to plan for: the budget itself, or `max_trials` under a cost
        budget (None: to be estimated from the recipe and the data, `training.planned_trials`)."""
        return int(self.budget) if isinstance(self.budget, int) else self.max_trials

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        hint = ("write 'equal', 'effective', 'learned' or a list of integers (one rank per rank element), "
                "e.g. seeds: [equal, effective, [8, 14, 8]]")
        if v is None:
            return ()
        if isinstance(v, str) or not isinstance(v, list | tuple):
            raise ValueError(f"must be a list of seeds; {hint}")
        kinds: list[str] = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                if item not in ("equal", "effective", "learned"):
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


class HyperParamSpec(_Frozen):
    """One entry of the `hyperparameters:` block (validated further by `space.hyper`).

    float `{low, high, log, step}`, int `{low, high, step, log}` (inferred when both bounds are
    whole numbers; `type` overrides), categorical `{choices}`; `when: {param: value | [values]}`
    makes it exist only under another parameter's choice; `default` (else the recipe's own value,
    else the middle level); `levels`: grid points for strategies that search a grid (9 for a
    float range, at most 16 for an int range).
    """

    type: Literal["float", "int", "categorical"] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None
    when: dict[str, Any] | None = None
    default: Any = None
    levels: int | None = Field(None, ge=2, le=64)


class SpaceConfig(_Frozen):
    """The YAML file's content, validated. `SearchSpace` wraps it with the resolved layout."""

    name: str
    description: str = ""
    seed: int = 0
    # model and data are required unless `training.function` names a user training function
    # (then a model with tensorized layers gives the function its ranks; without one only the
    # hyperparameters are searched).
    model: ModelSpec | None = None
    ranks: RanksSpec = Field(default_factory=RanksSpec)
    data: DataSpec | None = None
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
    # Training-recipe (or user-function) settings searched with the ranks; see `space.hyper`.
    hyperparameters: dict[str, HyperParamSpec] = Field(default_factory=dict)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: tuple[ObjectiveSpec, ...]) -> tuple[ObjectiveSpec, ...]:
        names = [o.name for o in v]
        if not v:
            raise ValueError("give at least one objective")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a name: {names}")
        return v


def parse_config(data: Any, *, source: str | None = None) -> SpaceConfig:
    """Validate plain data into a `SpaceConfig`; the first problem is a `SpaceError`."""
    if not isinstance(data, dict):
        raise SpaceError(
            "the file must hold a mapping of sections (name, model, data, training, ...)",
            file=source, value=type(data).__name__,
        )
    try:
        config = SpaceConfig.model_validate(data)
    except ValidationError as exc:
        raise _space_error(exc, data, source) from None
    _check_sections(config, source)
    return config


def _check_sections(config: SpaceConfig, source: str | None) -> None:
    """What only ranksearch's own trainer needs: a model, data and built-in objectives."""
    user_fn = config.training.function is not None
    if not user_fn:
        for section in ("model", "data"):
            if getattr(config, section) is None:
                raise SpaceError("is required but missing", file=source, field=section,
                                 hint="add it to the file (or name a user training function in "
                                      "training.function)")
    elif config.model is not None and config.data is None:
        raise SpaceError("is required with a model", file=source, field="data",
                         hint="add the dataset the model is built for, or remove the model section")
    for i, o in enumerate(config.objectives):
        if o.name in OBJECTIVE_NAMES:
            continue
        if not user_fn:
            raise SpaceError("has an unsupported value", file=source, field=f"objectives.{i}.name",
                             value=o.name, hint=f"use one of {', '.join(OBJECTIVE_NAMES)} (any metric a "
                                                "user training function reports needs training.function)")
        if o.direction is None:
            raise SpaceError(f"'{o.name}' is a metric of the training function: say whether to "
                             "maximise or minimise it", file=source, field=f"objectives.{i}.direction",
                             hint="add direction: max or direction: min")



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
