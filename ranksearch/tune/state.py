"""The search's own record in its experiment directory: what `resume` needs and nothing pickled.

`search.json` holds the (effective) search space, the settings the search was started with,
the MLflow parent run id, the strategy's `state_dict()` and one entry per trial. The driver
rewrites it atomically whenever a trial is proposed or finishes, so a driver killed at any
moment leaves a file from which the search continues: finished trials are never re-run, and
trials that were running are started again from their last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from ranksearch.trial import TrialResult
from ranksearch.tune.storage import Storage, StorageError

STATE_FILE = "search.json"
STATE_FORMAT = "ranksearch.search"
STATE_VERSION = 1
FINISHED_STATUSES = ("ok", "failed", "pruned")


@dataclass(frozen=True)
class Requeued:
    """A trial proposed by an earlier driver that did not finish: run it again first."""

    trial_id: str
    ranks: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None


@dataclass
class TrialRecord:
    """One trial: proposed, maybe running (possibly over several Tune attempts), maybe finished."""

    trial_id: str
    ranks: list[int]
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"  # pending -> running -> ok / failed / pruned
    attempts: list[dict[str, str]] = field(default_factory=list)  # {"tune_id", "dir"}
    result: dict[str, Any] | None = None
    proposed_at: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def trial_result(self) -> TrialResult | None:
        return TrialResult.from_dict(_decode(self.result)) if self.result is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranks": list(self.ranks), "info": self.info, "status": self.status,
            "attempts": list(self.attempts), "result": self.result,
            "proposed_at": self.proposed_at, "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, trial_id: str, d: dict[str, Any]) -> TrialRecord:
        return cls(
            trial_id=trial_id, ranks=[int(r) for r in d["ranks"]], info=dict(d.get("info") or {}),
            status=str(d.get("status", "pending")), attempts=list(d.get("attempts") or []),
            result=d.get("result"), proposed_at=float(d.get("proposed_at") or 0.0),
            finished_at=d.get("finished_at"),
        )


@dataclass
class SearchState:
    """Everything about one search that outlives its driver process."""

    name: str
    space: dict[str, Any]
    settings: dict[str, Any]
    parent_run_id: str = ""
    status: str = "created"  # created, running, interrupted, finished, failed
    strategy_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None  # MO-ASHA's rungs, so a resume keeps them
    next_index: int = 1
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # finished trial ids, finishing order
    sessions: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0

    # -- queries ----------------------------------------------------------------------------------
    @property
    def finished_trials(self) -> list[TrialRecord]:
        return [self.trials[t] for t in self.order if t in self.trials]

    @property
    def unfinished_trials(self) -> list[TrialRecord]:
        return [r for r in self.trials.values() if not r.finished]

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "name": self.name,
            "status": self.status, "parent_run_id": self.parent_run_id,
            "settings": self.settings, "space": self.space,
            "strategy_state": self.strategy_state, "scheduler_state": self.scheduler_state,
            "next_index": self.next_index, "order": list(self.order),
            "trials": {tid: rec.to_dict() for tid, rec in self.trials.items()},
            "sessions": self.sessions, "created_at": self.created_at, "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = STATE_FILE) -> SearchState:
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise StorageError(f"{source} is not a ranksearch search state")
        if d.get("version") != STATE_VERSION:
            raise StorageError(f"{source} has state version {d.get('version')!r}; this ranksearch "
                               f"reads version {STATE_VERSION}")
        return cls(
            name=str(d["name"]), space=dict(d["space"]), settings=dict(d["settings"]),
            parent_run_id=str(d.get("parent_run_id") or ""), status=str(d.get("status", "created")),
            strategy_state=d.get("strategy_state"), scheduler_state=d.get("scheduler_state"),
            next_index=int(d.get("next_index", 1)),
            trials={tid: TrialRecord.from_dict(tid, rec) for tid, rec in (d.get("trials") or {}).items()},
            order=[str(t) for t in d.get("order") or []], sessions=list(d.get("sessions") or []),
            created_at=float(d.get("created_at") or 0.0), updated_at=float(d.get("updated_at") or 0.0),
        )

    def save(self, storage: Storage) -> None:
        self.updated_at = time.time()
        storage.write_text(json.dumps(_encode(self.to_dict()), indent=1, allow_nan=False),
                           self.name, STATE_FILE)

    @classmethod
    def load(cls, storage: Storage, name: str) -> SearchState:
        try:
            text = storage.read_text(name, STATE_FILE)
        except FileNotFoundError:
            raise StorageError(f"no search '{name}' under {storage.uri} ({STATE_FILE} missing)") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StorageError(f"{storage.display(name, STATE_FILE)} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=storage.display(name, STATE_FILE))


# Strict JSON has no NaN/inf: keep them as tagged strings so results read back exactly.
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return _NONFINITE[obj["__float__"]]
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def load_json(text: str) -> Any:
    """Parse a state file, turning the tagged non-finite floats back into floats."""
    return _decode(json.loads(text))
