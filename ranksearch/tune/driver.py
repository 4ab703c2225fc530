"""Run (or resume) one search on Ray Tune: the driver side.

The driver owns everything stateful: the strategy (through the Searcher adapter), the search's
durable record (`state.py`: a header plus an append-only event log, O(1) per trial), the front
archive (`ranksearch.archive`), the MLflow copy (through a Tune callback: trials never track)
and the progress display. Trials run the function trainable in `trainable.py`.

Data flows one way: Tune -> adapter -> record -> strategy, archive -> tracking and display.
A resumed driver rebuilds the strategy, the archive and the MLflow copy from the record alone;
MLflow is written, never read back to decide what a strategy is told.

Start-up order: the tracking store first (a search must not start against a store it cannot
reach), then the record, then Ray (in-process unless an address is given), then Tune.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ranksearch.errors import RanksearchError
from ranksearch.trial import TrialResult
from ranksearch.tune.display import Counters, SearchDisplay, format_hparams
from ranksearch.tune.state import Requeued, SearchState, TrialRecord
from ranksearch.tune.storage import Storage
from ranksearch.tune.trainable import MODEL_FILE

if TYPE_CHECKING:
    from rich.console import Console

    from ranksearch.archive import FrontArchive
    from ranksearch.budget import CostLimit
    from ranksearch.space import SearchSpace
    from ranksearch.tracking import SearchTracker
    from ranksearch.tune.searcher import StrategySearcher

log = logging.getLogger(__name__)

#: Tune settings that keep the driver quiet and cheap; a value the user set wins.
_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial JSON/CSV/TensorBoard files
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # failures are reported by us, with their reason
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "600",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter at verbose=0 prints nothing at all
    # Tune's experiment checkpoint (its trial table and our searcher's state) is never read:
    # a search resumes from its own record. Write it rarely instead of every few seconds.
    "TUNE_GLOBAL_CHECKPOINT_S": "600",
}


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs; validated by `ranksearch.service` before anything starts."""

    name: str
    strategy: str
    budget: int  # trials the strategy plans for (the whole budget when it counts trials)
    seed: int
    workers: int
    storage: str
    options: dict[str, Any] = field(default_factory=dict)
    max_failures: int = 1
    tracking_uri: str | None = None
    experiment: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    #: a budget in full-epoch equivalents or samples ("600ep"), enforced by the adapter
    cost_budget: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class SearchOutcome:
    """What a finished (or interrupted) driver reports back."""

    name: str
    status: str  # finished | interrupted | failed
    parent_run_id: str
    tracking_uri: str
    experiment: str
    location: str  # the search's experiment directory
    n_trials: int
    n_ok: int
    n_failed: int
    hypervolume: float
    front: list[dict[str, Any]]
    seconds: dict[str, float]  # startup (tracker + Ray + Tune set-up), fit, total
    trials: list[dict[str, Any]]  # per trial: id, status, trial_seconds, end_to_end, driver_cost
    stats: dict[str, Any] = field(default_factory=dict)
    #: samples_consumed, epoch_equivalents (samples / n_train_full), n_train_full
    cost: dict[str, Any] = field(default_factory=dict)


class ModelSink(Protocol):
    """Receives each finished trial's weights (logged as an artifact of its MLflow run)."""

    def submit(self, trial_id: str, files: dict[str, bytes], result: TrialResult,
               run_id: Callable[[], str | None], done: Callable[[], None]) -> None: ...

    def close(self, timeout: float) -> None: ...


# -- Tune naming (module level: Tune pickles these) --------------------------------------------------
def trial_dirname(trial_id: str, tune_id: str) -> str:
    return f"{trial_id}_{tune_id}"


def _trial_name(trial: Any) -> str:
    return str(trial.config.get("trial_id", trial.trial_id))


def _trial_dirname(trial: Any) -> str:
    return trial_dirname(str(trial.config.get("trial_id", "trial")), trial.trial_id)


# -- the session --------------------------------------------------------------------------------------
class _Session:
    """Driver-side bookkeeping shared by the Searcher adapter (as its listener) and the callback.

    Every change of the search's state goes through `state.record(...)` first (the durable
    record), then to the archive, tracking and the display.
    """

    def __init__(self, space: SearchSpace, settings: SearchSettings, storage: Storage,
                 state: SearchState, tracker: SearchTracker, archive: FrontArchive,
                 display: SearchDisplay, model_sink: ModelSink | None) -> None:
        self.space = space
        self.settings = settings
        self.storage = storage
        self.state = state
        self.tracker = tracker
        self.archive = archive
        self.display = display
        self.model_sink = model_sink
        self.searcher: StrategySearcher | None = None
        self.strategy: Any = None
        self._logged = 0  # how much of the strategy's ask/tell log is in the record
        self.counters = display.counters
        self.lock = threading.Lock()  # model-sink callbacks arrive from another thread
        self.proposed_at: dict[str, float] = {}
        self.told_at: dict[str, float] = {}
        self.cost: dict[str, float] = {}  # seconds spent in our handlers, per trial
        self.fit_started_at: float | None = None
        self.record_s = 0.0
        self.records = 0
        self.errors = 0

    # -- the record ---------------------------------------------------------------------------------
    def follow(self, strategy: Any) -> None:
        """Record `strategy`'s ask/tell log from its current length on (a resumed strategy has
        replayed the recorded part already)."""
        self.strategy = strategy
        self._logged = strategy.log_length

    def record(self, *events: dict[str, Any]) -> None:
        """Append events to the record, preceded by the strategy's new ask/tell entries."""
        t0 = time.perf_counter()
        with self.lock:
            batch = list(events)
            if self.strategy is not None and self.strategy.log_length > self._logged:
                batch.insert(0, {"e": "strategy", "events": self.strategy.log_since(self._logged)})
                self._logged = self.strategy.log_length
            try:
                self.state.record(*batch)
            except Exception as exc:  # storage hiccup: the in-memory state is already updated
                self.errors += 1
                log.warning("could not append to the search's record: %s", exc)
        self.record_s += time.perf_counter() - t0
        self.records += 1

    def _charge(self, trial_id: str | None, t0: float) -> None:
        if trial_id:
            self.cost[trial_id] = self.cost.get(trial_id, 0.0) + time.perf_counter() - t0

    # -- SearchListener -----------------------------------------------------------------------------
    def on_proposed(self, trial_id: str, tune_id: str, ranks: tuple[int, ...], info: dict[str, Any],
                    resume_from: str | None, *, hparams: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        self.proposed_at[trial_id] = t0
        events: list[dict[str, Any]] = []
        if trial_id not in self.state.trials:
            events.append({"e": "proposed", "id": trial_id, "ranks": list(ranks), "info": dict(info),
                           "hparams": dict(hparams or {}), "at": time.time(),
                           "next_index": self.searcher.next_index if self.searcher else self.state.next_index})
        events.append({"e": "attempt", "id": trial_id, "tune_id": tune_id,
                       "dir": trial_dirname(trial_id, tune_id)})
        self.record(*events)
        # a learned-rank trial's ranks are known when it ends (its proposal is a placeholder)
        self.tracker.trial_started(trial_id, () if "learn" in info else ranks, info, hparams=hparams)
        self.counters.running = self.searcher.live if self.searcher else self.counters.running + 1
        if self.strategy is not None:  # a cost budget may have extended the planned count
            self.counters.total = max(self.counters.total, int(getattr(self.strategy, "budget", 0)))
        self.display.refresh()
        self._charge(trial_id, t0)

    def on_told(self, trial_id: str, tune_id: str, result: TrialResult) -> None:
        t0 = time.perf_counter()
        self.record({"e": "finished", "id": trial_id, "result": result.to_dict(), "at": time.time()})
        update = self.archive.insert(trial_id, result)
        self.tracker.trial_finished(trial_id, result, update)
        self._count(result)
        self.display.event(_trial_line(trial_id, result))
        self.told_at[trial_id] = time.perf_counter()
        self._charge(trial_id, t0)

    def on_tell_error(self, trial_id: str, error: BaseException) -> None:
        """The strategy raised while told a result: recorded, counted, shown; the search goes on
        (the trial itself is recorded and tracked as usual)."""
        text = f"{type(error).__name__}: {error}"
        log.error("strategy '%s' failed while told trial %s: %s", self.settings.strategy, trial_id, text,
                  exc_info=error)
        self.record({"e": "tell_error", "id": trial_id, "error": text[:2000]})
        self.counters.tell_errors = len(self.state.tell_errors)
        self.display.event(f"{trial_id}: the strategy failed to take its result ({text[:200]})")

    def on_rung(self, milestone: int, trial_id: str, vector: list[float]) -> None:
        """MO-ASHA recorded a trial at a rung: a resumed driver must not judge it again."""
        self.record({"e": "rung", "m": str(milestone), "id": trial_id, "v": list(vector)})

    def _count(self, result: TrialResult) -> None:
        c = self.counters
        c.done += 1
        c.running = self.searcher.live if self.searcher else max(0, c.running - 1)
        if result.status == "failed":
            c.failed += 1
        c.hypervolume = self.archive.hypervolume
        c.front_size = len(self.archive.front_ids())
        acc = result.metrics.get("val_accuracy", math.nan)
        if result.ok and math.isfinite(acc) and not (acc <= c.best_accuracy):
            c.best_accuracy = acc

    # -- Tune callback events -----------------------------------------------------------------------
    def on_epoch(self, tune_id: str, result: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        trial_id = self.searcher.trial_of(tune_id) if self.searcher else None
        if trial_id is None or "epoch" not in result:
            return
        metrics = {k: result[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                          "lr", "seconds", "samples_seen") if k in result}
        self.tracker.trial_epoch(trial_id, int(result["epoch"]), metrics)
        self._charge(trial_id, t0)

    def on_error(self, tune_id: str, reason: str) -> None:
        if self.searcher is not None:
            self.searcher.fail(tune_id, reason)

    def on_retry(self, tune_id: str) -> None:
        trial_id = self.searcher.trial_of(tune_id) if self.searcher else tune_id
        self.counters.retried += 1
        self.display.event(f"{trial_id} failed; retrying from its last checkpoint")

    def on_closed(self, tune_id: str, checkpoint: Any) -> None:
        """A trial's actor is done: hand its weights to the model sink (async)."""
        t0 = time.perf_counter()
        trial_id = self.searcher.trial_of(tune_id) if self.searcher else None
        if trial_id is None or self.model_sink is None or checkpoint is None:
            return
        rec = self.state.trials.get(trial_id)
        if rec is None or rec.status != "ok" or rec.info.get("model_logged"):
            return
        data = _read_checkpoint_file(checkpoint.filesystem, checkpoint.path, MODEL_FILE)
        if data is not None:
            self._submit_model(rec, data)
        self._charge(trial_id, t0)

    def _submit_model(self, rec: TrialRecord, data: bytes) -> None:
        result = rec.trial_result()
        assert result is not None and self.model_sink is not None
        trial_id = rec.trial_id

        def done() -> None:
            self.record({"e": "model", "id": trial_id})

        self.model_sink.submit(trial_id, {MODEL_FILE: data}, result,
                               lambda: self.tracker.run_id(trial_id), done)

    def resubmit_missing_models(self) -> None:
        """Resume: weights of finished trials the previous driver had not logged yet."""
        if self.model_sink is None:
            return
        for rec in self.state.finished_trials:
            if rec.status != "ok" or rec.info.get("model_logged"):
                continue
            for attempt in reversed(rec.attempts):
                path = _newest_checkpoint(self.storage, self.state.name, attempt["dir"], MODEL_FILE)
                if path is None:
                    continue
                data = _read_checkpoint_file(self.storage.fs, path, MODEL_FILE)
                if data is not None:
                    self._submit_model(rec, data)
                    break

    def trial_table(self) -> list[dict[str, Any]]:
        rows = []
        for rec in self.state.finished_trials:
            result = rec.trial_result()
            info = result.info if result else {}
            tid = rec.trial_id
            end_to_end = (self.told_at[tid] - self.proposed_at[tid]
                          if tid in self.told_at and tid in self.proposed_at else None)
            trial_s = info.get("trial_seconds")
            rows.append({
                "trial_id": tid, "status": rec.status, "trial_seconds": trial_s,
                "samples_seen": result.metrics.get("samples_seen") if result else None,
                "train_seconds": result.metrics.get("train_seconds") if result else None,
                "end_to_end_seconds": end_to_end, "driver_handler_seconds": self.cost.get(tid),
                "started_at": info.get("started_at"), "ended_at": info.get("ended_at"),
            })
        return rows


def _trial_line(trial_id: str, result: TrialResult) -> str:
    m = result.metrics
    if result.status == "failed":
        return f"{trial_id} failed: {result.error or 'unknown reason'}"
    acc = m.get("val_accuracy", math.nan)
    secs = result.info.get("trial_seconds")
    timing = f" in {secs:.1f}s" if isinstance(secs, (int, float)) else ""
    hp = f"  {format_hparams(result.hparams)}" if result.hparams else ""
    return (f"{trial_id} {result.status}: val_acc {acc:.4f}  compression {m.get('compression_ratio', math.nan):.1f}x  "
            f"params {int(m.get('params', 0)):,}  ranks {','.join(map(str, result.ranks))}{hp}{timing}")


def _read_checkpoint_file(fs: Any, folder: str, name: str) -> bytes | None:
    try:
        with fs.open_input_stream(f"{folder.rstrip('/')}/{name}") as f:
            return f.readall()
    except (OSError, FileNotFoundError):
        return None


def _newest_checkpoint(storage: Storage, name: str, trial_dir: str, must_have: str) -> str | None:
    """The newest `checkpoint_NNNNNN` folder of a trial that holds `must_have`."""
    entries = [e for e in storage.list_dir(name, trial_dir) if e.startswith("checkpoint_")]
    for entry in sorted(entries, reverse=True):
        if storage.exists(name, trial_dir, entry, must_have):
            return storage.path(name, trial_dir, entry)
    return None


def _error_text(trial: Any) -> str:
    """The reason a trial errored: the original exception of its last failure, in one line."""
    exc = None
    # The driver-local copies first: the ones on storage are synced up later.
    with contextlib.suppress(Exception):
        local = trial.pickled_error_file
        if local and os.path.isfile(local):
            import ray.cloudpickle as cloudpickle

            with open(local, "rb") as f:
                exc = cloudpickle.load(f)
    if exc is None:
        with contextlib.suppress(Exception):
            exc = trial.get_pickled_error()
    if exc is not None:
        cause = getattr(exc, "cause", None)
        e = cause if isinstance(cause, BaseException) else exc
        text = str(e).strip()
        head = text.splitlines()[-1] if text else ""
        name = type(e).__name__
        if name == "RayTaskError" or not head:
            return _first_line(text) or name
        return f"{name}: {head}" if not head.startswith(name) else head
    with contextlib.suppress(Exception):
        local = trial.error_file
        text = (Path(local).read_text() if local and os.path.isfile(local) else "") or trial.get_error() or ""
        lines = [ln for ln in str(text).splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()[:2000]
    return "the trial raised an exception"


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:2000]


def _make_callback(session: _Session) -> Any:
    from ray.tune import Callback

    class _DriverCallback(Callback):
        """Tune events -> the session. Tracking happens here, in the driver, never in trials."""

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if not result.get("rs_final"):
                _guard(session.on_epoch, trial.trial_id, result)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _guard(session.on_error, trial.trial_id, _error_text(trial))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _guard(session.on_retry, trial.trial_id)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _guard(session.on_closed, trial.trial_id, trial.checkpoint)

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            session.display.refresh()

        def __reduce__(self) -> tuple[Any, ...]:
            # Tune pickles its run config; the live session stays behind.
            from ray.tune import Callback as _Base

            return (_Base, ())

    return _DriverCallback()


def _guard(fn: Callable[..., Any], *args: Any) -> None:
    """A bookkeeping bug must not take the whole search down with it."""
    try:
        fn(*args)
    except Exception:
        log.exception("ranksearch driver callback %s failed", getattr(fn, "__name__", fn))


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if old[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)


#: Third-party loggers whose INFO/WARNING lines would only clutter the progress display.
_QUIET_LOGGERS = {
    "ray._private.authentication.authentication_token_setup": logging.ERROR,  # auth stays on
    "ray.tune.analysis.experiment_analysis": logging.ERROR,  # per-trial files are disabled
    "ray.tune.tune": logging.CRITICAL,  # "trials did not complete": we report failures ourselves
    "mlflow.store.db.utils": logging.WARNING,
    "alembic": logging.WARNING,
}


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    from ranksearch.tracking import load_mlflow

    with contextlib.suppress(ImportError):
        load_mlflow()  # mlflow sets its loggers up on import; adjust them after
    old = {}
    for name, level in _QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        old[name] = logger.level
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    try:
        yield
    finally:
        for name, level in old.items():
            logging.getLogger(name).setLevel(level)


class ExecutionError(RanksearchError):
    """Ray cannot be reached or started (the message says where it looked)."""


def ensure_ray(address: str | None = None) -> bool:
    """Connect to Ray (`address`) or start it in-process; True when this call started it.

    The in-process runtime starts without its dashboard (a second or two faster); set
    RANKSEARCH_RAY_DASHBOARD=1 to have it.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit` jobs
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            dashboard = os.environ.get("RANKSEARCH_RAY_DASHBOARD", "0") not in ("", "0", "false")
            ray.init(include_dashboard=dashboard, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise ExecutionError(f"cannot use {where}: {str(exc).splitlines()[0] if str(exc) else exc!r}. "
                             "Check --address (and RAY_AUTH_MODE / the auth token for a token-auth "
                             "cluster), or leave --address out to run Ray in this process") from None
    return True


def _check_capacity(settings: SearchSettings, display: SearchDisplay) -> None:
    """Say so when the cluster cannot run `workers` trials at once (Tune would just queue them)."""
    import ray

    with contextlib.suppress(Exception):
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        fits = int(cpus // settings.cpus_per_trial) if settings.cpus_per_trial else settings.workers
        if fits < settings.workers:
            display.event(f"note: the cluster has {cpus:g} CPUs: {fits} of the {settings.workers} "
                          f"workers can run at once ({settings.cpus_per_trial:g} CPU per trial)")


# -- run / resume -----------------------------------------------------------------------------------
def run_search(
    space: SearchSpace,
    settings: SearchSettings,
    *,
    state: SearchState | None = None,
    model_sink_factory: Callable[[SearchTracker, SearchState], ModelSink] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> SearchOutcome:
    """Run a new search (state None) or continue one from its record (`SearchState.load`)."""
    t_start = time.perf_counter()
    storage = Storage.parse(settings.storage)
    resuming = state is not None
    if state is None:
        state = SearchState(name=settings.name, space=space.to_dict(), settings=settings.to_dict())

    with _quiet_loggers():
        return _run(space, settings, storage, state, resuming, t_start, model_sink_factory, console,
                    show_progress)


def _run(space: SearchSpace, settings: SearchSettings, storage: Storage, state: SearchState,
         resuming: bool, t_start: float, model_sink_factory: Any, console: Console | None,
         show_progress: bool) -> SearchOutcome:
    from ranksearch import strategies
    from ranksearch.archive import FrontArchive
    from ranksearch.tracking import SearchTracker

    # 1. the front archive, rebuilt from the recorded results; then tracking (the parent run,
    #    created or reopened) writing the archive's snapshots.
    archive = FrontArchive.for_space(space)
    updates = {rec.trial_id: archive.insert(rec.trial_id, rec.trial_result() or _lost(rec))
               for rec in state.finished_trials}
    tracker = SearchTracker(
        space, tracking_uri=settings.tracking_uri, experiment=settings.experiment,
        run_name=settings.name, parent_run_id=state.parent_run_id or None,
        params={"strategy": settings.strategy, "budget": settings.budget, "seed": settings.seed,
                "options": dict(settings.options), "workers": settings.workers,
                "max_failures": settings.max_failures},
        tags={"ranksearch.search_name": settings.name, "ranksearch.storage": storage.display(settings.name)},
        train_size=_train_size(space), archive=archive,
        delivery=os.environ.get("RANKSEARCH_TRACKING_DELIVERY", "process"),  # MLflow's CPU off Tune's loop
    )
    parent_run_id = tracker.start()
    state.parent_run_id = parent_run_id
    state.settings.update(settings.to_dict(), tracking_uri=tracker.tracking_uri)

    # 2. the strategy, fresh or replayed from the record.
    if state.strategy_header is not None:
        strategy = strategies.from_state(space, state.strategy_state)
    else:
        opts = dict(settings.options)
        if "budget" in strategies.options(settings.strategy):
            opts["budget"] = settings.budget
        strategy = strategies.get(settings.strategy, space, seed=settings.seed, **opts)

    counters = Counters(total=settings.budget)
    display = SearchDisplay(f"search {settings.name} ({settings.strategy}, {settings.workers} workers)",
                            counters, console=console, enabled=show_progress)
    sink = model_sink_factory(tracker, state) if model_sink_factory is not None else None
    session = _Session(space, settings, storage, state, tracker, archive, display, sink)
    state.open_log(storage)
    session.record({"e": "session", "at": time.time(), "resume": resuming})
    state.save(storage)  # the header exists from here on: `resume` can find the search
    requeue = _reconcile(session, updates) if resuming else []

    status = "failed"
    searcher = None
    started_ray = False
    t_fit0 = t_fit1 = time.perf_counter()
    try:
        with _env({**_TUNE_ENV, "TUNE_MAX_PENDING_TRIALS_PG": str(settings.workers)}):
            dense_path = _warm_start(space, settings, storage, session)
            learned_path = _seed(space, strategy, storage, dense_path, display, session)
            if state.strategy_header is None:  # made (and seeded) now, before its first ask
                state.strategy_header = {k: v for k, v in strategy.state_dict().items() if k != "events"}
            session.follow(strategy)
            started_ray = ensure_ray(settings.address)
            tuner, searcher = _make_tuner(space, settings, storage, session, strategy, requeue, dense_path,
                                          learned_path)
            session.searcher = searcher
            state.save(storage)  # the header: strategy and scheduler as made, parent run id
            session.resubmit_missing_models()
            from ranksearch.interrupts import sigterm_as_interrupt

            with display, sigterm_as_interrupt():
                _check_capacity(settings, display)
                t_fit0 = time.perf_counter()
                session.fit_started_at = time.time()
                tuner.fit()
                t_fit1 = time.perf_counter()
        unfinished = state.unfinished_trials
        done = (strategy.is_finished() or searcher.budget_spent) and not unfinished
        status = "finished" if done else "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        t_fit1 = max(t_fit1, t_fit0)
        if sink is not None:
            sink.close(timeout=tracker.retry_for)
        session.record({"e": "status", "status": status, "at": time.time()})
        state.close_log()
        with contextlib.suppress(Exception):
            state.save(storage)
        tracker.finish({"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))
    if started_ray:  # a runtime someone else started (tests, notebooks, a cluster job) stays up
        import ray

        ray.shutdown()
    t_end = time.perf_counter()
    return SearchOutcome(
        name=settings.name, status=status, parent_run_id=parent_run_id,
        tracking_uri=tracker.tracking_uri, experiment=tracker.experiment,
        location=storage.display(settings.name), n_trials=len(state.order),
        n_ok=sum(1 for r in state.finished_trials if r.status == "ok"),
        n_failed=sum(1 for r in state.finished_trials if r.status == "failed"),
        hypervolume=archive.hypervolume, front=tracker.front(),
        seconds={"startup": t_fit0 - t_start, "fit": t_fit1 - t_fit0, "total": t_end - t_start},
        trials=session.trial_table(),
        stats=_stats(session, searcher, tracker),
        cost={**tracker.search_cost(), "n_train_full": tracker.train_size, "finished_trials": len(state.order),
              **({"budget": settings.cost_budget, **searcher.cost_limit.to_dict()}
                 if searcher is not None and searcher.cost_limit is not None else {})},
    )


def _lost(rec: TrialRecord) -> TrialResult:
    return TrialResult(ranks=tuple(rec.ranks), status="failed", error="its result was not recorded",
                       hparams=dict(rec.hparams))


def _train_size(space: SearchSpace) -> int | None:
    """N_train_full for the search-cost metrics; None (samples only) when this driver cannot
    read the data (a cluster whose data lives on the workers only)."""
    from ranksearch.training import full_train_size

    if space.config.data is None:
        return None  # a user training function reads its own data
    try:
        return full_train_size(space)
    except Exception as exc:  # noqa: BLE001 - cost accounting must not stop a search
        log.warning("search cost: cannot size the training set here (%s); logging samples only", exc)
        return None


def _stats(session: _Session, searcher: Any, tracker: SearchTracker) -> dict[str, Any]:
    costs = list(session.cost.values())
    out: dict[str, Any] = {
        "record_appends": session.records, "record_seconds": session.record_s,
        "fit_started_at": session.fit_started_at,
        "handler_seconds_median": statistics.median(costs) if costs else None,
        "tracker": dict(tracker.stats), "callback_errors": session.errors,
        "tell_errors": len(session.state.tell_errors),
    }
    if searcher is not None:
        out["searcher"] = dict(searcher.stats)
    return out


def _reconcile(session: _Session, updates: dict[str, Any]) -> list[Requeued]:
    """Resume: bring the MLflow copy up to the record, and list the trials to re-run.

    - a trial finished in the record but not in MLflow (the old driver died before its queued
      writes left) is logged again from the record: exactly one finished child run per trial;
    - a trial proposed but unfinished is re-run from its newest checkpoint.
    The record alone decides; MLflow is only asked which of its writes already landed.
    """
    state, tracker = session.state, session.tracker
    logged = tracker.logged_trials()
    for rec in state.finished_trials:
        result = rec.trial_result() or _lost(rec)
        if rec.trial_id not in logged:
            tracker.trial_finished(rec.trial_id, result, updates[rec.trial_id])
        session._count(result)
    session.counters.running = 0
    session.counters.tell_errors = len(state.tell_errors)
    requeue = []
    for rec in sorted(state.unfinished_trials, key=lambda r: r.trial_id):
        resume_from = None
        for attempt in reversed(rec.attempts):
            resume_from = _newest_checkpoint(session.storage, state.name, attempt["dir"], "checkpoint.pt")
            if resume_from:
                break
        requeue.append(Requeued(rec.trial_id, tuple(rec.ranks), dict(rec.info), resume_from, dict(rec.hparams)))
    return requeue


def _warm_start(space: SearchSpace, settings: SearchSettings, storage: Storage,
                session: _Session) -> str | None:
    """`training.init: dense`: the dense weights every trial starts from (trained here once and
    cached in the experiment folder); None for training from scratch. Training them is charged
    to the search's cost once (the record says whether it was)."""
    training = space.config.training
    if training.init != "dense" and training.distill == 0:
        return None
    from ranksearch.tune.warmstart import ensure_dense

    dense = ensure_dense(space, storage, settings.name)
    if not dense.reused:
        session.record({"e": "overhead", "samples": int(dense.samples_seen)})
    session.tracker.add_overhead_samples(session.state.overhead_samples)
    how = "reused" if dense.reused else f"trained on {dense.samples_seen:,} samples"
    session.display.event(f"dense warm start {how}: val_acc {dense.val_accuracy:.4f}")
    return dense.path


def _seed(space: SearchSpace, strategy: Any, storage: Storage, dense_path: str | None,
          display: SearchDisplay, session: _Session | None = None) -> str | None:
    """Give a strategy that has not asked yet the space's `strategy.seeds`; 'effective' ones
    read the dense warm start's network, 'learned' ones train once and are charged to the
    search's cost like the warm start. (A resumed strategy replays its seeds from its state.)

    With `training.init: learned`, the learned run's cores are kept in the search's storage
    (`ranksearch.tune.warmstart.save_learned`); returns where (a resumed search finds them
    there), else None."""
    from ranksearch.tune.warmstart import learned_path, save_learned

    name = session.settings.name if session is not None else None
    warm = space.config.training.init == "learned"
    if not space.config.strategy.seeds or strategy.started:
        if not warm:
            return None
        found = learned_path(storage, name) if name is not None else None
        if found is None:
            raise RuntimeError("training.init is 'learned' but this search kept no learned cores to start "
                               "its trials from (they are saved when its 'learned' seeds are made)")
        return found
    kept: list[str] = []
    from ranksearch.strategies import seed_strategy
    from ranksearch.strategies.seeding import needs_dense

    net = None
    if needs_dense(space) and dense_path is not None:
        from ranksearch.tune.warmstart import dense_net

        net = dense_net(space, dense_path, storage)
    def charge(samples: int) -> None:
        if session is not None and samples > 0:
            session.record({"e": "overhead", "samples": int(samples)})
            session.tracker.add_overhead_samples(int(samples))
            display.event(f"learned seeds: one gated run on {samples:,} samples")

    def keep(gated: Any) -> None:
        if not warm or name is None:
            return
        from ranksearch.learned.warm import learned_cores

        cores = learned_cores(gated)
        kept.append(save_learned(storage, name, cores))
        display.event(f"learned warm start: trials start from the cores at ranks {list(cores.ranks)}")

    seed_strategy(strategy, space, net, on_cost=charge, on_gated=keep)
    display.event(f"{len(strategy.seeds)} seed configurations go first")
    if warm and not kept:
        raise RuntimeError("training.init is 'learned' but no learned seed run was made to take cores from")
    return kept[-1] if kept else None


def _cost_limit(space: SearchSpace, settings: SearchSettings, state: SearchState) -> CostLimit | None:
    """The cost budget in samples, less what the record says was spent (resume) and the dense
    warm start; None for a budget in trials."""
    if not settings.cost_budget:
        return None
    from ranksearch.budget import CostLimit, parse_budget
    from ranksearch.training import expected_fraction, full_train_size, trial_samples

    spent = float(state.overhead_samples)
    for rec in state.finished_trials:
        result = rec.trial_result()
        samples = result.metrics.get("samples_seen") if result else None
        spent += float(samples) if samples is not None and math.isfinite(float(samples)) else 0.0
    limit = parse_budget(settings.cost_budget).samples(full_train_size(space))
    return CostLimit(limit, trial_samples(space), spent=spent, expected_fraction=expected_fraction(space))


def _make_tuner(space: SearchSpace, settings: SearchSettings, storage: Storage, session: _Session,
                strategy: Any, requeue: list[Requeued],
                dense_path: str | None = None, learned_path: str | None = None) -> tuple[Any, StrategySearcher]:
    import json

    from ray import tune

    from ranksearch.tune.scheduler import make_scheduler
    from ranksearch.tune.searcher import StrategySearcher
    from ranksearch.tune.trainable import train_trial

    searcher = StrategySearcher(strategy, max_concurrent=settings.workers,
                                next_index=session.state.next_index, requeue=requeue, listener=session,
                                cost_limit=_cost_limit(space, settings, session.state),
                                extend_plan=space.config.strategy.max_trials is None)
    scheduler = make_scheduler(space, session.state.scheduler_state, on_record=session.on_rung)
    if scheduler is not None and session.state.scheduler_header is None:
        session.state.scheduler_header = scheduler.ledger.layout()
    trainable = tune.with_parameters(
        train_trial, space_json=json.dumps(space.to_dict()),
        storage=storage, cpus_per_trial=settings.cpus_per_trial, dense_path=dense_path,
        learned_path=learned_path,
    )
    resources = {"cpu": settings.cpus_per_trial}
    if settings.gpus_per_trial:
        resources["gpu"] = settings.gpus_per_trial
    trainable = tune.with_resources(trainable, resources)
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=-1,
            max_concurrent_trials=settings.workers,
            reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name, **storage.ray_args(), callbacks=[_make_callback(session)], verbose=0,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return tuner, searcher
