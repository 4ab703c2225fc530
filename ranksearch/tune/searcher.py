"""The one adapter from a ranksearch `Strategy` to a Ray Tune `Searcher`.

Tune hands out its own trial ids; the strategy sees stable ranksearch trial ids (`t0001`,
`t0002`, ...) that survive retries and `resume` (a trial re-run by a later driver gets a new
Tune id but keeps its ranksearch id). The adapter

- asks the strategy only while fewer than `max_concurrent` trials are live, returns None
  while a batch strategy waits for results, and FINISHED once the budget is used;
- tells each trial's outcome exactly once: duplicate, late or unknown completions are
  ignored, and an errored trial is told as failed with its reason (which Tune passes to
  callbacks, not to searchers: `fail()` carries it over);
- saves and restores itself as JSON (the strategy's `state_dict()`), never by pickling it.

A configuration is ranks plus hyperparameter values: Tune's trial config carries `hparams`
(canonical, JSON-able: `space.hyper.canonical`), the trainable trains under
`space.trial_config(hparams)`, and the told `TrialResult` carries them back. A strategy that
proposes no values for a space with hyperparameters gets the space's defaults.

Objective direction is handled once, by the strategy; Tune's `metric`/`mode` only label the
scalar Tune shows.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ray.tune.search import Searcher

from ranksearch.budget import CostLimit, plan_more
from ranksearch.trial import TrialResult
from ranksearch.tune.state import Requeued
from ranksearch.tune.trainable import FINAL_KEY

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace
    from ranksearch.strategies import Strategy

log = logging.getLogger(__name__)

SEARCHER_FORMAT = "ranksearch.searcher"
SEARCHER_VERSION = 2  # 2 added "hparams"; version 1 states (no hyperparameters) still load
_READABLE_VERSIONS = (1, 2)
#: An errored trial whose reason has not arrived after this long is told with a generic one.
_REASON_WAIT_S = 5.0


class SearchListener(Protocol):
    """What the driver does when the adapter proposes a trial or learns its outcome."""

    def on_proposed(self, trial_id: str, tune_id: str, ranks: tuple[int, ...], info: dict[str, Any],
                    resume_from: str | None, *, hparams: dict[str, Any]) -> None: ...

    def on_told(self, trial_id: str, tune_id: str, result: TrialResult) -> None: ...

    def on_tell_error(self, trial_id: str, error: BaseException) -> None: ...


def trial_id_for(index: int) -> str:
    return f"t{index:04d}"


class StrategySearcher(Searcher):
    """Any `Strategy` as a Tune `Searcher` (see the module docstring)."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        max_concurrent: int | None = None,
        next_index: int = 1,
        requeue: Iterable[Requeued] = (),
        listener: SearchListener | None = None,
        cost_limit: CostLimit | None = None,
        extend_plan: bool = True,
        metric: str = "val_accuracy",
        mode: str = "max",
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.strategy = strategy
        self.cost_limit = cost_limit
        #: under a cost limit, plan more trials when the strategy's planned count runs out first
        #: (False: the count is a cap the user set, `strategy.max_trials`)
        self.extend_plan = extend_plan and cost_limit is not None
        self.budget_spent = False  # a cost budget ended the search
        self.space: SearchSpace = strategy.space
        self.max_concurrent = max_concurrent
        self.listener = listener
        self._next_index = int(next_index)
        self._requeue: deque[Requeued] = deque(requeue)
        self._trial_of: dict[str, str] = {}  # tune id -> ranksearch id (every attempt)
        self._ranks: dict[str, tuple[int, ...]] = {}  # ranksearch id -> ranks
        self._hparams: dict[str, dict[str, Any]] = {}  # ranksearch id -> hyperparameter values
        self._info: dict[str, dict[str, Any]] = {}
        self._live: set[str] = set()  # tune ids running or pending
        self._told: set[str] = set()  # ranksearch ids told to the strategy
        self._awaiting_reason: dict[str, float] = {}  # errored tune id -> when
        self._samples: dict[str, int] = {}  # tune id -> training samples reported so far
        self._finished = False
        self.stats = {"suggest_s": 0.0, "tell_s": 0.0, "suggested": 0, "told": 0, "ignored": 0,
                      "tell_errors": 0}
        for item in self._requeue:
            self._ranks[item.trial_id] = tuple(item.ranks)
            self._info[item.trial_id] = dict(item.info)
            self._hparams[item.trial_id] = self.canonical(item.hparams)

    # -- Tune's Searcher interface ----------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        # The search space is the strategy's; Tune's param_space is empty.
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True  # handled here: no ConcurrencyLimiter around us

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        t0 = time.perf_counter()
        try:
            return self._suggest(trial_id)
        finally:
            self.stats["suggest_s"] += time.perf_counter() - t0

    def _suggest(self, tune_id: str) -> dict[str, Any] | str | None:
        self._flush_unexplained_errors()
        if self.max_concurrent is not None and len(self._live) >= self.max_concurrent:
            return None
        if self._requeue:
            item = self._requeue.popleft()
            return self._launch(tune_id, item.trial_id, tuple(item.ranks), item.info, item.resume_from,
                                self._hparams[item.trial_id])
        running = [float(self._samples.get(t, 0)) for t in self._live]
        if not self._finished and self.extend_plan and plan_more(self.strategy, self.cost_limit, running):
            log.info("strategy '%s' asked every trial it planned and the cost budget has room: planning "
                     "%d in all", self.strategy.name, self.strategy.budget)
        if self._finished:
            return Searcher.FINISHED
        if self.strategy.is_finished():
            out_of_plan = self.extend_plan and self.strategy.n_asked >= self.strategy.budget
            if out_of_plan and self._live:
                return None  # a running trial stopped early may leave room to plan more
            self._finished = True
            # the plan ran out and plan_more found no room: the cost budget ended the search
            self.budget_spent = out_of_plan and not self.cost_limit.allows(running)
            return Searcher.FINISHED
        if self.cost_limit is not None and not self.cost_limit.allows(running):
            if not self._live and not self._awaiting_reason:  # nothing left that could free budget
                self._finished = self.budget_spent = True
                return Searcher.FINISHED
            return None
        ask = getattr(self.strategy, "ask_proposal", None)  # ranks, info and values in one answer
        asked = ask() if callable(ask) else self.strategy.ask()
        if asked is None:
            if not self._live and not self._awaiting_reason and not self.strategy.is_finished():
                # Nothing running can ever unblock it: stop instead of polling forever.
                log.error("strategy '%s' proposes nothing and waits for no trial; ending the search",
                          self.strategy.name)
                self._finished = True
                return Searcher.FINISHED
            if self.strategy.is_finished():
                self._finished = True
                return Searcher.FINISHED
            return None
        ranks, hparams = self._configuration(asked)
        info = dict(asked.info) if hasattr(asked, "info") and isinstance(asked.info, dict) else self.strategy.info(ranks)
        trial_id = trial_id_for(self._next_index)
        self._next_index += 1
        return self._launch(tune_id, trial_id, ranks, info, None, hparams)

    def canonical(self, hparams: Any) -> dict[str, Any]:
        """Hyperparameter values as trials, the record and MLflow carry them: the space's
        canonical form (active ones only, normalised), its defaults when none were given, and
        nothing for a space without hyperparameters."""
        hyper = getattr(self.space, "hyper", None)
        if not hyper:
            return {}
        return hyper.canonical(dict(hparams or {}))

    def _configuration(self, asked: Any) -> tuple[tuple[int, ...], dict[str, Any]]:
        """(ranks, hparams) of what the strategy answered: a `Proposal` (`ask_proposal`: ranks,
        info and values) or a rank vector (`ask`; its values, if the strategy chose any, from
        the strategy's `hparams(ranks)`)."""
        if hasattr(asked, "ranks"):  # a Proposal (ranks, info, hparams)
            ranks = tuple(int(r) for r in asked.ranks)
            hparams = getattr(asked, "hparams", None)
        else:
            ranks = tuple(int(r) for r in asked)
            hparams = None
        if not hparams:
            lookup = getattr(self.strategy, "hparams", None)  # the strategy's values for these ranks
            if callable(lookup):
                hparams = lookup(ranks)
        return ranks, self.canonical(hparams)

    def _launch(self, tune_id: str, trial_id: str, ranks: tuple[int, ...], info: dict[str, Any],
                resume_from: str | None, hparams: dict[str, Any]) -> dict[str, Any]:
        self._trial_of[tune_id] = trial_id
        self._ranks[trial_id] = ranks
        self._info[trial_id] = dict(info)
        self._hparams[trial_id] = dict(hparams)
        self._live.add(tune_id)
        self.stats["suggested"] += 1
        if self.listener is not None:
            self.listener.on_proposed(trial_id, tune_id, ranks, dict(info), resume_from, hparams=dict(hparams))
        config = {"trial_id": trial_id, "ranks": list(ranks), "hparams": dict(hparams), "resume_from": resume_from}
        if "learn" in info:  # a learned-rank trial: its knob (ranksearch.learned.trial)
            config["learn"] = info["learn"]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch results go to the driver's callback (tracking); strategies see outcomes.

        Only the samples consumed so far are kept: a trial that errors later is charged them.
        """
        samples = _num(result.get("samples_seen"))
        if math.isfinite(samples):
            self._samples[trial_id] = max(int(samples), self._samples.get(trial_id, 0))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        tune_id = trial_id
        rs_id = self._trial_of.get(tune_id)
        self._live.discard(tune_id)
        if rs_id is None or rs_id in self._told:
            self.stats["ignored"] += 1
            log.debug("ignoring completion of Tune trial %s (unknown or already told)", tune_id)
            return
        if error:
            self._awaiting_reason[tune_id] = time.monotonic()
            return
        from ranksearch.learned.trial import reported_ranks

        # a learned-rank trial reports the ranks it learned: they are the result's
        ranks = reported_ranks(self.space, result) or self._ranks[rs_id]
        self._tell(tune_id, rs_id, result_from_report(self.space, ranks, result,
                                                      info=self._info.get(rs_id),
                                                      samples_seen=self._samples.get(tune_id, 0),
                                                      hparams=self._hparams.get(rs_id)))

    def fail(self, tune_id: str, reason: str) -> None:
        """Tell an errored trial as failed, with the reason the driver's callback found."""
        self._awaiting_reason.pop(tune_id, None)
        self._live.discard(tune_id)
        rs_id = self._trial_of.get(tune_id)
        if rs_id is None or rs_id in self._told:
            return
        metrics = cost_metrics(self.space, self._ranks[rs_id])
        metrics["samples_seen"] = float(self._samples.get(tune_id, 0))
        result = TrialResult(ranks=self._ranks[rs_id], status="failed", metrics=metrics,
                             error=reason or "the trial raised an exception",
                             info=self._info.get(rs_id, {}), hparams=dict(self._hparams.get(rs_id) or {}))
        self._tell(tune_id, rs_id, result)

    def _flush_unexplained_errors(self) -> None:
        now = time.monotonic()
        for tune_id, since in list(self._awaiting_reason.items()):
            if now - since >= _REASON_WAIT_S:
                self.fail(tune_id, "the trial raised an exception (no details reached the driver)")

    def _tell(self, tune_id: str, rs_id: str, result: TrialResult) -> None:
        """Tell the strategy, then the driver. A strategy that raises does not stop the search:
        the error goes to the listener (logged, recorded, counted) and the trial is recorded
        as usual."""
        t0 = time.perf_counter()
        self._told.add(rs_id)
        if self.cost_limit is not None:  # every told result carries what it consumed
            self.cost_limit.finish(float(result.metrics.get("samples_seen", 0.0)))
        error: Exception | None = None
        try:
            self.strategy.tell(rs_id, result)
        except Exception as exc:  # noqa: BLE001 - reported to the listener, never swallowed
            error = exc
            self.stats["tell_errors"] += 1
        finally:
            self.stats["tell_s"] += time.perf_counter() - t0
        self.stats["told"] += 1
        if self.listener is not None:
            self.listener.on_told(rs_id, tune_id, result)
            if error is not None:
                self.listener.on_tell_error(rs_id, error)
        elif error is not None:
            log.error("strategy '%s' failed while told trial %s", self.strategy.name, rs_id, exc_info=error)

    # -- bookkeeping for the driver ---------------------------------------------------------------
    @property
    def next_index(self) -> int:
        return self._next_index

    @property
    def live(self) -> int:
        return len(self._live)

    def trial_of(self, tune_id: str) -> str | None:
        return self._trial_of.get(tune_id)

    # -- save / restore (JSON, never pickle) ------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "format": SEARCHER_FORMAT, "version": SEARCHER_VERSION,
            "strategy": self.strategy.state_dict(), "next_index": self._next_index,
            "trial_of": dict(self._trial_of),
            "ranks": {k: list(v) for k, v in self._ranks.items()},
            "hparams": self._hparams, "info": self._info, "told": sorted(self._told), "finished": self._finished,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        from ranksearch.strategies import from_state

        if state.get("format") != SEARCHER_FORMAT or state.get("version") not in _READABLE_VERSIONS:
            raise ValueError("not a ranksearch searcher state (or a version this code cannot read)")
        self.strategy = from_state(self.space, state["strategy"])
        self._next_index = int(state["next_index"])
        self._trial_of = dict(state["trial_of"])
        self._ranks = {k: tuple(v) for k, v in state["ranks"].items()}
        self._info = {k: dict(v) for k, v in state.get("info", {}).items()}
        self._hparams = {k: dict(v) for k, v in (state.get("hparams") or {}).items()}
        self._told = set(state["told"])
        self._finished = bool(state.get("finished", False))
        # Whatever was live belongs to a dead driver: Tune restores those trials itself.
        self._live = set()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f, default=_json_default)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))

    def __reduce__(self) -> tuple[Any, ...]:
        # Tune pickles its config (tuner.pkl): ship the JSON state and the space, not live objects.
        return (_rebuild, (json.dumps(self.space.to_dict()), json.dumps(self.get_state(), default=_json_default),
                           self.max_concurrent))


def _rebuild(space_json: str, state_json: str, max_concurrent: int | None) -> StrategySearcher:
    from ranksearch.space import SearchSpace
    from ranksearch.strategies import from_state

    space = SearchSpace.from_dict(json.loads(space_json))
    state = json.loads(state_json)
    searcher = StrategySearcher(from_state(space, state["strategy"]), max_concurrent=max_concurrent)
    searcher.set_state(state)
    return searcher


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


# -- Tune results -> TrialResult -------------------------------------------------------------------
def cost_metrics(space: SearchSpace, ranks: tuple[int, ...], *,
                 names: tuple[str, ...] = ("params", "compression_ratio", "flops"),
                 report: dict[str, Any] | None = None) -> dict[str, float]:
    """Objectives known before training, from the closed-form counts (exact, tested elsewhere).

    A trial computes them in its worker and reports them (`rs_params`, `rs_flops`): the FLOP
    count plans a contraction per layer and costs milliseconds, which the driver's loop must not
    pay per trial. The driver counts only what a report lacks (a failed trial), and only
    `names`. A counting error is logged and leaves the values out: one trial's bookkeeping must
    not stop the search.
    """
    from ranksearch.space import count_flops, count_params

    report = report or {}
    out: dict[str, float] = {}
    try:
        params = _num(report.get("rs_params"))
        if not (math.isfinite(params) and params > 0) and {"params", "compression_ratio"} & set(names):
            params = float(count_params(space, ranks))
        if math.isfinite(params) and params > 0:
            out.update(params=params, compression_ratio=space.dense_params / params)
        if "flops" in names:
            flops = _num(report.get("rs_flops"))
            out["flops"] = flops if math.isfinite(flops) else float(count_flops(space, ranks))
    except Exception:
        log.exception("could not count the parameters/FLOPs of ranks %s", list(ranks))
    return out


def reported_costs(space: SearchSpace, ranks: tuple[int, ...]) -> dict[str, float]:
    """What a trial reports of its closed-form costs (computed in the worker)."""
    from ranksearch.space import count_flops, count_params

    return {"rs_params": float(count_params(space, ranks)), "rs_flops": float(count_flops(space, ranks))}


_STATUS = {"ok": "ok", "failed": "failed", "stopped": "pruned"}


def result_from_report(space: SearchSpace, ranks: tuple[int, ...], report: dict | None, *,
                       info: dict[str, Any] | None = None, samples_seen: int = 0,
                       hparams: dict[str, Any] | None = None) -> TrialResult:
    """A trial's outcome from its last Tune result (the trainable's final report, normally).

    Without a final report (the trial was stopped early, e.g. by a multi-fidelity scheduler)
    the best validation accuracy seen so far stands and the trial counts as pruned.
    `metrics["samples_seen"]` is what the trial consumed: the report's count, or
    `samples_seen` (the most the adapter saw reported) when the report has none.
    """
    from ranksearch.learned.trial import extra_metrics

    report = dict(report or {})
    if report.get(FINAL_KEY) and space.user_function is not None:
        from ranksearch.tune.userfn_trial import result_from_user_report

        return result_from_user_report(space, ranks, report, dict(info or {}))
    metrics = cost_metrics(space, ranks, report=report)
    reported = _num(report.get("samples_seen"))
    metrics["samples_seen"] = float(max(int(reported) if math.isfinite(reported) else 0, int(samples_seen)))
    info = dict(info or {})
    hparams = dict(hparams or {})
    if report.get(FINAL_KEY):
        status = _STATUS.get(str(report.get("rs_status")), "failed")
        acc = _num(report.get("val_accuracy"))
        metrics["val_accuracy"] = acc
        metrics["final_val_accuracy"] = _num(report.get("final_val_accuracy"))
        latency = _num(report.get("latency_ms"))
        if math.isfinite(latency):
            metrics["latency"] = latency
        metrics["train_seconds"] = _num(report.get("train_seconds"))
        metrics.update(extra_metrics(report))  # what a trial reports beyond the usual (rs_extra_*)
        fidelity = float(report.get("epochs_done") or 0)
        error = str(report.get("rs_error") or "") or None
        if status == "ok" and not math.isfinite(acc):
            status, error = "failed", error or "no finite validation accuracy was measured"
        for key in ("rs_trial_seconds", "rs_started_at", "rs_ended_at", "best_epoch"):
            if key in report:
                info[key.removeprefix("rs_")] = report[key]
        if report.get("rs_resumed_from"):
            info["resumed_from"] = report["rs_resumed_from"]
        if report.get("rs_init") and report["rs_init"] != "scratch":
            info["init"] = report["rs_init"]  # what the trial's weights started from
        _where(report, info)
        return TrialResult(ranks=ranks, status=status, metrics=metrics, fidelity=fidelity,
                           error=error, info=info, hparams=hparams)
    _where(report, info)
    best = _num(report.get("best_val_accuracy", report.get("val_accuracy")))
    if math.isfinite(best):
        metrics["val_accuracy"] = best
    return TrialResult(ranks=ranks, status="pruned" if math.isfinite(best) else "failed",
                       metrics=metrics, fidelity=float(report.get("epoch") or 0),
                       error=None if math.isfinite(best) else "the trial ended without reporting a result",
                       info=info, hparams=hparams)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _where(report: dict[str, Any], info: dict[str, Any]) -> None:
    """Where the trial ran (child-run tags): the Ray node id and Tune's node_ip/hostname."""
    if report.get("rs_node_id"):
        info["node_id"] = report["rs_node_id"]
    for key in ("node_ip", "hostname"):
        if report.get(key):
            info[key] = report[key]
