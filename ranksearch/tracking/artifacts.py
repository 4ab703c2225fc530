"""Files and models in MLflow: downloads, off-thread uploads to runs that may not exist yet, and
the model registry. Generic (names, paths, bytes, callables): no service types."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.tracking.store import TrackingError, client_for, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


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


