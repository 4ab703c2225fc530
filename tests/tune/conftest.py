"""Shared pieces of the execution tests: one Ray runtime per session, tiny spaces, real servers.

Ray starts once (4-7 s) and every in-process search of the session reuses it; tests that
need a driver of their own (kill and resume) run the CLI in a subprocess instead. Servers
(moto's S3, MLflow) run for real on loopback ports.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from tune_helpers import BIN, HERE, free_port, stop_group, wait_http

# Trials import the failing models of faulty.py by name, in Ray workers. Workers inherit the
# environment Ray starts with, and Ray starts after collection (whichever test starts it): put
# this folder on PYTHONPATH now.
if str(HERE) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session")
def ray_runtime():
    """The session's Ray runtime (started here unless something already started one)."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tracking(tmp_path_factory) -> str:
    """One MLflow store (SQLite) for the session's in-process searches: created once (~3 s)."""
    return str(tmp_path_factory.mktemp("mlruns"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a loopback port with one bucket; AWS variables point at it."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        wait_http(f"{endpoint}/moto-api/", proc, log, timeout=30)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="rs-tune")
        yield {"endpoint": endpoint, "bucket": "rs-tune", "client": client}
    finally:
        stop_group(proc)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
