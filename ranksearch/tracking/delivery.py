"""Getting writes to MLflow without stopping the search: the queue, batching, retries, outages.

A search runs for hours and must not stop (or slow down) because the tracking server restarts.
Every write goes into an in-memory queue that one background thread sends in order, merging
consecutive writes to one run into `log_batch` calls (each client call costs 20-120 ms against a
server). A write that fails because the server is unreachable is retried with backoff until it
succeeds or `retry_for` seconds have passed since it was queued; callers only append to the
queue, so they return in microseconds and never raise on connectivity errors. MLflow's own HTTP
retries are turned down (`store.configure_mlflow_env`) so a down server fails fast and this
queue does the waiting.

Beside the ordered writes, the queue publishes one set of files (a search's front snapshot)
whenever its version moved on, at most every `artifact_interval` seconds: a snapshot is taken
under the lock, rendered and uploaded outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ranksearch.tracking.store import child_runs, classify, safe_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("ranksearch.tracking")

_TRANSIENT_ATTEMPTS = 6  # a server that answers 5xx this many times in a row is not "down"
MAX_BACKOFF = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


class RunRef:
    """A run that may not exist yet: its id arrives when the queued create succeeds."""

    __slots__ = ("key", "run_id", "dead")

    def __init__(self, key: str, run_id: str | None = None) -> None:
        self.key = key
        self.run_id = run_id
        self.dead = False


class Ctx:
    """What an op needs to run: the client, and a counter of the calls it made."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.calls = 0
        self.dropped_items = 0

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return fn(*args, **kwargs)


class Op:
    """One queued write to one run."""

    kind = "op"

    def __init__(self, ref: RunRef) -> None:
        self.ref = ref
        self.created = time.monotonic()
        self.attempts = 0
        self.sealed = False  # being (or been) sent: no more merging into it

    def run(self, ctx: Ctx) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} on {self.ref.key}"


class Create(Op):
    """Create a trial's child run; a retry first looks for the run an earlier try may have made."""

    kind = "create_run"

    def __init__(self, ref: RunRef, experiment_id: str, run_name: str, tags: dict[str, str],
                 parent_id: str, trial_id: str) -> None:
        super().__init__(ref)
        self.experiment_id, self.run_name, self.tags = experiment_id, run_name, tags
        self.parent_id, self.trial_id = parent_id, trial_id
        self.start_time = now_ms()

    def run(self, ctx: Ctx) -> None:
        if self.attempts:  # an earlier try may have reached the server before the answer was lost
            found = ctx.call(child_runs, ctx.client, self.experiment_id, self.parent_id, trial_id=self.trial_id)
            if found:
                self.ref.run_id = found[0].info.run_id
                return
        run = ctx.call(ctx.client.create_run, self.experiment_id, start_time=self.start_time,
                       tags=self.tags, run_name=self.run_name)
        self.ref.run_id = run.info.run_id


class Batch(Op):
    """Metrics, params and tags for one run, merged until sent and cut into log_batch chunks."""

    kind = "log_batch"

    def __init__(self, ref: RunRef) -> None:
        super().__init__(ref)
        self.metrics: dict[tuple[str, int, int, float], None] = {}
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self._chunks: list[tuple[list, list, list]] | None = None
        self._next = 0

    def add(self, metrics: Iterable[tuple[str, float, int, int]] = (),
            params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
        for name, value, ts, step in metrics:
            self.metrics[(name, int(step), int(ts), float(value))] = None
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

    def run(self, ctx: Ctx) -> None:
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
                if classify(exc) != "permanent":
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


class Terminate(Op):
    kind = "set_terminated"

    def __init__(self, ref: RunRef, status: str) -> None:
        super().__init__(ref)
        self.status = status
        self.end_time = now_ms()

    def run(self, ctx: Ctx) -> None:
        ctx.call(ctx.client.set_terminated, self.ref.run_id, status=self.status, end_time=self.end_time)


class Text(Op):
    kind = "log_text"

    def __init__(self, ref: RunRef, content: str, path: str) -> None:
        super().__init__(ref)
        self.content, self.path = content, path

    def run(self, ctx: Ctx) -> None:
        ctx.call(ctx.client.log_text, self.ref.run_id, self.content, self.path)


class Delivery:
    """The ordered write queue of one search and the thread that sends it.

    `lock` is a Condition shared with the owner (the tracker keeps its own state under it, so a
    trial's writes are queued atomically). `snapshot()` is called under the lock when the
    published files are due; `render(snapshot)` and `upload(ctx, files)` run outside it.
    """

    def __init__(self, *, uri: str, flush_interval: float, retry_for: float, artifact_interval: float,
                 snapshot: Callable[[], Any], render: Callable[[Any], dict[str, bytes]],
                 upload: Callable[[Ctx, dict[str, bytes]], None]) -> None:
        self.uri = uri
        self.flush_interval = float(flush_interval)
        self.retry_for = float(retry_for)
        self.artifact_interval = float(artifact_interval)
        self._snapshot, self._render, self._upload = snapshot, render, upload
        self.lock = threading.Condition()
        self._queue: deque[Op] = deque()
        self._open: dict[str, Batch] = {}  # unsent batch per run key, to merge into
        self._version = 0  # of the published files
        self._uploaded_version = -1
        self._last_upload = 0.0
        self._rendered: tuple[int, dict[str, bytes]] | None = None
        self._artifact_since: float | None = None
        self._artifact_attempts = 0
        self._retry_at = 0.0
        self._backoff = 0.0
        self._flush_waiters = 0
        self._failures = 0  # delivery attempts that failed (connectivity), ever
        self._unreachable_since: float | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self.stats = {"calls": 0, "ops": 0, "dropped": 0, "failed_attempts": 0, "artifact_uploads": 0}

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, client: MlflowClient) -> None:
        self._thread = threading.Thread(target=self._worker, args=(Ctx(client),), name="ranksearch-tracking",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> int:
        """Stop the thread once nothing is left to try now; returns the writes left undelivered."""
        with self.lock:
            self._closing = True
            left = len(self._queue)
            self.lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        return left

    # -- queueing (call with `lock` held) ------------------------------------------------------------
    def enqueue(self, op: Op) -> None:
        self._queue.append(op)
        self.lock.notify_all()

    def enqueue_batch(self, ref: RunRef, metrics: Iterable[tuple[str, float, int, int]] = (),
                      params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
        """Merge into the run's unsent batch (or queue a new one)."""
        metrics = list(metrics)
        if not (metrics or params or tags):
            return
        batch = self._open.get(ref.key)
        if batch is None or batch.sealed or batch.size > 5000:
            batch = Batch(ref)
            self._open[ref.key] = batch
            self.enqueue(batch)
        batch.add(metrics, params, tags)

    def publish(self) -> None:
        """The published files changed: upload a fresh snapshot when due."""
        self._version += 1
        self.lock.notify_all()

    # -- waiting ---------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Push queued writes now; True once all are delivered.

        With `timeout=None` it returns False as soon as a delivery attempt fails (server still
        unreachable); with a timeout it keeps retrying for that many seconds.
        """
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            failures = self._failures
            self._flush_waiters += 1
            self._retry_at = 0.0
            self.lock.notify_all()
            try:
                while self.pending():
                    if not self._thread.is_alive():
                        return False
                    if deadline is None and self._failures > failures:
                        return False
                    wait = 0.5 if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        return False
                    self.lock.wait(min(wait, 0.5))
                return True
            finally:
                self._flush_waiters -= 1

    def pending(self) -> bool:
        return bool(self._queue) or self._version > self._uploaded_version

    @property
    def pending_writes(self) -> int:
        return len(self._queue)

    # -- the thread ------------------------------------------------------------------------------
    def _next_wake(self, now: float) -> float | None:
        if self._retry_at > now:
            return self._retry_at
        urgent = self._flush_waiters > 0 or self._closing
        if self._queue:
            return now if urgent else self._queue[0].created + self.flush_interval
        if self._version > self._uploaded_version:
            return now if urgent else self._last_upload + self.artifact_interval
        return None

    def _worker(self, ctx: Ctx) -> None:
        while True:
            with self.lock:
                while True:
                    now = time.monotonic()
                    if self._closing and (not self.pending() or self._retry_at > now):
                        return
                    wake = self._next_wake(now)
                    if wake is not None and wake <= now:
                        break
                    self.lock.wait(None if wake is None else max(0.01, wake - now))
            try:
                self._drain(ctx)
            except Exception:  # a bug here must not kill delivery for the rest of the search
                log.exception("tracking worker error")
                with self.lock:
                    self._retry_at = time.monotonic() + 1.0

    def _drain(self, ctx: Ctx) -> None:
        while True:
            with self.lock:
                if not self._queue:
                    break
                op = self._queue[0]
                op.sealed = True
                if self._open.get(op.ref.key) is op:
                    del self._open[op.ref.key]
            if op.ref.dead or (op.ref.run_id is None and not isinstance(op, Create)):
                self._pop(op, dropped=f"dropping {op.describe()}: its run could not be created")
                continue
            outcome = self._attempt(ctx, op.run, op.created, op.attempts, op.describe())
            if outcome == "retry":
                op.attempts += 1
                return
            if isinstance(op, Create) and outcome == "dropped":
                op.ref.dead = True
            self._pop(op)
        self._publish(ctx)

    def _publish(self, ctx: Ctx) -> None:
        with self.lock:
            due = self._version > self._uploaded_version and (
                self._flush_waiters or self._closing
                or time.monotonic() >= self._last_upload + self.artifact_interval)
            if not due:
                return
            version = self._version
            snapshot = self._snapshot()
            if self._artifact_since is None:
                self._artifact_since, self._artifact_attempts = time.monotonic(), 0
        if self._rendered is None or self._rendered[0] != version:
            self._rendered = (version, self._render(snapshot))
        files = self._rendered[1]
        outcome = self._attempt(ctx, lambda c: self._upload(c, files), self._artifact_since,
                                self._artifact_attempts, "front artifacts")
        if outcome == "retry":
            self._artifact_attempts += 1
            return
        with self.lock:
            # Delivered, or given up on this version: either way the next change publishes anew.
            self._uploaded_version = max(self._uploaded_version, version)
            self._last_upload = time.monotonic()
            self._artifact_since = None
            self.stats["artifact_uploads"] += outcome == "done"
            self.lock.notify_all()

    def _attempt(self, ctx: Ctx, fn: Callable[[Ctx], None], since: float, attempts: int, what: str) -> str:
        """Run one delivery: 'done', 'retry' (later, with backoff) or 'dropped' (given up)."""
        calls0 = ctx.calls
        try:
            fn(ctx)
        except Exception as exc:
            kind = classify(exc)
            now = time.monotonic()
            age = now - since
            with self.lock:
                self.stats["calls"] += ctx.calls - calls0
                self.stats["failed_attempts"] += 1
                if (kind == "permanent" or age >= self.retry_for
                        or (kind == "transient" and attempts + 1 >= _TRANSIENT_ATTEMPTS)):
                    self.stats["dropped"] += 1
                    log.warning("dropping %s after %d attempt(s) over %.0f s: %s", what, attempts + 1, age, exc)
                    return "dropped"
                self._failures += 1
                if self._unreachable_since is None:
                    self._unreachable_since = now
                    log.warning("MLflow at %s unreachable (%s); queueing writes and retrying",
                                safe_uri(self.uri), exc)
                self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF)
                self._retry_at = now + self._backoff
                self.lock.notify_all()
            return "retry"
        with self.lock:
            self.stats["calls"] += ctx.calls - calls0
            self.stats["dropped"] += ctx.dropped_items
            ctx.dropped_items = 0
            if self._unreachable_since is not None:
                log.warning("MLflow at %s reachable again after %.0f s", safe_uri(self.uri),
                            time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
            self._backoff = 0.0
        return "done"

    def _pop(self, op: Op, dropped: str = "") -> None:
        with self.lock:
            if self._queue and self._queue[0] is op:
                self._queue.popleft()
            self.stats["ops"] += 1
            if dropped:
                self.stats["dropped"] += 1
                log.warning(dropped)
            self.lock.notify_all()
