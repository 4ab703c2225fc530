"""Real servers on loopback for the tracking tests: moto's S3 and an MLflow tracking server.

The MLflow server keeps its artifacts in the moto bucket through `--artifacts-destination`, so
the client needs no S3 keys (proxied artifacts), as in the shared stack. The server can be
stopped and started again on the same port and backend, for the outage test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ranksearch.bench.servers import free_port, stop_group, wait_http

BIN = Path(sys.executable).parent
BUCKET = "ranksearch-test"
S3_KEYS = {  # dummy keys for moto, given to the MLflow server only (the client needs none)
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """moto's S3 server on a free loopback port, with one bucket."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/", proc, log, timeout=30)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, "bucket": BUCKET, "client": s3}
    finally:
        stop_group(proc, timeout=10)


class MlflowServer:
    """An `mlflow server` process that can be stopped and restarted on the same port and DB."""

    def __init__(self, workdir: Path, s3_endpoint: str, bucket: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "mlflow.db"
        self.s3_endpoint = s3_endpoint
        self.artifacts = f"s3://{bucket}/mlartifacts"
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "mlflow-server.log"

    def start(self, timeout: float = 90.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(S3_KEYS, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                   MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint)
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.db}",
               "--artifacts-destination", self.artifacts, "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir, start_new_session=True)
        wait_http(f"{self.url}/health", self.proc, self.log, timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=10)
            self.proc = None

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, moto_s3, _migrated_db):
    import shutil

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), moto_s3["endpoint"], moto_s3["bucket"])
    shutil.copy(_migrated_db, server.db)  # skip the schema migrations at server start
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(mlflow_server):
    """The session server, started again if an earlier test left it stopped."""
    if mlflow_server.proc is None or not mlflow_server.is_up():
        mlflow_server.stop()
        mlflow_server.start()
    return mlflow_server


# -- a search space that needs no model code --------------------------------------------------------
class _Element:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeSpace:
    """A real SpaceConfig with a fixed rank layout: enough for tracking, independent of models."""

    def __init__(self, name: str = "tracking_test", options: dict[str, Any] | None = None) -> None:
        import yaml

        from ranksearch.space import parse_config

        data = {
            "name": name, "seed": 7,
            "model": {"name": "lenet300", "format": "tr", "layers": {"fc1": None, "fc2": None}},
            "data": {"dataset": "digits"},
            "training": {"epochs": 3},
            "objectives": [{"name": "val_accuracy"}, {"name": "compression_ratio"}],
            "strategy": {"name": "random", "budget": 12, "options": options or {}},
        }
        self.config = parse_config(data)
        self.name = name
        self.elements = tuple(_Element(n) for n in ("fc1.r0", "fc1.r1", "fc2.r0", "fc2.r1"))
        self.dense_params = 266_610
        self._yaml = yaml

    def to_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_unset=True)

    def to_yaml(self) -> str:
        return self._yaml.safe_dump(self.to_dict(), sort_keys=False)


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with its schema migrated (the migrations take seconds)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template-db") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def local_store(_migrated_db, tmp_path):
    """A fresh local store folder, holding a copy of the migrated database as mlflow.db."""
    import shutil

    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return folder


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def fake_space():
    return FakeSpace
