"""The Pareto-front explorer: a small web app over MLflow's public client API.

    ranksearch dashboard [--tracking-uri URI] [--host 127.0.0.1] [--port 8050]

It serves the single-page app kept in `dashboards/` (HTML, JS, CSS; plotly.js comes from the
installed `plotly` package) and a few read-only JSON endpoints:

    GET /api/searches                             every search: name, strategy, status, progress
    GET /api/searches/RUN_ID[?since=VERSION]      one search: all trials (columnar), its front,
                                                  hypervolume against finished trials
    GET /api/searches/RUN_ID/trials/TRIAL_ID/rank-config
                                                  the trial's rank-config file (as `ranksearch best`)

Why a cache: a search of 1,000 trials takes MLflow 2-3 s to list through a tracking server on a
small machine, far more than the page should wait. A finished search never changes, so its
trials are read once (`search_runs` pages, never one `get_run` per trial) and kept; a running
search is refreshed at most every `refresh_interval` seconds, reading only the trials that
finished since the last look. At start a background thread reads the most recent searches, so
opening one is usually answered from memory.

The server binds to 127.0.0.1 by default: it has no authentication, and what it shows (run
ids, metrics, the tracking URI with credentials masked) is meant for the user's own browser.
MLflow is read through `ranksearch.tracking.StoreReader` (tracking is the one module that
talks to MLflow); it, Flask and plotly are imported inside functions: importing this module is
cheap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ranksearch.errors import RanksearchError
from ranksearch.pareto import finite_number

if TYPE_CHECKING:
    from flask import Flask

    from ranksearch.space import SearchSpace
    from ranksearch.tracking import StoreReader

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
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


# -- reading MLflow -------------------------------------------------------------------------------
@dataclass
class _Trial:
    """One child run, as the dashboard shows it (and as `tracking.load_trials` reads it)."""

    trial_id: str
    run_id: str
    status: str  # ok / failed / pruned, or "running" until the trial reports back
    run_status: str
    ranks: list[int]
    metrics: dict[str, float]  # finite values shown and plotted
    result_metrics: dict[str, Any]  # the TrialResult's own metrics (what a rank config records)
    ok: bool
    fidelity: float | None
    error: str | None
    pareto_tag: str | None
    start_time: int | None
    end_time: int | None


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




def _finite_like_best(v: Any) -> bool:
    """The filter `service.best` applies to a trial's metrics (bools count as numbers there)."""
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _json_list(text: str | None, default: Any) -> Any:
    try:
        value = json.loads(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, list) else default


def _trial_of(run: Any, objective_names: Iterable[str]) -> _Trial:
    """A child run read the way `tracking.load_trials` reads it, plus what the plot needs."""
    from ranksearch.tracking import (
        PARAM_RANKS,
        TAG_ERROR,
        TAG_PARETO,
        TAG_RESULT,
        TAG_TRIAL_ID,
        TAG_TRIAL_STATUS,
    )
    from ranksearch.trial import TrialResult

    tags, params, logged = run.data.tags, run.data.params, run.data.metrics
    ranks = [int(r) for r in _json_list(params.get(PARAM_RANKS), []) if finite_number(r) is not None]
    result = None
    status = tags.get(TAG_TRIAL_STATUS)
    if status is not None:
        try:
            result = TrialResult.from_dict(json.loads(tags.get(TAG_RESULT, "")))
        except (ValueError, TypeError, KeyError):
            result = TrialResult(ranks=tuple(ranks), status=status, metrics=dict(logged),  # type: ignore[arg-type]
                                 error=tags.get(TAG_ERROR))
    shown = set(objective_names) | set(_KNOWN_METRICS)
    if result is not None:
        metrics = {k: f for k, v in result.metrics.items() if (f := finite_number(v)) is not None}
        shown |= set(result.metrics)
    else:
        metrics = {}
        shown |= set(logged)
    # The run's logged values fill in what the tracker derived (compression_ratio from params),
    # as the tracker's own front does; the result's values stand where both exist.
    metrics.update({k: f for k, v in logged.items()
                    if k in shown and k not in metrics and (f := finite_number(v)) is not None})
    return _Trial(
        trial_id=str(tags.get(TAG_TRIAL_ID) or run.info.run_name or run.info.run_id),
        run_id=run.info.run_id,
        status=result.status if result else "running",
        run_status=str(run.info.status),
        ranks=list(result.ranks) if result and result.ranks else ranks,
        metrics=metrics,
        result_metrics=dict(result.metrics) if result else dict(logged),
        ok=bool(result and result.ok),
        fidelity=finite_number(result.fidelity) if result else None,
        error=tags.get(TAG_ERROR),
        pareto_tag=tags.get(TAG_PARETO),
        start_time=run.info.start_time,
        end_time=run.info.end_time,
    )


def _ordered_metric_names(trials: Iterable[_Trial], objectives: Sequence[Sequence[str]]) -> list[str]:
    seen = {k for t in trials for k in t.metrics}
    first = [str(o[0]) for o in objectives] + list(_KNOWN_METRICS)
    ordered = [m for m in dict.fromkeys(first) if m in seen]
    return ordered + sorted(seen - set(ordered))


def _front_mask(trials: Sequence[_Trial], objectives: Sequence[Sequence[str]]) -> list[bool]:
    """The non-dominated set over all objectives, among trials the tracker counts (ok, with
    every objective value): the same set the tracker tags `pareto_optimal`."""
    from ranksearch.pareto import non_dominated_mask

    eligible = [i for i, t in enumerate(trials)
                if t.ok and all(str(n) in t.metrics for n, *_ in objectives)]
    mask = [False] * len(trials)
    if not eligible or not objectives:
        return mask
    F = [[-trials[i].metrics[str(n)] if (s[0] if s else "max") == "max" else trials[i].metrics[str(n)]
          for n, *s in objectives] for i in eligible]
    for i, keep in zip(eligible, non_dominated_mask(F), strict=True):
        mask[i] = bool(keep)
    return mask


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
        from ranksearch.tracking import TAG_KIND

        experiments = self.store.experiments()
        self._experiments.update({e.experiment_id: e.name for e in experiments})
        ids = [e.experiment_id for e in experiments]
        runs: list[Any] = []
        for start in range(0, len(ids), 100):  # MLflow caps the experiments of one search
            runs.extend(self._pages(ids[start:start + 100], f"tags.`{TAG_KIND}` = 'search'",
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
                steps = self._history(rid, "hypervolume")
                meta["n_finished"] = int(steps[-1][0]) if steps else 0
        return meta

    def _meta(self, run: Any) -> dict[str, Any]:
        from ranksearch.tracking import (
            DEFAULT_OBJECTIVES,
            TAG_ELEMENTS,
            TAG_OBJECTIVES,
            TAG_REFERENCE,
            TAG_SPACE,
            TAG_STATUS,
            TAG_STRATEGY,
        )

        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        info = run.info
        n_finished = tags.get("ranksearch.n_finished")
        objectives = [list(o) for o in _json_list(tags.get(TAG_OBJECTIVES), [])
                      if isinstance(o, (list, tuple)) and o] or [list(o) for o in DEFAULT_OBJECTIVES]
        status = tags.get(TAG_STATUS) or str(info.status).lower()
        if info.status in TERMINAL_STATUSES and status == "running":  # ended without finish()
            status = str(info.status).lower()
        budget = finite_number(params.get("budget"))
        return {
            "run_id": info.run_id, "name": info.run_name or info.run_id,
            "experiment_id": info.experiment_id, "experiment": self._experiment_name(info.experiment_id),
            "space": tags.get(TAG_SPACE) or params.get("space"),
            "strategy": tags.get(TAG_STRATEGY) or params.get("strategy") or "unknown",
            "status": status, "run_status": info.status, "live": info.status not in TERMINAL_STATUSES,
            "budget": int(budget) if budget is not None else None,
            "n_finished": int(n_finished) if n_finished and n_finished.isdigit() else None,
            "front_size": finite_number(metrics.get("front_size")),
            "hypervolume": finite_number(metrics.get("hypervolume")),
            "objectives": objectives,
            "elements": [str(e) for e in _json_list(tags.get(TAG_ELEMENTS), [])],
            "hv_reference": _json_list(tags.get(TAG_REFERENCE), None),
            "start_time": info.start_time, "end_time": info.end_time,
            "mlflow_run_path": f"#/experiments/{info.experiment_id}/runs/{info.run_id}",
        }

    def _history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of a parent metric, one value per step (the latest logged)."""
        by_step: dict[int, tuple[int, float]] = {}
        for m in self.store.metric_history(run_id, key):
            v = finite_number(m.value)
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
        from ranksearch.tracking import TAG_KIND

        try:
            run = self.store.get_run(run_id)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                raise DashboardError(f"no run {run_id} in the tracking store") from None
            raise DashboardError(f"cannot read run {run_id}: {exc}", status=502) from None
        if run.data.tags.get(TAG_KIND) != "search":
            raise DashboardError(f"run {run_id} is not a ranksearch search (no ranksearch.kind=search tag)")
        return run

    def _refresh(self, run_id: str, entry: _Entry, *, full: bool) -> None:
        from ranksearch.tracking import TAG_PARENT

        parent = self._get_parent(run_id)
        meta = self._meta(parent)
        names = [str(o[0]) for o in meta["objectives"]]
        exp = [parent.info.experiment_id]
        base = f"tags.`{TAG_PARENT}` = '{run_id}'"
        hv = self._history(run_id, "hypervolume")
        fs = self._history(run_id, "front_size")
        n_logged = hv[-1][0] if hv else 0
        if not full:
            since = max(0, entry.newest_end - _LATE_MS)
            runs = self._pages(exp, f"{base} and attributes.end_time >= {since}")
            runs += self._pages(exp, f"{base} and attributes.status = 'RUNNING'")
            self.stats["incremental_reads"] += 1
            self.stats["runs_read"] += len(runs)
            for run in runs:
                entry.trials[run.info.run_id] = _trial_of(run, names)
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
            entry.trials = {run.info.run_id: _trial_of(run, names) for run in runs}
        entry.newest_end = max([t.end_time or 0 for t in entry.trials.values()] + [0])
        entry.terminal = parent.info.status in TERMINAL_STATUSES
        entry.payload = self._payload(meta, list(entry.trials.values()), hv, fs)
        entry.version = entry.payload["version"]

    def _payload(self, meta: dict[str, Any], trials: list[_Trial], hv: list[tuple[int, float]],
                 fs: list[tuple[int, float]]) -> dict[str, Any]:
        trials.sort(key=lambda t: (t.start_time or 0, t.trial_id))
        objectives = meta["objectives"]
        front = _front_mask(trials, objectives)
        names = _ordered_metric_names(trials, objectives)
        n_finished = sum(t.status != "running" for t in trials)
        n_running = sum(t.status == "running" and t.run_status == "RUNNING" for t in trials)
        if not meta["elements"]:
            width = max((len(t.ranks) for t in trials), default=0)
            meta["elements"] = [f"r{i}" for i in range(width)]
        meta.update(n_finished=max(n_finished, hv[-1][0] if hv else 0), n_trials=len(trials),
                    n_running=n_running, n_failed=sum(t.status == "failed" for t in trials),
                    n_pruned=sum(t.status == "pruned" for t in trials),
                    front_size_local=sum(front))
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
                "fidelity": [t.fidelity for t in trials],
                "eligible": [t.ok and all(n in t.metrics for n, *_ in objectives) for t in trials],
                "front": front,
                "pareto_tag": [t.pareto_tag for t in trials],
                "error": [t.error for t in trials],
                "metrics": {n: [t.metrics.get(n) for t in trials] for n in names},
            },
            "history": {"step": [s for s, _ in hv], "hypervolume": [v for _, v in hv],
                        "front_size_step": [s for s, _ in fs], "front_size": [v for _, v in fs]},
        }

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
            from ranksearch.tracking import SPACE_ARTIFACT

            try:
                text = self.store.read_text(run_id, SPACE_ARTIFACT)
            except Exception as exc:  # noqa: BLE001 - missing artifact: say so
                raise DashboardError(f"search run {run_id} has no {SPACE_ARTIFACT} artifact ({exc}); "
                                     "it was not made by `ranksearch run`") from None
            entry.space = SearchSpace.from_dict(yaml.safe_load(text), source=f"runs:/{run_id}/{SPACE_ARTIFACT}")
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


# -- the web app ----------------------------------------------------------------------------------
def _mlflow_ui_base(tracking_uri: str, mlflow_ui: str | None) -> str | None:
    if mlflow_ui:
        return mlflow_ui.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise DashboardError(f"the installed plotly package has no {path}; reinstall plotly", status=500)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def create_app(tracking_uri: str | None = None, *, poll_interval: float = 3.0, prefetch: bool = True,
               mlflow_ui: str | None = None, refresh_interval: float = 1.0,
               assets_dir: str | os.PathLike[str] | None = None) -> Flask:
    """The Flask app of the dashboard for one tracking store.

    `poll_interval` is how often a page showing a running search asks for news; `prefetch`
    reads the most recent searches in a background thread right away; `mlflow_ui` is the MLflow
    UI that trial links open (default: the tracking URI when it is a server).
    """
    from flask import Flask, Response, request, send_file, send_from_directory

    from ranksearch.resources import dashboard_dir
    from ranksearch.tracking import mask_secrets

    assets = Path(assets_dir) if assets_dir is not None else dashboard_dir()
    if not (assets / "index.html").is_file():
        raise DashboardError(f"the dashboard's assets are missing: no {assets / 'index.html'}", status=500)
    reader = MlflowReader(tracking_uri, refresh_interval=refresh_interval)
    if reader.tracking_uri.startswith("sqlite:///"):
        db = Path(reader.tracking_uri[len("sqlite:///"):])
        if not db.is_file():  # a read-only tool must not create an empty store
            raise DashboardError(f"no MLflow store at {db}; give --tracking-uri (a tracking server, "
                                 "sqlite:///FILE.db, or the folder a search logged to)", status=500)
    reader.store.connect()  # import MLflow now, not inside the first request
    ui = _mlflow_ui_base(reader.tracking_uri, mlflow_ui)
    app = Flask("ranksearch.dashboard", static_folder=None)
    app.config["READER"] = reader

    bodies: dict[str, tuple[str, bytes]] = {}  # run id -> (version, JSON) of the last search answer

    def as_json(data: Any, status: int = 200) -> Response:
        return json_response(json.dumps(_json_safe(data), allow_nan=False, separators=(",", ":")).encode(), status)

    def json_response(body: bytes, status: int = 200) -> Response:
        return Response(body, status=status, mimetype="application/json", headers={"Cache-Control": "no-store"})

    @app.errorhandler(DashboardError)
    def _dashboard_error(exc: DashboardError) -> Response:
        return as_json({"error": str(exc)}, exc.status)

    @app.errorhandler(RanksearchError)
    def _ranksearch_error(exc: RanksearchError) -> Response:
        return as_json({"error": str(exc)}, 422)

    @app.get("/")
    def index() -> Response:
        response = send_from_directory(assets, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/assets/<path:name>")
    def asset(name: str) -> Response:
        response = send_from_directory(assets, name)
        response.headers["Cache-Control"] = "no-cache"  # revalidated by ETag: edits show at once
        return response

    @app.get("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        return send_file(_plotly_js(), mimetype="text/javascript", max_age=7 * 24 * 3600)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.get("/api/config")
    def config() -> Response:
        from ranksearch import __version__, service

        local_hint = None if ui else service.browse_hint(reader.tracking_uri)
        return as_json({"tracking_uri": mask_secrets(reader.tracking_uri), "mlflow_ui": ui,
                        "mlflow_hint": local_hint, "poll_interval": poll_interval, "version": __version__})

    @app.get("/api/searches")
    def searches() -> Response:
        try:
            rows = reader.list_searches(fresh=request.args.get("fresh") == "1")
        except DashboardError:
            raise
        except Exception as exc:  # noqa: BLE001 - store down or misconfigured: tell the page
            raise DashboardError(f"cannot read searches from {mask_secrets(reader.tracking_uri)}: {exc}",
                                 status=502) from None
        return as_json({"searches": rows, "mlflow_ui": ui, "poll_interval": poll_interval})

    @app.get("/api/searches/<run_id>")
    def search(run_id: str) -> Response:
        try:
            payload = reader.search(run_id, fresh=request.args.get("fresh") == "1")
        except DashboardError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DashboardError(f"cannot read search {run_id}: {exc}", status=502) from None
        version = payload["version"]
        if request.args.get("since") == version:
            return as_json({"unchanged": True, "version": version})
        cached = bodies.get(run_id)
        if cached is None or cached[0] != version:
            body = json.dumps(_json_safe({**payload, "mlflow_ui": ui, "poll_interval": poll_interval}),
                              allow_nan=False, separators=(",", ":")).encode()
            cached = bodies[run_id] = (version, body)
        return json_response(cached[1])

    @app.get("/api/searches/<run_id>/trials/<trial_id>/rank-config")
    def rank_config(run_id: str, trial_id: str) -> Response:
        name, text = reader.rank_config(run_id, trial_id)
        return Response(text.encode(), mimetype="application/x-yaml", headers={
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    if prefetch:
        threading.Thread(target=reader.prefetch, name="ranksearch-dashboard-prefetch", daemon=True).start()
    return app


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def serve(tracking_uri: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = False, *, mlflow_ui: str | None = None, poll_interval: float = 3.0) -> None:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    from werkzeug.serving import make_server

    from ranksearch.tracking import mask_secrets

    app = create_app(tracking_uri, poll_interval=poll_interval, mlflow_ui=mlflow_ui)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {host}:{port}: {exc}; choose another --port", status=500) from None
    url = f"http://{'[' + host + ']' if ':' in host else host}:{server.server_port}/"
    reader: MlflowReader = app.config["READER"]
    print(f"ranksearch dashboard on {url} (MLflow: {mask_secrets(reader.tracking_uri)}); Ctrl-C stops it",
          flush=True)
    if not _is_loopback(host):
        print(f"warning: the dashboard has no authentication and listens on {host}: anyone who can "
              "reach this address can read the tracking store through it", file=sys.stderr, flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def dashboard_command(
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow store: http(s)://server, sqlite:///file.db or a folder "
        "(default: $MLFLOW_TRACKING_URI, else ./mlruns).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 unless others "
                                      "must reach it (there is no authentication).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser.")] = False,
    mlflow_ui: Annotated[str | None, typer.Option(
        "--mlflow-ui", help="MLflow UI that trial links open (default: the tracking server).")] = None,
) -> None:
    """Browse Pareto fronts in the browser: searches, fronts, compare strategies, export configs."""
    serve(tracking_uri, host=host, port=port, open_browser=open_browser, mlflow_ui=mlflow_ui)
