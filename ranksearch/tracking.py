"""MLflow tracking of a search: the only module that talks to MLflow.

One search is one parent run; one trial is one child run (tag `mlflow.parentRunId`). The
tracker lives in the Ray driver and is fed by the Tune adapter: `trial_started`,
`trial_epoch`, `trial_finished`, and `finish` at the end.

Why a queue: a search runs for hours and must not stop (or slow down) because the tracking
server restarts. Every write after `start()` goes into an in-memory queue that one background
thread sends in order, merging consecutive writes to one run into `log_batch` calls (each client
call costs 20-120 ms against a server). A write that fails because the server is unreachable is
retried with backoff until it succeeds or `retry_for` seconds have passed since it was queued;
the public methods only append to the queue, so they return in microseconds and never raise on
connectivity errors. MLflow's own HTTP retries are turned down (unless the user set them) so a
down server fails fast and this queue does the waiting.

Beside the tracker, this module holds every other MLflow access of ranksearch, kept generic
(plain names, paths, bytes and callables; no service types): reading a search back
(`find_search`, `load_trials`, `load_front`), reading a store for the dashboard
(`StoreReader`), artifacts (`download_text`, `download_artifact_uri`, `artifact_names`,
`ArtifactUploader`), the model registry (`register_model`) and plain runs outside a search
(`TrainingRun`).

MLflow itself is imported lazily, inside functions: importing ranksearch never imports it.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.errors import RanksearchError
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# -- names written to MLflow ----------------------------------------------------------------------
TAG_PARENT = "mlflow.parentRunId"
TAG_KIND = "ranksearch.kind"  # "search" on the parent, "trial" on children
TAG_STATUS = "ranksearch.status"  # parent: running / finished / failed / killed
TAG_SPACE = "ranksearch.space"
TAG_STRATEGY = "ranksearch.strategy"
TAG_OBJECTIVES = "ranksearch.objectives"  # JSON [[name, "max"|"min"], ...]
TAG_ELEMENTS = "ranksearch.elements"  # JSON list of rank element names
TAG_REFERENCE = "ranksearch.hv_reference"
TAG_TRIAL_ID = "trial_id"
TAG_TRIAL_STATUS = "ranksearch.trial_status"  # ok / failed / pruned (set when finished)
TAG_RESULT = "ranksearch.result"  # JSON TrialResult, for an exact read-back on resume
TAG_PARETO = "pareto_optimal"
TAG_ERROR = "error"
PARAM_RANKS = "ranks"
FRONT_DIR = "pareto"
SPACE_ARTIFACT = "space.yaml"

MASK = "***"
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("val_accuracy", "max"), ("compression_ratio", "max"))
_STATUS_OF = {"ok": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 8000
_MAX_KEY_LEN = 250
_TRANSIENT_ATTEMPTS = 6  # a server that answers 5xx this many times in a row is not "down"
_MAX_BACKOFF = 5.0
# MLflow settings that make a down server fail fast; a value the user set is left alone.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # also saves a get_run per terminated run
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class TrackingError(RanksearchError):
    """The tracking store cannot be used (wrong URI, server down at start, unknown search)."""


# -- secrets --------------------------------------------------------------------------------------
_SECRET_WORDS = ("token", "secret", "passw", "pwd", "credential", "apikey", "api_key", "auth", "private")
_KEY_WORD = re.compile(r"(^|[^a-z])key(s)?($|[^a-z])|key$")
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def is_secret_key(name: str) -> bool:
    """True for option names that usually hold credentials (token, password, *_key, ...)."""
    n = str(name).lower()
    return any(w in n for w in _SECRET_WORDS) or bool(_KEY_WORD.search(n))


def mask_secrets(value: Any) -> Any:
    """A copy of `value` with credential-looking entries replaced by '***'.

    Dict entries whose key names a secret are masked whole; strings lose the password of
    `scheme://user:password@host` URLs and anything shaped like an AWS access key id.
    """
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        value = _URL_CREDS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
        return _AWS_KEY_ID.sub(MASK, value)
    return value


# -- small helpers --------------------------------------------------------------------------------
def _now_ms() -> int:
    return int(time.time() * 1000)


def _key(name: Any) -> str:
    """A name MLflow accepts for a param, metric or tag (alphanumerics, _ - . space /)."""
    k = re.sub(r"[^\w.\- /]", "_", str(name)).strip("/")
    k = re.sub(r"/+", "/", k)
    if not k or any(part in (".", "..") for part in k.split("/")):
        k = "_" + k.replace("/", "_")
    return k[:_MAX_KEY_LEN]


def _text(value: Any, limit: int) -> str:
    """Scalars as text, everything else as JSON, cut to MLflow's length limit."""
    if isinstance(value, str):
        s = value
    elif isinstance(value, (bool, int, float)) or value is None:
        s = str(value)
    else:
        s = json.dumps(value, default=str, sort_keys=True)
    return s if len(s) <= limit else s[: limit - 15] + "...[truncated]"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_mlflow() -> None:
    """Import mlflow now, so that its logging set-up is done before callers adjust levels."""
    import mlflow  # noqa: F401


def configure_mlflow_env() -> None:
    """Make MLflow fail fast on a down server (our queue retries) and stay quiet on stdout."""
    for k, v in _MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def resolve_tracking_uri(tracking_uri: str | os.PathLike | None = None) -> str:
    """The store URI to use: the given one, $MLFLOW_TRACKING_URI, or ./mlflow.db.

    A plain folder becomes a SQLite file inside it (`<folder>/mlflow.db`, artifacts in
    `<folder>/mlartifacts`), because MLflow 3 keeps its file store in maintenance mode; a folder
    that already holds a file store (numbered experiment folders) is used as one. Nothing is
    created here (see `_prepare_local_store`), so read-only lookups leave the disk alone.
    """
    uri = str(tracking_uri) if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return f"sqlite:///{Path('mlflow.db').resolve()}"
    if "://" in uri and not uri.startswith("file:"):
        return uri
    path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().resolve()
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    if path.is_dir() and any((p / "meta.yaml").is_file() for p in path.iterdir() if p.name.isdigit()):
        return path.as_uri()
    return f"sqlite:///{path / 'mlflow.db'}"


def _prepare_local_store(uri: str) -> None:
    """Create the folder of a local SQLite database (SQLite creates the file, not the folder)."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _local_artifact_root(uri: str) -> str | None:
    """For a SQLite store: artifacts next to the database, not in the process's working dir."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
    return (db.parent / "mlartifacts").as_uri()


def client_for(tracking_uri: str | os.PathLike | None = None) -> MlflowClient:
    """An MlflowClient on a store (named as `resolve_tracking_uri` takes it), set to fail fast."""
    configure_mlflow_env()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))


def _classify(exc: BaseException) -> str:
    """'outage' (no answer: retry until retry_for), 'transient' (5xx: a few tries) or 'permanent'."""
    import requests

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return "outage"
        e = e.__cause__ or e.__context__
    msg = str(exc)
    if "failed with exception" in msg or "timeout exception" in msg or "Max retries exceeded" in msg:
        return "outage"
    status = None
    get_status = getattr(exc, "get_http_status_code", None)
    if callable(get_status):
        try:
            status = int(get_status())
        except Exception:  # noqa: BLE001 - a status we cannot read is not a reason to crash
            status = None
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if status is not None and (status >= 500 or status == 429):
        return "transient"
    if "database is locked" in msg or "TEMPORARILY_UNAVAILABLE" in msg:
        return "transient"
    return "permanent"


# -- queued writes --------------------------------------------------------------------------------
class _RunRef:
    """A run that may not exist yet: its id arrives when the queued create succeeds."""

    __slots__ = ("key", "run_id", "dead")

    def __init__(self, key: str, run_id: str | None = None) -> None:
        self.key = key
        self.run_id = run_id
        self.dead = False


class _Ctx:
    """What an op needs to run: the client, and a counter of the calls it made."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.calls = 0
        self.dropped_items = 0

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return fn(*args, **kwargs)


class _Op:
    kind = "op"

    def __init__(self, ref: _RunRef) -> None:
        self.ref = ref
        self.created = time.monotonic()
        self.attempts = 0
        self.sealed = False  # being (or been) sent: no more merging into it

    def run(self, ctx: _Ctx) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} on {self.ref.key}"


class _Create(_Op):
    kind = "create_run"

    def __init__(self, ref, experiment_id: str, run_name: str, tags: dict[str, str],
                 parent_id: str, trial_id: str) -> None:
        super().__init__(ref)
        self.experiment_id, self.run_name, self.tags = experiment_id, run_name, tags
        self.parent_id, self.trial_id = parent_id, trial_id
        self.start_time = _now_ms()

    def run(self, ctx: _Ctx) -> None:
        if self.attempts:  # an earlier try may have reached the server before the answer was lost
            found = _child_runs(ctx, self.experiment_id, self.parent_id, trial_id=self.trial_id)
            if found:
                self.ref.run_id = found[0].info.run_id
                return
        run = ctx.call(ctx.client.create_run, self.experiment_id, start_time=self.start_time,
                       tags=self.tags, run_name=self.run_name)
        self.ref.run_id = run.info.run_id


class _Batch(_Op):
    """Metrics, params and tags for one run, merged until sent and cut into log_batch chunks."""

    kind = "log_batch"

    def __init__(self, ref: _RunRef) -> None:
        super().__init__(ref)
        self.metrics: dict[tuple[str, int, int, float], None] = {}
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self._chunks: list[tuple[list, list, list]] | None = None
        self._next = 0

    def add(self, metrics: Iterable[tuple[str, float, int, int]] = (),
            params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
        for key, value, ts, step in metrics:
            self.metrics[(key, int(step), int(ts), float(value))] = None
        self.params.update(params or {})
        self.tags.update(tags or {})

    @property
    def size(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def _make_chunks(self) -> list[tuple[list, list, list]]:
        metrics = list(self.metrics)
        params = list(self.params.items())
        tags = list(self.tags.items())
        chunks = []
        while metrics or params or tags:
            p, params = params[:100], params[100:]
            t, tags = tags[:100], tags[100:]
            room = 1000 - len(p) - len(t)
            m, metrics = metrics[:room], metrics[room:]
            chunks.append((m, p, t))
        return chunks

    def run(self, ctx: _Ctx) -> None:
        from mlflow.entities import Metric, Param, RunTag

        if self._chunks is None:
            self._chunks = self._make_chunks()
        while self._next < len(self._chunks):
            m, p, t = self._chunks[self._next]
            try:
                ctx.call(
                    ctx.client.log_batch, self.ref.run_id,
                    metrics=[Metric(k, v, ts, step) for k, step, ts, v in m],
                    params=[Param(k, v) for k, v in p], tags=[RunTag(k, v) for k, v in t],
                    synchronous=True,
                )
            except Exception as exc:
                if _classify(exc) != "permanent":
                    raise
                if len(m) + len(p) + len(t) > 1:
                    # One bad entry (say a param re-logged with another value) must not sink
                    # the rest: retry the chunk one entry at a time.
                    singles = ([([x], [], []) for x in m] + [([], [x], []) for x in p]
                               + [([], [], [x]) for x in t])
                    self._chunks[self._next:self._next + 1] = singles
                    continue
                log.warning("MLflow rejected %s for %s: %s", (m or p or t)[0], self.ref.key, exc)
                ctx.dropped_items += 1
            self._next += 1


class _Terminate(_Op):
    kind = "set_terminated"

    def __init__(self, ref: _RunRef, status: str) -> None:
        super().__init__(ref)
        self.status = status
        self.end_time = _now_ms()

    def run(self, ctx: _Ctx) -> None:
        ctx.call(ctx.client.set_terminated, self.ref.run_id, status=self.status, end_time=self.end_time)


class _Text(_Op):
    kind = "log_text"

    def __init__(self, ref: _RunRef, text: str, path: str) -> None:
        super().__init__(ref)
        self.text, self.path = text, path

    def run(self, ctx: _Ctx) -> None:
        ctx.call(ctx.client.log_text, self.ref.run_id, self.text, self.path)


# -- the tracker ----------------------------------------------------------------------------------
class SearchTracker:
    """One search = one MLflow parent run; one trial = one child run (tag mlflow.parentRunId).

    Call from the Ray driver only. All methods after `start()` queue their writes and return at
    once; `flush()` waits for delivery, `finish()` delivers everything and ends the parent run.
    """

    def __init__(
        self,
        space: Any,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        params: dict | None = None,
        tags: dict | None = None,
        parent_run_id: str | None = None,
        flush_interval: float = 1.0,
        retry_for: float = 600.0,
        artifact_interval: float = 15.0,
        start_timeout: float = 30.0,
        train_size: int | None = None,
        archive: Any = None,  # the driver's FrontArchive (interim: this tracker keeps its own front)
    ) -> None:
        self.space = space
        #: N_train_full (see `ranksearch.training.full_train_size`): the unit of epoch_equivalents.
        self.train_size = int(train_size) if train_size else None
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment or getattr(space, "name", None) or "ranksearch"
        self.run_name = run_name
        self.user_params = dict(params or {})
        self.user_tags = dict(tags or {})
        self.parent_run_id: str = parent_run_id or ""
        self.flush_interval = float(flush_interval)
        self.retry_for = float(retry_for)
        self.artifact_interval = float(artifact_interval)
        self.start_timeout = float(start_timeout)

        self.elements: list[str] = [str(getattr(e, "name", e)) for e in getattr(space, "elements", ())]
        self.objectives: list[tuple[str, str]] = _space_objectives(space)
        hv_cfg = getattr(getattr(getattr(space, "config", None), "hypervolume", None), "reference", None)
        self.reference: tuple[float, float] = (float(hv_cfg[0]), float(hv_cfg[1])) if hv_cfg else (0.5, 0.0)
        self.dense_params = _number(getattr(space, "dense_params", None))

        self.experiment_id: str = ""
        self._client: MlflowClient | None = None
        self._parent = _RunRef("search")
        self._refs: dict[str, _RunRef] = {}
        self._last_step: dict[str, int] = {}
        self._has_ranks: set[str] = set()
        self._results: dict[str, TrialResult] = {}
        self._order: list[str] = []  # finished trial ids, in finishing order
        self._front: list[str] = []  # objective front (trial ids)
        self._hv_set: list[str] = []  # non-dominated set in the hypervolume plane
        self._tagged: dict[str, str] = {}  # last pareto_optimal value queued per trial
        self._history: list[dict[str, Any]] = []
        self._hypervolume = 0.0
        self._samples = 0  # training samples consumed by the finished trials (all statuses)
        self._overhead = 0  # samples spent outside trials (the dense warm start)

        self._lock = threading.Condition()
        self._queue: deque[_Op] = deque()
        self._open: dict[str, _Batch] = {}  # unsent batch per run key, to merge into
        self._front_version = 0
        self._uploaded_version = -1
        self._last_upload = 0.0
        self._rendered: tuple[int, dict[str, bytes]] | None = None
        self._artifact_since: float | None = None
        self._artifact_attempts = 0
        self._reopened = False
        self._retry_at = 0.0
        self._backoff = 0.0
        self._flush_waiters = 0
        self._failures = 0  # delivery attempts that failed (connectivity), ever
        self._unreachable_since: float | None = None
        self._closing = False
        self._finished = False
        self._thread: threading.Thread | None = None
        self.stats = {"calls": 0, "ops": 0, "dropped": 0, "failed_attempts": 0, "artifact_uploads": 0}

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        """Create the parent run (or reopen `parent_run_id` to resume); returns its run id.

        This is the one blocking call: it needs the server to hand out the run id, and a search
        should not start against a store it cannot reach. It retries for `start_timeout` seconds,
        then raises TrackingError.
        """
        if self._thread is not None:
            return self.parent_run_id
        _prepare_local_store(self.tracking_uri)
        self._client = client_for(self.tracking_uri)
        deadline = time.monotonic() + self.start_timeout
        if self.parent_run_id:
            self._call_until(deadline, self._reopen)
        else:
            self._call_until(deadline, self._create_parent)
        self._parent.run_id = self.parent_run_id
        with self._lock:
            if not self._reopened:
                self._enqueue_batch(self._parent, params=self._parent_params())
                self._enqueue(_Text(self._parent, self._space_yaml(), SPACE_ARTIFACT))
            self._front_version += 1  # publish front artifacts (possibly empty) once at least
        self._thread = threading.Thread(target=self._worker, name="ranksearch-tracking", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)
        return self.parent_run_id

    def _call_until(self, deadline: float, fn: Callable[[], None]) -> None:
        delay = 0.5
        while True:
            try:
                fn()
                return
            except Exception as exc:
                kind = _classify(exc)
                if kind == "permanent" or time.monotonic() + delay > deadline:
                    raise TrackingError(
                        f"cannot use the MLflow store at {_safe_uri(self.tracking_uri)}: {exc}. "
                        "Check the tracking URI and that the server is running"
                    ) from exc
                log.warning("MLflow at %s not reachable yet (%s); retrying",
                            _safe_uri(self.tracking_uri), exc)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)

    def _create_parent(self) -> None:
        client = self._client
        assert client is not None
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                self.experiment_id = client.create_experiment(
                    self.experiment, artifact_location=_local_artifact_root(self.tracking_uri))
            except Exception as exc:  # created meanwhile by another process
                exp = client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise exc
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            self.experiment_id = exp.experiment_id
        strategy = self._strategy_name()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_name = self.run_name or f"{getattr(self.space, 'name', 'search')}-{strategy}-{stamp}"
        run = client.create_run(self.experiment_id, start_time=_now_ms(), tags=self._parent_tags(),
                                run_name=self.run_name)
        self.parent_run_id = run.info.run_id

    def _reopen(self) -> None:
        client = self._client
        assert client is not None
        run = client.get_run(self.parent_run_id)
        self.experiment_id = run.info.experiment_id
        self.run_name = run.info.run_name
        if run.info.status != "RUNNING":
            client.update_run(self.parent_run_id, status="RUNNING")
        known = run.data.params
        new_params = {}
        for k, v in self._parent_params().items():
            if k not in known:
                new_params[k] = v
            elif known[k] != v:
                log.warning("resume: param %r was %r and stays so (now %r)", k, known[k], v)
        client.log_batch(self.parent_run_id, params=_params(new_params),
                         tags=_tags({**self._parent_tags(), TAG_STATUS: "running"}), synchronous=True)
        self._load_state(client, run)
        self._reopened = True

    def _load_state(self, client: MlflowClient, parent_run: Any) -> None:
        """Resume: child runs, finished results, front, tags and history as they were stored."""
        ctx = _Ctx(client)
        runs = _child_runs(ctx, self.experiment_id, self.parent_run_id)
        self._refs, self._tagged, self._results, self._order = {}, {}, {}, []
        self._has_ranks = set()
        finished: list[tuple[int, str, TrialResult]] = []
        for run in runs:
            tid = run.data.tags.get(TAG_TRIAL_ID)
            if not tid or tid in self._refs:
                continue
            self._refs[tid] = _RunRef(tid, run.info.run_id)
            if PARAM_RANKS in run.data.params:
                self._has_ranks.add(tid)
            if TAG_PARETO in run.data.tags:
                self._tagged[tid] = run.data.tags[TAG_PARETO]
            result = _result_of(run)
            if result is not None:
                finished.append((run.info.end_time or 0, tid, result))
        for _, tid, result in sorted(finished, key=lambda x: (x[0], x[1])):
            self._results[tid] = result
            self._order.append(tid)
        self._samples = sum(_samples_of(r) for r in self._results.values())
        self._overhead = int(parent_run.data.metrics.get("warm_start_samples", 0))
        ok = [t for t in self._order if self._eligible(self._results[t])]
        self._front = self._non_dominated(ok, self._objective_vector)
        finite = [t for t in ok if all(math.isfinite(v) for v in self._hv_vector(t))]
        self._hv_set = self._non_dominated(finite, self._hv_vector)
        self._hypervolume = self._hv_value()
        self._history = _download_json(client, self.parent_run_id, f"{FRONT_DIR}/history.json") or []
        if not isinstance(self._history, list):
            self._history = []

    def finish(self, status: str = "FINISHED", timeout: float | None = None) -> None:
        """Deliver everything, publish the final front, tag the status and end the parent run.

        Waits up to `timeout` (default `retry_for`) for an unreachable server; whatever is still
        undelivered then is reported in the log and dropped.
        """
        if self._thread is None or self._finished:
            return
        status = status.upper()
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status must be FINISHED, FAILED or KILLED, got {status!r}")
        timeout = self.retry_for if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            self._finished = True
            for tid, ref in self._refs.items():  # trials that never reported back
                if tid not in self._results:
                    self._enqueue(_Terminate(ref, "KILLED"))
            self._front_version += 1  # the final artifacts, even if nothing changed since
            self._enqueue_batch(self._parent, tags={
                TAG_STATUS: status.lower(), "ranksearch.n_finished": str(len(self._order)),
                "ranksearch.front_size": str(len(self._front)),
            })
        self.flush(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._enqueue(_Terminate(self._parent, status))
        delivered = self.flush(timeout=max(1.0, deadline - time.monotonic()))
        with self._lock:
            self._closing = True
            left = len(self._queue)
            self._lock.notify_all()
        self._thread.join(timeout=5.0)
        atexit.unregister(self._at_exit)
        if not delivered:
            log.error("MLflow at %s unreachable: %d queued writes for search %s were not delivered",
                      _safe_uri(self.tracking_uri), left, self.parent_run_id)

    def __enter__(self) -> SearchTracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is KeyboardInterrupt:
            self.finish("KILLED", timeout=min(self.retry_for, 30.0))
        else:
            self.finish("FAILED" if exc_type else "FINISHED")

    def _at_exit(self) -> None:
        if not self._finished:
            self.flush(timeout=10.0)

    # -- trials -----------------------------------------------------------------------------------
    def trial_started(self, trial_id: str, ranks: Sequence[int] = (), info: dict | None = None) -> str:
        """Queue the child run of a trial (once per trial id); returns its run id if known yet.

        The id is known at once when the run already exists (resume), otherwise after the queued
        create is delivered ("" until then; see `run_id`).
        """
        trial_id = str(trial_id)
        with self._lock:
            if not self._accepting("trial_started"):
                return ""
            ref = self._refs.get(trial_id)
            if ref is None:
                ref = self._new_child(trial_id, ranks, info)
            else:  # a restored trial: same run; bookkeeping tags may have moved on
                self._enqueue_batch(ref, params=self._rank_params(trial_id, ranks),
                                    tags=_info_tags(info or {}))
            return ref.run_id or ""

    def trial_epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one epoch's metrics (step = epoch); sent batched in the background."""
        trial_id = str(trial_id)
        ts = _now_ms()
        with self._lock:
            if not self._accepting("trial_epoch"):
                return
            ref = self._refs.get(trial_id) or self._new_child(trial_id, (), None)
            step = int(epoch)
            self._last_step[trial_id] = max(step, self._last_step.get(trial_id, step))
            self._enqueue_batch(ref, metrics=_metrics(metrics, ts, step))

    def trial_finished(self, trial_id: str, result: TrialResult, update: Any = None) -> None:
        """Record a trial's outcome, end its run, and update the front of the search.

        A second completion of the same trial is ignored (the first one stands).
        """
        trial_id = str(trial_id)
        ts = _now_ms()
        with self._lock:
            if not self._accepting("trial_finished"):
                return
            if trial_id in self._results:
                log.debug("trial %s already finished; ignoring a second completion", trial_id)
                return
            ref = self._refs.get(trial_id) or self._new_child(trial_id, result.ranks, result.info)
            metrics = dict(self._point_metrics(result))
            step = max(self._last_step.get(trial_id, 0), int(result.fidelity or 0))
            tags = {TAG_TRIAL_STATUS: result.status, TAG_RESULT: _result_json(result)}
            tags.update(_info_tags(result.info))
            if result.error:
                tags[TAG_ERROR] = _text(mask_secrets(result.error), 5000)
            eligible = self._eligible(result)
            if not eligible:
                tags[TAG_PARETO] = "false"
                self._tagged[trial_id] = "false"
            self._enqueue_batch(ref, metrics=_metrics(metrics, ts, step), tags=tags)
            self._enqueue(_Terminate(ref, _STATUS_OF.get(result.status, "FINISHED")))

            self._results[trial_id] = result
            self._order.append(trial_id)
            self._samples += _samples_of(result)
            if eligible:
                self._front = self._non_dominated(self._front + [trial_id], self._objective_vector)
                if all(math.isfinite(v) for v in self._hv_vector(trial_id)):
                    self._hv_set = self._non_dominated(self._hv_set + [trial_id], self._hv_vector)
                    self._hypervolume = self._hv_value()
            n = len(self._order)
            self._history.append({
                "n_finished": n, "trial_id": trial_id, "hypervolume": self._hypervolume,
                "front_size": len(self._front), "front": list(self._front), **self.search_cost(),
            })
            self._enqueue_batch(self._parent, metrics=[
                ("hypervolume", self._hypervolume, ts, n), ("front_size", float(len(self._front)), ts, n),
                *((k, float(v), ts, n) for k, v in self.search_cost().items()),
            ])
            self._retag()
            self._front_version += 1
            self._lock.notify_all()

    def _new_child(self, trial_id: str, ranks: Sequence[int], info: Mapping[str, Any] | None) -> _RunRef:
        ref = _RunRef(trial_id)
        self._refs[trial_id] = ref
        tags = {TAG_PARENT: self.parent_run_id, TAG_TRIAL_ID: trial_id, TAG_KIND: "trial"}
        tags.update(_info_tags(info or {}))
        self._enqueue(_Create(ref, self.experiment_id, trial_id, tags, self.parent_run_id, trial_id))
        self._enqueue_batch(ref, params=self._rank_params(trial_id, ranks))
        return ref

    def _rank_params(self, trial_id: str, ranks: Sequence[int]) -> dict[str, str]:
        """One param per rank element plus a JSON copy, the first time a trial's ranks are known
        (params cannot change once logged)."""
        ranks = [int(r) for r in ranks]
        if not ranks or trial_id in self._has_ranks:
            return {}
        self._has_ranks.add(trial_id)
        params = {_key(name): str(r) for name, r in zip(self.elements, ranks, strict=False)}
        params[PARAM_RANKS] = _text(ranks, _MAX_PARAM_LEN)
        return params

    def _retag(self) -> None:
        """Queue pareto_optimal for the ok trials whose membership changed (only those)."""
        on_front = set(self._front)
        for tid in self._order:
            if not self._eligible(self._results[tid]):
                continue
            value = "true" if tid in on_front else "false"
            if self._tagged.get(tid) != value:
                self._tagged[tid] = value
                self._enqueue_batch(self._refs[tid], tags={TAG_PARETO: value})

    def _accepting(self, what: str) -> bool:
        if self._thread is None:
            raise RuntimeError(f"SearchTracker.{what}() called before start()")
        if self._finished:
            log.warning("SearchTracker.%s() after finish() is ignored", what)
            return False
        return True

    # -- front ------------------------------------------------------------------------------------
    def _point_metrics(self, result: TrialResult) -> dict[str, float]:
        """Numeric metrics of a result, plus the compression ratio when only params is known."""
        metrics = {k: float(v) for k, v in result.metrics.items() if _number(v) is not None}
        if "compression_ratio" not in metrics and self.dense_params and metrics.get("params", 0) > 0:
            metrics["compression_ratio"] = self.dense_params / metrics["params"]
        return metrics

    def _eligible(self, result: TrialResult) -> bool:
        if not result.ok:
            return False
        metrics = self._point_metrics(result)
        return all(name in metrics for name, _ in self.objectives)

    def _objective_vector(self, trial_id: str) -> list[float]:
        metrics = self._point_metrics(self._results[trial_id])
        return [-metrics[n] if sense == "max" else metrics[n] for n, sense in self.objectives]

    def _hv_vector(self, trial_id: str) -> list[float]:
        metrics = self._point_metrics(self._results[trial_id])
        acc = metrics.get("val_accuracy", math.nan)
        comp = metrics.get("compression_ratio", math.nan)
        return [-acc, -comp]

    def _non_dominated(self, ids: list[str], vector: Callable[[str], list[float]]) -> list[str]:
        from ranksearch.pareto import non_dominated_mask

        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        mask = non_dominated_mask([vector(t) for t in ids])
        return [t for t, keep in zip(ids, mask, strict=True) if keep]

    def _hv_value(self) -> float:
        from ranksearch.pareto import plane_hypervolume

        pts = [self._point_metrics(self._results[t]) for t in self._hv_set]
        acc = [p.get("val_accuracy", math.nan) for p in pts]
        comp = [p.get("compression_ratio", math.nan) for p in pts]
        return plane_hypervolume(acc, comp, self.reference).value if pts else 0.0

    def _point(self, trial_id: str) -> dict[str, Any]:
        result = self._results[trial_id]
        ref = self._refs.get(trial_id)
        return {
            "trial_id": trial_id, "run_id": ref.run_id if ref else None, "ranks": list(result.ranks),
            "status": result.status, "metrics": self._point_metrics(result),
            "fidelity": result.fidelity, "info": _jsonable(mask_secrets(result.info)),
        }

    def front(self) -> list[dict[str, Any]]:
        """The current front: one dict per trial (trial_id, run_id, ranks, metrics, ...)."""
        with self._lock:
            return [self._point(t) for t in self._front]

    @property
    def hypervolume(self) -> float:
        return self._hypervolume

    def search_cost(self) -> dict[str, float]:
        """Training samples consumed by the finished trials (ok, failed and pruned alike) plus
        any spent outside them (a dense warm start) and, when N_train_full is known, the same
        in full-training-set epochs."""
        total = self._samples + self._overhead
        cost = {"samples_consumed": float(total)}
        if self.train_size:
            cost["epoch_equivalents"] = total / self.train_size
        return cost

    def add_overhead_samples(self, samples: int) -> None:
        """Charge the search for training outside its trials (the dense warm start)."""
        if samples <= 0:
            return
        with self._lock:
            if not self._accepting("add_overhead_samples"):
                return
            self._overhead += int(samples)
            self._enqueue_batch(self._parent, metrics=[("warm_start_samples", float(self._overhead),
                                                        _now_ms(), 0)])

    def logged_trials(self) -> set[str]:
        """Trials whose child run this tracker finished (or found finished on reopening)."""
        with self._lock:
            return set(self._results)

    @property
    def results(self) -> dict[str, TrialResult]:
        """Finished trials by trial id (including those loaded on resume)."""
        with self._lock:
            return dict(self._results)

    def run_id(self, trial_id: str) -> str | None:
        """The child run id of a trial, once its run exists on the server."""
        ref = self._refs.get(str(trial_id))
        return ref.run_id if ref else None

    def load_results(self) -> dict[str, TrialResult]:
        """Finished trials as stored in MLflow under this search (for resume)."""
        client = self._client or client_for(self.tracking_uri)
        return load_results(self.parent_run_id, client=client)

    def _artifact_files(self, snapshot: dict[str, Any]) -> dict[str, bytes]:
        from ranksearch import frontviz

        title = f"{snapshot['space']} — {snapshot['run_name']}"
        files = {
            "front.json": json.dumps(snapshot["front_doc"], indent=1, default=str).encode(),
            "history.json": json.dumps(snapshot["history"], default=str).encode(),
        }
        renderers = {
            "front.html": lambda: frontviz.front_html(
                snapshot["points"], snapshot["front_ids"], title=title,
                element_names=self.elements).encode(),
            "front.png": lambda: frontviz.front_png(snapshot["points"], snapshot["front_ids"], title=title),
            "history.png": lambda: frontviz.history_png(snapshot["history"], title=title),
        }
        for name, render in renderers.items():
            try:
                files[name] = render()
            except Exception:  # a plotting problem must not stop the front's data from landing
                log.exception("could not draw %s/%s", FRONT_DIR, name)
        return files

    def _snapshot(self) -> dict[str, Any]:
        front = [self._point(t) for t in self._front]
        return {
            "space": getattr(self.space, "name", ""), "run_name": self.run_name,
            "front_ids": list(self._front),
            "points": [self._point(t) for t in self._order if self._eligible(self._results[t])],
            "history": list(self._history),
            "front_doc": {
                "search_run_id": self.parent_run_id, "space": getattr(self.space, "name", ""),
                "objectives": [list(o) for o in self.objectives], "elements": self.elements,
                "n_finished": len(self._order), "hypervolume": self._hypervolume,
                "hv_reference": list(self.reference), "front": front,
                "search_cost": {**self.search_cost(), "n_train_full": self.train_size},
            },
        }

    # -- the queue --------------------------------------------------------------------------------
    def _enqueue(self, op: _Op) -> None:
        self._queue.append(op)
        self._lock.notify_all()

    def _enqueue_batch(self, ref: _RunRef, metrics: Iterable[tuple[str, float, int, int]] = (),
                       params: Mapping[str, str] | None = None,
                       tags: Mapping[str, str] | None = None) -> None:
        metrics = list(metrics)
        if not (metrics or params or tags):
            return
        batch = self._open.get(ref.key)
        if batch is None or batch.sealed or batch.size > 5000:
            batch = _Batch(ref)
            self._open[ref.key] = batch
            self._enqueue(batch)
        batch.add(metrics, params, tags)

    def flush(self, timeout: float | None = None) -> bool:
        """Push queued writes now; True once all are delivered.

        With `timeout=None` it returns False as soon as a delivery attempt fails (server still
        unreachable); with a timeout it keeps retrying for that many seconds.
        """
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            failures = self._failures
            self._flush_waiters += 1
            self._retry_at = 0.0
            self._lock.notify_all()
            try:
                while self._pending():
                    if not self._thread.is_alive():
                        return False
                    if deadline is None and self._failures > failures:
                        return False
                    wait = 0.5 if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        return False
                    self._lock.wait(min(wait, 0.5))
                return True
            finally:
                self._flush_waiters -= 1

    def _pending(self) -> bool:
        return bool(self._queue) or self._front_version > self._uploaded_version

    @property
    def pending_writes(self) -> int:
        """Writes queued and not yet delivered."""
        return len(self._queue)

    def _next_wake(self, now: float) -> float | None:
        if self._retry_at > now:
            return self._retry_at
        urgent = self._flush_waiters > 0 or self._closing
        if self._queue:
            return now if urgent else self._queue[0].created + self.flush_interval
        if self._front_version > self._uploaded_version:
            return now if urgent else self._last_upload + self.artifact_interval
        return None

    def _worker(self) -> None:
        assert self._client is not None
        ctx = _Ctx(self._client)
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    if self._closing and (not self._pending() or self._retry_at > now):
                        return
                    wake = self._next_wake(now)
                    if wake is not None and wake <= now:
                        break
                    self._lock.wait(None if wake is None else max(0.01, wake - now))
            try:
                self._drain(ctx)
            except Exception:  # a bug here must not kill delivery for the rest of the search
                log.exception("tracking worker error")
                with self._lock:
                    self._retry_at = time.monotonic() + 1.0

    def _drain(self, ctx: _Ctx) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    break
                op = self._queue[0]
                op.sealed = True
                if self._open.get(op.ref.key) is op:
                    del self._open[op.ref.key]
            if op.ref.dead or (op.ref.run_id is None and not isinstance(op, _Create)):
                self._pop(op, dropped=f"dropping {op.describe()}: its run could not be created")
                continue
            outcome = self._attempt(ctx, op.run, op.created, op.attempts, op.describe())
            if outcome == "retry":
                op.attempts += 1
                return
            if isinstance(op, _Create) and outcome == "dropped":
                op.ref.dead = True
            self._pop(op)
        with self._lock:
            due = self._front_version > self._uploaded_version and (
                self._flush_waiters or self._closing
                or time.monotonic() >= self._last_upload + self.artifact_interval)
            if not due:
                return
            version = self._front_version
            snapshot = self._snapshot()
            if self._artifact_since is None:
                self._artifact_since, self._artifact_attempts = time.monotonic(), 0
        if self._rendered is None or self._rendered[0] != version:
            self._rendered = (version, self._artifact_files(snapshot))
        files = self._rendered[1]
        outcome = self._attempt(ctx, lambda c: self._upload(c, files), self._artifact_since,
                                self._artifact_attempts, "front artifacts")
        if outcome == "retry":
            self._artifact_attempts += 1
            return
        with self._lock:
            # Delivered, or given up on this version: either way the next change publishes anew.
            self._uploaded_version = max(self._uploaded_version, version)
            self._last_upload = time.monotonic()
            self._artifact_since = None
            self.stats["artifact_uploads"] += outcome == "done"
            self._lock.notify_all()

    def _upload(self, ctx: _Ctx, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory(prefix="ranksearch-front-") as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            ctx.calls += len(files)
            ctx.client.log_artifacts(self.parent_run_id, tmp, FRONT_DIR)

    def _attempt(self, ctx: _Ctx, fn: Callable[[_Ctx], None], since: float, attempts: int,
                 what: str) -> str:
        """Run one delivery: 'done', 'retry' (later, with backoff) or 'dropped' (given up)."""
        calls0 = ctx.calls
        try:
            fn(ctx)
        except Exception as exc:
            kind = _classify(exc)
            now = time.monotonic()
            age = now - since
            with self._lock:
                self.stats["calls"] += ctx.calls - calls0
                self.stats["failed_attempts"] += 1
                if (kind == "permanent" or age >= self.retry_for
                        or (kind == "transient" and attempts + 1 >= _TRANSIENT_ATTEMPTS)):
                    self.stats["dropped"] += 1
                    log.warning("dropping %s after %d attempt(s) over %.0f s: %s",
                                what, attempts + 1, age, exc)
                    return "dropped"
                self._failures += 1
                if self._unreachable_since is None:
                    self._unreachable_since = now
                    log.warning("MLflow at %s unreachable (%s); queueing writes and retrying",
                                _safe_uri(self.tracking_uri), exc)
                self._backoff = min(max(self._backoff * 2, 0.5), _MAX_BACKOFF)
                self._retry_at = now + self._backoff
                self._lock.notify_all()
            return "retry"
        with self._lock:
            self.stats["calls"] += ctx.calls - calls0
            self.stats["dropped"] += ctx.dropped_items
            ctx.dropped_items = 0
            if self._unreachable_since is not None:
                log.warning("MLflow at %s reachable again after %.0f s", _safe_uri(self.tracking_uri),
                            time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
            self._backoff = 0.0
        return "done"

    def _pop(self, op: _Op, dropped: str = "") -> None:
        with self._lock:
            if self._queue and self._queue[0] is op:
                self._queue.popleft()
            self.stats["ops"] += 1
            if dropped:
                self.stats["dropped"] += 1
                log.warning(dropped)
            self._lock.notify_all()

    # -- what gets logged on the parent -----------------------------------------------------------
    def _strategy_name(self) -> str:
        strategy = getattr(getattr(self.space, "config", None), "strategy", None)
        return str(self.user_params.get("strategy") or getattr(strategy, "name", "") or "unknown")

    def _parent_params(self) -> dict[str, str]:
        cfg = getattr(self.space, "config", None)
        strategy = getattr(cfg, "strategy", None)
        flat: dict[str, Any] = {
            "strategy": getattr(strategy, "name", None),
            "budget": getattr(strategy, "budget", None),
            "seed": getattr(cfg, "seed", None),
            "space": getattr(self.space, "name", None),
            "objectives": ",".join(f"{s} {n}" for n, s in self.objectives),
            "n_rank_elements": len(self.elements) or None,
            "dense_params": int(self.dense_params) if self.dense_params else None,
            "n_train_full": self.train_size,
        }
        options = dict(getattr(strategy, "options", None) or {})
        user = dict(self.user_params)
        if isinstance(user.get("options"), Mapping):
            options.update(user.pop("options"))
        if options:
            _flatten("options", mask_secrets(options), flat)
        if user:
            _flatten("", mask_secrets(user), flat)
        return {_key(k): _text(v, _MAX_PARAM_LEN) for k, v in flat.items() if v is not None and k}

    def _parent_tags(self) -> dict[str, str]:
        import ranksearch

        tags = {
            TAG_KIND: "search", TAG_STATUS: "running",
            TAG_SPACE: str(getattr(self.space, "name", "")), TAG_STRATEGY: self._strategy_name(),
            TAG_OBJECTIVES: json.dumps(self.objectives), TAG_REFERENCE: json.dumps(list(self.reference)),
            "ranksearch.version": ranksearch.__version__,
        }
        elements = json.dumps(self.elements)
        if len(elements) <= _MAX_TAG_LEN:
            tags[TAG_ELEMENTS] = elements
        for k, v in mask_secrets(self.user_tags).items():
            tags[_key(k)] = _text(v, _MAX_TAG_LEN)
        return tags

    def _space_yaml(self) -> str:
        import yaml

        to_dict = getattr(self.space, "to_dict", None)
        if callable(to_dict):
            return yaml.safe_dump(mask_secrets(to_dict()), sort_keys=False)
        to_yaml = getattr(self.space, "to_yaml", None)
        if callable(to_yaml):
            return yaml.safe_dump(mask_secrets(yaml.safe_load(to_yaml())), sort_keys=False)
        return ""

    def __repr__(self) -> str:
        return (f"SearchTracker({getattr(self.space, 'name', '?')!r}, run={self.parent_run_id or None}, "
                f"finished={len(self._order)}, queued={len(self._queue)})")


# -- conversions ----------------------------------------------------------------------------------
def _space_objectives(space: Any) -> list[tuple[str, str]]:
    objs = getattr(getattr(space, "config", None), "objectives", None)
    if not objs:
        return list(DEFAULT_OBJECTIVES)
    out = []
    for o in objs:
        sense = getattr(o, "sense", None) or getattr(o, "direction", None) or "max"
        out.append((str(o.name), str(sense)))
    return out


def _metrics(metrics: Mapping[str, Any], ts: int, step: int) -> list[tuple[str, float, int, int]]:
    out = []
    for k, v in metrics.items():
        f = _number(v)
        if f is not None:
            out.append((_key(k), f, ts, step))
    return out


def _params(params: Mapping[str, str]) -> list:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in params.items()]


def _tags(tags: Mapping[str, str]) -> list:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def _info_tags(info: Mapping[str, Any]) -> dict[str, str]:
    """Strategy bookkeeping (generation, phase, beam_step, episode, ...) as child-run tags."""
    out = {}
    for k, v in mask_secrets(dict(info)).items():
        key = _key(k)
        if key.startswith("mlflow.") or key in (TAG_TRIAL_ID, TAG_KIND, TAG_PARETO, TAG_TRIAL_STATUS):
            key = f"info.{key}"
        out[key] = _text(v, 1000)
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _result_json(result: TrialResult) -> str:
    d = result.to_dict()
    d["info"] = _jsonable(mask_secrets(d["info"]))
    d["error"] = mask_secrets(d["error"]) if d["error"] else None
    text = json.dumps(d, default=str)
    if len(text) > _MAX_TAG_LEN:
        d["info"], d["error"] = {}, (d["error"] or "")[:1000] or None
        text = json.dumps(d, default=str)
    return text[:_MAX_TAG_LEN]


def _result_of(run: Any) -> TrialResult | None:
    """A finished trial's TrialResult from its child run (None while it has not finished)."""
    tags = run.data.tags
    status = tags.get(TAG_TRIAL_STATUS)
    if status is None:
        return None
    try:
        d = json.loads(tags.get(TAG_RESULT, ""))
        return TrialResult.from_dict(d)
    except (ValueError, TypeError, KeyError):
        pass
    try:
        ranks = json.loads(run.data.params.get(PARAM_RANKS, "[]"))
    except ValueError:
        ranks = []
    return TrialResult(ranks=tuple(ranks), status=status, metrics=dict(run.data.metrics),
                       error=tags.get(TAG_ERROR))


def _samples_of(result: TrialResult) -> int:
    v = _number(result.metrics.get("samples_seen"))
    return int(v) if v is not None and v > 0 else 0


def load_search_cost(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """A search's cost: samples_consumed, epoch_equivalents (None when N_train_full was not
    known), n_train_full and finished_trials, from the parent run's latest metrics."""
    client = client_for(tracking_uri)
    run = client.get_run(parent_run_id)
    metrics, params = run.data.metrics, run.data.params
    n_train = _number(params.get("n_train_full"))
    steps = [m.step for m in client.get_metric_history(parent_run_id, "samples_consumed")]
    return {
        "samples_consumed": int(metrics["samples_consumed"]) if "samples_consumed" in metrics else None,
        "epoch_equivalents": metrics.get("epoch_equivalents"),
        "n_train_full": int(n_train) if n_train else None,
        "finished_trials": max(steps) if steps else 0,
    }


def _safe_uri(uri: str) -> str:
    return mask_secrets(uri)


def _child_runs(ctx: _Ctx, experiment_id: str, parent_id: str, trial_id: str | None = None) -> list:
    """All child runs of a search (or the ones of one trial), oldest first."""
    filt = f"tags.`{TAG_PARENT}` = '{parent_id}'"
    if trial_id is not None:
        filt += f" and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
    runs, token = [], None
    while True:
        page = ctx.call(ctx.client.search_runs, [experiment_id], filter_string=filt,
                        max_results=1000, order_by=["attributes.start_time ASC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _download_json(client: MlflowClient, run_id: str, path: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="ranksearch-dl-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception as exc:  # missing artifact: the caller falls back
            log.debug("no %s on run %s: %s", path, run_id, exc)
            return None
        return json.loads(Path(local).read_text())


# -- reading a search back (CLI) ------------------------------------------------------------------
def find_search(name_or_run_id: str, tracking_uri: str | None = None) -> str:
    """The parent run id of a search: a run id (a trial's id leads to its search), or the latest
    search whose run name or experiment name matches."""
    from mlflow.entities import ViewType

    client = client_for(tracking_uri)
    key = str(name_or_run_id).strip()
    if re.fullmatch(r"[0-9a-f]{32}", key):
        try:
            run = client.get_run(key)
            return run.data.tags.get(TAG_PARENT) or run.info.run_id
        except Exception as exc:
            if _classify(exc) != "permanent":
                where = _safe_uri(resolve_tracking_uri(tracking_uri))
                raise TrackingError(f"cannot reach MLflow at {where}: {exc}") from exc
    experiments, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            break
    by_id = {e.experiment_id: e.name for e in experiments}
    searches, token = [], None
    while by_id:
        page = client.search_runs(list(by_id), filter_string=f"tags.`{TAG_KIND}` = 'search'",
                                  max_results=1000, order_by=["attributes.start_time DESC"], page_token=token)
        searches.extend(page)
        token = page.token
        if not token:
            break
    hits = [r for r in searches if r.info.run_name == key or by_id.get(r.info.experiment_id) == key]
    if not hits:
        known = sorted({r.info.run_name for r in searches[:20]}
                       | {by_id[r.info.experiment_id] for r in searches})
        hint = f"; known searches: {', '.join(known[:20])}" if known else "; the store holds no search yet"
        where = _safe_uri(resolve_tracking_uri(tracking_uri))
        raise TrackingError(f"no search named {key!r} in {where}{hint}")
    return max(hits, key=lambda r: r.info.start_time or 0).info.run_id


def load_results(parent_run_id: str, tracking_uri: str | None = None, *,
                 client: MlflowClient | None = None) -> dict[str, TrialResult]:
    """Finished trials of a search, by trial id, as TrialResults (ok, failed and pruned)."""
    client = client or client_for(tracking_uri)
    parent = client.get_run(parent_run_id)
    out = {}
    for run in _child_runs(_Ctx(client), parent.info.experiment_id, parent_run_id):
        tid = run.data.tags.get(TAG_TRIAL_ID)
        result = _result_of(run)
        if tid and result is not None and tid not in out:
            out[tid] = result
    return out


def load_trials(parent_run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every trial of a search (finished or not) as plain dicts, oldest first."""
    client = client_for(tracking_uri)
    parent = client.get_run(parent_run_id)
    rows = []
    for run in _child_runs(_Ctx(client), parent.info.experiment_id, parent_run_id):
        tags = run.data.tags
        result = _result_of(run)
        try:
            ranks = json.loads(run.data.params.get(PARAM_RANKS, "[]"))
        except ValueError:
            ranks = []
        rows.append({
            "trial_id": tags.get(TAG_TRIAL_ID), "run_id": run.info.run_id,
            "status": result.status if result else "running", "run_status": run.info.status,
            "ranks": list(result.ranks) if result and result.ranks else ranks,
            "metrics": dict(result.metrics) if result else dict(run.data.metrics),
            "fidelity": result.fidelity if result else None,
            "error": tags.get(TAG_ERROR), "info": dict(result.info) if result else {},
            "pareto_optimal": tags.get(TAG_PARETO) == "true",
            "start_time": run.info.start_time, "end_time": run.info.end_time,
        })
    return rows


def load_front(parent_run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The search's Pareto front (trial_id, run_id, ranks, metrics, ...) from pareto/front.json,
    or recomputed from the trials when that artifact is missing."""
    client = client_for(tracking_uri)
    doc = _download_json(client, parent_run_id, f"{FRONT_DIR}/front.json")
    if isinstance(doc, dict) and isinstance(doc.get("front"), list):
        return doc["front"]
    from ranksearch.pareto import non_dominated_mask

    parent = client.get_run(parent_run_id)
    try:
        objectives = [tuple(o) for o in json.loads(parent.data.tags.get(TAG_OBJECTIVES, ""))]
    except ValueError:
        objectives = list(DEFAULT_OBJECTIVES)
    rows = [r for r in load_trials(parent_run_id, tracking_uri)
            if r["status"] == "ok" and all(_number(r["metrics"].get(n)) is not None for n, _ in objectives)]
    if not rows:
        return []
    F = [[-r["metrics"][n] if s == "max" else r["metrics"][n] for n, s in objectives] for r in rows]
    return [r for r, keep in zip(rows, non_dominated_mask(F), strict=True) if keep]


# -- reading a store (dashboard) ------------------------------------------------------------------
class StoreReader:
    """Read-only access to one store: experiments, runs, metric histories and artifacts.

    One client, made on first use (that is when MLflow is imported); `connect()` makes it at
    once, so a server can pay the import before its first request. Errors from MLflow pass
    through unchanged: the caller decides what a missing run or artifact means.
    """

    def __init__(self, tracking_uri: str | os.PathLike | None = None, *, client: Any = None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self._client = client

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def connect(self) -> None:
        """Make the client now (imports MLflow)."""
        self.client  # noqa: B018 - the property makes it

    def experiments(self) -> list[Any]:
        """Every active experiment (objects with `experiment_id` and `name`), all pages."""
        from mlflow.entities import ViewType

        experiments, token = [], None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token)
            experiments.extend(page)
            token = page.token
            if not token:
                return experiments

    def experiment_name(self, experiment_id: str) -> str:
        return self.client.get_experiment(experiment_id).name

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str, *,
                    order_by: list[str] | None = None, page_size: int = 1000) -> list[Any]:
        """All runs that match, read page by page (`search_runs` pages of `page_size`)."""
        out, token = [], None
        while True:
            page = self.client.search_runs(list(experiment_ids), filter_string=filter_string,
                                           max_results=page_size, order_by=order_by, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> list[Any]:
        """Every logged value of one metric (objects with `step`, `timestamp`, `value`)."""
        return list(self.client.get_metric_history(run_id, key))

    def read_text(self, run_id: str, path: str) -> str:
        """One artifact of a run as text; raises MLflow's error when it is missing."""
        with tempfile.TemporaryDirectory(prefix="ranksearch-read-") as tmp:
            return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()


# -- artifacts ------------------------------------------------------------------------------------
def download_text(tracking_uri: str | os.PathLike | None, run_id: str, path: str) -> str | None:
    """One artifact of a run as text; None when the run has no such artifact."""
    client = client_for(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ranksearch-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # noqa: BLE001 - a missing artifact: the caller explains
            return None
        return Path(local).read_text()


def artifact_names(tracking_uri: str | os.PathLike | None, run_id: str, path: str | None = None) -> set[str]:
    """The names of a run's artifacts directly under `path` (the root when None)."""
    client = client_for(tracking_uri)
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


def download_artifact_uri(uri: str, tracking_uri: str | os.PathLike | None = None, *, model_dir: str) -> str:
    """Download `runs:/RUN_ID[/PATH]`, `models:/NAME@ALIAS` or `models:/NAME/VERSION` to a fresh
    local folder and return the local path (a folder or a file).

    models:/ URIs are resolved with this store's registry (MLflow's global registry URI may
    point elsewhere); a version whose source is not a runs:/ URI is read from `model_dir` of
    its run. Any failure is a TrackingError that names the URI and the store.
    """
    resolved = resolve_tracking_uri(tracking_uri)
    client = client_for(resolved)
    dst = tempfile.mkdtemp(prefix="ranksearch-download-")
    try:
        run_id, path = _artifact_location(client, uri, model_dir)
        return client.download_artifacts(run_id, path, dst)
    except TrackingError:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(dst, ignore_errors=True)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TrackingError(f"cannot fetch {uri} from {resolved}: {first}") from None


def _artifact_location(client: MlflowClient, uri: str, model_dir: str) -> tuple[str, str]:
    """(run id, artifact path) of runs:/RUN_ID/PATH, models:/NAME@ALIAS or models:/NAME/VERSION."""
    if uri.startswith("runs:/"):
        rest = uri[len("runs:/"):].strip("/")
        run_id, _, path = rest.partition("/")
        if not run_id:
            raise TrackingError(f"{uri!r}: write runs:/RUN_ID[/PATH]")
        return run_id, path
    if not uri.startswith("models:/"):
        raise TrackingError(f"{uri!r}: write runs:/RUN_ID[/PATH], models:/NAME@ALIAS or models:/NAME/VERSION")
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        mv = client.get_model_version_by_alias(name, alias)
    elif "/" in rest:
        name, _, version = rest.partition("/")
        mv = client.get_model_version(name, version)
    else:
        raise TrackingError(f"{uri!r}: write models:/NAME@ALIAS or models:/NAME/VERSION")
    source = str(mv.source)
    if source.startswith("runs:/"):
        return _artifact_location(client, source, model_dir)
    return mv.run_id, model_dir


class ArtifactUploader:
    """Uploads files to runs that may not exist yet, one submission after another, off the
    caller's thread.

    Why: the Ray driver hands over a trial's files the moment its actor ends, while the
    tracker's queue may still be creating the trial's run. Each submission waits for its run id
    (`run_id()` returns None until then), asks `files(run_id)` for {name: bytes}, and uploads
    them under `artifact_path`, retrying with backoff for `retry_for` seconds (counted from
    `submit`) while the store is unreachable. `what` names the files in log messages.
    """

    def __init__(self, tracking_uri: str | os.PathLike | None, artifact_path: str, *,
                 retry_for: float = 600.0, what: str = "artifacts",
                 thread_name: str = "ranksearch-uploads") -> None:
        self.tracking_uri = tracking_uri
        self.artifact_path = artifact_path
        self.retry_for = retry_for
        self.what = what
        self.thread_name = thread_name
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.stats = {"uploaded": 0, "failed": 0, "seconds": 0.0}

    def submit(self, key: str, files: Callable[[str], Mapping[str, bytes]],
               run_id: Callable[[], str | None], done: Callable[[], None] | None = None) -> None:
        """Queue one upload; `key` names it in log messages, `done()` is called once it landed."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
            self._thread.start()
        self._queue.put((key, files, run_id, done, time.monotonic()))

    def close(self, timeout: float) -> None:
        """Finish the queued uploads (waiting up to `timeout` seconds) and stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._upload(*item)
            except Exception:
                self.stats["failed"] += 1
                log.exception("could not log the %s of %s", self.what, item[0])

    def _upload(self, key: str, files: Callable[[str], Mapping[str, bytes]],
                run_id: Callable[[], str | None], done: Callable[[], None] | None, since: float) -> None:
        t0 = time.perf_counter()
        delay = 0.1
        while True:
            rid = run_id()
            if rid:
                break
            if time.monotonic() - since > self.retry_for:
                raise TimeoutError(f"the MLflow run of {key} was never created")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        contents = files(rid)
        with tempfile.TemporaryDirectory(prefix="ranksearch-upload-") as tmp:
            for name, data in contents.items():
                Path(tmp, name).write_bytes(data)
            delay = 0.5
            while True:
                try:
                    if self._client is None:
                        self._client = client_for(self.tracking_uri)
                    self._client.log_artifacts(rid, tmp, self.artifact_path)
                    break
                except Exception as exc:
                    if time.monotonic() - since > self.retry_for:
                        raise
                    log.debug("retrying the %s of %s: %s", self.what, key, exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        self.stats["uploaded"] += 1
        self.stats["seconds"] += time.perf_counter() - t0
        if done is not None:
            done()


# -- the model registry ---------------------------------------------------------------------------
def register_model(name: str, *, run_id: str, source_path: str, tags: Mapping[str, str] | None = None,
                   description: str | None = None, model_description: str | None = None,
                   alias: str | None = None, tracking_uri: str | os.PathLike | None = None) -> str:
    """Register artifacts `source_path` of run `run_id` as a new version of model `name`
    (created, with `model_description`, when new) and move `alias` to it. Returns the version."""
    client = client_for(tracking_uri)
    try:
        client.create_registered_model(name, description=model_description)
    except Exception as exc:  # already there
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    version = client.create_model_version(name, source=f"runs:/{run_id}/{source_path}", run_id=run_id,
                                          tags=dict(tags or {}), description=description)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


# -- plain runs -----------------------------------------------------------------------------------
class TrainingRun:
    """One MLflow run written directly, outside a search (production training, say).

    No queue here: each call blocks and raises when the store cannot be reached, because the
    caller is about to spend minutes on work that should be recorded (or not started at all).
    """

    def __init__(self, tracking_uri: str | os.PathLike | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client: MlflowClient | None = None
        self.run_id: str | None = None

    def start(self, experiment: str, *, run_name: str | None = None, tags: Mapping[str, str] | None = None,
              params: Mapping[str, str] | None = None) -> str:
        """Create the run (and its experiment when new) with its tags and params; returns its id."""
        client = self.client = client_for(self.tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            root = _local_artifact_root(resolve_tracking_uri(self.tracking_uri))
            exp_id = client.create_experiment(experiment, artifact_location=root)
        else:
            exp_id = exp.experiment_id
        run = client.create_run(exp_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id = run.info.run_id
        client.log_batch(self.run_id, params=_params({k: str(v) for k, v in (params or {}).items()}))
        return self.run_id

    def log_metrics(self, rows: Iterable[tuple[str, float, int]]) -> None:
        """(name, value, step) rows, all with one time stamp, sent in batches."""
        from mlflow.entities import Metric

        client, run_id = self._started("log_metrics")
        ts = _now_ms()
        metrics = [Metric(k, float(v), ts, int(step)) for k, v, step in rows]
        for i in range(0, len(metrics), 900):
            client.log_batch(run_id, metrics=metrics[i:i + 900])

    def log_files(self, files: Mapping[str, bytes], artifact_path: str | None = None) -> None:
        """Upload {name: bytes} as artifacts under `artifact_path`."""
        client, run_id = self._started("log_files")
        with tempfile.TemporaryDirectory(prefix="ranksearch-train-") as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            client.log_artifacts(run_id, tmp, artifact_path)

    def terminate(self, status: str = "FINISHED") -> None:
        """End the run as FINISHED, FAILED or KILLED."""
        client, run_id = self._started("terminate")
        client.set_terminated(run_id, status)

    def _started(self, what: str) -> tuple[MlflowClient, str]:
        if self.client is None or self.run_id is None:
            raise RuntimeError(f"TrainingRun.{what}() called before start()")
        return self.client, self.run_id
