#!/usr/bin/env python3
"""A whole ranksearch stack on loopback, for development and tests.

    python cluster/local/stack.py start [--dir DIR] [--workers 2]   # prints where each service listens
    python cluster/local/stack.py status --dir DIR
    python cluster/local/stack.py kill-worker 2 --dir DIR           # SIGKILL one worker node
    python cluster/local/stack.py start-worker 2 --dir DIR          # bring it back
    python cluster/local/stack.py stop --dir DIR

What runs (every service bound to 127.0.0.1, every port picked free at start):

- an S3-compatible server (moto's server mode) with one bucket, `ranksearch`;
- an MLflow tracking server: SQLite backend in DIR, artifacts proxied to s3://ranksearch/mlartifacts;
- a Ray head (no CPUs: it runs job drivers only, as a real head node should) and N worker
  nodes with 1 CPU each, each its own raylet with its own temp dir and agent ports, and a
  custom resource `node_wK` that names it. Token authentication is on: the token lives in
  DIR/auth_token (mode 0600) and is never printed.

Every process is started in its own session and recorded in DIR/stack.json by PID; `stop`
ends exactly those processes and their descendants. It never runs `ray stop`, which would
kill every Ray process on the machine, other people's included.

Every address this stack hands out is on loopback. Ray itself replaces a node IP of 127.0.0.1
with the host's routable address (by design, `resolve_ip_for_localhost`), and its GCS and
raylets listen on all interfaces whatever --node-ip-address says (only the dashboard honours
its host flag): token authentication stays on, and the stack belongs on a trusted machine.

The script needs only the Python of a virtual environment with ranksearch's dependencies
(`ray[default]`, `mlflow`, `moto[server]`); it imports none of ranksearch.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STATE_FILE = "stack.json"
TOKEN_FILE = "auth_token"
KEYS_FILE = "s3_keys.json"
ENV_FILE = "env.sh"
BUCKET = "ranksearch"
REGION = "us-east-1"
OBJECT_STORE_BYTES = 150 * 1024 * 1024  # plenty for searches; the default takes 30% of RAM per node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    return Path(sys.executable).parent


def write_private(path: Path, text: str) -> None:
    """Create a file only its owner can read (tokens, keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# -- processes ----------------------------------------------------------------------------------------
def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> int:
    """Start a process in its own session (so its group can be signalled as one); returns its PID."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie we have not reaped counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def descendants(pid: int) -> list[int]:
    """PIDs below `pid` in the process tree (children first found by /proc, no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def terminate(*pids: int, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """End processes we started, their process groups and every descendant (raylets put
    workers in groups of their own): signal them all at once, wait up to `timeout`, then SIGKILL."""
    leaders = [p for p in pids if alive(p)]
    tree = [p for leader in leaders for p in (leader, *descendants(leader))]
    for p in tree:
        _signal(p, sig, group=(p in leaders))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.2)
    for p in tree:
        if alive(p):
            _signal(p, signal.SIGKILL, group=(p in leaders))
    for p in tree:  # reap the ones that are our own children
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def _signal(pid: int, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)  # the leader of a session we created: its whole group
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- readiness ----------------------------------------------------------------------------------------
def http_ok(url: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0) -> bool:
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status < 400
    except (OSError, urllib.error.HTTPError):
        return False


def wait_for(what: str, check: Any, pid: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise RuntimeError(f"{what} exited during start-up; last lines of {log}:\n{tail(log)}")
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s; last lines of {log}:\n{tail(log)}")


def tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


# -- the stack ----------------------------------------------------------------------------------------
class Stack:
    """The services of one stack directory and their recorded state."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.state: dict[str, Any] = {}
        if (self.root / STATE_FILE).is_file():
            self.state = json.loads((self.root / STATE_FILE).read_text())

    # -- state -------------------------------------------------------------------------------------
    def save(self) -> None:
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.root / STATE_FILE)

    @property
    def token_path(self) -> Path:
        return self.root / TOKEN_FILE

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_path.read_text().strip()}"}

    def s3_keys(self) -> dict[str, str]:
        """Keys of the local S3 server: random per stack, kept in a 0600 file, never printed.
        (Real clusters get credentials from instance profiles, service accounts or the nodes'
        environment, never from job submissions.)"""
        return dict(json.loads((self.root / KEYS_FILE).read_text()), AWS_DEFAULT_REGION=REGION)

    def base_env(self) -> dict[str, str]:
        """Environment of every Ray process: token auth, S3 endpoint and keys, the venv first on PATH."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "AWS_", "MLFLOW_")) and k not in ("PYTHONPATH",)}
        env.update(self.s3_keys())
        env.update(
            PATH=f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
            AWS_ENDPOINT_URL_S3=self.state["s3"]["endpoint"],
            MLFLOW_TRACKING_URI=self.state["mlflow"]["url"],
            RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",
            # A lost node is declared dead after ~3 s instead of ~15 s (GCS health checks), so
            # node-loss drills finish quickly; the values are Ray's RayConfig names.
            RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
            RAY_health_check_failure_threshold="3",
        )
        return env

    # -- start ---------------------------------------------------------------------------------------
    def start(self, workers: int, cpus: int, *, mlflow: bool = True, timeout: float = 120.0) -> None:
        if self.state.get("services"):
            raise SystemExit(f"{self.root} already holds a stack; stop it first "
                             f"(python {__file__} stop --dir {self.root})")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        if not self.token_path.exists():
            write_private(self.token_path, secrets.token_hex(32))
        if not (self.root / KEYS_FILE).exists():
            write_private(self.root / KEYS_FILE, json.dumps({
                "AWS_ACCESS_KEY_ID": f"RSLOCAL{secrets.token_hex(6).upper()}",
                "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}))
        self.state = {"root": str(self.root), "python": sys.executable, "services": {}, "workers": {},
                      "cpus_per_worker": cpus, "started_at": time.time()}
        try:
            self._start_s3(timeout)
            self._start_mlflow(timeout, enabled=mlflow)
            self._start_head(timeout)
            for k in range(1, workers + 1):
                self.start_worker(k, timeout=timeout, wait=False)
            self.wait_nodes(1 + workers, timeout=timeout)
        except BaseException:
            self.stop(quiet=True)
            raise
        self._write_env_file()

    def _start_s3(self, timeout: float) -> None:
        port = free_port()
        log = self.root / "logs" / "s3.log"
        pid = spawn([str(bin_dir() / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log,
                    dict(os.environ), self.root)
        url = f"http://127.0.0.1:{port}"
        self.state["services"]["s3"] = {"pid": pid, "log": str(log)}
        self.state["s3"] = {"endpoint": url, "bucket": BUCKET}
        self.save()
        wait_for("S3 server", lambda: http_ok(f"{url}/moto-api/"), pid, log, timeout)
        req = urllib.request.Request(f"{url}/{BUCKET}", method="PUT")  # moto checks no signature
        with urllib.request.urlopen(req, timeout=10):
            pass

    def _start_mlflow(self, timeout: float, *, enabled: bool) -> None:
        if not enabled:
            self.state["mlflow"] = {"url": "", "db": ""}
            return
        port = free_port()
        log = self.root / "logs" / "mlflow.log"
        db = self.root / "mlflow.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(self.s3_keys(), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                   MLFLOW_S3_ENDPOINT_URL=self.state["s3"]["endpoint"])
        artifacts = f"s3://{BUCKET}/mlartifacts"
        pid = spawn([str(bin_dir() / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
                     "--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(port),
                     "--workers", "1"], log, env, self.root)
        url = f"http://127.0.0.1:{port}"
        self.state["services"]["mlflow"] = {"pid": pid, "log": str(log)}
        self.state["mlflow"] = {"url": url, "db": str(db), "artifacts": artifacts}
        self.save()
        wait_for("MLflow server", lambda: http_ok(f"{url}/health"), pid, log, timeout)

    def _ray_ports(self) -> list[str]:
        """Ports every raylet on one host needs of its own (the defaults would collide)."""
        return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()),
                "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]

    def _start_head(self, timeout: float) -> None:
        gcs, dash, client = free_port(), free_port(), free_port()
        temp = self.root / "h"
        log = self.root / "logs" / "ray-head.log"
        cmd = [str(bin_dir() / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
               "--ray-client-server-port", str(client), "--num-cpus", "0", "--num-gpus", "0",
               "--temp-dir", str(temp), "--object-store-memory", str(OBJECT_STORE_BYTES),
               "--disable-usage-stats", *self._ray_ports()]
        pid = spawn(cmd, log, self.base_env(), self.root)
        dashboard = f"http://127.0.0.1:{dash}"
        self.state["services"]["ray-head"] = {"pid": pid, "log": str(log)}
        self.state["ray"] = {"gcs": f"127.0.0.1:{gcs}", "dashboard": dashboard, "temp_dir": str(temp)}
        self.save()
        wait_for("Ray head", lambda: http_ok(f"{dashboard}/api/version", headers=self.auth_headers()),
                 pid, log, timeout)

    def start_worker(self, k: int, *, timeout: float = 120.0, wait: bool = True) -> None:
        """Start worker node k (1-based) with its own raylet, temp dir and ports."""
        name = f"w{k}"
        old = self.state["workers"].get(name)
        if old and alive(old["pid"]):
            raise SystemExit(f"worker {k} is already running (PID {old['pid']})")
        cpus = int(self.state.get("cpus_per_worker", 1))
        temp = self.root / name
        log = self.root / "logs" / f"ray-{name}.log"
        cmd = [str(bin_dir() / "ray"), "start", "--block", "--address", self.state["ray"]["gcs"],
               "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
               "--resources", json.dumps({f"node_{name}": 1}), "--temp-dir", str(temp),
               "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats", *self._ray_ports()]
        pid = spawn(cmd, log, self.base_env(), self.root)
        self.state["workers"][name] = {"pid": pid, "log": str(log), "resource": f"node_{name}", "cpus": cpus}
        self.save()
        if wait:
            self.wait_nodes(self.expected_nodes(), timeout=timeout)

    def expected_nodes(self) -> int:
        return 1 + sum(1 for w in self.state["workers"].values() if alive(w["pid"]))

    def kill_worker(self, k: int) -> int:
        """SIGKILL worker node k: its `ray start` process, raylet and every worker process below it.
        Returns the PID of its raylet tree root. Node loss, as a crashed machine would cause it."""
        w = self.state["workers"].get(f"w{k}")
        if w is None:
            raise SystemExit(f"no worker {k} in {self.root}")
        terminate(w["pid"], sig=signal.SIGKILL, timeout=5.0)
        return int(w["pid"])

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes as the dashboard reports them (node id, resources, head or not)."""
        url = f"{self.state['ray']['dashboard']}/api/v0/nodes?limit=1000&detail=1"
        req = urllib.request.Request(url, headers=self.auth_headers())
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.loads(r.read())
        rows = data.get("data", {}).get("result", {}).get("result", [])
        return [n for n in rows if n.get("state") == "ALIVE"]

    def wait_nodes(self, n: int, *, timeout: float) -> None:
        """Wait until `n` nodes are alive; fail early when a node process we started has exited."""
        deadline = time.monotonic() + timeout
        last: Any = None
        procs = [("Ray head", self.state["services"]["ray-head"]),
                 *[(f"Ray worker {w}", s) for w, s in self.state["workers"].items()]]
        watched = [(name, svc) for name, svc in procs if alive(svc["pid"])]
        while time.monotonic() < deadline:
            for name, svc in watched:
                if not alive(svc["pid"]):
                    raise RuntimeError(f"{name} exited; last lines of {svc['log']}:\n{tail(Path(svc['log']))}")
            try:
                last = self.nodes()
                if len(last) >= n:
                    return
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"expected {n} alive Ray nodes after {timeout:.0f} s, have: {last!r}")

    # -- stop ----------------------------------------------------------------------------------------
    def stop(self, *, quiet: bool = False) -> None:
        """End every process this stack started (workers, head, MLflow, S3), by PID."""
        # Workers and head together (each worker drains while the head goes), then the servers.
        ray_pids = [w["pid"] for w in self.state.get("workers", {}).values()]
        head = self.state.get("services", {}).get("ray-head")
        terminate(*ray_pids, *([head["pid"]] if head else []), timeout=10.0)
        terminate(*[svc["pid"] for name, svc in self.state.get("services", {}).items() if name != "ray-head"])
        if self.state:
            self.state["services"] = {}
            self.state["workers"] = {}
            self.state["stopped_at"] = time.time()
            self.save()
        if not quiet:
            print(f"stopped the stack in {self.root}")

    # -- output --------------------------------------------------------------------------------------
    def storage_uri(self) -> str:
        return f"s3://{BUCKET}/searches?endpoint={self.state['s3']['endpoint']}"

    def describe(self) -> dict[str, Any]:
        """Where everything listens (no secrets: the token is named by its file only)."""
        return {
            "root": str(self.root),
            "ray_dashboard": self.state["ray"]["dashboard"],
            "ray_address": self.state["ray"]["gcs"],
            "ray_temp_dirs": [self.state["ray"]["temp_dir"],
                              *[str(self.root / w) for w in self.state["workers"]]],
            "workers": {w: {"pid": s["pid"], "resource": s["resource"], "cpus": s["cpus"], "alive": alive(s["pid"])}
                        for w, s in self.state["workers"].items()},
            "head_pid": self.state["services"]["ray-head"]["pid"],
            "mlflow": self.state["mlflow"]["url"],
            "s3_endpoint": self.state["s3"]["endpoint"],
            "bucket": BUCKET,
            "storage": self.storage_uri(),
            "auth_token_path": str(self.token_path),
            "env_file": str(self.root / ENV_FILE),
            "logs": str(self.root / "logs"),
        }

    def _write_env_file(self) -> None:
        d = self.describe()
        lines = [
            "# Client environment for the local ranksearch stack (source it).",
            f"export RAY_ADDRESS={d['ray_dashboard']}",
            "export RAY_AUTH_MODE=token",
            f"export RAY_AUTH_TOKEN_PATH={d['auth_token_path']}",
            f"export MLFLOW_TRACKING_URI={d['mlflow']}",
            f"export RANKSEARCH_STORAGE='{d['storage']}'",
            f"export AWS_ENDPOINT_URL_S3={d['s3_endpoint']}",
            # keys of the local S3 server, so the client can read search state there
            *[f"export {k}={v}" for k, v in self.s3_keys().items()],
        ]
        write_private(self.root / ENV_FILE, "\n".join(lines) + "\n")

    def print_summary(self) -> None:
        d = self.describe()
        workers = ", ".join(f"{w} (PID {s['pid']}, {s['cpus']} CPU, resource {s['resource']})"
                            for w, s in d["workers"].items())
        print(f"ranksearch local stack in {d['root']}")
        print(f"  Ray dashboard and Jobs API   {d['ray_dashboard']}")
        print(f"  Ray GCS (--address)          {d['ray_address']}")
        print(f"  Ray nodes                    head (PID {d['head_pid']}, no CPUs) + {workers}")
        print(f"  MLflow tracking server       {d['mlflow'] or '(not started)'}")
        print(f"  S3 (moto) endpoint           {d['s3_endpoint']} bucket {d['bucket']}")
        print(f"  search storage               {d['storage']}")
        print(f"  auth token file              {d['auth_token_path']}")
        print(f"  logs                         {d['logs']}")
        print(f"client environment: source {d['env_file']}")
        print(f"stop with: {Path(__file__).parent / 'stop.sh'} {d['root']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start S3, MLflow, a Ray head and worker nodes")
    p_start.add_argument("--dir", type=Path, default=None,
                         help="stack directory (short: Ray's socket paths live under it); default a new /tmp/rs-*")
    p_start.add_argument("--workers", type=int, default=2)
    p_start.add_argument("--cpus-per-worker", type=int, default=1)
    p_start.add_argument("--no-mlflow", action="store_true", help="skip the MLflow server")
    p_start.add_argument("--timeout", type=float, default=120.0)
    p_start.add_argument("--json", action="store_true", help="print the addresses as one JSON object")
    for name, text in (("stop", "stop everything this stack started"), ("status", "print addresses and nodes")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", type=Path, required=True)
        if name == "status":
            p.add_argument("--json", action="store_true")
    for name, text in (("kill-worker", "SIGKILL worker node K (node loss)"), ("start-worker", "start worker node K")):
        p = sub.add_parser(name, help=text)
        p.add_argument("k", type=int)
        p.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "start":
        if args.workers < 0 or args.cpus_per_worker < 1:
            parser.error("--workers must be >= 0 and --cpus-per-worker >= 1")
        root = args.dir or Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
        if len(str(root.resolve())) > 40:
            parser.error(f"--dir {root} is too long: Ray's socket paths under it must stay below 107 "
                         "characters; use a short path such as /tmp/rs-dev")
        stack = Stack(root)
        stack.start(args.workers, args.cpus_per_worker, mlflow=not args.no_mlflow, timeout=args.timeout)
        if args.json:
            print(json.dumps(stack.describe()))
        else:
            stack.print_summary()
        return 0
    stack = Stack(args.dir)
    if not stack.state:
        parser.error(f"no stack in {args.dir} ({STATE_FILE} missing)")
    if args.command == "stop":
        stack.stop()  # the directory stays: logs and the MLflow database, for inspection
        return 0
    if not stack.state.get("services"):
        parser.error(f"the stack in {args.dir} is stopped")
    if args.command == "status":
        info = stack.describe()
        info["nodes"] = [{"node_id": n["node_id"], "is_head": n.get("is_head_node"),
                          "resources": n.get("resources_total")} for n in stack.nodes()]
        print(json.dumps(info, indent=None if args.json else 1))
    elif args.command == "kill-worker":
        pid = stack.kill_worker(args.k)
        print(f"killed worker node {args.k} (process tree of PID {pid})")
    elif args.command == "start-worker":
        stack.start_worker(args.k)
        print(f"worker node {args.k} is up (PID {stack.state['workers'][f'w{args.k}']['pid']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
