"""Helpers of the execution tests: tiny spaces and MLflow look-ups; the loopback servers (MLflow,
S3, free ports, stopping process groups) come from tests/servers.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from servers import BIN, MlflowServer, free_port, stop_group, wait_http  # noqa: F401 (the tests' imports)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"


def mlflow_client(uri: str):
    """A client for a search's tracking URI as the service resolves it."""
    from mlflow import MlflowClient

    from ranksearch.tracking import resolve_tracking_uri

    return MlflowClient(resolve_tracking_uri(uri))


def child_runs(client, parent_run_id: str) -> list:
    """Every trial run of a search (the parent's children)."""
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000)


def write_space(path: Path, *, epochs: int = 1, budget: int = 4, model: dict | None = None,
                training: dict | None = None, **top: Any) -> Path:
    """The quickstart space made small: fewer epochs and trials, optionally another model."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["training"]["epochs"] = epochs
    data["training"].update(training or {})
    data["strategy"]["budget"] = budget
    if model:
        data["model"].update(model)
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
