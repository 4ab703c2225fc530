"""A search's durable record: what `resume` needs, appended as it happens, nothing pickled.

Two files in the search's experiment directory:

- `search.json`, the header: the (effective) search space, the settings, the MLflow parent
  run id, the strategy's construction state (its `state_dict()` before the first ask: seed,
  budget, options, seeds) and the scheduler's rung layout. Written when a session starts and
  when it ends, never per trial.
- the event log (`record.py`): one event per proposal (ranks and hyperparameter values), Tune attempt, finished trial, slice of
  the strategy's ask/tell log, MO-ASHA rung entry, logged model and session boundary.

`SearchState` is the in-memory view. The driver changes it only through `record(event)`, which
applies the event and appends it; `load` applies the same events to the header. So a resumed
driver sees exactly the state the old one had when it last wrote, whatever the moment it was
killed: finished trials are never re-run, trials that were running start again from their last
checkpoint, the strategy replays its log, and the front archive and the MLflow copy are rebuilt
from the recorded results. MLflow is never read back to decide any of it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ranksearch.trial import TrialResult
from ranksearch.tune.record import EventLog, decode, encode
from ranksearch.tune.storage import Storage, StorageError

STATE_FILE = "search.json"
STATE_FORMAT = "ranksearch.search"
STATE_VERSION = 2  # 2: header + event log; 1: everything in search.json (still read)
FINISHED_STATUSES = ("ok", "failed", "pruned")


@dataclass(frozen=True)
class Requeued:
    """A trial proposed by an earlier driver that did not finish: run it again first."""

    trial_id: str
    ranks: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


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
    #: the hyperparameter values it trains with (canonical; empty for a rank-only space)
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def trial_result(self) -> TrialResult | None:
        return TrialResult.from_dict(decode(self.result)) if self.result is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranks": list(self.ranks), "info": self.info, "status": self.status,
            "attempts": list(self.attempts), "result": self.result,
            "proposed_at": self.proposed_at, "finished_at": self.finished_at,
            "hparams": dict(self.hparams),
        }

    @classmethod
    def from_dict(cls, trial_id: str, d: dict[str, Any]) -> TrialRecord:
        return cls(
            trial_id=trial_id, ranks=[int(r) for r in d["ranks"]], info=dict(d.get("info") or {}),
            status=str(d.get("status", "pending")), attempts=list(d.get("attempts") or []),
            result=d.get("result"), proposed_at=float(d.get("proposed_at") or 0.0),
            finished_at=d.get("finished_at"), hparams=dict(d.get("hparams") or {}),
        )


@dataclass
class SearchState:
    """Everything about one search that outlives its driver process."""

    name: str
    space: dict[str, Any]
    settings: dict[str, Any]
    parent_run_id: str = ""
    status: str = "created"  # created, running, interrupted, finished, failed
    #: The strategy as made (state_dict before its first ask); its ask/tell log is `strategy_events`.
    strategy_header: dict[str, Any] | None = None
    strategy_events: list[dict[str, Any]] = field(default_factory=list)
    #: MO-ASHA: {"eta", "milestones"} in the header, the rung entries from the log.
    scheduler_header: dict[str, Any] | None = None
    rungs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    next_index: int = 1
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # finished trial ids, finishing order
    sessions: list[dict[str, Any]] = field(default_factory=list)
    tell_errors: list[dict[str, str]] = field(default_factory=list)
    overhead_samples: int = 0  # training outside trials charged to the search (dense warm start)
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    _log: EventLog | None = field(default=None, repr=False, compare=False)
    _carry: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    # -- queries ----------------------------------------------------------------------------------
    @property
    def finished_trials(self) -> list[TrialRecord]:
        return [self.trials[t] for t in self.order if t in self.trials]

    @property
    def unfinished_trials(self) -> list[TrialRecord]:
        return [r for r in self.trials.values() if not r.finished]

    @property
    def strategy_state(self) -> dict[str, Any] | None:
        """The strategy's `state_dict()` as of the last recorded event (None before it was made)."""
        if self.strategy_header is None:
            return None
        return {**self.strategy_header, "events": list(self.strategy_events)}

    @property
    def scheduler_state(self) -> dict[str, Any] | None:
        """MO-ASHA's rungs in `RungLedger.state_dict()` form (None without a scheduler)."""
        if self.scheduler_header is None:
            return None
        return {**self.scheduler_header, "rungs": {m: dict(r) for m, r in self.rungs.items()}}

    # -- events -----------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """Change the in-memory state as one recorded event says (live and on replay alike)."""
        kind = event.get("e")
        tid = str(event.get("id", ""))
        if kind == "proposed":
            self.trials.setdefault(tid, TrialRecord(tid, [int(r) for r in event["ranks"]],
                                                    dict(event.get("info") or {}),
                                                    proposed_at=float(event.get("at") or 0.0),
                                                    hparams=dict(event.get("hparams") or {})))
            self.next_index = max(self.next_index, int(event.get("next_index", self.next_index)))
        elif kind == "attempt":
            rec = self.trials[tid]
            rec.status = "running" if not rec.finished else rec.status
            rec.attempts.append({"tune_id": str(event["tune_id"]), "dir": str(event["dir"])})
        elif kind == "finished":
            rec = self.trials.get(tid)
            if rec is None:
                ranks = (event.get("result") or {}).get("ranks") or []
                rec = self.trials[tid] = TrialRecord(tid, [int(r) for r in ranks],
                                                     hparams=dict((event.get("result") or {}).get("hparams") or {}))
            if rec.finished:
                return
            rec.result = event["result"]
            rec.status = str(event["result"].get("status", "failed"))
            rec.finished_at = event.get("at")
            self.order.append(tid)
        elif kind == "strategy":
            self.strategy_events.extend(event["events"])
        elif kind == "rung":
            self.rungs.setdefault(str(event["m"]), {})[tid] = [float(v) for v in event["v"]]
        elif kind == "model":
            if tid in self.trials:
                self.trials[tid].info["model_logged"] = True
        elif kind == "tell_error":
            self.tell_errors.append({"trial_id": tid, "error": str(event.get("error", ""))})
        elif kind == "overhead":
            self.overhead_samples += int(event.get("samples", 0))
        elif kind == "session":
            self.sessions.append({"started_at": event.get("at"), "resume": bool(event.get("resume"))})
            self.status = "running"
        elif kind == "status":
            self.status = str(event["status"])
            if self.sessions:
                self.sessions[-1].update(ended_at=event.get("at"), status=self.status)
        else:
            raise StorageError(f"search '{self.name}': unknown event {kind!r} in its record")

    def record(self, *events: dict[str, Any]) -> None:
        """Apply events and append them to the record (open it first with `open_log`)."""
        for event in events:
            self.apply(event)
        if self._log is not None:
            self._log.append(*events)

    def open_log(self, storage: Storage) -> EventLog:
        """Start appending to this search's record (a new session), writing any events carried
        over from a version-1 state first."""
        log = EventLog(storage, self.name)
        if not storage.is_local:
            log.session = log.next_session()
        self._log = log
        if self._carry:
            log.append(*self._carry)
            self._carry = []
        return log

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()

    # -- the header -------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "name": self.name,
            "status": self.status, "parent_run_id": self.parent_run_id,
            "settings": self.settings, "space": self.space,
            "strategy": self.strategy_header, "scheduler": self.scheduler_header,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }

    def save(self, storage: Storage) -> None:
        """Write the header (O(1) in the number of trials: they live in the record)."""
        self.updated_at = time.time()
        storage.write_text(json.dumps(encode(self.header()), indent=1, allow_nan=False),
                           self.name, STATE_FILE)

    @classmethod
    def from_header(cls, d: dict[str, Any], *, source: str = STATE_FILE) -> SearchState:
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise StorageError(f"{source} is not a ranksearch search state")
        if d.get("version") == 1:
            return _from_version_1(d)
        if d.get("version") != STATE_VERSION:
            raise StorageError(f"{source} has state version {d.get('version')!r}; this ranksearch "
                               f"reads versions 1 and {STATE_VERSION}")
        return cls(
            name=str(d["name"]), space=dict(d["space"]), settings=dict(d["settings"]),
            parent_run_id=str(d.get("parent_run_id") or ""), status=str(d.get("status", "created")),
            strategy_header=d.get("strategy"), scheduler_header=d.get("scheduler"),
            created_at=float(d.get("created_at") or 0.0), updated_at=float(d.get("updated_at") or 0.0),
        )

    @classmethod
    def load(cls, storage: Storage, name: str) -> SearchState:
        """The header, then every recorded event applied in order."""
        try:
            text = storage.read_text(name, STATE_FILE)
        except FileNotFoundError:
            raise StorageError(f"no search '{name}' under {storage.uri} ({STATE_FILE} missing)") from None
        try:
            data = decode(json.loads(text))
        except ValueError as exc:
            raise StorageError(f"{storage.display(name, STATE_FILE)} is not valid JSON: {exc}") from None
        state = cls.from_header(data, source=storage.display(name, STATE_FILE))
        header_status = state.status
        for event in EventLog(storage, name).read():
            state.apply(event)
        if data.get("version") == STATE_VERSION and header_status in ("finished", "failed", "interrupted"):
            state.status = header_status  # the header is written last when a session ends
        return state


def _from_version_1(d: dict[str, Any]) -> SearchState:
    """A search written before the event log: its trials become events, appended when the
    record is next opened (nothing is lost)."""
    strategy = d.get("strategy_state")
    state = SearchState(
        name=str(d["name"]), space=dict(d["space"]), settings=dict(d["settings"]),
        parent_run_id=str(d.get("parent_run_id") or ""), status=str(d.get("status", "created")),
        strategy_header={k: v for k, v in strategy.items() if k != "events"} if strategy else None,
        created_at=float(d.get("created_at") or 0.0),
    )
    events: list[dict[str, Any]] = []
    if strategy:
        events.append({"e": "strategy", "events": list(strategy.get("events") or [])})
    sched = d.get("scheduler_state")
    if sched:
        state.scheduler_header = {"eta": sched.get("eta"), "milestones": sched.get("milestones")}
        for m, rung in (sched.get("rungs") or {}).items():
            events += [{"e": "rung", "m": str(m), "id": t, "v": v} for t, v in rung.items()]
    trials = d.get("trials") or {}
    for tid, raw in trials.items():
        rec = TrialRecord.from_dict(tid, raw)
        events.append({"e": "proposed", "id": tid, "ranks": rec.ranks, "info": rec.info,
                       "at": rec.proposed_at})
        events += [{"e": "attempt", "id": tid, **a} for a in rec.attempts]
        if rec.info.get("model_logged"):
            events.append({"e": "model", "id": tid})
    for tid in d.get("order") or []:
        raw = trials.get(tid)
        if raw and raw.get("result") is not None:
            events.append({"e": "finished", "id": tid, "result": raw["result"], "at": raw.get("finished_at")})
    proposed = [e for e in events if e["e"] == "proposed"]
    if proposed:  # version 1 kept the next trial number apart; the last proposal carries it now
        proposed[-1]["next_index"] = int(d.get("next_index", 1))
    for event in events:
        state.apply(event)
    state.next_index = max(state.next_index, int(d.get("next_index", 1)))
    state.sessions = list(d.get("sessions") or [])
    state._carry = events
    return state


def load_json(text: str) -> Any:
    """Parse a state or record text, turning tagged non-finite floats back into floats."""
    return decode(json.loads(text))
