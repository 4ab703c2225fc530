"""User-facing search functions, rank-config files and the search commands of the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ranksearch import service
from ranksearch.errors import RanksearchError, SettingError
from ranksearch.service import RankConfigFile, ServiceError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"


def _small_space(path: Path, *, epochs: int = 2, budget: int = 4) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["training"]["epochs"] = epochs
    data["strategy"]["budget"] = budget
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- bad input: exit 2 before Ray or MLflow start -----------------------------------------------------
_PROBE = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from ranksearch.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
        results.append({"argv": argv, "code": code, "stderr": buf.getvalue()})
    ray = sys.modules.get("ray")
    print(json.dumps({
        "results": results,
        "ray_initialized": bool(ray is not None and ray.is_initialized()),
        "ray_imported": ray is not None,
        "mlflow_imported": "mlflow" in sys.modules,
        "files": sorted(os.listdir(".")),
    }))
""")


def test_bad_input_exits_2_before_ray_or_mlflow_start(tmp_path):
    space = str(QUICKSTART)
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    (tmp_path / "old.yaml").write_text("kind: ranksearch/rank-config\nversion: 99\nranks: [1]\nspace: {}\n")
    (tmp_path / "runs" / "ray" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "ray" / "taken" / "search.json").write_text("{}")
    cases = {
        "file not found": ["run", "missing.yaml"],
        "malformed YAML": ["run", "broken.yaml"],
        "--strategy is not a registered strategy (got 'nope')": ["run", space, "--strategy", "nope"],
        "--budget": ["run", space, "--budget", "0"],
        "--workers": ["run", space, "--workers", "0"],
        "--name": ["run", space, "--name", "bad name!"],
        "--address": ["run", space, "--address", "not an address"],
        "unsupported scheme": ["run", space, "--storage", "gs://bucket/x"],
        "--tracking-uri": ["run", space, "--tracking-uri", "ftp://host/x"],
        "--name is taken": ["run", space, "--name", "taken"],
        "no search state": ["resume", "nosuch"],
        "must start with": ["best", "nosuch", "--pick", "maximize val_accuracy"],
        "version 99": ["train", "old.yaml"],
        "--ranks does not apply": ["train", "old.yaml", "--ranks", "3"],
    }
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(cases.values()))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for (words, _), res in zip(cases.items(), report["results"], strict=True):
        assert res["code"] == 2, res
        assert words in res["stderr"], res
    assert not report["ray_initialized"] and not report["ray_imported"]  # validated before Ray
    assert not report["mlflow_imported"]  # no store opened, no run created
    assert "mlruns" not in report["files"] and "mlflow.db" not in report["files"]


# -- preparing a search --------------------------------------------------------------------------------
def test_prepare_search_folds_overrides_into_the_space(tmp_path):
    p = service.prepare_search(QUICKSTART, strategy="uniform", budget=5, seed=7, workers=3,
                               storage=str(tmp_path / "store"), tracking_uri=str(tmp_path / "ml"))
    cfg = p.space.config
    assert (cfg.strategy.name, cfg.strategy.budget, cfg.seed) == ("uniform", 5, 7)
    assert p.settings.workers == 3 and p.settings.tracking_uri == str(tmp_path / "ml")
    assert p.settings.name.startswith("quickstart_digits-uniform-")
    assert p.settings.storage == str(tmp_path / "store")
    same = service.prepare_search(QUICKSTART, storage=str(tmp_path / "store"))
    assert same.settings.strategy == "random" and same.settings.budget == 16
    assert same.settings.workers == 2 and same.settings.cpus_per_trial == 1
    with pytest.raises(RanksearchError, match="no option 'colour'"):
        service.prepare_search(QUICKSTART, options={"colour": "red"}, storage=str(tmp_path / "store"))


def test_default_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    from ranksearch.tracking import resolve_tracking_uri

    assert service.default_tracking_uri() == resolve_tracking_uri(None)  # one default, in tracking
    assert service.default_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert service.default_tracking_uri() == "sqlite:///x.db"
    with pytest.raises(SettingError, match="tracking_uri has an unsupported scheme") as exc:
        service.default_tracking_uri("gopher://x")
    assert exc.value.setting == "tracking_uri" and "--" not in str(exc.value)
    assert not (tmp_path / "mlruns").exists()


# -- rank-config files -------------------------------------------------------------------------------
def test_rank_config_round_trip_and_build_model(digits_space, tmp_path):
    from ranksearch.space import count_params

    ranks = (4,) * digits_space.n_ranks
    cfg = RankConfigFile(digits_space, ranks, metrics={"val_accuracy": 0.9},
                         provenance={"search": "s", "trial_id": "t0003", "trial_run_id": "abc"})
    path = tmp_path / "best.yaml"
    cfg.save(path)
    assert service.is_rank_config_ref(str(path)) and not service.is_rank_config_ref(str(QUICKSTART))
    back = service.load_rank_config(path)
    assert back.ranks == ranks and back.space == digits_space and back.metrics == {"val_accuracy": 0.9}
    assert back.provenance["trial_id"] == "t0003" and "ranksearch_version" in back.provenance
    model = back.build_model()
    assert sum(p.numel() for p in model.parameters()) == count_params(digits_space, ranks)
    assert back.training == digits_space.config.training  # no final_training: the search's recipe
    with pytest.raises(ServiceError, match="no weights"):
        back.build_model(weights=True)


def test_rank_config_errors(digits_space, tmp_path):
    with pytest.raises(ServiceError, match="not found"):
        service.load_rank_config(tmp_path / "nope.yaml")
    with pytest.raises(ServiceError, match="not a rank-config file"):
        service.load_rank_config(QUICKSTART)
    bad = RankConfigFile(digits_space, (4,) * digits_space.n_ranks).to_dict()
    bad["ranks"] = [99] * digits_space.n_ranks
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(RanksearchError, match="outside its bounds"):
        service.load_rank_config(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on loopback; boto3 and pyarrow find it through AWS_ENDPOINT_URL."""
    import socket

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket="configs")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_rank_config_on_s3(digits_space, s3):
    cfg = RankConfigFile(digits_space, (5,) * digits_space.n_ranks, provenance={"trial_id": "t0001"})
    assert cfg.save("s3://configs/digits/best.yaml") == "s3://configs/digits/best.yaml"
    assert service.is_rank_config_ref("s3://configs/digits/best.yaml")
    back = service.load_rank_config("s3://configs/digits/best.yaml")
    assert back.ranks == cfg.ranks and back.provenance["trial_id"] == "t0001"
    with pytest.raises(ServiceError, match="cannot read"):
        service.load_rank_config("s3://configs/missing.yaml")


# -- a real search, then front / best / register / train -------------------------------------------------
@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """One small search on Ray (the session's runtime when there is one)."""
    from ranksearch.tune.driver import ensure_ray

    ensure_ray()
    root = tmp_path_factory.mktemp("service-search")
    space = _small_space(root / "space.yaml", epochs=3, budget=4)
    outcome = service.search(space, name="svc", workers=2, storage=str(root / "store"),
                             tracking_uri=str(root / "mlruns"), show_progress=False)
    assert outcome.status == "finished"
    return {"root": root, "outcome": outcome, "storage": str(root / "store")}


@pytest.mark.ray
@pytest.mark.mlflow
def test_front_and_best_read_the_search_back(finished_search, tmp_path):
    from ranksearch.cli import main

    storage = finished_search["storage"]
    outcome = finished_search["outcome"]
    rows = service.front("svc", storage=storage)
    assert {r["trial_id"] for r in rows} == {p["trial_id"] for p in outcome.front}
    by_run_id = service.front(outcome.parent_run_id, tracking_uri=outcome.tracking_uri)
    assert {r["trial_id"] for r in by_run_id} == {r["trial_id"] for r in rows}
    best = service.best("svc", "max val_accuracy", storage=storage)
    assert best.metrics["val_accuracy"] == max(r["metrics"]["val_accuracy"] for r in rows)
    knee = service.best("svc", "knee", storage=storage)
    assert knee.provenance["trial_id"] in {r["trial_id"] for r in rows}
    with pytest.raises(RanksearchError, match="no trial satisfies"):
        service.best("svc", "max val_accuracy where compression_ratio >= 1000", storage=storage)

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["front", "svc", "--storage", storage, "--json"])
    doc = json.loads(buf.getvalue())
    assert doc["search_run_id"] == outcome.parent_run_id
    assert {"ranks", "val_accuracy", "params", "compression_ratio", "flops", "run_id"} <= set(doc["front"][0])


@pytest.mark.ray
@pytest.mark.mlflow
@pytest.mark.slow
def test_best_register_then_train_reproduces_the_trial(finished_search, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from ranksearch.cli import main
    from ranksearch.tracking import resolve_tracking_uri
    from ranksearch.training import evaluate, get_splits

    monkeypatch.chdir(tmp_path)
    storage = finished_search["storage"]
    main(["best", "svc", "--storage", storage, "--pick", "max val_accuracy where compression_ratio >= 2",
          "-o", "best.yaml", "--register", "digits-tr"])
    config = service.load_rank_config("best.yaml")
    prov = config.provenance
    assert prov["search"] == "svc" and prov["trial_run_id"] and prov["search_run_id"]

    # The registered model carries the config, and its weights score what the trial scored.
    champion = service.load_rank_config("models:/digits-tr@champion", tracking_uri=prov["tracking_uri"])
    assert champion.ranks == config.ranks
    model = champion.build_model(weights=True)
    _, acc = evaluate(model, get_splits(champion.space).val)
    assert acc == pytest.approx(config.metrics["val_accuracy"], abs=1e-9)
    client = MlflowClient(resolve_tracking_uri(prov["tracking_uri"]))
    version = client.get_model_version_by_alias("digits-tr", "champion")
    assert json.loads(version.tags["ranksearch.ranks"]) == list(config.ranks)
    assert version.tags["ranksearch.trial_run_id"] == prov["trial_run_id"]

    # Production training of the picked config: same recipe and seed, so the same accuracy.
    main(["train", "best.yaml", "--out", "prod"])
    metrics = json.loads((tmp_path / "prod" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(config.metrics["val_accuracy"], abs=0.02)
    run_id = metrics["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ranksearch.search_run_id"] == prov["search_run_id"]
    assert run.data.tags["ranksearch.trial_run_id"] == prov["trial_run_id"]
    assert {a.path for a in client.list_artifacts(run_id, "model")} >= {"model/model.pt", "model/rank_config.yaml"}
