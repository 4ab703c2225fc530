"""User training functions: ranksearch searches a plain Python function like its own trainer.

A space names one as `training: {function: "package.module:train_fn"}`; a trial then calls
`train_fn(config, reporter)` where

- `config` is a dict of the trial's hyperparameter values (every active one, defaults filled
  in), plus `ranks` (the rank vector) and `layer_ranks` ({layer: ranks}) when the space has
  tensorized layers, `epochs` / `steps` when the space sets a budget, `seed` and `trial_id`;
- `reporter(epoch=..., **metrics)` reports one epoch (schedulers and the live front read it;
  `epoch` counts up by itself when left out). `reporter.checkpoint_dir` is a folder the
  function may save a checkpoint into; `reporter.resumed` is true when it holds an earlier
  attempt's checkpoint to restore (a retried or resumed trial).

The function may return a dict of final metrics; otherwise each metric's last reported value
counts. Objectives come from these metrics (`val_accuracy`, or any metric the space names);
cost objectives too where the space has no closed form (no model). A function that raises,
reports a value that is not a finite number, or leaves an objective unreported is a failed
trial, never a failed search. Nothing here imports Ray: `ranksearch.tune.userfn_trial` runs
this inside a Tune worker, and `ranksearch bench hpo` calls it in-process.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.errors import SpaceError
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

FIELD = "training.function"
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def resolve_function(spec: str, *, source: str | None = None, field_name: str = FIELD) -> Callable[..., Any]:
    """The callable `spec` ("package.module:function") names; a `SpaceError` naming the file,
    the field and the value when it cannot be found."""
    cached = _FUNCTIONS.get(spec)
    if cached is not None:
        return cached
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise SpaceError("must name a function as 'package.module:function'", file=source, field=field_name,
                         value=spec, hint="e.g. ranksearch.examples.digits:train")
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise SpaceError(f"module '{module_name}' cannot be imported ({exc})", file=source, field=field_name,
                         value=spec, hint="check the spelling, and that the module's folder is on "
                                          "PYTHONPATH (on every node of a cluster)") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise SpaceError(f"importing module '{module_name}' failed: {type(exc).__name__}: {exc}",
                         file=source, field=field_name, value=spec,
                         hint="fix the error in that module") from None
    obj: Any = module
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise SpaceError(f"module '{module_name}' has no function '{attr}'", file=source,
                             field=field_name, value=spec,
                             hint="check the name after the colon") from None
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpaceError(f"'{attr}' in module '{module_name}' is not a function", file=source,
                         field=field_name, value=spec, hint="name a function train_fn(config, reporter)")
    _FUNCTIONS[spec] = obj
    return obj


class TrialFailed(Exception):
    """Raised inside the user's function by the reporter to stop a trial that cannot count."""


class Reporter:
    """What a user function reports through: `reporter(epoch=..., **metrics)`."""

    def __init__(self, *, on_epoch: Callable[[dict[str, float]], None] | None = None,
                 checkpoint_dir: str | Path | None = None, resumed: bool = False) -> None:
        self._on_epoch = on_epoch
        self.checkpoint_dir: Path | None = Path(checkpoint_dir) if checkpoint_dir is not None else None
        #: True when `checkpoint_dir` holds an earlier attempt's checkpoint to restore.
        self.resumed = bool(resumed)
        self.history: list[dict[str, float]] = []

    def __call__(self, epoch: int | None = None, **metrics: Any) -> None:
        values: dict[str, float] = {}
        for name, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int | float) and not hasattr(v, "__float__"):
                raise TrialFailed(f"metric '{name}' is not a number: {v!r}")
            f = float(v)
            if not math.isfinite(f):
                raise TrialFailed(f"metric '{name}' is not finite ({f}) at epoch "
                                  f"{epoch if epoch is not None else len(self.history) + 1}")
            values[name] = f
        values["epoch"] = float(epoch if epoch is not None else len(self.history) + 1)
        self.history.append(values)
        if self._on_epoch is not None:
            self._on_epoch(dict(values))

    @property
    def last(self) -> dict[str, float]:
        """Each metric's last reported value."""
        out: dict[str, float] = {}
        for row in self.history:
            out.update(row)
        return out


@dataclass
class UserOutcome:
    """What one call of a user function came to."""

    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0
    seconds: float = 0.0
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def trial_config(space: SearchSpace, ranks: Sequence[int], hparams: Mapping[str, Any] | None, *,
                 trial_id: str = "", seed: int | None = None) -> dict[str, Any]:
    """The `config` dict a user function receives."""
    config: dict[str, Any] = dict(space.hyper.canonical(hparams or {})) if space.hyper else {}
    if space.n_ranks:
        config["ranks"] = [int(r) for r in ranks]
        config["layer_ranks"] = {k: list(v) for k, v in space.layer_ranks(ranks).items()}
    budget = space.config.training
    if budget.epochs is not None:
        config["epochs"] = budget.epochs
    if budget.steps is not None:
        config["steps"] = budget.steps
    config["seed"] = space.seed if seed is None else int(seed)
    config["trial_id"] = trial_id
    return config


def run_user_function(space: SearchSpace, ranks: Sequence[int], hparams: Mapping[str, Any] | None = None, *,
                      trial_id: str = "", seed: int | None = None,
                      on_epoch: Callable[[dict[str, float]], None] | None = None,
                      checkpoint_dir: str | Path | None = None, resumed: bool = False) -> UserOutcome:
    """Call the space's user function for one configuration; never raises for what the function
    does (a failure is the outcome's status and error)."""
    spec = space.user_function
    if spec is None:
        raise ValueError(f"space '{space.name}' names no training.function")
    reporter = Reporter(on_epoch=on_epoch, checkpoint_dir=checkpoint_dir, resumed=resumed)
    t0 = time.perf_counter()
    try:  # checked at the edge; here (a worker) an unimportable module fails the trial only
        fn = resolve_function(spec, source=space.source)
    except SpaceError as exc:
        return _failed(reporter, t0, str(exc))
    config = trial_config(space, ranks, hparams, trial_id=trial_id, seed=seed)
    try:
        returned = fn(config, reporter)
        metrics = reporter.last
        metrics.pop("epoch", None)
        if returned is not None:
            if not isinstance(returned, Mapping):
                raise TrialFailed(f"returned {type(returned).__name__}; return a dict of metrics or nothing")
            metrics.update(_finite_metrics(returned))
    except TrialFailed as exc:
        return _failed(reporter, t0, str(exc))
    except Exception as exc:  # noqa: BLE001 - the user's code failed: a failed trial, not a failed search
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _failed(reporter, t0, f"{spec} raised {tb}")
    missing = [o.name for o in _measured(space) if o.name not in metrics]
    if missing:
        return _failed(reporter, t0, f"{spec} did not report {', '.join(missing)} (an objective)")
    return UserOutcome("ok", metrics, epochs_done=len(reporter.history), seconds=time.perf_counter() - t0,
                       history=reporter.history)


def to_result(space: SearchSpace, ranks: Sequence[int], hparams: Mapping[str, Any] | None,
              outcome: UserOutcome) -> TrialResult:
    """The `TrialResult` strategies are told: the reported metrics, plus the closed-form costs
    where the space has a model."""
    metrics = dict(outcome.metrics)
    if space.has_closed_form and space.n_ranks:
        from ranksearch.space import count_params

        params = float(count_params(space, ranks))
        metrics.setdefault("params", params)
        metrics.setdefault("compression_ratio", space.dense_params / params)
    return TrialResult(ranks=tuple(int(r) for r in ranks), status=outcome.status, metrics=metrics,
                       fidelity=float(outcome.epochs_done), error=outcome.error,
                       info={"seconds": outcome.seconds},
                       hparams=dict(space.hyper.canonical(hparams or {})) if space.hyper else {})


def evaluate(space: SearchSpace, ranks: Sequence[int], hparams: Mapping[str, Any] | None = None, *,
             trial_id: str = "", seed: int | None = None) -> TrialResult:
    """One trial in this process (no Ray): what `ranksearch bench hpo` drives strategies with."""
    outcome = run_user_function(space, ranks, hparams, trial_id=trial_id, seed=seed)
    return to_result(space, ranks, hparams, outcome)


def _measured(space: SearchSpace) -> list[Any]:
    from ranksearch.objectives import Objectives

    return list(Objectives.from_space(space).measured)


def _finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for name, v in values.items():
        f = float(v)
        if not math.isfinite(f):
            raise TrialFailed(f"returned metric '{name}' is not finite ({f})")
        out[name] = f
    return out


def _failed(reporter: Reporter, t0: float, error: str) -> UserOutcome:
    metrics = reporter.last
    metrics.pop("epoch", None)
    return UserOutcome("failed", metrics, epochs_done=len(reporter.history), seconds=time.perf_counter() - t0,
                       error=error, history=reporter.history)
