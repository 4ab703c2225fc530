"""The job-submission client without a cluster: auth, secrets, storage and tracking checks, and
the job a search becomes (entrypoint, runtime environment, metadata)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from conftest import ROOT, write_space

from ranksearch.bench.servers import free_port
from ranksearch.errors import RanksearchError
from ranksearch.tune import submit
from ranksearch.tune.submit import SubmitError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "f00dfeedcafe0123456789abcdef"
HEAD = {"node_id": "h", "is_head_node": True, "resources_total": {"CPU": 0.0}}
WORKER = {"node_id": "w", "is_head_node": False, "resources_total": {"CPU": 4.0}}


# -- auth and secrets ------------------------------------------------------------------------------------
def test_token_comes_from_the_usual_variables_and_never_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert submit.cluster_auth({}).headers() == {}
    auth = submit.cluster_auth({"RAY_AUTH_TOKEN": TOKEN})
    assert auth.headers() == {"Authorization": f"Bearer {TOKEN}"} and TOKEN not in repr(auth)
    path = tmp_path / "tok"
    path.write_text(TOKEN + "\n")
    auth = submit.cluster_auth({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert auth.token == TOKEN and str(path) in auth.source
    assert submit.cluster_auth({"RAY_AUTH_TOKEN": TOKEN, "RAY_AUTH_MODE": "disabled"}).headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN)
    assert submit.cluster_auth({}).token == TOKEN  # ~/.ray/auth_token, as Ray itself reads it
    with pytest.raises(SubmitError, match="RAY_AUTH_TOKEN_PATH=.*cannot be read") as exc:
        submit.cluster_auth({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})
    assert TOKEN not in str(exc.value)


def test_redactor_scrubs_every_known_credential():
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-key-value", "MLFLOW_TRACKING_PASSWORD": "hunter22",
           "RAY_AUTH_TOKEN_PATH": "/home/me/.ray/auth_token", "PATH": "/usr/bin"}
    redact = submit.Redactor(submit.ClusterAuth(TOKEN, "test"), env)
    text = (f"token {TOKEN} key s3cr3t-key-value pw hunter22 url http://u:pass@mlflow:5000 "
            "path /home/me/.ray/auth_token id AKIAABCDEFGHIJKLMNOP")
    out = redact(text)
    for secret in (TOKEN, "s3cr3t-key-value", "hunter22", ":pass@", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in out
    assert "/home/me/.ray/auth_token" in out  # a path is not a secret


@pytest.mark.parametrize("address, expected", [
    ("http://head:8265", "http://head:8265"), ("https://ray.example.com/", "https://ray.example.com"),
    ("10.0.0.5:8265", "http://10.0.0.5:8265"),
])
def test_dashboard_url(address, expected):
    assert submit.dashboard_url(address) == expected


@pytest.mark.parametrize("address, words", [
    ("ray://head:10001", "dashboard's HTTP address"), ("auto", "dashboard's HTTP address"),
    ("ftp://x", "http://HOST:PORT"),
])
def test_dashboard_url_refuses_other_addresses(address, words):
    with pytest.raises(SubmitError, match=words):
        submit.dashboard_url(address)


def test_no_address_says_where_to_give_one(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SubmitError, match="address is not given.*http://HEAD:8265") as exc:
        submit.dashboard_url(None)
    assert "--" not in str(exc.value)  # the library names settings, the CLI its flags


# -- storage and tracking ---------------------------------------------------------------------------------
def test_local_storage_is_refused_on_several_nodes_only(tmp_path):
    local = str(tmp_path / "store")
    submit.check_storage(local, [dict(WORKER, is_head_node=True)])  # one node with CPUs: fine
    submit.check_storage("s3://bucket/searches?endpoint=http://127.0.0.1:9000", [HEAD, WORKER, WORKER])
    with pytest.raises(SubmitError, match="3 alive nodes.*s3://BUCKET/PREFIX.*shared_storage"):
        submit.check_storage(local, [HEAD, WORKER, WORKER])
    with pytest.raises(SubmitError, match="not up yet"):  # a head alone, workers to autoscale
        submit.check_storage(local, [HEAD])
    submit.check_storage(local, [HEAD, WORKER], shared=True)
    submit.check_storage(local, [HEAD, WORKER], env={submit.SHARED_PATHS_ENV: f"/nfs:{tmp_path}"})
    with pytest.raises(SubmitError, match="several|alive nodes"):
        submit.check_storage(local, [HEAD, WORKER], env={submit.SHARED_PATHS_ENV: "/nfs"})
    with pytest.raises(SubmitError, match="relative path"):
        submit.check_storage("runs/ray", [dict(WORKER, is_head_node=True)])


def test_ray_nodes_takes_the_alive_nodes_of_the_connected_runtime(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 0.0}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 2.0}},
        {"NodeID": "c", "Alive": False, "Resources": {"CPU": 2.0}}])
    nodes = submit.ray_nodes()
    assert [n["node_id"] for n in nodes] == ["a", "b"]
    with pytest.raises(SubmitError, match="2 alive nodes"):
        submit.check_storage("/srv/store", nodes)


def test_tracking_uri_must_reach_the_cluster_and_hold_no_password(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert submit.check_tracking("http://mlflow:5000") == "http://mlflow:5000"
    assert submit.check_tracking("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"
    for uri, words in [(None, "tracking_uri is not given"), ("mlruns", "relative"), ("sqlite:///mlflow.db", "absolute"),
                       ("http://me:hunter22@mlflow:5000", "password")]:
        with pytest.raises(SubmitError, match=words) as exc:
            submit.check_tracking(uri)
        assert "hunter22" not in str(exc.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert submit.check_tracking(None) == "http://from-env:5000"


def test_env_for_the_job_refuses_credentials():
    assert submit.parse_env(["A=1", "B"], env={"B": "two"}) == {"A": "1", "B": "two"}
    for item in ("AWS_SECRET_ACCESS_KEY=x", "MY_API_KEY=x", "RAY_AUTH_TOKEN=x", "DB_PASSWORD=x"):
        with pytest.raises(SubmitError, match="credential"):
            submit.parse_env([item], env={})
    with pytest.raises(SubmitError, match="not set"):
        submit.parse_env(["MISSING"], env={})
    with pytest.raises(SubmitError, match="NAME=VALUE"):
        submit.parse_env(["1BAD=x"], env={})


# -- the job a search becomes -------------------------------------------------------------------------------
def _parse_cli(entrypoint: str) -> tuple[str, dict]:
    """Parse an entrypoint with ranksearch's own command line; returns (command, params)."""
    from ranksearch.cli import app

    words = shlex.split(entrypoint)
    assert words[:3] == ["python", "-m", "ranksearch.cli"]
    group = typer.main.get_command(app)
    cmd = group.get_command(group.make_context("ranksearch", words[3:]), words[3])
    return cmd.name, cmd.make_context(cmd.name, words[4:]).params


def test_search_request_ships_the_space_code_and_settings_but_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key-value")
    space = write_space(tmp_path / "space.yaml", epochs=2, budget=5)
    staging = tmp_path / "staging"
    staging.mkdir()
    request, name = submit.search_request(space, staging_dir=staging, storage="s3://b/searches",
                                          tracking_uri="http://mlflow:5000", workers=3, name="demo",
                                          env_vars={"EXTRA": "1"}, pip=["tqdm"])
    assert name == "demo" and request.submission_id.startswith("ranksearch-run-demo-")
    command, params = _parse_cli(request.entrypoint)
    assert command == "run" and params["space_file"] == Path("space.yaml")
    assert (params["name"], params["storage"], params["workers"], params["budget"]) == \
        ("demo", "s3://b/searches", 3, "5")  # text: a budget may be 600ep
    assert params["tracking_uri"] == "http://mlflow:5000" and params["strategy"] == "random"
    assert (staging / "space.yaml").read_text() == space.read_text()
    env = request.runtime_env
    assert env["working_dir"] == str(staging)
    import ranksearch

    assert env["py_modules"] == [str(Path(ranksearch.__file__).resolve().parent)]
    assert env["pip"] == ["tqdm"]
    assert env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["env_vars"][submit.STORAGE_ENV] == "s3://b/searches" and env["env_vars"]["EXTRA"] == "1"
    assert request.metadata["ranksearch.search"] == "demo" and request.metadata["ranksearch.kind"] == "run"
    assert "s3cr3t" not in repr(request)


def test_search_request_validates_before_anything_is_sent(tmp_path):
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=2)
    kw = {"staging_dir": tmp_path, "storage": "s3://b/s", "tracking_uri": "http://m:5000"}
    with pytest.raises(RanksearchError, match="strategy is not a registered strategy \\(got 'nope'\\)"):
        submit.search_request(space, strategy="nope", **kw)
    with pytest.raises(SubmitError, match="working_dir does not hold"):
        other = tmp_path / "other"
        other.mkdir()
        submit.search_request(space, working_dir=other, **kw)
    request, _ = submit.search_request(space, working_dir=tmp_path, ship_code=False, **kw)
    assert request.runtime_env["working_dir"] == str(tmp_path.resolve()) and "py_modules" not in request.runtime_env


def test_search_request_with_fixed_ranks_ships_the_rank_config_and_passes_vectors_on(tmp_path):
    """`submit --fix-ranks`: the job runs `run --fix-ranks`; a local rank-config file travels with
    it (the job's machine has no access to this one's files), a rank vector is passed as written."""
    from ranksearch.rankconfig import RankConfigFile, load_rank_config
    from ranksearch.space import load_space

    space_file = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"
    space = load_space(space_file)
    ranks = [3] * space.n_ranks
    best = tmp_path / "best.yaml"
    RankConfigFile(space=space, ranks=tuple(ranks), hparams={"training.optimizer.lr": 0.001}).save(best)
    staging = tmp_path / "staging"
    staging.mkdir()
    kw = {"storage": "s3://b/s", "tracking_uri": "http://m:5000"}
    request, _ = submit.search_request(space_file, staging_dir=staging, fix_ranks=str(best), **kw)
    command, params = _parse_cli(request.entrypoint)
    assert command == "run" and params["fix_ranks"] == "fixed-ranks-best.yaml"
    shipped = load_rank_config(str(staging / "fixed-ranks-best.yaml"))
    assert list(shipped.ranks) == ranks and shipped.hparams["training.optimizer.lr"] == 0.001
    assert request.metadata["ranksearch.fixed_ranks"] == ",".join(map(str, ranks))

    vector = ",".join(["4"] * space.n_ranks)
    (tmp_path / "s2").mkdir()
    request, _ = submit.search_request(space_file, staging_dir=tmp_path / "s2", fix_ranks=vector, **kw)
    assert _parse_cli(request.entrypoint)[1]["fix_ranks"] == vector
    # refused before anything is sent: a vector of the wrong length, a space with nothing to search
    with pytest.raises(RanksearchError, match="fix_ranks has 2 values"):
        submit.search_request(space_file, staging_dir=tmp_path, fix_ranks="4,4", **kw)
    plain = write_space(tmp_path / "plain.yaml", epochs=1, budget=2)
    with pytest.raises(RanksearchError, match="hyperparameters"):
        submit.search_request(plain, staging_dir=tmp_path, fix_ranks="3", **kw)


def test_resume_request_parses_as_ranksearch_resume():
    request = submit.resume_request("demo", storage="s3://b/s", tracking_uri="http://m:5000", workers=4)
    command, params = _parse_cli(request.entrypoint)
    assert command == "resume" and (params["search"], params["storage"], params["workers"]) == ("demo", "s3://b/s", 4)
    assert request.metadata["ranksearch.kind"] == "resume"
    with pytest.raises(RanksearchError, match="not a usable search name"):
        submit.resume_request("../x", storage="s3://b/s")


class FakeJobs:
    """Stands in for the Jobs API: a node list and a record of submissions."""

    address = "http://head:8265"

    def __init__(self, nodes):
        self._nodes = nodes
        self.requests = []

    def nodes(self):
        return self._nodes

    def submit(self, request):
        assert Path(request.runtime_env["working_dir"]).is_dir()  # still there while uploading
        self.requests.append(request)
        return request.submission_id


def test_submit_search_checks_the_cluster_then_submits(tmp_path):
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=2)
    jobs = FakeJobs([HEAD, WORKER, WORKER])
    job = submit.submit_search(space, storage="s3://b/searches", tracking_uri="http://m:5000", client=jobs, name="x")
    assert job.job_id == jobs.requests[0].submission_id and job.location == "s3://b/searches/x"
    with pytest.raises(SubmitError, match="3 alive nodes"):
        submit.submit_search(space, storage=str(tmp_path / "s"), tracking_uri="http://m:5000", client=jobs)
    assert len(jobs.requests) == 1
    job = submit.submit_search(space, storage=str(tmp_path / "s"), tracking_uri="http://m:5000", client=jobs,
                               shared_storage=True, name="y")
    assert job.location == str(tmp_path / "s" / "y")


def test_job_rows_and_resume_hints():
    class Info:
        submission_id = "ranksearch-run-x-1"
        status = "STOPPED"
        message = "stopped"
        metadata = {"ranksearch.search": "x", "ranksearch.kind": "run", "ranksearch.storage": "s3://b/s"}
        entrypoint = "python -m ranksearch.cli run s.yaml"
        start_time = 1_700_000_000_000
        end_time = None
        driver_exit_code = None

    row = submit.job_row(Info())
    assert (row["job_id"], row["status"], row["search"], row["end_time"]) == ("ranksearch-run-x-1", "STOPPED", "x", None)
    assert submit.resume_hint(row, "http://h:8265") == \
        "ranksearch jobs resume x --address http://h:8265 --storage s3://b/s"
    assert submit.resume_hint(dict(row, status="SUCCEEDED"), "http://h:8265") is None


# -- the command line, without a cluster ----------------------------------------------------------------------
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    return subprocess.run([sys.executable, "-m", "ranksearch.cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("port", [40401, 40403, 8265])
def test_a_refused_connection_is_never_read_as_an_auth_failure(port):
    """A port such as 40401 sits in the connection error's text; it is not an HTTP 401."""
    import requests

    client = submit.JobsClient(f"http://127.0.0.1:{port}", env={"RAY_AUTH_TOKEN": TOKEN})
    refused = requests.ConnectionError(f"HTTPConnectionPool(host='127.0.0.1', port={port}): Max retries "
                                       "exceeded with url: /api/v0/nodes (Caused by NewConnectionError: "
                                       "Failed to establish a new connection: [Errno 111] Connection refused)")
    message = str(client._error("cannot list the nodes through", refused))
    assert "dashboard up and reachable" in message and "wants a token" not in message
    denied = str(client._error("cannot list the nodes through", RuntimeError("HTTP 401 Unauthorized")))
    assert "wants a token" in denied and TOKEN not in denied


def test_cli_submit_fails_fast_with_clear_messages(tmp_path):
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=1)
    out = _cli("submit", str(space), "--storage", "s3://b/s", "--tracking-uri", "http://m:5000")
    assert out.returncode == 2 and "--address is not given" in out.stderr and "http://HEAD:8265" in out.stderr
    port = free_port()  # nothing listens there
    out = _cli("submit", str(space), "--storage", "s3://b/s", "--tracking-uri", "http://m:5000",
               env={"RAY_ADDRESS": f"http://127.0.0.1:{port}", "RAY_AUTH_TOKEN": TOKEN})
    assert out.returncode == 2 and f"http://127.0.0.1:{port}" in out.stderr and "dashboard" in out.stderr
    assert TOKEN not in out.stdout + out.stderr
    out = _cli("submit", str(space), "--address", "http://127.0.0.1:1", "--storage", "s3://b/s",
               "--tracking-uri", "http://m:5000", "--env", "AWS_SECRET_ACCESS_KEY=abc")
    assert out.returncode == 2 and "credential" in out.stderr
    out = _cli("jobs", "list", "--address", f"http://127.0.0.1:{port}")
    assert out.returncode == 2 and "cannot reach the Ray Jobs API" in out.stderr and "dashboard up" in out.stderr


def test_bad_space_is_refused_before_the_cluster_is_contacted(tmp_path):
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load((ROOT / "search_spaces" / "quickstart_digits.yaml").read_text())
    data["strategy"]["name"] = "no-such-strategy"
    bad.write_text(yaml.safe_dump(data))
    out = _cli("submit", str(bad), "--address", "http://127.0.0.1:1", "--storage", "s3://b/s",
               "--tracking-uri", "http://m:5000")
    assert out.returncode == 2 and "unknown strategy" in out.stderr and "Jobs API" not in out.stderr


def test_library_errors_name_settings_and_the_cli_names_flags(tmp_path):
    from ranksearch.cli import flag_for

    with pytest.raises(SubmitError) as exc:
        submit.check_storage(str(tmp_path / "store"), [HEAD, WORKER, WORKER])
    python_text, cli_text = str(exc.value), exc.value.render(names=flag_for)
    assert python_text.startswith("storage ") and "shared_storage" in python_text and "--" not in python_text
    assert cli_text.startswith("--storage ") and "--shared-storage" in cli_text and "shared_storage" not in cli_text
