"""Which MLflow store, and how to talk to it: URIs, the client, paged queries, error kinds.

MLflow is imported lazily, inside functions: importing ranksearch never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.errors import RanksearchError
from ranksearch.tracking.masking import mask_secrets
from ranksearch.tracking.schema import TAG_PARENT, TAG_TRIAL_ID

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: The default store, relative to the working directory: `<cwd>/mlruns/mlflow.db`, artifacts in
#: `<cwd>/mlruns/mlartifacts`. The service, the CLI and tracking all resolve None to it.
DEFAULT_STORE_DIR = "mlruns"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# MLflow settings that make a down server fail fast; a value the user set is left alone.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # also saves a get_run per terminated run
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class TrackingError(RanksearchError):
    """The tracking store cannot be used (wrong URI, server down at start, unknown search)."""


def load_mlflow() -> None:
    """Import mlflow now, so that its logging set-up is done before callers adjust levels."""
    import mlflow  # noqa: F401


def configure_mlflow_env() -> None:
    """Make MLflow fail fast on a down server (our queue retries) and stay quiet on stdout."""
    for k, v in _MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def resolve_tracking_uri(tracking_uri: str | os.PathLike | None = None) -> str:
    """The store URI to use: the given one, $MLFLOW_TRACKING_URI, or `<cwd>/mlruns/mlflow.db`.

    A plain folder becomes a SQLite file inside it (`<folder>/mlflow.db`, artifacts in
    `<folder>/mlartifacts`), because MLflow 3 keeps its file store in maintenance mode; a folder
    that already holds a file store (numbered experiment folders) is used as one. Nothing is
    created here (see `prepare_local_store`), so read-only lookups leave the disk alone.
    """
    uri = str(tracking_uri) if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        uri = DEFAULT_STORE_DIR
    if "://" in uri and not uri.startswith("file:"):
        return uri
    path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().resolve()
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    if path.is_dir() and any((p / "meta.yaml").is_file() for p in path.iterdir() if p.name.isdigit()):
        return path.as_uri()
    return f"sqlite:///{path / DB_NAME}"


def prepare_local_store(uri: str) -> None:
    """Create the folder of a local SQLite database (SQLite creates the file, not the folder)."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)


def local_artifact_root(uri: str) -> str | None:
    """For a SQLite store: artifacts next to the database, not in the process's working dir."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
    return (db.parent / ARTIFACTS_DIR).as_uri()


def safe_uri(uri: str) -> str:
    """A URI fit for messages and logs (no password)."""
    return mask_secrets(uri)


def client_for(tracking_uri: str | os.PathLike | None = None) -> MlflowClient:
    """An MlflowClient on a store (named as `resolve_tracking_uri` takes it), set to fail fast."""
    configure_mlflow_env()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))


def classify(exc: BaseException) -> str:
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


def search_all(fetch: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paged MLflow query: `fetch(page_token)` returns a page with `.token`."""
    out: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str, *, trial_id: str | None = None,
               where: str = "", page_size: int = 1000) -> list[Any]:
    """The child runs of a search (those of one trial, or those matching `where`), oldest first."""
    filt = f"tags.`{TAG_PARENT}` = '{parent_id}'"
    if trial_id is not None:
        filt += f" and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
    if where:
        filt += f" and {where}"
    return search_all(lambda token: client.search_runs(
        [experiment_id], filter_string=filt, max_results=page_size,
        order_by=["attributes.start_time ASC"], page_token=token))
