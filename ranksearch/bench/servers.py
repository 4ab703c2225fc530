"""Servers on loopback for benchmarks and tests: free ports, readiness, stopping process groups.

Every server is started in its own session (`start_new_session=True`), so stopping its process
group also stops the children it spawned (MLflow's gunicorn workers, Ray's helpers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process we started in its own session, and its children: `sig`, then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, log: Path | None = None,
              timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: server exited early:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{tail}")


class ServerProcess:
    """A server started in its own session, so stopping it stops the children it spawned."""

    def __init__(self, cmd: Sequence[str], *, health: str, log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.cmd, self.health, self.log, self.env, self.cwd = list(cmd), health, log, env, cwd
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        wait_http(self.health, self.proc, self.log, timeout)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, timeout=10)
