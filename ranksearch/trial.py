"""What a trial is told back: the shared vocabulary of strategies, execution and tracking."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

RankConfig = tuple[int, ...]
Status = Literal["ok", "failed", "pruned"]


@dataclass(frozen=True)
class TrialResult:
    """Outcome of one trial.

    `metrics` holds objective values under their objective names (val_accuracy, params,
    compression_ratio, flops, latency) plus anything else worth keeping; `fidelity` is the
    number of epochs (or the step count, see `fidelity_unit`) the values were measured at.
    A failed or pruned trial may carry partial or no metrics.
    """

    ranks: RankConfig
    status: Status = "ok"
    metrics: dict[str, float] = field(default_factory=dict)
    fidelity: float = 0.0
    fidelity_unit: str = "epochs"
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: the hyperparameter values the trial trained with (canonical: active ones only)
    hparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(int(r) for r in self.ranks))

    @property
    def ok(self) -> bool:
        """True when the trial finished and every metric is a finite number."""
        return self.status == "ok" and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in self.metrics.values()
        )

    def value(self, name: str) -> float:
        v = self.metrics.get(name, math.nan)
        return float(v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranks": list(self.ranks),
            "status": self.status,
            "metrics": dict(self.metrics),
            "fidelity": self.fidelity,
            "fidelity_unit": self.fidelity_unit,
            "error": self.error,
            "info": dict(self.info),
            "hparams": dict(self.hparams),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialResult:
        return cls(
            ranks=tuple(d["ranks"]), status=d.get("status", "ok"), metrics=dict(d.get("metrics", {})),
            fidelity=d.get("fidelity", 0.0), fidelity_unit=d.get("fidelity_unit", "epochs"),
            error=d.get("error"), info=dict(d.get("info", {})), hparams=dict(d.get("hparams") or {}),
        )
