"""Real servers on loopback for the tests: moto's S3 and MLflow tracking servers.

One module for every test folder (tracking, dashboard, tune): free ports, readiness and process
cleanup come from `ranksearch.bench.servers` (each server runs in its own session, so stopping
its process group stops the children it spawned, MLflow's workers included). The fixtures at
the bottom are registered for the whole suite by tests/conftest.py.

- `MotoS3`: moto's server mode, a real S3 API over HTTP; one per test session, a bucket per use.
- `MlflowServer`: `mlflow server` over one SQLite file, artifacts in an S3 bucket (proxied: the
  client needs no keys, as in the shared stack) or a local folder. It can be stopped and started
  again on the same port and database, for outage tests.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ranksearch.bench.servers import ServerProcess, free_port, stop_group, wait_http

__all__ = ["BIN", "S3_KEYS", "MlflowServer", "MotoS3", "free_port", "migrated_db", "stop_group", "wait_http"]

BIN = Path(sys.executable).parent
#: Dummy keys moto accepts; given to servers (and to tests that talk S3 themselves), never real.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoS3:
    """moto's S3 server on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._buckets: set[str] = set()
        self._server = ServerProcess([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     health=f"{self.endpoint}/moto-api/", log=workdir / "moto.log")

    def start(self) -> None:
        self._server.start(timeout=30)

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_KEYS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, name: str) -> str:
        """`name`, created on first use."""
        if name not in self._buckets:
            self.client().create_bucket(Bucket=name)
            self._buckets.add(name)
        return name


class MlflowServer:
    """`mlflow server` on a fixed loopback port over one SQLite file (ENV.md: one worker, job
    execution off); stop() and start() again keep the port, the database and the artifacts.

    The database is `db` (default `workdir/mlflow.db`, a copy of `template_db` when given);
    artifacts go to `bucket` on `s3`, else to the `artifacts` folder (default `workdir/artifacts`).
    """

    def __init__(self, workdir: Path, *, db: Path | None = None, template_db: Path | None = None,
                 s3: MotoS3 | None = None, bucket: str | None = None, artifacts: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = self.uri = f"http://127.0.0.1:{self.port}"
        self.db = db or workdir / "mlflow.db"
        if template_db is not None:
            shutil.copy(template_db, self.db)  # skips the schema migrations at server start
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        if s3 is not None:
            self.artifacts = f"s3://{s3.bucket(bucket or 'mlflow')}/mlartifacts"
            env.update(S3_KEYS, MLFLOW_S3_ENDPOINT_URL=s3.endpoint)
        else:
            self.artifacts = artifacts or str(workdir / "artifacts")
        self.log = workdir / "mlflow-server.log"
        self._server = ServerProcess(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.db}",
             "--artifacts-destination", self.artifacts, "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], health=f"{self.url}/health", log=self.log, env=env, cwd=workdir)

    @property
    def proc(self) -> Any:
        return self._server.proc

    def start(self, timeout: float = 90.0) -> None:
        self._server.start(timeout=timeout)

    def stop(self) -> None:
        self._server.stop()

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False


def migrated_db(path: Path) -> Path:
    """An empty MLflow SQLite database with its schema migrated (the migrations take seconds)."""
    from ranksearch.tracking import client_for

    path.parent.mkdir(parents=True, exist_ok=True)
    client_for(f"sqlite:///{path}").search_experiments()
    return path


# -- fixtures (registered by tests/conftest.py) -----------------------------------------------------
@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """The session's moto S3 server (tests that use it are marked `s3`)."""
    s3 = MotoS3(tmp_path_factory.mktemp("moto"))
    s3.start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database to copy (a fresh store in milliseconds)."""
    return migrated_db(tmp_path_factory.mktemp("template-db") / "mlflow.db")
