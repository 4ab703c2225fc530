"""Searches as Ray jobs: submit one from a laptop to a cluster, watch it, stop it, resume it.

    from ranksearch.tune import submit
    job = submit.submit_search("space.yaml", address="http://HEAD:8265",
                               storage="s3://bucket/searches", tracking_uri="http://mlflow:5000")
    print(job.job_id)                       # then: ranksearch jobs logs JOB_ID --follow

A search job runs `ranksearch run` on the cluster's head node (the driver: strategy, Tune,
tracking) while its trials run on the worker nodes. It gets through the Jobs API
(`JobSubmissionClient`, the dashboard's HTTP port, 8265 by default):

- the search-space file, in a small working directory uploaded with the job;
- this machine's `ranksearch` package (`py_modules`), so the cluster runs the code you tested;
  `ship_code=False` uses the version installed on the cluster instead (cluster/aws.yaml
  installs one); extra `pip` requirements when asked;
- environment variables: the tracking URI and the storage location, and the job's stop
  signal (SIGINT with a grace period, so `ranksearch jobs stop` lets the driver record the
  search as interrupted and `resume` continue it).

Secrets never travel with a job: a job's runtime environment and entrypoint are visible to
everyone who can list jobs. Credentials (AWS keys, MLflow passwords) belong on the cluster's
nodes (instance profile, Kubernetes secret, node environment); names that look like
credentials are refused in `env`, and tracking URIs with a password in them are refused.

Token authentication (on by default since Ray 2.52) is read from the usual variables:
$RAY_AUTH_TOKEN, else the file in $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token when
$RAY_AUTH_MODE=token; $RAY_AUTH_MODE=disabled sends none. The token goes in the
Authorization header only: never printed, logged, or given to the job. Job logs printed here
are scrubbed of every credential this process knows.

Storage: on a cluster of several nodes every node must see the experiment folder, so the
storage must be `s3://...` or a folder on a filesystem all nodes mount, declared with
`shared_storage=True` (`--shared-storage`) or by listing its mount point in
$RANKSEARCH_SHARED_PATHS (colon-separated). A cluster counts as several nodes when more than
one node is alive, or when its only node offers no CPU to trials (an autoscaling cluster whose
workers have not started yet).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranksearch.errors import RanksearchError, SettingError

DEFAULT_DASHBOARD_PORT = 8265
SHARED_PATHS_ENV = "RANKSEARCH_SHARED_PATHS"
STORAGE_ENV = "RANKSEARCH_STORAGE"
#: How long a stopped job's driver gets to record the search as interrupted before SIGKILL.
DEFAULT_STOP_GRACE_S = 60
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
META_PREFIX = "ranksearch."
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Variables that hold credentials under names `is_secret_key` would not catch.
_SECRET_ENV = ("RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
               "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN")


_CHATTY_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                   "ray._private.runtime_env.packaging")


class SubmitError(RanksearchError):
    """A job cannot be submitted or reached (the message says what to change)."""


class SubmitSettingError(SettingError, SubmitError):
    """A submit setting (`address`, `storage`, `tracking_uri`, `env`...) is unusable; it names the
    setting as Python spells it, and the CLI its flag."""


# -- authentication -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterAuth:
    """Where the cluster token came from; the token itself never shows in repr or messages."""

    token: str | None = field(default=None, repr=False)
    source: str = "none"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def cluster_auth(env: Mapping[str, str] | None = None) -> ClusterAuth:
    """The Ray token from $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    env = os.environ if env is None else env
    mode = (env.get("RAY_AUTH_MODE") or "").strip().lower()
    if mode == "disabled":
        return ClusterAuth(source="RAY_AUTH_MODE=disabled")
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return ClusterAuth(env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    path_text = env.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if path_text:
        path = Path(path_text).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise SubmitError(f"RAY_AUTH_TOKEN_PATH={path} cannot be read ({exc.strerror}); point it "
                              "at the cluster's token file or set RAY_AUTH_TOKEN") from None
        if not token:
            raise SubmitError(f"RAY_AUTH_TOKEN_PATH={path} is empty; it should hold the cluster's token")
        return ClusterAuth(token, f"RAY_AUTH_TOKEN_PATH ({path})")
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file():
        try:
            token = default.read_text().strip()
        except OSError:
            token = ""
        if token:
            return ClusterAuth(token, str(default))
    return ClusterAuth(source="none")


# -- secrets out of output ------------------------------------------------------------------------------
class Redactor:
    """Replaces every credential this process knows (token, AWS and MLflow secrets, URL
    passwords) with '***' in text that is about to be printed."""

    def __init__(self, auth: ClusterAuth | None = None, env: Mapping[str, str] | None = None) -> None:
        from ranksearch.tracking import is_secret_key

        env = os.environ if env is None else env
        values = {auth.token} if auth is not None and auth.token else set()
        for name, value in env.items():
            if (name in _SECRET_ENV or (is_secret_key(name) and not name.endswith(("_PATH", "_FILE", "_MODE"))))\
                    and len(value.strip()) >= 6:
                values.add(value.strip())
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        from ranksearch.tracking import MASK, mask_secrets

        for v in self._values:
            text = text.replace(v, MASK)
        return mask_secrets(text)


# -- addresses ------------------------------------------------------------------------------------------
def dashboard_url(address: str | None = None) -> str:
    """The Jobs API address: `address`, else $RAY_ADDRESS, as http(s)://HOST:PORT."""
    text = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not text:
        raise SubmitSettingError("address", "is not given", show_value=False,
                           hint=f"give the Ray dashboard's Jobs API, http://HEAD:{DEFAULT_DASHBOARD_PORT}, or "
                                "set RAY_ADDRESS")
    if text.startswith("ray://") or text in ("auto", "local"):
        raise SubmitSettingError("address", "is a Ray client or GCS address", value=text,
                           hint=f"jobs go to the Ray dashboard's HTTP address, http://HEAD:{DEFAULT_DASHBOARD_PORT}")
    if "://" not in text:
        text = f"http://{text}"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise SubmitSettingError("address", "is not an HTTP address", value=text,
                           hint="use http://HOST:PORT or https://HOST:PORT")
    return text.rstrip("/")


# -- the client -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRequest:
    """Everything `JobSubmissionClient.submit_job` gets (nothing secret in it)."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    metadata: dict[str, str]
    entrypoint_num_cpus: float = 0.0


class JobsClient:
    """The Jobs API of one cluster, with ranksearch's authentication and error messages."""

    def __init__(self, address: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self.address = dashboard_url(address)
        self.auth = cluster_auth(env)
        self.redact = Redactor(self.auth, env)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import logging

        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError as exc:
            raise SubmitError("submitting jobs needs ray[default]: pip install 'ranksearch[ray]'") from exc
        # The SDK narrates uploads and socket closes at INFO on stderr; keep warnings only.
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            return JobSubmissionClient(self.address, headers=self.auth.headers())
        except Exception as exc:  # noqa: BLE001 - connection, auth and version errors all land here
            raise self._error("cannot reach", exc) from None

    def _error(self, doing: str, exc: BaseException) -> SubmitError:
        text = self.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        text = text.rstrip(".")
        low = str(exc).lower()
        # Connection failures first: their text carries the port, and a port such as 40401 must not
        # read as an HTTP 401. Status codes match only as whole numbers.
        if isinstance(exc, ConnectionError) or "connectionerror" in type(exc).__name__.lower() or any(
                w in low for w in ("connect", "refused", "max retries", "timed out", "resolve", "unreachable")):
            hint = (f" Is the Ray dashboard up and reachable at {self.address} (port "
                    f"{DEFAULT_DASHBOARD_PORT} on the head node, e.g. through `ray dashboard` or a tunnel)?")
        elif re.search(r"\b(401|403)\b", low) or any(w in low for w in ("authentication", "unauthorized",
                                                                        "forbidden")):
            hint = (f" The cluster wants a token: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to its token "
                    f"file (token used: {self.auth.source}).")
        elif "does not exist" in low or "not found" in low or "404" in low:
            hint = " List the cluster's jobs with `ranksearch jobs list`."
        else:
            hint = ""
        return SubmitError(f"{doing} the Ray Jobs API at {self.address}: {text}.{hint}")

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SubmitError:
            raise
        except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError/requests errors
            raise self._error(doing, exc) from None

    # -- cluster ---------------------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes: node id, head or not, total resources (the state API, as `ray list nodes`)."""
        import requests

        url = f"{self.address}/api/v0/nodes?limit=10000&detail=1&timeout=30"
        try:
            r = requests.get(url, headers=self.auth.headers(), timeout=30)
        except requests.RequestException as exc:
            raise self._error("cannot list the nodes through", exc) from None
        if r.status_code != 200:
            raise self._error("cannot list the nodes through", RuntimeError(f"HTTP {r.status_code} {r.text[:200]}"))
        rows = r.json().get("data", {}).get("result", {}).get("result", [])
        return [n for n in rows if str(n.get("state", "")).upper() == "ALIVE"]

    # -- jobs ------------------------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> str:
        return self._call("cannot submit to", self.client.submit_job, entrypoint=request.entrypoint,
                          runtime_env=request.runtime_env, submission_id=request.submission_id,
                          metadata=request.metadata, entrypoint_num_cpus=request.entrypoint_num_cpus)

    def info(self, job_id: str) -> Any:
        return self._call("cannot read job " + job_id + " from", self.client.get_job_info, job_id)

    def list(self) -> list[Any]:
        return self._call("cannot list the jobs of", self.client.list_jobs)

    def logs(self, job_id: str) -> str:
        return self.redact(self._call(f"cannot read the logs of {job_id} from", self.client.get_job_logs, job_id))

    def follow(self, job_id: str) -> Iterator[str]:
        """Log chunks as they come, until the job ends (scrubbed of credentials)."""
        import asyncio

        self.info(job_id)  # a wrong id fails here with a clear message
        agen = self.client.tail_job_logs(job_id)
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    chunk = loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - the websocket closed under us
                    raise self._error(f"lost the log stream of {job_id} from", exc) from None
                yield self.redact(chunk)
        finally:
            loop.run_until_complete(agen.aclose())
            loop.close()

    def stop(self, job_id: str) -> bool:
        return bool(self._call(f"cannot stop {job_id} through", self.client.stop_job, job_id))

    def wait(self, job_id: str, *, timeout: float, poll: float = 1.0) -> str:
        """Wait until the job ends (or `timeout`); returns its last status."""
        deadline = time.monotonic() + timeout
        while True:
            status = str(_status(self.info(job_id)))
            if status in TERMINAL or time.monotonic() >= deadline:
                return status
            time.sleep(poll)


def _status(info: Any) -> str:
    s = getattr(info, "status", "")
    return str(getattr(s, "value", s))


# -- job requests ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    name: str
    address: str
    storage: str
    tracking_uri: str
    request: JobRequest

    @property
    def location(self) -> str:
        """The search's experiment folder (a path or an s3:// URI)."""
        from ranksearch.tune.storage import Storage

        return Storage.parse(self.storage).display(self.name)


def is_shared_storage(storage: str, *, shared: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """True for s3:// storage, an explicit `shared`, or a folder under a $RANKSEARCH_SHARED_PATHS mount."""
    if storage.split("://", 1)[0].lower() in ("s3", "s3a") and "://" in storage:
        return True
    if shared:
        return True
    env = os.environ if env is None else env
    path = Path(storage.removeprefix("file://").removeprefix("file:"))
    for mount in filter(None, (env.get(SHARED_PATHS_ENV) or "").split(os.pathsep)):
        m = Path(mount)
        if path == m or m in path.parents:
            return True
    return False


def several_nodes(nodes: Sequence[Mapping[str, Any]]) -> bool:
    """More than one alive node, or a lone node with nothing for trials (workers yet to come)."""
    if len(nodes) > 1:
        return True
    if not nodes:
        return False
    res = nodes[0].get("resources_total") or {}
    return float(res.get("CPU", 0) or 0) + float(res.get("GPU", 0) or 0) <= 0


def ray_nodes() -> list[dict[str, Any]]:
    """Alive nodes of the Ray runtime this process is connected to, as `check_storage` takes them
    (for a driver started with --address: `check_storage(storage, ray_nodes())`)."""
    import ray

    return [{"node_id": n.get("NodeID"), "resources_total": dict(n.get("Resources") or {})}
            for n in ray.nodes() if n.get("Alive")]


def check_storage(storage: str, nodes: Sequence[Mapping[str, Any]], *, shared: bool = False,
                  env: Mapping[str, str] | None = None) -> None:
    """Refuse a storage location that the cluster's nodes cannot all reach."""
    if "://" not in storage and not Path(storage).is_absolute():
        raise SubmitSettingError("storage", "is a relative path: on the cluster it would land in the job's "
                           "temporary working directory", value=storage,
                           hint="give s3://BUCKET/PREFIX or an absolute path on a filesystem every node mounts")
    if several_nodes(nodes) and not is_shared_storage(storage, shared=shared, env=env):
        count = len(nodes)
        what = (f"has {count} alive nodes" if count > 1 else
                "runs its trials on worker nodes that are not up yet (the head offers no CPU)")
        raise SubmitSettingError(
            "storage", f"is a local path, and the cluster {what}: trials on other nodes would write their "
            "checkpoints where the driver and `resume` cannot see them", value=storage,
            hint="give s3://BUCKET/PREFIX, or a folder on a filesystem every node mounts (NFS, EFS, ...) "
                 f"and declare it shared (`shared_storage`, or list its mount point in ${SHARED_PATHS_ENV})",
            related=("shared_storage",))


def check_tracking(tracking_uri: str | None) -> str:
    """A tracking URI a job can use: a server, or an absolute store on the head node; no password."""
    uri = (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        raise SubmitSettingError("tracking_uri", "is not given: the job's driver records every trial there",
                           show_value=False,
                           hint="give an MLflow server, http://MLFLOW-SERVER:5000 (or set MLFLOW_TRACKING_URI)")
    if re.match(r"^[a-zA-Z][\w+.-]*://[^/@\s]*:[^/@\s]+@", uri):
        raise SubmitSettingError("tracking_uri", "holds a password; jobs are visible to everyone on the cluster",
                           show_value=False,
                           hint="drop it from the URI and set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
                                "on the cluster's nodes instead")
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme == "sqlite" and not uri.startswith("sqlite:////"):
            raise SubmitSettingError("tracking_uri", "is a relative SQLite store", value=uri,
                               hint="give an absolute path on the head node (sqlite:////abs/path.db); better, "
                                    "an MLflow server")
        return uri
    if not Path(uri).is_absolute():
        raise SubmitSettingError("tracking_uri", "is a relative folder: on the cluster it would land in the job's "
                           "temporary working directory", value=uri, hint="give an MLflow server (http://...)")
    return uri


def parse_env(items: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`NAME=VALUE` or `NAME` (copied from this environment) for the job; credentials refused."""
    from ranksearch.tracking import is_secret_key

    env = os.environ if env is None else env
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not _ENV_NAME.match(name):
            raise SubmitSettingError("env", "is not NAME=VALUE or NAME (a variable of this shell)", value=item)
        if name in _SECRET_ENV or (is_secret_key(name) and not name.endswith(("_PATH", "_FILE", "_MODE"))):
            raise SubmitSettingError("env", "names what looks like a credential, and a job's environment is visible "
                               "to everyone who can list jobs", value=name,
                               hint="put it on the cluster's nodes instead (instance profile, Kubernetes "
                                    "secret, the nodes' environment)")
        if not sep:
            if name not in env:
                raise SubmitSettingError("env", "names a variable that is not set in this shell", value=name,
                                   hint=f"write {name}=VALUE")
            value = env[name]
        out[name] = value
    return out


def _package_dir() -> str:
    import ranksearch

    return str(Path(ranksearch.__file__).resolve().parent)


def _runtime_env(*, working_dir: str | None, ship_code: bool, pip: Sequence[str], env_vars: Mapping[str, str],
                 stop_grace_s: int) -> dict[str, Any]:
    runtime_env: dict[str, Any] = {
        "env_vars": {
            "PYTHONUNBUFFERED": "1",
            # `jobs stop` sends SIGINT: Tune stops its trials and saves, the driver records the
            # search as interrupted; SIGKILL follows only after the grace period.
            "RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": str(int(stop_grace_s)),
            **env_vars,
        },
        "excludes": ["__pycache__", "*.pyc", ".git"],
    }
    if working_dir:
        runtime_env["working_dir"] = working_dir
    if ship_code:
        runtime_env["py_modules"] = [_package_dir()]
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


def _submission_id(name: str, kind: str) -> str:
    return f"ranksearch-{kind}-{name}-{secrets.token_hex(3)}"


def _cli(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in ("python", "-m", "ranksearch.cli", *args))


def _default_storage(storage: str | None) -> str:
    value = (storage or os.environ.get(STORAGE_ENV) or "").strip()
    if not value:
        raise SubmitSettingError("storage", "is not given: a cluster job keeps its experiment folder and "
                           "checkpoints where every node and `resume` can reach them", show_value=False,
                           hint="give s3://BUCKET/PREFIX (or set RANKSEARCH_STORAGE)")
    return value


def search_request(
    space_file: str | os.PathLike[str],
    *,
    staging_dir: str | os.PathLike[str],
    storage: str,
    tracking_uri: str,
    strategy: str | None = None,
    budget: int | str | None = None,
    workers: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    retries: int = 1,
    working_dir: str | os.PathLike[str] | None = None,
    ship_code: bool = True,
    pip: Sequence[str] = (),
    env_vars: Mapping[str, str] | None = None,
    stop_grace_s: int = DEFAULT_STOP_GRACE_S,
    fix_ranks: str | None = None,
) -> tuple[JobRequest, str]:
    """The job that runs `ranksearch run` for a space (validated here first); returns it and the
    search name. The space file is copied into `staging_dir` unless it lies in `working_dir`;
    so is a local rank-config file given as `fix_ranks` (`s3://`, `runs:/` and `models:/` ones,
    and rank vectors, are passed on as written)."""
    from ranksearch import service
    from ranksearch.resources import resolve_space_path

    space_path = resolve_space_path(space_file)
    # Everything `ranksearch run` would refuse is refused here, before anything is sent.
    prepared = service.prepare_search(space_path, strategy=strategy, budget=budget, workers=workers, seed=seed,
                                      name=name, tracking_uri=tracking_uri, storage=storage, retries=retries,
                                      check_storage=False, check_data=False, fix_ranks=fix_ranks)
    s = prepared.settings
    if working_dir is not None:
        wd = Path(working_dir).resolve()
        if not wd.is_dir():
            raise SubmitSettingError("working_dir", "is not a folder", value=str(working_dir))
        try:
            space_arg = space_path.resolve().relative_to(wd).as_posix()
        except ValueError:
            raise SubmitSettingError("working_dir", f"does not hold {space_file}: the job only sees that folder",
                               value=str(wd), hint="move the space file into it") from None
        upload = str(wd)
    else:
        dest = Path(staging_dir) / space_path.name
        shutil.copyfile(space_path, dest)
        space_arg, upload = dest.name, str(staging_dir)
    args = ["run", space_arg, "--name", s.name, "--storage", storage, "--tracking-uri", tracking_uri,
            "--strategy", s.strategy, "--budget", str(s.cost_budget or s.budget), "--workers", str(s.workers),
            "--seed", str(s.seed), "--retries", str(retries)]
    if fix_ranks is not None:
        args += ["--fix-ranks", _job_fix_ranks(str(fix_ranks), upload=upload, working_dir=working_dir)]
    env = {"MLFLOW_TRACKING_URI": tracking_uri, STORAGE_ENV: storage, **dict(env_vars or {})}
    request = JobRequest(
        entrypoint=_cli(*args),
        runtime_env=_runtime_env(working_dir=upload, ship_code=ship_code, pip=pip, env_vars=env,
                                 stop_grace_s=stop_grace_s),
        submission_id=_submission_id(s.name, "run"),
        metadata={f"{META_PREFIX}kind": "run", f"{META_PREFIX}search": s.name, f"{META_PREFIX}storage": storage,
                  f"{META_PREFIX}tracking_uri": tracking_uri, f"{META_PREFIX}space": prepared.space.name,
                  f"{META_PREFIX}strategy": s.strategy, f"{META_PREFIX}budget": str(s.cost_budget or s.budget),
                  **({f"{META_PREFIX}fixed_ranks": ",".join(map(str, prepared.space.config.ranks.fixed))}
                     if fix_ranks is not None else {})},
    )
    return request, s.name


def _job_fix_ranks(spec: str, *, upload: str, working_dir: Any) -> str:
    """`--fix-ranks` as the job sees it: a local rank-config file (or the folder `best` wrote it
    in) travels in the uploaded folder, copied there unless `working_dir` already holds it; rank
    vectors and `s3://`, `runs:/`, `models:/` references are passed on as written."""
    from ranksearch.rankconfig import RANK_CONFIG_FILE

    path = Path(spec)
    if spec.startswith(("runs:/", "models:/", "s3://")) or not path.exists():
        return spec
    path = path.resolve()
    if path.is_dir():
        path = path / RANK_CONFIG_FILE
    if working_dir is not None:
        try:
            return path.relative_to(Path(upload)).as_posix()
        except ValueError:
            raise SubmitSettingError("fix_ranks", f"names {spec}, outside the working_dir the job sees",
                                     value=str(upload), hint="move the rank-config file into it") from None
    dest = Path(upload) / f"fixed-ranks-{path.name}"
    shutil.copyfile(path, dest)
    return dest.name


def resume_request(name: str, *, storage: str, tracking_uri: str | None = None, workers: int | None = None,
                   ship_code: bool = True, pip: Sequence[str] = (), env_vars: Mapping[str, str] | None = None,
                   stop_grace_s: int = DEFAULT_STOP_GRACE_S) -> JobRequest:
    """The job that runs `ranksearch resume NAME` against the search's storage."""
    from ranksearch.service import check_search_name

    check_search_name(name, setting="search")
    args = ["resume", name, "--storage", storage]
    env = {STORAGE_ENV: storage, **dict(env_vars or {})}
    if tracking_uri:
        args += ["--tracking-uri", tracking_uri]
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SubmitSettingError("workers", "must be a whole number, at least 1", value=workers)
        args += ["--workers", str(workers)]
    meta = {f"{META_PREFIX}kind": "resume", f"{META_PREFIX}search": name, f"{META_PREFIX}storage": storage}
    if tracking_uri:
        meta[f"{META_PREFIX}tracking_uri"] = tracking_uri
    return JobRequest(
        entrypoint=_cli(*args),
        runtime_env=_runtime_env(working_dir=None, ship_code=ship_code, pip=pip, env_vars=env,
                                 stop_grace_s=stop_grace_s),
        submission_id=_submission_id(name, "resume"), metadata=meta,
    )


def submit_search(
    space_file: str | os.PathLike[str],
    *,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    shared_storage: bool = False,
    client: JobsClient | None = None,
    **options: Any,
) -> SubmittedJob:
    """Validate a search, check the cluster can run it, and submit it as a Ray job.

    `options` are those of `search_request` (strategy, budget, workers, seed, name, retries,
    working_dir, ship_code, pip, env_vars, stop_grace_s).
    """
    store = _default_storage(storage)
    tracking = check_tracking(tracking_uri)
    if "://" not in store and not Path(store).is_absolute():
        check_storage(store, [], shared=shared_storage)  # the relative-path message, before any I/O
    with tempfile.TemporaryDirectory(prefix="ranksearch-job-") as staging:
        request, name = search_request(space_file, staging_dir=staging, storage=store, tracking_uri=tracking,
                                       **options)
        jobs = client or JobsClient(address)
        check_storage(store, jobs.nodes(), shared=shared_storage)
        job_id = jobs.submit(request)  # uploads the working dir and the package now
    return SubmittedJob(job_id, name, jobs.address, store, tracking, request)


def submit_resume(name: str, *, address: str | None = None, storage: str | None = None,
                  tracking_uri: str | None = None, shared_storage: bool = False,
                  client: JobsClient | None = None, **options: Any) -> SubmittedJob:
    """Continue a stopped or interrupted search as a new job on the cluster."""
    store = _default_storage(storage)
    if tracking_uri is not None:
        tracking_uri = check_tracking(tracking_uri)
    check_storage(store, [], shared=shared_storage)
    jobs = client or JobsClient(address)
    check_storage(store, jobs.nodes(), shared=shared_storage)
    request = resume_request(name, storage=store, tracking_uri=tracking_uri, **options)
    job_id = jobs.submit(request)
    return SubmittedJob(job_id, name, jobs.address, store, tracking_uri or "", request)


# -- reading jobs back ----------------------------------------------------------------------------------
def job_row(info: Any) -> dict[str, Any]:
    """One job as plain data (what `jobs list` / `jobs status --json` print)."""
    meta = dict(getattr(info, "metadata", None) or {})

    def when(ms: Any) -> str | None:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else None

    return {
        "job_id": getattr(info, "submission_id", None) or getattr(info, "job_id", None),
        "status": _status(info),
        "message": getattr(info, "message", None) or "",
        "search": meta.get(f"{META_PREFIX}search"),
        "kind": meta.get(f"{META_PREFIX}kind"),
        "storage": meta.get(f"{META_PREFIX}storage"),
        "tracking_uri": meta.get(f"{META_PREFIX}tracking_uri"),
        "entrypoint": getattr(info, "entrypoint", ""),
        "start_time": when(getattr(info, "start_time", None)),
        "end_time": when(getattr(info, "end_time", None)),
        "driver_exit_code": getattr(info, "driver_exit_code", None),
    }


def resume_hint(row: Mapping[str, Any], address: str) -> str | None:
    """The command that continues a job's search, for jobs that stopped before the end."""
    if not row.get("search") or row.get("status") not in ("STOPPED", "FAILED"):
        return None
    parts = ["ranksearch", "jobs", "resume", str(row["search"]), "--address", address]
    if row.get("storage"):
        parts += ["--storage", str(row["storage"])]
    return " ".join(shlex.quote(p) for p in parts)
