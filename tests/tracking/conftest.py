"""Servers and a search space for the tracking tests.

The MLflow server keeps its artifacts in the session's moto bucket through
`--artifacts-destination`, so the client needs no S3 keys (proxied artifacts), as in the shared
stack. It can be stopped and started again on the same port and backend, for the outage test.
Server plumbing lives in tests/servers.py.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from servers import MlflowServer, free_port

BUCKET = "ranksearch-test"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, moto_s3, mlflow_template_db):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), s3=moto_s3, bucket=BUCKET,
                          template_db=mlflow_template_db)
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

    def __init__(self, name: str = "tracking_test", options: dict[str, Any] | None = None,
                 constraints: dict[str, Any] | None = None) -> None:
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
        if constraints:
            data["constraints"] = constraints
        self.config = parse_config(data)
        self.name = name
        self.elements = tuple(_Element(n) for n in ("fc1.r0", "fc1.r1", "fc2.r0", "fc2.r1"))
        self.dense_params = 266_610
        self.has_closed_form = True  # a model space (not a user training function)
        self._yaml = yaml

    def to_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_unset=True)

    def to_yaml(self) -> str:
        return self._yaml.safe_dump(self.to_dict(), sort_keys=False)


@pytest.fixture
def local_store(mlflow_template_db, tmp_path):
    """A fresh local store folder, holding a copy of the migrated database as mlflow.db."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(mlflow_template_db, folder / "mlflow.db")
    return folder


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def fake_space():
    return FakeSpace
