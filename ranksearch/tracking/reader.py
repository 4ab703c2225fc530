"""Reading searches back from MLflow: for `front`, `best`, the cost report and the dashboard.

Nothing here computes a front for a search the tracker wrote: `load_front` reads the
`pareto_optimal` tags (kept current by the tracker from the driver's front archive), then the
`pareto/front.json` snapshot. Only a search with neither (written before either existed) gets
its front built from its stored trials, by `archive.front_of`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.objectives import finite
from ranksearch.tracking import schema as S
from ranksearch.tracking.store import (
    TrackingError,
    child_runs,
    classify,
    client_for,
    resolve_tracking_uri,
    safe_uri,
    search_all,
)
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient


def find_search(name_or_run_id: str, tracking_uri: str | None = None) -> str:
    """The parent run id of a search: a run id (a trial's id leads to its search), or the latest
    search whose run name or experiment name matches."""
    from mlflow.entities import ViewType

    client = client_for(tracking_uri)
    key = str(name_or_run_id).strip()
    if re.fullmatch(r"[0-9a-f]{32}", key):
        try:
            run = client.get_run(key)
            return run.data.tags.get(S.TAG_PARENT) or run.info.run_id
        except Exception as exc:
            if classify(exc) != "permanent":
                where = safe_uri(resolve_tracking_uri(tracking_uri))
                raise TrackingError(f"cannot reach MLflow at {where}: {exc}") from exc
    experiments = search_all(lambda t: client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=t))
    by_id = {e.experiment_id: e.name for e in experiments}
    searches = search_all(lambda t: client.search_runs(
        list(by_id), filter_string=f"tags.`{S.TAG_KIND}` = '{S.KIND_SEARCH}'", max_results=1000,
        order_by=["attributes.start_time DESC"], page_token=t)) if by_id else []
    hits = [r for r in searches if r.info.run_name == key or by_id.get(r.info.experiment_id) == key]
    if not hits:
        known = sorted({r.info.run_name for r in searches[:20]} | {by_id[r.info.experiment_id] for r in searches})
        hint = f"; known searches: {', '.join(known[:20])}" if known else "; the store holds no search yet"
        where = safe_uri(resolve_tracking_uri(tracking_uri))
        raise TrackingError(f"no search named {key!r} in {where}{hint}")
    return max(hits, key=lambda r: r.info.start_time or 0).info.run_id


def _trial_runs(client: MlflowClient, parent_run_id: str, where: str = "") -> tuple[Any, list[Any]]:
    parent = client.get_run(parent_run_id)
    return parent, child_runs(client, parent.info.experiment_id, parent_run_id, where=where)


def load_results(parent_run_id: str, tracking_uri: str | None = None, *,
                 client: MlflowClient | None = None) -> dict[str, TrialResult]:
    """Finished trials of a search, by trial id, as TrialResults (ok, failed and pruned)."""
    _, runs = _trial_runs(client or client_for(tracking_uri), parent_run_id)
    return dict(S.finished_results(S.trial_row(r) for r in runs))


def load_trials(parent_run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every trial of a search (finished or not) as plain dicts, oldest first (see
    `schema.trial_row`; `pareto_optimal` is a plain bool here)."""
    _, runs = _trial_runs(client_for(tracking_uri), parent_run_id)
    rows = []
    for run in runs:
        row = S.trial_row(run)
        row.pop("result")
        row["pareto_optimal"] = bool(row["pareto_optimal"])
        rows.append(row)
    return rows


def load_front(parent_run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The search's Pareto front as the tracker wrote it (trial_id, run_id, ranks, status,
    metrics, fidelity, info per trial).

    Read from the trials tagged `pareto_optimal=true` (current while a search runs), else from
    the `pareto/front.json` snapshot; a search with neither (logged before either existed) has
    its front built from its stored trials by `archive.front_of`.
    """
    client = client_for(tracking_uri)
    parent, tagged = _trial_runs(client, parent_run_id, where=f"tags.`{S.TAG_PARETO}` = 'true'")
    objectives = S.search_objectives(parent.data.tags, parent.data.params)
    if tagged:
        rows = [S.trial_row(r) for r in tagged]
        return [S.front_row(r["trial_id"], r["run_id"], r["result"], objectives.metrics(r["result"]))
                for r in rows if r["result"] is not None]
    doc = download_json(client, parent_run_id, S.FRONT_JSON)
    if isinstance(doc, dict) and isinstance(doc.get("front"), list):
        return doc["front"]
    return front_from_runs(objectives, child_runs(client, parent.info.experiment_id, parent_run_id))


def front_from_runs(objectives: Any, runs: Sequence[Any]) -> list[dict[str, Any]]:
    """The front of stored trials that carry no tracker front (old searches): `archive.front_of`."""
    from ranksearch.archive import front_of

    rows = {r["trial_id"]: r for r in (S.trial_row(run) for run in runs)}
    ids = front_of(objectives, S.finished_results(rows.values()))
    return [S.front_row(t, rows[t]["run_id"], rows[t]["result"], objectives.metrics(rows[t]["result"]))
            for t in ids]


def load_search_cost(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """A search's cost: samples_consumed, epoch_equivalents (None when N_train_full was not
    known), n_train_full and finished_trials, from the parent run's latest metrics."""
    client = client_for(tracking_uri)
    run = client.get_run(parent_run_id)
    metrics, params = run.data.metrics, run.data.params
    n_train = finite(params.get(S.PARAM_N_TRAIN))
    steps = [m.step for m in client.get_metric_history(parent_run_id, S.METRIC_SAMPLES)]
    return {
        "samples_consumed": int(metrics[S.METRIC_SAMPLES]) if S.METRIC_SAMPLES in metrics else None,
        "epoch_equivalents": metrics.get(S.METRIC_EPOCHS),
        "n_train_full": int(n_train) if n_train else None,
        "finished_trials": max(steps) if steps else 0,
    }


def download_json(client: MlflowClient, run_id: str, path: str) -> Any:
    """A JSON artifact of a run, or None when it is missing or unreadable."""
    with tempfile.TemporaryDirectory(prefix="ranksearch-dl-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
            return json.loads(Path(local).read_text())
        except Exception:  # noqa: BLE001 - missing artifact: the caller falls back
            return None


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

        return search_all(lambda t: self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=t))

    def experiment_name(self, experiment_id: str) -> str:
        return self.client.get_experiment(experiment_id).name

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str, *,
                    order_by: list[str] | None = None, page_size: int = 1000) -> list[Any]:
        """All runs that match, read page by page (`search_runs` pages of `page_size`)."""
        return search_all(lambda t: self.client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=page_size, order_by=order_by,
            page_token=t))

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> list[Any]:
        """Every logged value of one metric (objects with `step`, `timestamp`, `value`)."""
        return list(self.client.get_metric_history(run_id, key))

    def read_text(self, run_id: str, path: str) -> str:
        """One artifact of a run as text; raises MLflow's error when it is missing."""
        with tempfile.TemporaryDirectory(prefix="ranksearch-read-") as tmp:
            return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()
