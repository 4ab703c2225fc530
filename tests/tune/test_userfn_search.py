"""User training functions run as real Ray Tune trials, recorded in real MLflow."""

from __future__ import annotations

import json

import pytest
import yaml
from tune_helpers import ROOT, child_runs, mlflow_client

from ranksearch import service
from ranksearch.tune.state import SearchState
from ranksearch.tune.storage import Storage

EXAMPLE = ROOT / "search_spaces" / "user_function_example.yaml"


def _space(tmp_path, function: str, **extra):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["training"] = {"function": function}
    data["strategy"]["budget"] = 1
    data.update(extra)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_function_search_records_reported_objectives(ray_runtime, tmp_path, tracking):
    outcome = service.search(str(EXAMPLE), workers=2, budget=2, name="userfn", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, show_progress=False)
    assert outcome.status == "finished" and outcome.n_trials >= 1 and outcome.n_ok == outcome.n_trials
    assert outcome.front and all(p["metrics"]["params"] > 0 and 0.5 < p["metrics"]["val_accuracy"] <= 1
                                 for p in outcome.front)
    client = mlflow_client(outcome.tracking_uri)
    children = child_runs(client, outcome.parent_run_id)
    assert len(children) == outcome.n_trials
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.metrics["val_accuracy"] > 0.5 and run.data.metrics["params"] > 0
        assert json.loads(run.data.params.get("ranks", "[]")) == []  # hyperparameters only: no rank elements
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) >= 4  # one per epoch
    # every trial's values are recorded durably and on its child run, inside the declared domains
    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "userfn")
    by_trial = {run.data.tags.get("trial_id"): run for run in children}
    for tid, rec in state.trials.items():
        hp = rec.trial_result().hparams
        assert set(hp) == {"lr", "weight_decay", "hidden", "optimizer"}
        assert 0.001 <= hp["lr"] <= 0.1 and 1e-5 <= hp["weight_decay"] <= 0.01
        assert hp["hidden"] in (16, 32, 64, 128) and hp["optimizer"] in ("adam", "sgd")
        params = by_trial[tid].data.params
        assert float(params["hp.lr"]) == pytest.approx(hp["lr"]) and params["hp.optimizer"] == hp["optimizer"]


def test_a_raising_function_is_a_failed_trial_and_the_search_finishes(ray_runtime, tmp_path, tracking):
    space = _space(tmp_path, "userfn_faulty:raises")
    outcome = service.search(str(space), workers=1, name="userfn-raises", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, retries=0, show_progress=False)
    assert outcome.status == "finished" and (outcome.n_trials, outcome.n_ok) == (1, 0)
    result = SearchState.load(Storage.parse(str(tmp_path / "store")), "userfn-raises").trials["t0001"].trial_result()
    assert result.status == "failed" and "the user's code broke" in result.error
    assert outcome.front == []


def test_a_dead_worker_is_retried_from_the_functions_checkpoint(ray_runtime, tmp_path, tracking):
    marker = tmp_path / "died"
    space = _space(tmp_path, "userfn_faulty:dies_once",
                   hyperparameters={"marker": {"choices": [str(marker)]}})
    outcome = service.search(str(space), workers=1, name="userfn-retry", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, retries=1, show_progress=False)
    assert marker.exists() and outcome.n_ok == 1
    result = SearchState.load(Storage.parse(str(tmp_path / "store")), "userfn-retry").trials["t0001"].trial_result()
    assert result.status == "ok" and result.info["resumed_from"] == "tune"
    assert result.fidelity == 1  # only epoch 3 ran again: epochs 1-2 came from the checkpoint
    assert result.metrics["params"] == 102 and result.metrics["val_accuracy"] == 0.6000000000000001
