"""The search tracker: writes one search to MLflow as the driver runs it.

One search is one parent run; one trial is one child run (tag `mlflow.parentRunId`). The
tracker lives in the Ray driver and is fed by it: `trial_started`, `trial_epoch`,
`trial_finished` (with the update the driver's front archive returned), and `finish`.

It keeps no front of its own: the driver's `FrontArchive` (ranksearch.archive) decides the
front, the hypervolume and the history; the tracker writes what each insert changed (the
parent's `hypervolume` / `front_size` at step n_finished, the `pareto_optimal` tags of the
trials that entered or left the front) and publishes the archive's snapshots as artifacts.
MLflow is a copy: nothing here is read back to decide what a strategy is told. On resume the
tracker reads which child runs exist (and which finished) only so that it never creates a
second run for a trial nor rewrites a finished one.

All writes after `start()` go through the `Delivery` queue (ranksearch.tracking.delivery).
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.archive import FrontArchive, FrontUpdate
from ranksearch.objectives import finite
from ranksearch.tracking import schema as S
from ranksearch.tracking.delivery import MAX_BACKOFF, Ctx, Delivery, RunRef, Terminate, Text, now_ms
from ranksearch.tracking.delivery import Create as CreateRun
from ranksearch.tracking.masking import mask_secrets
from ranksearch.tracking.remote import ProcessDelivery
from ranksearch.tracking.store import (
    TrackingError,
    child_runs,
    classify,
    client_for,
    local_artifact_root,
    prepare_local_store,
    resolve_tracking_uri,
    safe_uri,
)
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class SearchTracker:
    """One search = one MLflow parent run; one trial = one child run (tag mlflow.parentRunId).

    Call from the Ray driver only. All methods after `start()` queue their writes and return at
    once; `flush()` waits for delivery, `finish()` delivers everything and ends the parent run.
    `archive` is the driver's front archive (one is made for `space` when none is given, for
    callers that own none: benchmarks, tests).
    """

    def __init__(
        self,
        space: Any,
        *,
        archive: FrontArchive | None = None,
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
        delivery: str | None = None,
    ) -> None:
        self.space = space
        self.archive = archive if archive is not None else FrontArchive.for_space(space)
        self.objectives = self.archive.objectives
        #: N_train_full (see `ranksearch.training.full_train_size`): the unit of epoch_equivalents.
        self.train_size = int(train_size) if train_size else None
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment or getattr(space, "name", None) or "ranksearch"
        self.run_name = run_name
        self.user_params = dict(params or {})
        self.user_tags = dict(tags or {})
        self.parent_run_id: str = parent_run_id or ""
        self.retry_for = float(retry_for)
        self.start_timeout = float(start_timeout)
        self.elements: list[str] = [str(getattr(e, "name", e)) for e in getattr(space, "elements", ())]

        self.experiment_id: str = ""
        self._client: MlflowClient | None = None
        self._parent = RunRef("search")
        self._refs: dict[str, RunRef] = {}  # child run per trial id
        self._last_step: dict[str, int] = {}
        self._has_ranks: set[str] = set()
        self._done: set[str] = set()  # trials this tracker was told finished
        self._logged: set[str] = set()  # trials whose child run had finished before a resume
        self._tagged: dict[str, str] = {}  # pareto_optimal as stored (or queued) per trial
        self._dirty: set[str] = set()  # trials whose pareto_optimal may have to change
        self._parent_steps: set[int] = set()  # steps of the parent's metrics already stored
        self._costs: dict[int, dict[str, float]] = {}  # search cost after n finished trials
        self._counted = 0  # archive entries whose samples are in `_samples`
        self._samples = 0  # training samples consumed by the finished trials (all statuses)
        self._overhead = 0  # samples spent outside trials (the dense warm start)
        self._reopened = False
        self._finished = False
        # "thread": the write queue's worker runs here; "process": in a child process, off this
        # interpreter's lock (what a search driver uses: see tracking/remote.py).
        mode = delivery or os.environ.get("RANKSEARCH_TRACKING_DELIVERY") or "thread"
        if mode not in ("thread", "process"):
            raise ValueError(f"delivery must be 'thread' or 'process', got {mode!r}")
        kind = ProcessDelivery if mode == "process" else Delivery
        self._delivery = kind(uri=self.tracking_uri, flush_interval=flush_interval, retry_for=retry_for,
                              artifact_interval=artifact_interval, snapshot=self._snapshot,
                              render=functools.partial(render_front_files, elements=tuple(self.elements)),
                              upload=functools.partial(upload_front_files, parent=self._parent))
        self._lock = self._delivery.lock
        self.stats = self._delivery.stats

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        """Create the parent run (or reopen `parent_run_id` to resume); returns its run id.

        This is the one blocking call: it needs the server to hand out the run id, and a search
        should not start against a store it cannot reach. It retries for `start_timeout` seconds,
        then raises TrackingError.
        """
        if self._delivery.started:
            return self.parent_run_id
        prepare_local_store(self.tracking_uri)
        self._client = client_for(self.tracking_uri)
        deadline = time.monotonic() + self.start_timeout
        self._call_until(deadline, self._reopen if self.parent_run_id else self._create_parent)
        self._parent.run_id = self.parent_run_id
        with self._lock:
            if not self._reopened:
                self._delivery.enqueue_batch(self._parent, params=self._parent_params())
                self._delivery.enqueue(Text(self._parent, self._space_yaml(), S.SPACE_ARTIFACT))
            self._delivery.publish()  # the front artifacts (possibly empty) at least once
        self._delivery.start(self._client)
        atexit.register(self._at_exit)
        return self.parent_run_id

    def _call_until(self, deadline: float, fn: Callable[[], None]) -> None:
        delay = 0.5
        while True:
            try:
                fn()
                return
            except Exception as exc:
                if classify(exc) == "permanent" or time.monotonic() + delay > deadline:
                    raise TrackingError(
                        f"cannot use the MLflow store at {safe_uri(self.tracking_uri)}: {exc}. "
                        "Check the tracking URI and that the server is running"
                    ) from exc
                log.warning("MLflow at %s not reachable yet (%s); retrying", safe_uri(self.tracking_uri), exc)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _create_parent(self) -> None:
        client = self._client
        assert client is not None
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                self.experiment_id = client.create_experiment(
                    self.experiment, artifact_location=local_artifact_root(self.tracking_uri))
            except Exception as exc:  # created meanwhile by another process
                exp = client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise exc
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            self.experiment_id = exp.experiment_id
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_name = self.run_name or f"{getattr(self.space, 'name', 'search')}-{self._strategy_name()}-{stamp}"
        run = client.create_run(self.experiment_id, start_time=now_ms(), tags=self._parent_tags(),
                                run_name=self.run_name)
        self.parent_run_id = run.info.run_id

    def _reopen(self) -> None:
        from mlflow.entities import Param, RunTag

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
        tags = {**self._parent_tags(), S.TAG_STATUS: "running"}
        client.log_batch(self.parent_run_id, params=[Param(k, v) for k, v in new_params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
        self._load_written(client, run)
        self._reopened = True

    def _load_written(self, client: MlflowClient, parent_run: Any) -> None:
        """Resume: which child runs exist, which finished, their pareto_optimal tags, and which
        steps of the parent's metrics are stored, so that nothing is written twice. (The warm
        start's samples are not read back: the driver reports them from its record.)"""
        self._refs, self._tagged, self._logged, self._has_ranks = {}, {}, set(), set()
        for run in child_runs(client, self.experiment_id, self.parent_run_id):
            tid = run.data.tags.get(S.TAG_TRIAL_ID)
            if not tid or tid in self._refs:
                continue
            self._refs[tid] = RunRef(tid, run.info.run_id)
            if S.PARAM_RANKS in run.data.params:
                self._has_ranks.add(tid)
            if S.TAG_PARETO in run.data.tags:
                self._tagged[tid] = run.data.tags[S.TAG_PARETO]
            if S.TAG_TRIAL_STATUS in run.data.tags:
                self._logged.add(tid)
                if run.info.status == "RUNNING":
                    # its finish tags landed, its end did not (the old driver died between the
                    # two writes): end it as the tags say, once, here
                    client.set_terminated(run.info.run_id, S.RUN_STATUS_OF.get(
                        run.data.tags[S.TAG_TRIAL_STATUS], "FINISHED"))
        self._parent_steps = {int(m.step) for m in client.get_metric_history(self.parent_run_id,
                                                                             S.METRIC_HYPERVOLUME)}
        # An archive rebuilt before this tracker was made: settle the stored tags against it.
        self._dirty.update(self.archive.order)

    def finish(self, status: str = "FINISHED", timeout: float | None = None) -> None:
        """Deliver everything, publish the final front, tag the status and end the parent run.

        Waits up to `timeout` (default `retry_for`) for an unreachable server; whatever is still
        undelivered then is reported in the log and dropped.
        """
        if not self._delivery.started or self._finished:
            return
        status = status.upper()
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status must be FINISHED, FAILED or KILLED, got {status!r}")
        timeout = self.retry_for if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            self._finished = True
            self._sync_tags()
            for tid, ref in self._refs.items():  # trials that never reported back
                if tid not in self._done and tid not in self._logged:
                    self._delivery.enqueue(Terminate(ref, "KILLED"))
            self._delivery.publish()  # the final artifacts, even if nothing changed since
            self._delivery.enqueue_batch(self._parent, tags={
                S.TAG_STATUS: status.lower(), S.TAG_N_FINISHED: str(self.archive.n_finished),
                S.TAG_FRONT_SIZE: str(len(self.archive.front_ids())),
            })
        self._delivery.flush(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._delivery.enqueue(Terminate(self._parent, status))
        delivered = self._delivery.flush(timeout=max(1.0, deadline - time.monotonic()))
        left = self._delivery.close(timeout=5.0)
        atexit.unregister(self._at_exit)
        if not delivered:
            log.error("MLflow at %s unreachable: %d queued writes for search %s were not delivered",
                      safe_uri(self.tracking_uri), left, self.parent_run_id)

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
    def trial_started(self, trial_id: str, ranks: Sequence[int] = (), info: dict | None = None, *,
                      hparams: Mapping[str, Any] | None = None) -> str:
        """Queue the child run of a trial (once per trial id); returns its run id if known yet.
        Its params: the ranks, and one `hp.<name>` per hyperparameter value in `hparams`.

        The id is known at once when the run already exists (resume), otherwise after the queued
        create is delivered ("" until then; see `run_id`).
        """
        trial_id = str(trial_id)
        with self._lock:
            if not self._accepting("trial_started"):
                return ""
            ref = self._refs.get(trial_id)
            if ref is None:
                ref = self._new_child(trial_id, ranks, info, hparams)
            else:  # a restored trial: same run; bookkeeping tags may have moved on
                self._delivery.enqueue_batch(ref, params=self._rank_params(trial_id, ranks, hparams),
                                             tags=S.info_tags(info or {}))
            return ref.run_id or ""

    def trial_epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one epoch's metrics (step = epoch); sent batched in the background."""
        trial_id = str(trial_id)
        ts = now_ms()
        with self._lock:
            if not self._accepting("trial_epoch"):
                return
            ref = self._refs.get(trial_id) or self._new_child(trial_id, (), None)
            step = int(epoch)
            self._last_step[trial_id] = max(step, self._last_step.get(trial_id, step))
            self._delivery.enqueue_batch(ref, metrics=S.metric_rows(metrics, ts, step))

    def trial_finished(self, trial_id: str, result: TrialResult, update: FrontUpdate | None = None) -> None:
        """Record a trial's outcome: end its run, and write what the front archive's insert of it
        changed (`update`, from `archive.insert(trial_id, result)`; None: inserted here).

        A second completion of the same trial is ignored (the first one stands). A trial whose
        run had already finished before a resume is not written again; only its
        `pareto_optimal` tag follows the archive.
        """
        trial_id = str(trial_id)
        ts = now_ms()
        with self._lock:
            if not self._accepting("trial_finished"):
                return
            if trial_id in self._done:
                log.debug("trial %s already finished; ignoring a second completion", trial_id)
                return
            if update is None:
                update = self._insert(trial_id, result)
            self._done.add(trial_id)
            self._count_costs(update)
            cost = self._costs.get(update.n_finished) or self._cost()
            replay = trial_id in self._logged
            if not replay:
                ref = self._refs.get(trial_id) or self._new_child(trial_id, result.ranks, result.info,
                                                                  result.hparams)
                step = max(self._last_step.get(trial_id, 0), int(result.fidelity or 0))
                self._delivery.enqueue_batch(
                    ref, metrics=S.metric_rows(self.objectives.metrics(result), ts, step),
                    params=self._rank_params(trial_id, result.ranks),  # when not known at the start
                    tags=S.finish_tags(result))
                self._delivery.enqueue(Terminate(ref, S.RUN_STATUS_OF.get(result.status, "FINISHED")))
            self._dirty.update((trial_id, *update.entered, *update.left))
            n = update.n_finished
            if n not in self._parent_steps:
                self._parent_steps.add(n)
                self._delivery.enqueue_batch(self._parent, metrics=[
                    (S.METRIC_HYPERVOLUME, float(update.hypervolume), ts, n),
                    (S.METRIC_FRONT_SIZE, float(update.front_size), ts, n),
                    *((k, float(v), ts, n) for k, v in cost.items()),
                ])
            if not replay:  # replayed trials' tags are settled once the replay is over
                self._sync_tags()
            self._delivery.publish()

    def _insert(self, trial_id: str, result: TrialResult) -> FrontUpdate:
        """The archive's update for a trial the caller did not insert (or inserted already)."""
        if trial_id not in self.archive:
            return self.archive.insert(trial_id, result)
        on = self.archive.on_front(trial_id)
        return FrontUpdate(trial_id, self.archive.n_finished, self.archive.eligible(trial_id), on,
                           (trial_id,) if on else (), (), self.archive.hypervolume,
                           len(self.archive.front_ids()))

    def _sync_tags(self) -> None:
        """Queue pareto_optimal for the trials whose membership may have changed, where the
        stored value differs from the archive's (false for ineligible and dominated trials)."""
        for tid in self._dirty:
            ref = self._refs.get(tid)
            if ref is None or tid not in self.archive:
                continue
            value = "true" if self.archive.on_front(tid) else "false"
            if self._tagged.get(tid) != value:
                self._tagged[tid] = value
                self._delivery.enqueue_batch(ref, tags={S.TAG_PARETO: value})
        self._dirty.clear()

    def _new_child(self, trial_id: str, ranks: Sequence[int], info: Mapping[str, Any] | None,
                   hparams: Mapping[str, Any] | None = None) -> RunRef:
        ref = RunRef(trial_id)
        self._refs[trial_id] = ref
        tags = S.trial_tags(self.parent_run_id, trial_id, info)
        self._delivery.enqueue(CreateRun(ref, self.experiment_id, trial_id, tags, self.parent_run_id, trial_id))
        self._delivery.enqueue_batch(ref, params=self._rank_params(trial_id, ranks, hparams))
        return ref

    def _rank_params(self, trial_id: str, ranks: Sequence[int],
                     hparams: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The configuration's params (ranks, and `hp.*` for the hyperparameter values) the
        first time a trial's configuration is known (params cannot change once logged); a
        hyperparameter-only space (a user function without rank elements) has values but no ranks."""
        if trial_id in self._has_ranks or not (ranks or (hparams and not self.elements)):
            return {}
        self._has_ranks.add(trial_id)
        return {**S.rank_params(self.elements, ranks), **S.hparam_params(hparams or {})}

    def _accepting(self, what: str) -> bool:
        if not self._delivery.started:
            raise RuntimeError(f"SearchTracker.{what}() called before start()")
        if self._finished:
            log.warning("SearchTracker.%s() after finish() is ignored", what)
            return False
        return True

    # -- reading what was written ----------------------------------------------------------------
    def logged_trials(self) -> set[str]:
        """Trials whose child run has finished (before a resume, or told since): for writing
        idempotently, never for deciding what a strategy is told."""
        with self._lock:
            return self._logged | self._done

    def front(self) -> list[dict[str, Any]]:
        """The archive's front: one dict per trial (trial_id, run_id, ranks, metrics, ...)."""
        with self._lock:
            return [self._row(t) for t in self.archive.front_ids()]

    @property
    def hypervolume(self) -> float:
        return self.archive.hypervolume

    def run_id(self, trial_id: str) -> str | None:
        """The child run id of a trial, once its run exists on the server."""
        ref = self._refs.get(str(trial_id))
        return ref.run_id if ref else None

    def _row(self, trial_id: str) -> dict[str, Any]:
        ref = self._refs.get(trial_id)
        return S.front_row(trial_id, ref.run_id if ref else None, self.archive.result(trial_id),
                           self.archive.metrics(trial_id))

    # -- search cost -----------------------------------------------------------------------------
    def search_cost(self) -> dict[str, float]:
        """Training samples consumed by the finished trials (ok, failed and pruned alike) plus
        any spent outside them (a dense warm start) and, when N_train_full is known, the same
        in full-training-set epochs."""
        with self._lock:
            self._count_costs()
            return self._cost()

    def _count_costs(self, latest: FrontUpdate | None = None) -> None:
        """Add the samples of the archive's new entries, in its order, noting the cost after each
        (entries inserted before this tracker was made, on a resume, included). O(1) per trial
        when `latest` is the one new entry, as it is while a search runs."""
        n = len(self.archive)
        if n <= self._counted:
            return
        if latest is not None and latest.n_finished == n == self._counted + 1:
            new: Sequence[str] = (latest.trial_id,)
        else:
            new = self.archive.order[self._counted:]
        for tid in new:
            self._samples += _samples_of(self.archive.result(tid))
            self._counted += 1
            self._costs[self._counted] = self._cost()

    def _cost(self) -> dict[str, float]:
        total = self._samples + self._overhead
        cost = {S.METRIC_SAMPLES: float(total)}
        if self.train_size:
            cost[S.METRIC_EPOCHS] = total / self.train_size
        return cost

    def add_overhead_samples(self, samples: int) -> None:
        """Charge the search for training outside its trials (the dense warm start). A resumed
        search starts from 0: its driver reports the total its record holds."""
        if samples <= 0:
            return
        with self._lock:
            if not self._accepting("add_overhead_samples"):
                return
            self._overhead += int(samples)
            self._delivery.enqueue_batch(self._parent, metrics=[
                (S.METRIC_WARM_START, float(self._overhead), now_ms(), 0)])

    # -- delivery --------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Push queued writes now; True once all are delivered.

        With `timeout=None` it returns False as soon as a delivery attempt fails (server still
        unreachable); with a timeout it keeps retrying for that many seconds.
        """
        with self._lock:
            if self._delivery.started and not self._finished:
                self._sync_tags()
        return self._delivery.flush(timeout)

    @property
    def pending_writes(self) -> int:
        """Writes queued and not yet delivered."""
        return self._delivery.pending_writes

    # -- the front artifacts ---------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """What the artifacts show, taken under the lock (rendered outside it)."""
        archive = self.archive
        self._count_costs()
        space = getattr(self.space, "name", "")
        history = [{**h, **self._costs.get(h["n_finished"], {})} for h in archive.history]
        return {
            "space": space, "run_name": self.run_name, "front_ids": archive.front_ids(),
            "points": [self._row(t) for t in archive.order if archive.eligible(t)],
            "history": history,
            "front_doc": {
                "search_run_id": self.parent_run_id, "space": space,
                "objectives": [list(o) for o in self.objectives.pairs], "elements": self.elements,
                "n_finished": archive.n_finished, "hypervolume": archive.hypervolume,
                "hv_reference": list(archive.reference), "front": [self._row(t) for t in archive.front_ids()],
                "search_cost": {**self.search_cost(), "n_train_full": self.train_size},
            },
        }

    # -- what gets logged on the parent -----------------------------------------------------------
    def _strategy_name(self) -> str:
        strategy = getattr(getattr(self.space, "config", None), "strategy", None)
        return str(self.user_params.get("strategy") or getattr(strategy, "name", "") or "unknown")

    def _parent_params(self) -> dict[str, str]:
        cfg = getattr(self.space, "config", None)
        strategy = getattr(cfg, "strategy", None)
        dense = self.objectives.dense_params
        flat: dict[str, Any] = {
            "strategy": getattr(strategy, "name", None),
            "budget": getattr(strategy, "budget", None),
            "seed": getattr(cfg, "seed", None),
            "space": getattr(self.space, "name", None),
            "objectives": ",".join(f"{s} {n}" for n, s in self.objectives.pairs),
            "n_rank_elements": len(self.elements) or None,
            S.PARAM_DENSE: int(dense) if dense else None,
            S.PARAM_N_TRAIN: self.train_size,
        }
        options = dict(getattr(strategy, "options", None) or {})
        user = dict(self.user_params)
        if isinstance(user.get("options"), Mapping):
            options.update(user.pop("options"))
        if options:
            S.flatten("options", mask_secrets(options), flat)
        if user:
            S.flatten("", mask_secrets(user), flat)
        out = {S.key(k): S.text(v, S.MAX_PARAM_LEN) for k, v in flat.items() if v is not None and k}
        hyper = getattr(self.space, "hyper", None)
        if hyper:  # the searched domains, one param each (the trials' values are their hp.* params)
            out.update(S.hparam_domain_params(hyper.to_dict()))
        fixed = _fixed_ranks(self.space)
        if fixed:
            out[S.PARAM_FIXED_RANKS] = S.text(fixed, S.MAX_PARAM_LEN)
        return out

    def _parent_tags(self) -> dict[str, str]:
        import ranksearch

        tags = {
            S.TAG_KIND: S.KIND_SEARCH, S.TAG_STATUS: "running",
            S.TAG_SPACE: str(getattr(self.space, "name", "")), S.TAG_STRATEGY: self._strategy_name(),
            S.TAG_OBJECTIVES: json.dumps(self.objectives.pairs),
            S.TAG_CONSTRAINTS: S.constraints_tag(self.objectives),
            S.TAG_REFERENCE: json.dumps(list(self.archive.reference)),
            "ranksearch.version": ranksearch.__version__,
        }
        elements = json.dumps(self.elements)
        if len(elements) <= S.MAX_TAG_LEN:
            tags[S.TAG_ELEMENTS] = elements
        fixed = _fixed_ranks(self.space)
        if fixed:
            tags[S.TAG_FIXED_RANKS] = S.text(fixed, S.MAX_TAG_LEN)
        for k, v in mask_secrets(self.user_tags).items():
            tags[S.key(k)] = S.text(v, S.MAX_TAG_LEN)
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
                f"finished={self.archive.n_finished}, queued={self._delivery.pending_writes})")


def _samples_of(result: TrialResult) -> int:
    v = finite(result.metrics.get("samples_seen"))
    return int(v) if v is not None and v > 0 else 0


def render_front_files(snapshot: dict[str, Any], *, elements: tuple[str, ...]) -> dict[str, bytes]:
    """The front's files from a snapshot: front.json, history.json and the pictures (a drawing
    that fails is left out, never the data). Module-level: it may run in the tracking process."""
    from ranksearch import frontviz

    title = f"{snapshot['space']} — {snapshot['run_name']}"
    files = {
        "front.json": json.dumps(snapshot["front_doc"], indent=1, default=str).encode(),
        "history.json": json.dumps(snapshot["history"], default=str).encode(),
    }
    renderers = {
        "front.html": lambda: frontviz.front_html(
            snapshot["points"], snapshot["front_ids"], title=title, element_names=list(elements)).encode(),
        "front.png": lambda: frontviz.front_png(snapshot["points"], snapshot["front_ids"], title=title),
        "history.png": lambda: frontviz.history_png(snapshot["history"], title=title),
    }
    for name, render in renderers.items():
        try:
            files[name] = render()
        except Exception:  # a plotting problem must not stop the front's data from landing
            log.exception("could not draw %s/%s", S.FRONT_DIR, name)
    return files


def upload_front_files(ctx: Ctx, files: dict[str, bytes], *, parent: RunRef) -> None:
    """Upload the front's files under the search's parent run."""
    with tempfile.TemporaryDirectory(prefix="ranksearch-front-") as tmp:
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        ctx.calls += len(files)
        ctx.client.log_artifacts(parent.run_id, tmp, S.FRONT_DIR)


def _fixed_ranks(space: Any) -> str | None:
    """The JSON rank vector of a recipe-only search (`SearchSpace.fixed_ranks`), or None."""
    fixed = getattr(space, "fixed_ranks", None)
    return json.dumps([int(r) for r in fixed]) if fixed else None
