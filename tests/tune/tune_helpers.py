"""Helpers of the execution tests: tiny spaces, loopback ports, servers we start and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ranksearch.bench.servers import free_port, stop_group, wait_http  # noqa: F401 (the tests' imports)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"
BIN = Path(sys.executable).parent


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


class MlflowServer:
    """`mlflow server` on a fixed loopback port that can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = root / "mlflow-server.log"

    def start(self) -> None:
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        wait_http(f"{self.uri}/health", self.proc, self.log, timeout=90)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None
