"""The write queue in a child process: MLflow's client work off the search driver's GIL.

Sending a trial to MLflow costs the client tens of milliseconds of Python CPU (SQLAlchemy on a
local SQLite store, HTTP and JSON against a server) plus the rendering of the front's pictures.
In the driver that CPU competes with Ray Tune's event loop for one interpreter lock, so it slows
the whole search once trials are short (`python -m ranksearch.bench.scale`). `ProcessDelivery`
keeps `Delivery`'s interface and semantics (ordering, batching, retries, outage tolerance) but
runs the queue's worker in a child process at a lower scheduling priority: the driver only
pickles each write into a pipe (tens of microseconds).

Protocol (one duplex pipe, messages are tuples):

- driver -> child: ("op", op), ("batch", key, run_id, metrics, params, tags), ("publish",),
  ("snapshot", request_id, snapshot), ("flush", request_id, timeout), ("close", timeout);
- child -> driver: ("run_id", key, run_id), ("stats", stats, pending), ("want_snapshot", id),
  ("flushed", request_id, ok), ("closed", left).

Run references are matched by key on both sides; the driver learns each run's id when the child
has created it (as with the in-process queue, run ids arrive asynchronously). The front snapshot
is taken by the driver when the child asks for it (under the tracker's lock, as before); the
child renders and uploads it.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ranksearch.tracking.delivery import Ctx, Delivery, Op, RunRef

log = logging.getLogger("ranksearch.tracking")

#: How much lower the child's CPU priority is than the driver's (POSIX nice increment;
#: $RANKSEARCH_TRACKING_NICE overrides it). Where CPU is scarce the MLflow copy then lags
#: behind the search rather than slowing it, and catches up as soon as CPU is free.
CHILD_NICE = 19


class ProcessDelivery:
    """`Delivery`'s interface with its worker in a child process (see the module docstring)."""

    def __init__(self, *, uri: str, flush_interval: float, retry_for: float, artifact_interval: float,
                 snapshot: Callable[[], Any], render: Callable[[Any], dict[str, bytes]],
                 upload: Callable[[Ctx, dict[str, bytes]], None]) -> None:
        self.uri = uri
        self.settings = {"uri": uri, "flush_interval": float(flush_interval), "retry_for": float(retry_for),
                         "artifact_interval": float(artifact_interval)}
        self._snapshot = snapshot
        self._render, self._upload = render, upload  # module-level callables: they go to the child
        self.lock = threading.Condition()
        self.stats: dict[str, Any] = {"calls": 0, "ops": 0, "dropped": 0, "failed_attempts": 0,
                                      "artifact_uploads": 0, "process": True}
        self._refs: dict[str, RunRef] = {}
        self._pending = 0
        self._replies: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._conn: Any = None
        self._proc: Any = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._early: list[tuple] = []  # queued before the child started
        self._dead = False

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._proc is not None

    def start(self, client: Any = None) -> None:
        """Start the child (it makes its own MLflow client for `uri`).

        A plain `python -m ranksearch.tracking.child FD` subprocess on one end of a socket pair,
        not `multiprocessing`'s spawn: spawn re-runs the caller's main script in the child,
        which breaks every user script without an `if __name__ == "__main__"` guard.
        """
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen([sys.executable, "-m", "ranksearch.tracking.child", str(theirs.fileno())],
                                      pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        conn = Connection(ours.detach())
        conn.send((self.settings, self._render, self._upload))
        with self._send_lock:
            for message in self._early:
                conn.send(message)
            self._early.clear()
            self._conn = conn
        self._reader = threading.Thread(target=self._read, name="ranksearch-tracking-reader", daemon=True)
        self._reader.start()

    def close(self, timeout: float = 5.0) -> int:
        """Stop the child once nothing is left to try now; returns the writes left undelivered."""
        if self._proc is None:
            return 0
        import subprocess

        left = self._request("close", timeout, wait=timeout + 10.0)
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
        return int(left) if isinstance(left, int) and not isinstance(left, bool) else self._pending

    # -- queueing (call with `lock` held, like Delivery) -----------------------------------------
    def enqueue(self, op: Op) -> None:
        self._refs.setdefault(op.ref.key, op.ref)
        self._send(("op", op))

    def enqueue_batch(self, ref: RunRef, metrics: Iterable[tuple[str, float, int, int]] = (),
                      params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
        metrics = list(metrics)
        if not (metrics or params or tags):
            return
        self._refs.setdefault(ref.key, ref)
        self._send(("batch", ref.key, ref.run_id, metrics, dict(params or {}), dict(tags or {})))

    def publish(self) -> None:
        self._send(("publish",))

    # -- waiting ----------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Push queued writes now; True once all are delivered (Delivery.flush's contract)."""
        if self._proc is None:
            return True
        wait = None if timeout is None else timeout + 10.0
        return bool(self._request("flush", timeout, wait=wait))

    def pending(self) -> bool:
        return self._pending > 0

    @property
    def pending_writes(self) -> int:
        return self._pending

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, message: tuple) -> None:
        if self._dead:
            return
        try:
            with self._send_lock:
                if self._conn is None:
                    self._early.append(message)
                    return
                self._conn.send(message)
        except (OSError, ValueError, BrokenPipeError) as exc:
            self._died(f"cannot reach the tracking process: {exc}")

    def _request(self, kind: str, timeout: float | None, *, wait: float | None) -> Any:
        rid = next(self._ids)
        self._send((kind, rid, timeout))
        deadline = None if wait is None else time.monotonic() + wait
        with self.lock:
            while rid not in self._replies and not self._dead:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.lock.wait(0.5 if remaining is None else min(0.5, remaining))
            return self._replies.pop(rid, False)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                code = self._proc.poll() if self._proc is not None else None
                if code not in (None, 0):
                    self._died(f"the tracking process exited with code {code}")
                with self.lock:
                    self._dead = True
                    self.lock.notify_all()
                return
            kind = message[0]
            if kind == "run_id":
                ref = self._refs.get(message[1])
                if ref is not None:
                    ref.run_id = message[2]
            elif kind == "stats":
                with self.lock:
                    self.stats.update(message[1])
                    self._pending = int(message[2])
                    self.lock.notify_all()
            elif kind == "want_snapshot":
                with self.lock:  # the tracker's state is read under its lock, as in-process
                    snapshot = self._snapshot()
                self._send(("snapshot", message[1], snapshot))
            elif kind in ("flushed", "closed"):
                with self.lock:
                    self._replies[message[1]] = message[2]
                    self.lock.notify_all()

    def _died(self, why: str) -> None:
        if not self._dead:
            log.error("%s; tracking writes from here on are lost (the search itself goes on, and its "
                      "record keeps every trial)", why)
        self._dead = True


# -- the child ------------------------------------------------------------------------------------
def _with_run_ids(snapshot: Any, refs: dict[str, RunRef]) -> Any:
    """Fill in the run ids the driver had not heard of yet when it took the snapshot (they
    travel back asynchronously); a trial's run is keyed by its trial id."""
    if not isinstance(snapshot, dict):
        return snapshot
    rows = list(snapshot.get("points") or []) + list((snapshot.get("front_doc") or {}).get("front") or [])
    for row in rows:
        if isinstance(row, dict) and not row.get("run_id"):
            ref = refs.get(str(row.get("trial_id")))
            if ref is not None and ref.run_id:
                row["run_id"] = ref.run_id
    return snapshot


def _child_main(conn: Any, settings: dict[str, Any], render: Callable, upload: Callable) -> None:
    """The child process: one `Delivery` with its worker thread, fed from the pipe."""
    import contextlib
    import signal

    with contextlib.suppress(OSError, ValueError):
        os.nice(int(os.environ.get("RANKSEARCH_TRACKING_NICE", CHILD_NICE)))
    # Ctrl-C reaches the whole process group: the driver handles it and then closes this
    # process in order (finishing the runs), so the child must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ranksearch.tracking.store import client_for, configure_mlflow_env

    configure_mlflow_env()
    snapshots: dict[int, Any] = {}
    waiting = threading.Condition()
    ids = itertools.count(1)
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock, contextlib.suppress(OSError, BrokenPipeError):
            conn.send(message)

    def snapshot() -> Any:
        # Called by the worker under the delivery lock: ask the driver, wait for its answer.
        rid = next(ids)
        send(("want_snapshot", rid))
        deadline = time.monotonic() + 60.0
        delivery.lock.release()
        try:
            with waiting:
                while rid not in snapshots and time.monotonic() < deadline:
                    waiting.wait(0.5)
                snap = snapshots.pop(rid, None)
        finally:
            delivery.lock.acquire()
        with refs_lock:
            known = dict(refs)
        return _with_run_ids(snap, known)

    def render_or_skip(snap: Any) -> dict[str, bytes]:
        return render(snap) if snap is not None else {}

    delivery = Delivery(uri=settings["uri"], flush_interval=settings["flush_interval"],
                        retry_for=settings["retry_for"], artifact_interval=settings["artifact_interval"],
                        snapshot=snapshot, render=render_or_skip, upload=upload)
    refs: dict[str, RunRef] = {}
    reported: dict[str, str | None] = {}

    refs_lock = threading.Lock()  # the main loop adds refs while the reporter reads them

    def ref_for(key: str, run_id: str | None) -> RunRef:
        with refs_lock:
            ref = refs.get(key)
            if ref is None:
                ref = refs[key] = RunRef(key, run_id)
        if ref.run_id is None and run_id is not None:
            ref.run_id = run_id
        return ref

    def report() -> None:
        # Run ids the driver does not know yet, and the queue's state.
        with refs_lock:
            items = list(refs.items())
        for key, ref in items:
            if ref.run_id is not None and reported.get(key) != ref.run_id:
                reported[key] = ref.run_id
                send(("run_id", key, ref.run_id))
        with delivery.lock:
            stats, pending = dict(delivery.stats), delivery.pending_writes
        send(("stats", stats, pending))

    def reporter() -> None:
        while not stop.is_set():
            try:
                report()
            except Exception:  # a reporting bug must not stop the reports that follow
                log.exception("tracking process: report failed")
            stop.wait(0.2)

    stop = threading.Event()
    delivery.start(client_for(settings["uri"]))
    threading.Thread(target=reporter, name="ranksearch-tracking-report", daemon=True).start()
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                # The driver died without closing us. Stop at once: its record has every trial,
                # and a resumed driver writes what is missing; writing on here could race it
                # into a second child run for the same trial.
                return
            kind = message[0]
            if kind == "op":
                op = message[1]
                op.ref = ref_for(op.ref.key, op.ref.run_id)
                with delivery.lock:
                    delivery.enqueue(op)
            elif kind == "batch":
                _, key, run_id, metrics, params, tags = message
                with delivery.lock:
                    delivery.enqueue_batch(ref_for(key, run_id), metrics, params, tags)
            elif kind == "publish":
                with delivery.lock:
                    delivery.publish()
            elif kind == "snapshot":
                with waiting:
                    snapshots[message[1]] = message[2]
                    waiting.notify_all()
            elif kind == "flush":
                rid, timeout = message[1], message[2]

                def do_flush(rid: int = rid, timeout: float | None = timeout) -> None:
                    ok = delivery.flush(timeout=timeout)
                    report()
                    send(("flushed", rid, ok))

                threading.Thread(target=do_flush, daemon=True).start()  # keep reading meanwhile
            elif kind == "close":
                left = delivery.close(timeout=float(message[2] or 5.0))
                report()
                send(("closed", message[1], left))
                return
    finally:
        stop.set()


def serve(fd: int) -> None:
    """The child's entry (`python -m ranksearch.tracking.child`): read the settings, then serve the pipe."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    settings, render, upload = conn.recv()
    _child_main(conn, settings, render, upload)
