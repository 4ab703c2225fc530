"""The one place that turns a trial's result into its objective vector.

Every consumer (strategies, the MO-ASHA scheduler, the front archive and therefore tracking,
`front`, `best`, the live display and the dashboard) asks this module, so objective direction,
the log scale of cost objectives and the value a failure counts as are decided once.

Conventions:

- Vectors are in *minimisation* form: a maximised objective is negated.
- Cost objectives (params, compression ratio, FLOPs) span orders of magnitude and are known
  before training from the closed-form counts; in vectors meant for distances (crowding,
  surrogates, hypervolume) they are taken on a log10 scale. Dominance is the same on either
  scale (log10 is monotone), so the front does not depend on it.
- A result that is not usable (failed, non-finite, or pruned without a measured value) counts
  as the worst value of each measured objective: accuracy 0 when maximised, and +-WORST for
  any other measured metric.
- Eligibility for the front of completed trials: status ok, every objective present and finite,
  and the space's constraints met (`max_params`, `min_compression`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

ACCURACY = "val_accuracy"
#: Objectives a configuration's ranks determine before training (closed-form counts).
COST_OBJECTIVES = ("params", "compression_ratio", "flops")
#: Metrics read on a log10 scale wherever a distance between points matters.
LOG_SCALE_METRICS = frozenset(COST_OBJECTIVES)
#: The worst value of a measured objective other than accuracy (finite, so optimisers can use it).
WORST_MEASURED = 1e12


def finite(v: Any) -> float | None:
    """`v` as a finite float, or None for booleans, non-numbers, NaN and infinities."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name and its direction."""

    name: str
    sense: str  # "max" or "min"
    #: False when the space has no closed-form counts (a user training function without a
    #: model): its params/FLOPs are then measured, reported by the function like any metric.
    closed_form: bool = True
    #: "log" or "linear" as the space file says; None: log10 for LOG_SCALE_METRICS
    scale: str | None = None

    @property
    def is_cost(self) -> bool:
        """Known before training from the ranks (closed-form count)."""
        return self.closed_form and self.name in COST_OBJECTIVES

    @property
    def log_scale(self) -> bool:
        return self.name in LOG_SCALE_METRICS if self.scale is None else self.scale == "log"

    def minimised(self, value: float, *, log: bool = False) -> float:
        """`value` in minimisation form, on a log10 scale for cost metrics when `log`."""
        if log and self.log_scale:
            value = math.log10(max(value, 1e-300))
        return -value if self.sense == "max" else value

    def worst(self) -> float:
        """What an unusable result counts as, in minimisation form."""
        if self.name == ACCURACY:
            return self.minimised(0.0 if self.sense == "max" else 1.0)
        return WORST_MEASURED


@dataclass(frozen=True)
class Objectives:
    """A search's objectives and constraints; `Objectives.from_space` is the usual way in."""

    items: tuple[Objective, ...]
    max_params: int | None = None
    min_compression: float | None = None
    dense_params: int | None = None

    @classmethod
    def from_space(cls, space: SearchSpace) -> Objectives:
        c = space.config.constraints
        return cls(
            items=tuple(Objective(o.name, o.sense, closed_form=space.has_closed_form, scale=o.scale)
                        for o in space.config.objectives),
            max_params=c.max_params, min_compression=c.min_compression,
            dense_params=int(space.dense_params),
        )

    @classmethod
    def from_pairs(cls, pairs: Sequence[Sequence[str]], **constraints: Any) -> Objectives:
        """From `[(name, sense), ...]` (as stored in MLflow tags)."""
        return cls(items=tuple(Objective(str(p[0]), str(p[1])) for p in pairs), **constraints)

    # -- names --------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.items)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(o.name, o.sense) for o in self.items]

    @property
    def measured(self) -> tuple[Objective, ...]:
        """Objectives only training tells (accuracy, latency, user metrics)."""
        return tuple(o for o in self.items if not o.is_cost)

    def __len__(self) -> int:
        return len(self.items)

    # -- metrics ------------------------------------------------------------------------------
    def metrics(self, source: TrialResult | Mapping[str, Any]) -> dict[str, float]:
        """The finite numeric metrics of a result, plus the compression ratio when only the
        parameter count is known."""
        raw = source.metrics if isinstance(source, TrialResult) else source
        out = {k: f for k, v in raw.items() if (f := finite(v)) is not None}
        if "compression_ratio" not in out and self.dense_params and out.get("params", 0) > 0:
            out["compression_ratio"] = self.dense_params / out["params"]
        return out

    def usable(self, result: TrialResult) -> bool:
        """Its measured objectives can be used: ok or pruned, with finite values for them."""
        if result.status not in ("ok", "pruned"):
            return False
        values = self.metrics(result)
        return all(o.name in values for o in self.measured)

    def feasible(self, params: float | None) -> bool:
        """The constraints known before training hold for this parameter count."""
        if params is None:
            return True
        if self.max_params is not None and params > self.max_params:
            return False
        return not (self.min_compression is not None and self.dense_params
                    and self.dense_params / params < self.min_compression)

    def eligible(self, result: TrialResult) -> bool:
        """A completed trial that may sit on the front: ok, every objective finite, feasible."""
        if not result.ok:
            return False
        values = self.metrics(result)
        if not all(name in values for name in self.names):
            return False
        return self.feasible(values.get("params"))

    # -- vectors ------------------------------------------------------------------------------
    def vector(self, source: TrialResult | Mapping[str, Any], *, log: bool = True,
               cost: Mapping[str, float] | None = None, usable: bool | None = None) -> tuple[float, ...]:
        """The minimisation vector of a result (or a metric dict).

        `cost` supplies the closed-form cost metrics (they win over reported ones, which a failed
        trial may lack); an unusable result's measured objectives count as their worst values.
        A missing cost metric is +inf (never preferred).
        """
        values = self.metrics(source)
        if cost:
            values.update({k: float(v) for k, v in cost.items() if finite(v) is not None})
        if usable is None:
            usable = self.usable(source) if isinstance(source, TrialResult) else True
        out = []
        for o in self.items:
            v = values.get(o.name)
            if o.is_cost:
                out.append(math.inf if v is None else o.minimised(v, log=log))
            elif not usable or v is None:
                out.append(o.worst())
            else:
                out.append(o.minimised(v, log=log))
        return tuple(out)

    def partial_vector(self, metrics: Mapping[str, Any], cost: Mapping[str, float]) -> tuple[float, ...]:
        """A mid-training vector (MO-ASHA): best accuracy so far, exact costs; objectives measured
        only after training (latency) are left out; a missing value is +inf."""
        values = {**self.metrics(metrics), **{k: float(v) for k, v in cost.items()}}
        out = []
        for o in self.items:
            if o.name == "latency":
                continue
            v = values.get(o.name)
            out.append(math.inf if v is None else o.minimised(v, log=True))
        return tuple(out)


def search_plane(metrics: Mapping[str, Any]) -> tuple[float, float] | None:
    """(val_accuracy, compression_ratio) of a point, the plane a search's hypervolume lives in;
    None when either is missing or not positive-finite."""
    acc = finite(metrics.get(ACCURACY))
    comp = finite(metrics.get("compression_ratio"))
    if acc is None or comp is None or comp <= 0:
        return None
    return acc, comp
