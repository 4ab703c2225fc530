"""Searches whose space has hyperparameters, end to end on real Ray and real MLflow: every
trial trains under its own recipe, every value reaches the record and MLflow, a killed driver
resumes with them, and `best` / `train` hand them to production."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from recipe_strategy import NAME, register
from tune_helpers import HERE, ROOT, child_runs, mlflow_client, stop_group

from ranksearch import service
from ranksearch.cli import main
from ranksearch.space import load_space
from ranksearch.tune.state import STATE_FILE, SearchState
from ranksearch.tune.storage import Storage, StorageError

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]
RECIPE = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"
register()


def recipe_space(path: Path, *, epochs: int, budget: int) -> Path:
    data = yaml.safe_load(RECIPE.read_text())
    data["training"]["epochs"] = epochs
    data["strategy"]["budget"] = budget
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def hp_params(run) -> dict[str, str]:
    return {k.removeprefix("hp."): v for k, v in run.data.params.items() if k.startswith("hp.")}


def check_run_matches(run, values: dict) -> None:
    """The child run's hp.* params are exactly the trial's values (conditional ones only when
    active) and its per-epoch lr is the trial's lr (schedule none: constant)."""
    params = hp_params(run)
    assert set(params) == set(values), (params, values)
    for name, v in values.items():
        if isinstance(v, float):
            assert math.isclose(float(params[name]), v, rel_tol=1e-12)
        else:
            assert params[name] == str(v)
    assert ("training.optimizer.momentum" in values) == (values["training.optimizer.name"] == "sgd")


def test_a_search_with_hyperparameters_trains_and_records_every_value(ray_runtime, tmp_path, tracking, capsys):
    space_file = recipe_space(tmp_path / "space.yaml", epochs=2, budget=6)
    space = load_space(space_file)
    store = str(tmp_path / "store")
    outcome = service.search(space_file, strategy=NAME, workers=2, name="hp", storage=store,
                             tracking_uri=tracking, show_progress=False)
    assert outcome.status == "finished" and outcome.n_trials == 6, outcome

    state = SearchState.load(Storage.parse(store), "hp")
    client = mlflow_client(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    domains = {k.removeprefix("hp_domain."): json.loads(v) for k, v in parent.data.params.items()
               if k.startswith("hp_domain.")}
    assert domains == json.loads(json.dumps(space.hyper.to_dict()))  # the parent run carries the domains
    runs = {r.data.tags["trial_id"]: r for r in child_runs(client, outcome.parent_run_id)}
    assert sorted(runs) == sorted(state.trials)
    lrs = set()
    for tid, rec in state.trials.items():
        result = rec.trial_result()
        assert rec.hparams and result.hparams == rec.hparams == space.hyper.canonical(rec.hparams)
        check_run_matches(runs[tid], rec.hparams)
        lr = rec.hparams["training.optimizer.lr"]
        lrs.add(lr)
        if result.status == "ok":  # the trainer really used the value: its per-epoch lr
            history = client.get_metric_history(runs[tid].info.run_id, "lr")
            assert len(history) == 2 and all(math.isclose(m.value, lr, rel_tol=1e-6) for m in history)
    assert len(lrs) >= 3  # values differ across trials
    capsys.readouterr()
    main(["front", "hp", "--all", "--json", "--storage", store, "--tracking-uri", tracking])
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert {r["trial_id"]: r["hparams"] for r in rows} == {t: rec.hparams for t, rec in state.trials.items()}
    main(["front", "hp", "--storage", store, "--tracking-uri", tracking])
    table = capsys.readouterr().out
    assert "hyperparam" in table and "optimizer.name=" in table.replace("\n", "")

    # best writes the picked trial's values; train applies them (and logs them).
    cfg = tmp_path / "best.yaml"
    main(["best", "hp", "--storage", store, "--tracking-uri", tracking, "-o", str(cfg)])
    doc = yaml.safe_load(cfg.read_text())
    picked = state.trials[doc["provenance"]["trial_id"]]
    assert doc["hyperparameters"] == picked.hparams and doc["ranks"] == picked.ranks
    out = tmp_path / "prod"
    main(["train", str(cfg), "--epochs", "1", "--out", str(out), "--tracking-uri", tracking])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"] == picked.hparams
    assert math.isclose(metrics["history"][0]["lr"], picked.hparams["training.optimizer.lr"], rel_tol=1e-6)
    prod = client.get_run(metrics["mlflow_run_id"])
    check_run_matches(prod, picked.hparams)


def _read_state(store: Path, name: str) -> SearchState | None:
    try:
        return SearchState.load(Storage.parse(str(store)), name)
    except (OSError, ValueError, StorageError):
        return None


@pytest.mark.slow
def test_a_killed_driver_resumes_with_every_trials_values(ray_runtime, tmp_path):
    space_file = recipe_space(tmp_path / "space.yaml", epochs=3, budget=6)
    store, mlruns = tmp_path / "store", tmp_path / "mlruns"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a driver with its own Ray
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, str(HERE / "recipe_strategy.py"), str(space_file), str(store),
                             str(mlruns), "killed-hp"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            doc = _read_state(store, "killed-hp") if (store / "killed-hp" / STATE_FILE).exists() else None
            if doc and len(doc.order) >= 2:
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("no trial finished in time:\n" + (tmp_path / "run.log").read_text()[-3000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_group(proc, signal.SIGKILL)
        log.close()
    before = _read_state(store, "killed-hp")
    assert before is not None and before.status == "running" and 2 <= len(before.order) < 6

    outcome = service.resume("killed-hp", storage=str(store), tracking_uri=str(mlruns), show_progress=False)
    assert outcome.status == "finished"
    after = _read_state(store, "killed-hp")
    assert sorted(after.order) == [f"t{i:04d}" for i in range(1, 7)]
    for tid, rec in before.trials.items():  # finished or cut short: the values they were proposed with
        assert after.trials[tid].hparams == rec.hparams and rec.hparams
    client = mlflow_client(after.settings["tracking_uri"])
    runs = {r.data.tags["trial_id"]: r for r in child_runs(client, after.parent_run_id)}
    assert sorted(runs) == sorted(after.trials)
    for tid, rec in after.trials.items():
        assert rec.trial_result().hparams == rec.hparams
        check_run_matches(runs[tid], rec.hparams)
    assert len({rec.hparams["training.optimizer.lr"] for rec in after.trials.values()}) >= 2
