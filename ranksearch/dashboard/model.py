"""The dashboard's model of a search: read from MLflow (through `tracking.StoreReader`), cached.

Why a cache: a search of 1,000 trials takes MLflow 2-3 s to list through a tracking server on a
small machine, far more than the page should wait. A finished search never changes, so its
trials are read once (`search_runs` pages, never one `get_run` per trial) and kept; a running
search is refreshed at most every `refresh_interval` seconds, reading only the trials that
finished since the last look, plus the current front (the runs tagged `pareto_optimal=true`),
because a trial that leaves the front changes its tag, not its end time.

Nothing here computes a front for a search the tracker wrote: the highlighted set is the
`pareto_optimal` tags the tracker keeps from the driver's front archive. Only a search whose
finished trials carry no tags (written before the tags existed) gets its front built from its
stored trials, by `archive.front_of`. Direction, log scale and eligibility come from
`ranksearch.objectives`; runs are decoded by `tracking.schema`, as every reader decodes them.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ranksearch.errors import RanksearchError
from ranksearch.objectives import LOG_SCALE_METRICS, Objectives, finite
from ranksearch.tracking import schema as S
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace
    from ranksearch.tracking import StoreReader

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
PAGE_SIZE = 500  # runs per search_runs page: MLflow's server answers 500 as fast as 1000
PREFETCH_LIMIT = 20  # most recent searches read at start
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_LATE_MS = 15_000  # trials that ended this long before the newest one seen are read again
_SHORT_S = 10.0  # MLflow counting more finished trials than were read, this long: read everything
_KNOWN_METRICS = ("val_accuracy", "compression_ratio", "params", "flops", "latency")


class DashboardError(RanksearchError):
    """A request the dashboard cannot answer (unknown search or trial, store unreachable)."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Trial:
    """One child run, as the dashboard shows it (decoded by `tracking.schema.trial_row`)."""

    trial_id: str
    run_id: str
    status: str  # ok / failed / pruned, or "running" until the trial reports back
    run_status: str
    ranks: list[int]
    hparams: dict[str, Any]  # the hyperparameter values it trained with (active ones only)
    metrics: dict[str, float]  # finite values shown and plotted
    result: TrialResult | None  # None until the trial reports back
    eligible: bool  # may sit on the front (`Objectives.eligible`)
    fidelity: float | None
    error: str | None
    pareto_tag: str | None  # the tracker's pareto_optimal tag, as stored
    start_time: int | None
    end_time: int | None

    @property
    def result_metrics(self) -> dict[str, Any]:
        """The TrialResult's own metrics (what a rank config records)."""
        return dict(self.result.metrics) if self.result is not None else dict(self.metrics)


@dataclass
class _Entry:
    """The cached state of one search."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    trials: dict[str, _Trial] = field(default_factory=dict)  # by run id
    payload: dict[str, Any] | None = None
    version: str = ""
    checked: float = 0.0
    terminal: bool = False
    newest_end: int = 0
    short_since: float | None = None
    space: SearchSpace | None = None
    importance: dict[str, Any] | None = None  # the last importance answer (its payload version inside)


def _finite_like_best(v: Any) -> bool:
    """The filter `service.best` applies to a trial's metrics (bools count as numbers there)."""
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _trial_of(run: Any, objectives: Objectives) -> _Trial:
    """A child run decoded as every reader decodes it, plus what the plot needs."""
    row = S.trial_row(run)
    result: TrialResult | None = row["result"]
    logged = run.data.metrics
    shown = set(objectives.names) | set(_KNOWN_METRICS)
    if result is not None:
        metrics = objectives.metrics(result)
        shown |= set(result.metrics)
    else:
        metrics = {}
        shown |= set(logged)
    # The run's logged values fill in what the result lacks; the result's values stand where
    # both exist.
    metrics.update({k: f for k, v in logged.items()
                    if k in shown and k not in metrics and (f := finite(v)) is not None})
    tag = run.data.tags.get(S.TAG_PARETO)
    return _Trial(
        trial_id=row["trial_id"], run_id=row["run_id"], status=row["status"], run_status=row["run_status"],
        ranks=row["ranks"], hparams=dict(row["hparams"] or {}), metrics=metrics, result=result,
        eligible=result is not None and objectives.eligible(result),
        fidelity=finite(row["fidelity"]), error=row["error"], pareto_tag=tag,
        start_time=row["start_time"], end_time=row["end_time"],
    )


def _ordered_metric_names(trials: Iterable[_Trial], objectives: Objectives) -> list[str]:
    seen = {k for t in trials for k in t.metrics}
    first = list(objectives.names) + list(_KNOWN_METRICS)
    ordered = [m for m in dict.fromkeys(first) if m in seen]
    return ordered + sorted(seen - set(ordered))


def _front_flags(trials: Sequence[_Trial], objectives: Objectives) -> tuple[list[bool], str]:
    """Which trials are on the front, and where that came from: the tracker's `pareto_optimal`
    tags ("tags"), or, when a finished trial carries none (a search logged before the tags
    existed), `archive.front_of` over the stored results ("rebuilt")."""
    finished = [t for t in trials if t.result is not None]
    if all(t.pareto_tag is not None for t in finished):
        return [t.pareto_tag == "true" for t in trials], "tags"
    from ranksearch.archive import front_of

    on = set(front_of(objectives, [(t.trial_id, t.result) for t in finished if t.result is not None]))
    return [t.trial_id in on for t in trials], "rebuilt"


class MlflowReader:
    """Reads searches from MLflow (through `tracking.StoreReader`) and caches what it read.

    Thread-safe: each search has its own lock, so two requests for one search cause one read.
    """

    def __init__(self, tracking_uri: str | None = None, *, refresh_interval: float = 1.0,
                 list_ttl: float = 3.0, client: Any = None) -> None:
        from ranksearch.service import default_tracking_uri
        from ranksearch.tracking import StoreReader

        # As the CLI names a store (a folder stays a folder: rank configs record it so) ...
        self.store_uri = default_tracking_uri(tracking_uri)
        # ... and as MLflow's client opens it.
        self.store: StoreReader = StoreReader(self.store_uri, client=client)
        self.tracking_uri = self.store.tracking_uri
        self.refresh_interval = float(refresh_interval)
        self.list_ttl = float(list_ttl)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._experiments: dict[str, str] = {}
        self._list: tuple[float, list[dict[str, Any]]] | None = None
        self._list_lock = threading.Lock()
        self.stats = {"full_reads": 0, "incremental_reads": 0, "runs_read": 0, "cache_hits": 0}

    @property
    def client(self) -> Any:
        """The MLflow client the reader uses (made on first use)."""
        return self.store.client

    # -- the list of searches -------------------------------------------------------------------
    def list_searches(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """Every search (parent run tagged ranksearch.kind=search), newest first."""
        with self._list_lock:
            if not fresh and self._list and time.monotonic() - self._list[0] < self.list_ttl:
                return self._list[1]
            rows = [self._summary(run) for run in self._search_parents()]
            self._list = (time.monotonic(), rows)
            return rows

    def _search_parents(self) -> list[Any]:
        experiments = self.store.experiments()
        self._experiments.update({e.experiment_id: e.name for e in experiments})
        ids = [e.experiment_id for e in experiments]
        runs: list[Any] = []
        for start in range(0, len(ids), 100):  # MLflow caps the experiments of one search
            runs.extend(self._pages(ids[start:start + 100], f"tags.`{S.TAG_KIND}` = '{S.KIND_SEARCH}'",
                                    order_by=["attributes.start_time DESC"]))
        return sorted(runs, key=lambda r: -(r.info.start_time or 0))

    def _pages(self, experiment_ids: list[str], filter_string: str,
               order_by: list[str] | None = None) -> list[Any]:
        return self.store.search_runs(experiment_ids, filter_string, order_by=order_by, page_size=PAGE_SIZE)

    def _experiment_name(self, experiment_id: str) -> str:
        if experiment_id not in self._experiments:
            try:
                self._experiments[experiment_id] = self.store.experiment_name(experiment_id)
            except Exception:  # noqa: BLE001 - a name is decoration; the id will do
                return experiment_id
        return self._experiments[experiment_id]

    def _summary(self, run: Any) -> dict[str, Any]:
        """One row of the list; a running search's progress comes from its cache or its history."""
        meta = self._meta(run)
        rid = run.info.run_id
        entry = self._entries.get(rid)
        if meta["n_finished"] is None:
            if entry is not None and entry.payload is not None:
                meta["n_finished"] = entry.payload["search"]["n_finished"]
            else:
                steps = self._history(rid, S.METRIC_HYPERVOLUME)
                meta["n_finished"] = int(steps[-1][0]) if steps else 0
        return meta

    def _meta(self, run: Any) -> dict[str, Any]:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        info = run.info
        n_finished = tags.get(S.TAG_N_FINISHED)
        objectives = S.search_objectives(tags, params)
        status = tags.get(S.TAG_STATUS) or str(info.status).lower()
        if info.status in TERMINAL_STATUSES and status == "running":  # ended without finish()
            status = str(info.status).lower()
        budget = finite(params.get("budget"))
        return {
            "run_id": info.run_id, "name": info.run_name or info.run_id,
            "experiment_id": info.experiment_id, "experiment": self._experiment_name(info.experiment_id),
            "space": tags.get(S.TAG_SPACE) or params.get("space"),
            "strategy": tags.get(S.TAG_STRATEGY) or params.get("strategy") or "unknown",
            "status": status, "run_status": info.status, "live": info.status not in TERMINAL_STATUSES,
            "budget": int(budget) if budget is not None else None,
            "n_finished": int(n_finished) if n_finished and n_finished.isdigit() else None,
            "front_size": finite(metrics.get(S.METRIC_FRONT_SIZE)),
            "hypervolume": finite(metrics.get(S.METRIC_HYPERVOLUME)),
            "objectives": [list(o) for o in objectives.pairs],
            "constraints": {k: v for k, v in (("max_params", objectives.max_params),
                                              ("min_compression", objectives.min_compression)) if v is not None},
            "log_metrics": sorted(LOG_SCALE_METRICS),
            "elements": [str(e) for e in S.json_list(tags.get(S.TAG_ELEMENTS), [])],
            "hparams": S.hparam_domains_of(params),  # name -> domain ({} without hyperparameters)
            "hv_reference": S.json_list(tags.get(S.TAG_REFERENCE), None),
            "start_time": info.start_time, "end_time": info.end_time,
            "mlflow_run_path": f"#/experiments/{info.experiment_id}/runs/{info.run_id}",
        }

    def _history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of a parent metric, one value per step (the latest logged)."""
        by_step: dict[int, tuple[int, float]] = {}
        for m in self.store.metric_history(run_id, key):
            v = finite(m.value)
            if v is not None and (m.step not in by_step or m.timestamp >= by_step[m.step][0]):
                by_step[int(m.step)] = (m.timestamp, v)
        return [(s, by_step[s][1]) for s in sorted(by_step)]

    # -- one search -----------------------------------------------------------------------------
    def _entry(self, run_id: str) -> _Entry:
        if not _RUN_ID.match(run_id):
            raise DashboardError(f"{run_id!r} is not an MLflow run id")
        with self._lock:
            return self._entries.setdefault(run_id, _Entry())

    def search(self, run_id: str, *, fresh: bool = False) -> dict[str, Any]:
        """The payload of the search view; read from MLflow only when it may have changed."""
        entry = self._entry(run_id)
        with entry.lock:
            now = time.monotonic()
            if entry.payload is not None and not fresh and (
                    entry.terminal or now - entry.checked < self.refresh_interval):
                self.stats["cache_hits"] += 1
                return entry.payload
            self._refresh(run_id, entry, full=fresh or entry.payload is None)
            entry.checked = time.monotonic()
            assert entry.payload is not None
            return entry.payload

    def cached(self, run_id: str) -> bool:
        entry = self._entries.get(run_id)
        return entry is not None and entry.payload is not None

    def _get_parent(self, run_id: str) -> Any:
        try:
            run = self.store.get_run(run_id)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                raise DashboardError(f"no run {run_id} in the tracking store") from None
            raise DashboardError(f"cannot read run {run_id}: {exc}", status=502) from None
        if run.data.tags.get(S.TAG_KIND) != S.KIND_SEARCH:
            raise DashboardError(f"run {run_id} is not a ranksearch search (no ranksearch.kind=search tag)")
        return run

    def _refresh(self, run_id: str, entry: _Entry, *, full: bool) -> None:
        parent = self._get_parent(run_id)
        meta = self._meta(parent)
        objectives = S.search_objectives(parent.data.tags, parent.data.params)
        exp = [parent.info.experiment_id]
        base = f"tags.`{S.TAG_PARENT}` = '{run_id}'"
        hv = self._history(run_id, S.METRIC_HYPERVOLUME)
        fs = self._history(run_id, S.METRIC_FRONT_SIZE)
        n_logged = hv[-1][0] if hv else 0
        if not full:
            since = max(0, entry.newest_end - _LATE_MS)
            runs = self._pages(exp, f"{base} and attributes.end_time >= {since}")
            runs += self._pages(exp, f"{base} and attributes.status = 'RUNNING'")
            # A trial pushed off the front changes its tag, not its end time: read the front.
            front = self._pages(exp, f"{base} and tags.`{S.TAG_PARETO}` = 'true'")
            on_front = {run.info.run_id for run in front}
            for t in entry.trials.values():
                if t.pareto_tag == "true" and t.run_id not in on_front:
                    t.pareto_tag = "false"
            runs += front
            self.stats["incremental_reads"] += 1
            self.stats["runs_read"] += len(runs)
            for run in runs:
                entry.trials[run.info.run_id] = _trial_of(run, objectives)
            # The tracker may publish a trial's count on the parent a moment before the trial's
            # own run; a gap that lasts means writes arrived out of order: read everything.
            finished = sum(t.status != "running" for t in entry.trials.values())
            if finished >= n_logged:
                entry.short_since = None
            else:
                entry.short_since = entry.short_since or time.monotonic()
                full = time.monotonic() - entry.short_since > _SHORT_S
        if full:
            entry.short_since = None
            runs = self._pages(exp, base, order_by=["attributes.start_time ASC"])
            self.stats["full_reads"] += 1
            self.stats["runs_read"] += len(runs)
            entry.trials = {run.info.run_id: _trial_of(run, objectives) for run in runs}
        entry.newest_end = max([t.end_time or 0 for t in entry.trials.values()] + [0])
        entry.terminal = parent.info.status in TERMINAL_STATUSES
        entry.payload = self._payload(meta, objectives, list(entry.trials.values()), hv, fs)
        entry.version = entry.payload["version"]

    def _payload(self, meta: dict[str, Any], objectives: Objectives, trials: list[_Trial],
                 hv: list[tuple[int, float]], fs: list[tuple[int, float]]) -> dict[str, Any]:
        trials.sort(key=lambda t: (t.start_time or 0, t.trial_id))
        front, front_source = _front_flags(trials, objectives)
        names = _ordered_metric_names(trials, objectives)
        n_finished = sum(t.status != "running" for t in trials)
        n_running = sum(t.status == "running" and t.run_status == "RUNNING" for t in trials)
        if not meta["elements"]:
            width = max((len(t.ranks) for t in trials), default=0)
            meta["elements"] = [f"r{i}" for i in range(width)]
        meta.update(n_finished=max(n_finished, hv[-1][0] if hv else 0), n_trials=len(trials),
                    n_running=n_running, n_failed=sum(t.status == "failed" for t in trials),
                    n_pruned=sum(t.status == "pruned" for t in trials),
                    front_size_local=sum(front), front_source=front_source)
        # Hyperparameters: the logged domains' names first, then any value without a domain.
        hp_names = list(meta["hparams"]) + sorted({k for t in trials for k in t.hparams} - set(meta["hparams"]))
        version = f"{n_finished}.{n_running}.{len(trials)}.{len(hv)}.{meta['status']}.{meta['run_status']}"
        return {
            "version": version,
            "search": meta,
            "metric_names": names,
            "trials": {
                "trial_id": [t.trial_id for t in trials],
                "run_id": [t.run_id for t in trials],
                "status": [t.status for t in trials],
                "ranks": [t.ranks for t in trials],
                # one column per hyperparameter; None where a trial has no value (inactive)
                "hparams": {n: [t.hparams.get(n) for t in trials] for n in hp_names},
                "fidelity": [t.fidelity for t in trials],
                "eligible": [t.eligible for t in trials],
                "front": front,
                "pareto_tag": [t.pareto_tag for t in trials],
                "error": [t.error for t in trials],
                "metrics": {n: [t.metrics.get(n) for t in trials] for n in names},
            },
            "history": {"step": [s for s, _ in hv], "hypervolume": [v for _, v in hv],
                        "front_size_step": [s for s, _ in fs], "front_size": [v for _, v in fs]},
        }

    # -- hyperparameter importance ------------------------------------------------------------
    def importance(self, run_id: str, *, evaluator: str = "auto") -> dict[str, Any]:
        """How much each rank element and hyperparameter matters to each objective, over the
        finished trials (`dashboard.importance`, Optuna's evaluators); cached per payload version.

        `importances` is {objective: {param: importance}}; it is empty while fewer than
        `min_trials` trials finished ok (the page says so instead of drawing bars).
        """
        from ranksearch.dashboard import importance as I

        try:
            I.resolve(evaluator, 0)
        except RanksearchError as exc:
            raise DashboardError(str(exc), status=400) from None
        payload = self.search(run_id)
        entry = self._entry(run_id)
        cached = entry.importance
        if cached is not None and cached["version"] == payload["version"] and cached["asked"] == evaluator:
            return cached
        meta = payload["search"]
        elements = list(meta["elements"])
        with entry.lock:
            done = [t for t in entry.trials.values() if t.status == "ok" and t.result is not None]
        observations = [
            I.Observation(params={**(dict(zip(elements, t.ranks, strict=True)) if len(t.ranks) == len(elements) else {}),
                                  **t.hparams},
                          values=t.metrics)
            for t in done]
        distributions = I.rank_distributions(observations, elements)
        for name, domain in meta["hparams"].items():
            try:
                distributions[name] = I.distribution_of(domain)
            except (KeyError, TypeError, ValueError):  # a domain this version cannot read: left out
                log.info("hyperparameter %s of search %s has an unreadable domain %r", name, run_id, domain)
        objectives = [(str(n), str(d)) for n, d in meta["objectives"]]
        answer = {
            "version": payload["version"], "asked": evaluator,
            "evaluator": I.resolve(evaluator, len(observations)), "min_trials": I.MIN_TRIALS,
            "n_finished": len(observations), "objectives": objectives,
            "elements": elements, "hparams": list(meta["hparams"]),
            "importances": I.importances(observations, distributions, objectives, evaluator=evaluator),
        }
        entry.importance = answer
        return answer

    # -- export ---------------------------------------------------------------------------------
    def trial(self, run_id: str, trial_id: str) -> _Trial:
        self.search(run_id)
        entry = self._entry(run_id)
        for t in entry.trials.values():
            if t.trial_id == trial_id:
                return t
        raise DashboardError(f"search {run_id} has no trial {trial_id!r}")

    def space(self, run_id: str) -> SearchSpace:
        """The effective search space a search ran with (its space.yaml artifact), cached."""
        entry = self._entry(run_id)
        if entry.space is None:
            import yaml

            from ranksearch.space import SearchSpace

            try:
                text = self.store.read_text(run_id, S.SPACE_ARTIFACT)
            except Exception as exc:  # noqa: BLE001 - missing artifact: say so
                raise DashboardError(f"search run {run_id} has no {S.SPACE_ARTIFACT} artifact ({exc}); "
                                     "it was not made by `ranksearch run`") from None
            entry.space = SearchSpace.from_dict(yaml.safe_load(text), source=f"runs:/{run_id}/{S.SPACE_ARTIFACT}")
        return entry.space

    def rank_config(self, run_id: str, trial_id: str) -> tuple[str, str]:
        """(file name, YAML text) of one trial's rank-config file.

        Written by `service.RankConfigFile.to_yaml` with the provenance `service.best` records,
        so the file equals what `ranksearch best` writes for the same trial, except `pick`
        (here `trial <id>`, chosen by hand) and the `created` time stamp.
        """
        from ranksearch import service

        trial = self.trial(run_id, trial_id)
        if trial.status != "ok" or not trial.ranks:
            raise DashboardError(f"trial {trial_id} did not finish ok (status {trial.status}); "
                                 "only finished trials can be exported", status=409)
        parent = self.search(run_id)["search"]
        space = self.space(run_id)
        config = service.RankConfigFile(
            space=space, ranks=tuple(int(r) for r in trial.ranks),
            metrics={k: float(v) for k, v in trial.result_metrics.items() if _finite_like_best(v)},
            provenance={
                "search": parent["name"], "search_run_id": run_id, "trial_id": trial.trial_id,
                "trial_run_id": trial.run_id, "tracking_uri": self.store_uri,
                "pick": f"trial {trial.trial_id}",
                "model_uri": f"runs:/{trial.run_id}/{service.MODEL_ARTIFACT_DIR}",
                "experiment": space.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{parent['name']}-{trial.trial_id}")
        return f"{safe}.{service.RANK_CONFIG_FILE}", config.to_yaml()

    # -- warm-up --------------------------------------------------------------------------------
    def prefetch(self, limit: int = PREFETCH_LIMIT) -> None:
        """Read the list and the most recent searches into the cache (errors are only logged)."""
        try:
            rows = self.list_searches(fresh=True)
            for row in rows[:limit]:
                self.search(row["run_id"])
        except Exception as exc:  # noqa: BLE001 - a warm-up; the request path reports errors
            log.info("dashboard prefetch stopped: %s", exc)


