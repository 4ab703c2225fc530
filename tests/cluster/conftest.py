"""The local multi-node stack for the cluster tests, started for real with cluster/local/stack.py.

One stack per session (a Ray head with no CPUs, two worker nodes of 1 CPU each, an MLflow
server, moto's S3), stopped at the end by the PIDs it recorded. Searches go in through the
command line (`ranksearch submit`, `ranksearch jobs ...`) in subprocesses, as a user's would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK_PY = ROOT / "cluster" / "local" / "stack.py"
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"


def load_stack_module() -> Any:
    spec = importlib.util.spec_from_file_location("ranksearch_local_stack", STACK_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_space(path: Path, *, epochs: int, budget: int, batch_size: int = 64, workers: int = 2,
                hyperparameters: dict[str, Any] | None = None) -> Path:
    """The quickstart digits space, made as small or as slow as a test needs (with a
    `hyperparameters:` block when given)."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["training"].update(epochs=epochs, batch_size=batch_size)
    if hyperparameters:
        data["hyperparameters"] = hyperparameters
    data["strategy"]["budget"] = budget
    data["resources"] = {"cpus_per_trial": 1, "max_concurrent": workers}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class LocalStack:
    """A running stack and what the tests do with it."""

    def __init__(self, info: dict[str, Any], stack: Any) -> None:
        self.info = info
        self.stack = stack
        self.dashboard: str = info["ray_dashboard"]
        self.storage: str = info["storage"]
        self.mlflow: str = info["mlflow"]
        self.s3_endpoint: str = info["s3_endpoint"]
        self.bucket: str = info["bucket"]
        self.token = Path(info["auth_token_path"]).read_text().strip()
        self.keys = stack.s3_keys()

    @property
    def env(self) -> dict[str, str]:
        """A user's shell for this cluster: the token by file, never by value."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
        env.update(self.keys, RAY_ADDRESS=self.dashboard, RAY_AUTH_TOKEN_PATH=self.info["auth_token_path"],
                   MLFLOW_TRACKING_URI=self.mlflow, AWS_ENDPOINT_URL_S3=self.s3_endpoint,
                   COLUMNS="200", PYTHONUNBUFFERED="1")
        return env

    def secrets(self) -> list[str]:
        return [self.token, self.keys["AWS_SECRET_ACCESS_KEY"]]

    def cli(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "ranksearch.cli", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ranksearch {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    # -- cluster state -------------------------------------------------------------------------------
    def _get(self, path: str) -> Any:
        req = urllib.request.Request(f"{self.dashboard}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def worker_nodes(self) -> dict[str, str]:
        """Alive worker nodes: name (w1, w2) -> Ray node id."""
        out = {}
        for n in self.stack.nodes():
            for res in n.get("resources_total") or {}:
                if res.startswith("node_w"):
                    out[res.removeprefix("node_")] = n["node_id"]
        return out

    def trainable_actors(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Tune trainable actors the cluster has run, dead ones too (pid, node_id, state, job_id),
        only those of one submitted job when `job_id` is given."""
        query = urllib.parse.urlencode({"limit": 10000, "detail": 1, "filter_keys": "class_name",
                                        "filter_predicates": "=", "filter_values": "ImplicitFunc"})
        rows = self._get(f"/api/v0/actors?{query}")["data"]["result"]["result"]
        if job_id is not None:
            driver_job = self.job(job_id)["job_id"]
            rows = [a for a in rows if a.get("job_id") == driver_job]
        return rows

    def job(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/jobs/{job_id}")

    def wait_job(self, job_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.job(job_id)["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(1.0)
        return status

    def logs(self, job_id: str) -> str:
        return self._get(f"/api/jobs/{job_id}/logs")["logs"]

    # -- storage and tracking ------------------------------------------------------------------------
    @property
    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                            aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"])

    def search_prefix(self, name: str) -> str:
        return f"searches/{name}/"

    def keys_under(self, prefix: str) -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.s3.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def read_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def search_state(self, name: str) -> dict[str, Any] | None:
        """The search's record as `ranksearch resume` reads it (header + event log on S3), as a
        plain dict: status, parent_run_id, order, trials; None before it exists."""
        import os

        from ranksearch.tune.state import SearchState
        from ranksearch.tune.storage import Storage

        saved = {k: os.environ.get(k) for k in self.keys}
        os.environ.update(self.keys)
        try:
            state = SearchState.load(Storage.parse(self.storage), name)
        except Exception:  # noqa: BLE001 - not written yet
            return None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return {"status": state.status, "parent_run_id": state.parent_run_id, "order": list(state.order),
                "trials": {tid: rec.to_dict() for tid, rec in state.trials.items()},
                "settings": state.settings}

    def tune_trials(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """Per ranksearch trial id: Tune's record of each attempt (its last result and failures),
        from every experiment-state file the search's drivers left on S3."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key in sorted(k for k in self.keys_under(self.search_prefix(name))
                          if k.rsplit("/", 1)[-1].startswith("experiment_state-")):
            for _, meta in self.read_json(key)["trial_data"]:
                meta = json.loads(meta) if isinstance(meta, str) else meta
                last = meta.get("last_result") or {}
                rs_id = (last.get("config") or {}).get("trial_id")
                if rs_id:
                    out.setdefault(rs_id, {})[last["trial_id"]] = {
                        "pid": last.get("pid"), "num_failures": meta.get("num_failures", 0),
                        "final": bool(last.get("rs_final")), "resumed_from": last.get("rs_resumed_from")}
        return {k: list(v.values()) for k, v in out.items()}

    def mlflow_client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.mlflow)

    def child_runs(self, parent_run_id: str) -> list[Any]:
        client = self.mlflow_client()
        parent = client.get_run(parent_run_id)
        return client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                                  max_results=1000)

    # -- node loss -----------------------------------------------------------------------------------
    def kill_worker(self, k: int) -> int:
        return int(self.stack.kill_worker(k))

    def start_worker(self, k: int) -> None:
        self.stack.start_worker(k, timeout=120)


@pytest.fixture(scope="session")
def local_stack():
    """The whole stack on loopback; stopped (by PID) and removed at the end of the session."""
    root = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # short: Ray's socket paths live below
    module = load_stack_module()
    try:
        proc = subprocess.run([sys.executable, str(STACK_PY), "start", "--dir", str(root), "--json",
                               "--timeout", "150"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"the local stack did not start:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        yield LocalStack(info, module.Stack(root))
    finally:
        stack = module.Stack(root)  # as recorded on disk, workers restarted by tests included
        if stack.state.get("services"):
            stack.stop(quiet=True)
        shutil.rmtree(root, ignore_errors=True)
