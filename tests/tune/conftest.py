"""Shared pieces of the execution tests: one Ray runtime per session, tiny spaces, real servers.

Ray starts once (4-7 s) and every in-process search of the session reuses it; tests that
need a driver of their own (kill and resume) run the CLI in a subprocess instead. Servers
(moto's S3, MLflow) run for real on loopback ports.
"""

from __future__ import annotations

import os

import pytest
from servers import S3_KEYS
from tune_helpers import HERE

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
def s3_server(moto_s3):
    """The session's moto S3 server with this folder's bucket; AWS variables point at it."""
    old = {k: os.environ.get(k) for k in S3_KEYS}
    os.environ.update(S3_KEYS)
    try:
        yield {"endpoint": moto_s3.endpoint, "bucket": moto_s3.bucket("rs-tune"), "client": moto_s3.client()}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
