"""Production-run logging: one MLflow run written directly, outside a search."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ranksearch.tracking.delivery import now_ms
from ranksearch.tracking.store import client_for, local_artifact_root, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient


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
            root = local_artifact_root(resolve_tracking_uri(self.tracking_uri))
            exp_id = client.create_experiment(experiment, artifact_location=root)
        else:
            exp_id = exp.experiment_id
        run = client.create_run(exp_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in (params or {}).items()])
        return self.run_id

    def log_metrics(self, rows: Iterable[tuple[str, float, int]]) -> None:
        """(name, value, step) rows, all with one time stamp, sent in batches."""
        from mlflow.entities import Metric

        client, run_id = self._started("log_metrics")
        ts = now_ms()
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
