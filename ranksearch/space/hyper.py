"""Hyperparameters: the domains of a space's `hyperparameters:` block and what a value means.

A hyperparameter is a dotted path into the training recipe (`training.optimizer.lr`,
`training.schedule.name`, `model.options.dropout`) or, for a user training function, a key of
that function's config. Its domain is a float `{low, high, log}`, an int `{low, high, step,
log}` or a categorical `{choices}`; `when: {other: value | [values]}` makes it exist only under
another parameter's choice (momentum only with SGD).

`HyperSpace` is the one place that knows
- which parameters are active for a set of values (`active`, `canonical`: inactive ones dropped,
  numbers normalised, so duplicate checks and MLflow params agree),
- the defaults (the recipe's own value where it lies in the domain),
- a grid of levels per parameter for the strategies that search integer vectors (nsga2, pstrn,
  beam, rl, random): a float domain becomes `levels` points, geometric when `log`; `encode` and
  `decode` map values to level indices and back (nearest level for off-grid values),
- Optuna distributions for the strategies and importance evaluators that take them natively,
- how values become a trial's effective `SpaceConfig` (`apply`), validated by the recipe schema.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ranksearch.errors import SpaceError

if TYPE_CHECKING:
    from ranksearch.space.schema import HyperParamSpec, SpaceConfig

#: Recipe paths a multi-fidelity scheduler controls: a hyperparameter may not set them.
FIDELITY_PATHS = ("training.epochs", "training.steps", "training.subset", "data.train_subset")
#: The prefixes a hyperparameter of ranksearch's own trainer may start with.
RECIPE_PREFIXES = ("training.", "model.options.")

Value = float | int | str | bool


@dataclass(frozen=True)
class HyperParam:
    """One hyperparameter, validated: its kind, domain, grid levels, condition and default."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | None
    high: float | None
    log: bool
    step: float | None
    choices: tuple[Value, ...]
    levels: tuple[Value, ...]
    when: tuple[tuple[str, tuple[Value, ...]], ...]
    default: Value

    # -- values --------------------------------------------------------------------------------
    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.kind == "int" and float(value) != int(value):
            return False
        return self.low - 1e-12 * abs(self.low) <= value <= self.high + 1e-12 * abs(self.high)

    def normalise(self, value: Any) -> Value:
        """The value in the parameter's own type (ints as int, floats rounded to 12 digits)."""
        if self.kind == "categorical":
            for c in self.choices:
                if _same(value, c):
                    return c
            return value
        if self.kind == "int":
            return int(round(float(value)))
        return float(f"{float(value):.12g}")

    def index(self, value: Any) -> int:
        """The grid level nearest to `value` (in log space for a log domain)."""
        if self.kind == "categorical":
            for i, c in enumerate(self.choices):
                if _same(value, c):
                    return i
            raise KeyError(value)
        x = self._axis(float(value))
        return min(range(len(self.levels)), key=lambda i: (abs(self._axis(float(self.levels[i])) - x), i))

    def _axis(self, v: float) -> float:
        return math.log(v) if self.log else v

    def to_dict(self) -> dict[str, Any]:
        """The domain as the YAML block writes it (for the parent run and the rank-config file)."""
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when}
        out["default"] = self.default
        return out


class HyperSpace:
    """The hyperparameters of one space, in a dependency order (a condition's parent first)."""

    def __init__(self, params: Sequence[HyperParam] = ()) -> None:
        self.params: tuple[HyperParam, ...] = tuple(params)
        self.by_name = {p.name: p for p in self.params}

    def __len__(self) -> int:
        return len(self.params)

    def __bool__(self) -> bool:
        return bool(self.params)

    def __iter__(self):
        return iter(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    # -- conditions and canonical values ---------------------------------------------------------
    def is_active(self, name: str, values: Mapping[str, Any]) -> bool:
        p = self.by_name[name]
        for parent, allowed in p.when:
            if not self.is_active(parent, values):
                return False
            if not any(_same(values.get(parent), a) for a in allowed):
                return False
        return True

    def canonical(self, values: Mapping[str, Any]) -> dict[str, Value]:
        """Active parameters only, each normalised, in declaration order; a missing active one
        takes its default."""
        out: dict[str, Value] = {}
        for p in self.params:
            if self.is_active(p.name, out):
                out[p.name] = p.normalise(values[p.name]) if p.name in values else p.default
        return out

    def defaults(self) -> dict[str, Value]:
        return self.canonical({})

    def key(self, values: Mapping[str, Any]) -> tuple[tuple[str, Value], ...]:
        """A hashable identity of a set of values (what duplicate checks compare)."""
        return tuple(self.canonical(values).items())

    def check(self, values: Mapping[str, Any], *, where: str = "hyperparameters") -> dict[str, Value]:
        """Validate user-given values (a rank-config file, `--set`) into canonical form."""
        unknown = sorted(set(values) - set(self.by_name))
        if unknown:
            raise SpaceError(f"unknown hyperparameter '{unknown[0]}'", field=where,
                             hint=f"the space's hyperparameters are: {', '.join(self.names) or 'none'}")
        for name, v in values.items():
            if not self.by_name[name].contains(v):
                raise SpaceError(f"value {v!r} of '{name}' lies outside its domain", field=where,
                                 value=v, hint=f"use a value in {self.by_name[name].to_dict()}")
        return self.canonical(values)

    # -- the integer grid strategies search --------------------------------------------------------
    @property
    def n_levels(self) -> tuple[int, ...]:
        return tuple(len(p.levels) for p in self.params)

    def encode(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        """Level indices, one per parameter; an inactive or missing parameter encodes its default."""
        full = self.canonical(values)
        return tuple(p.index(full.get(p.name, p.default)) for p in self.params)

    def decode(self, indices: Sequence[int]) -> dict[str, Value]:
        if len(indices) != len(self.params):
            raise ValueError(f"expected {len(self.params)} hyperparameter levels, got {len(indices)}")
        raw = {p.name: p.levels[int(i)] for p, i in zip(self.params, indices, strict=True)}
        return self.canonical(raw)

    # -- Optuna --------------------------------------------------------------------------------------
    def distributions(self) -> dict[str, Any]:
        """Optuna distributions, one per parameter (conditions are the caller's define-by-run)."""
        return {p.name: domain_distribution(p.to_dict()) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}

    # -- applying values to a recipe -------------------------------------------------------------------
    def apply(self, config: SpaceConfig, values: Mapping[str, Any]) -> SpaceConfig:
        """The space config a trial with these values trains under (recipe paths only; a user
        function's keys are passed to the function, not applied here)."""
        from ranksearch.space.schema import SpaceConfig

        values = self.canonical(values)
        recipe = {k: v for k, v in values.items() if k.startswith(RECIPE_PREFIXES)}
        if not recipe:
            return config
        data = config.model_dump(mode="python", exclude_none=False)
        for path, v in recipe.items():
            _set_path(data, path, v)
        return SpaceConfig.model_validate(data)


def domain_distribution(domain: Mapping[str, Any]) -> Any:
    """The Optuna distribution of one domain as `HyperParam.to_dict` writes it (`{type, low, high,
    log, step, choices}`; also what a parent run's `hp_domain.<name>` param holds)."""
    import optuna.distributions as d

    kind = domain.get("type") or ("categorical" if "choices" in domain else "float")
    if kind == "categorical":
        return d.CategoricalDistribution(list(domain["choices"]))
    log = bool(domain.get("log", False))
    step = domain.get("step")
    if kind == "int":
        return d.IntDistribution(int(domain["low"]), int(domain["high"]), log=log,
                                 step=1 if log else int(step or 1))
    return d.FloatDistribution(float(domain["low"]), float(domain["high"]), log=log,
                               step=None if log or step is None else float(step))


# -- building from the schema --------------------------------------------------------------------------
def build_hyper(config: SpaceConfig, *, source: str | None = None, user_function: bool = False) -> HyperSpace:
    """Validate the `hyperparameters:` block of a parsed config into a `HyperSpace`."""
    specs: Mapping[str, HyperParamSpec] = config.hyperparameters or {}
    built: dict[str, HyperParam] = {}
    for name, spec in specs.items():
        field = f"hyperparameters.{name}"
        if not user_function and not name.startswith(RECIPE_PREFIXES):
            raise SpaceError(f"'{name}' is not a recipe path", file=source, field=field,
                             hint="name a dotted path such as training.optimizer.lr, "
                                  "training.schedule.name or model.options.dropout")
        if name in FIDELITY_PATHS and config.scheduler is not None and config.scheduler.name != "fifo":
            raise SpaceError(f"'{name}' is the fidelity the '{config.scheduler.name}' scheduler "
                             "controls", file=source, field=field,
                             hint="remove it from hyperparameters, or use scheduler: fifo")
        built[name] = _build_param(name, spec, config, source=source, user_function=user_function)
    for name, p in built.items():
        for parent, allowed in p.when:
            field = f"hyperparameters.{name}.when"
            if parent not in built:
                raise SpaceError(f"the condition names '{parent}', which is not a hyperparameter",
                                 file=source, field=field,
                                 hint="condition on one of: " + (", ".join(n for n in built if n != name)
                                                                   or "(no other hyperparameter)"))
            if parent == name:
                raise SpaceError("a hyperparameter cannot depend on itself", file=source, field=field)
            for a in allowed:
                if not built[parent].contains(a):
                    raise SpaceError(f"'{parent}' can never be {a!r}", file=source, field=field, value=a,
                                     hint=f"use a value of its domain {built[parent].to_dict()}")
    order = _dependency_order(built, source)
    space = HyperSpace([built[n] for n in order])
    if not user_function:
        for p in space.params:  # every value the domain allows must be a valid recipe
            probe = p.choices if p.kind == "categorical" else (p.low, p.high)
            for v in probe:
                _check_recipe_value(config, space, p, v, source)
    return space


def _build_param(name: str, spec: HyperParamSpec, config: SpaceConfig, *, source: str | None,
                 user_function: bool) -> HyperParam:
    field = f"hyperparameters.{name}"
    when = tuple((k, tuple(v) if isinstance(v, list | tuple) else (v,)) for k, v in (spec.when or {}).items())
    if spec.choices is not None:
        if spec.low is not None or spec.high is not None or spec.log or spec.step is not None:
            raise SpaceError("give either 'choices' or a range (low, high), not both", file=source, field=field)
        choices = tuple(spec.choices)
        if not choices:
            raise SpaceError("'choices' is empty", file=source, field=f"{field}.choices",
                             hint="list at least one value")
        if len({repr(c) for c in choices}) != len(choices):
            raise SpaceError("'choices' repeats a value", file=source, field=f"{field}.choices",
                             value=list(choices))
        default = _default(name, spec, config, user_function, lambda v: any(_same(v, c) for c in choices),
                           choices[0])
        return HyperParam(name, "categorical", None, None, False, None, choices, choices, when, default)
    if spec.low is None or spec.high is None:
        raise SpaceError("needs 'low' and 'high' (a range) or 'choices'", file=source, field=field,
                         hint="e.g. {low: 1e-4, high: 1e-2, log: true} or {choices: [adam, sgd]}")
    kind = spec.type or ("int" if isinstance(spec.low, int) and isinstance(spec.high, int)
                         and not isinstance(spec.step, float) else "float")
    low, high = float(spec.low), float(spec.high)
    if kind == "int" and (low != int(low) or high != int(high)):
        raise SpaceError("an int domain needs whole-number bounds", file=source, field=field,
                         value=[spec.low, spec.high])
    if not low < high:
        raise SpaceError(f"low ({spec.low}) must be smaller than high ({spec.high})", file=source,
                         field=f"{field}.low", value=spec.low, hint="swap them, or use choices for one value")
    if spec.log and low <= 0:
        raise SpaceError(f"a log domain needs low > 0, got {spec.low}", file=source, field=f"{field}.low",
                         value=spec.low, hint="raise low above 0, or set log: false")
    if spec.log and spec.step is not None:
        raise SpaceError("'step' and 'log' cannot be combined", file=source, field=f"{field}.step",
                         value=spec.step, hint="remove one of them")
    step = None if spec.step is None else float(spec.step)
    if step is not None and (step <= 0 or step > high - low):
        raise SpaceError(f"step {spec.step} does not fit in [{spec.low}, {spec.high}]", file=source,
                         field=f"{field}.step", value=spec.step)
    if kind == "int":
        low_i, high_i = int(low), int(high)
        levels_: tuple[Value, ...] = _int_levels(low_i, high_i, int(step or 1), spec.log, spec.levels)
        p = HyperParam(name, "int", low_i, high_i, spec.log, step, (), levels_, when, low_i)
    else:
        levels_ = _float_levels(low, high, step, spec.log, spec.levels)
        p = HyperParam(name, "float", low, high, spec.log, step, (), levels_, when, low)
    mid = p.levels[(len(p.levels) - 1) // 2]
    default = _default(name, spec, config, user_function, p.contains, mid)
    return HyperParam(p.name, p.kind, p.low, p.high, p.log, p.step, (), p.levels, when, p.normalise(default))


def _int_levels(low: int, high: int, step: int, log: bool, n: int | None) -> tuple[int, ...]:
    every = list(range(low, high + 1, step))
    cap = n or 16
    if len(every) <= cap:
        return tuple(every)
    if log:
        raw = [low * (high / low) ** (i / (cap - 1)) for i in range(cap)]
    else:
        raw = [low + (high - low) * i / (cap - 1) for i in range(cap)]
    snapped = sorted({min(every, key=lambda e, r=r: abs(e - r)) for r in raw})
    return tuple(snapped)


def _float_levels(low: float, high: float, step: float | None, log: bool, n: int | None) -> tuple[float, ...]:
    if step is not None:
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        every = [float(f"{low + i * step:.12g}") for i in range(count)]
        if n is None or count <= n:
            return tuple(every)
        idx = sorted({round(i * (count - 1) / (n - 1)) for i in range(n)})
        return tuple(every[i] for i in idx)
    n = n or 9
    if log:
        vals = [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (n - 1)) for i in range(n)]
    else:
        vals = [low + (high - low) * i / (n - 1) for i in range(n)]
    return tuple(float(f"{v:.12g}") for v in vals)


def _default(name: str, spec: HyperParamSpec, config: SpaceConfig, user_function: bool,
             contains: Any, fallback: Value) -> Value:
    if spec.default is not None:
        if not contains(spec.default):
            raise SpaceError(f"default {spec.default!r} lies outside the domain",
                             field=f"hyperparameters.{name}.default", value=spec.default,
                             hint="give a value inside the domain, or leave default out")
        return spec.default
    if not user_function:
        try:
            current = _get_path(config.model_dump(mode="python"), name)
        except KeyError:
            current = None
        if current is not None and contains(current):
            return current
    return fallback


def _check_recipe_value(config: SpaceConfig, space: HyperSpace, p: HyperParam, v: Value,
                        source: str | None) -> None:
    from pydantic import ValidationError

    from ranksearch.space.schema import SpaceConfig

    data = config.model_dump(mode="python")
    try:
        _get_path(data, p.name)
    except KeyError:
        if not p.name.startswith("model.options."):
            raise SpaceError(f"'{p.name}' is not a setting of the recipe", file=source, field=f"hyperparameters.{p.name}",
                             hint="check the spelling against the training section's keys "
                                  "(optimizer.lr, optimizer.weight_decay, schedule.name, batch_size, ...)") from None
    _set_path(data, p.name, p.normalise(v))
    try:
        SpaceConfig.model_validate(data)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise SpaceError(f"the recipe rejects {p.name} = {v!r}: {msg}", file=source,
                         field=f"hyperparameters.{p.name}", value=v,
                         hint="narrow the domain to values the recipe accepts") from None


def _dependency_order(built: Mapping[str, HyperParam], source: str | None) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, trail: tuple[str, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise SpaceError("conditions form a cycle: " + " -> ".join((*trail, n)), file=source,
                             field=f"hyperparameters.{n}.when", hint="make one of them unconditional")
        state[n] = 1
        for parent, _ in built[n].when:
            visit(parent, (*trail, n))
        state[n] = 2
        order.append(n)

    for n in built:
        visit(n, ())
    return order


def _get_path(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and compares numbers by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
