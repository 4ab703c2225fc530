"""Real searches on the session's Ray runtime: parallel trials, MLflow layout, S3 storage."""

from __future__ import annotations

import io
import itertools
import json

import pytest
from rich.console import Console
from tune_helpers import child_runs, mlflow_client, write_space

from ranksearch import service
from ranksearch.tune.state import SearchState
from ranksearch.tune.storage import Storage

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]


def test_search_runs_trials_in_parallel_and_records_everything(ray_runtime, tmp_path, tracking):
    space = write_space(tmp_path / "space.yaml", epochs=2, budget=4)
    screen = io.StringIO()
    outcome = service.search(space, workers=2, name="e2e", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, console=Console(file=screen, force_terminal=False))
    assert outcome.status == "finished" and (outcome.n_trials, outcome.n_ok) == (4, 4)

    # Trials overlapped in time: two really ran at once (actor reuse, 1 CPU each).
    spans = [(t["started_at"], t["ended_at"]) for t in outcome.trials]
    assert any(a0 < b1 and b0 < a1 for (a0, a1), (b0, b1) in itertools.combinations(spans, 2))

    # The display degrades to one plain line per finished trial when not on a terminal.
    lines = [ln for ln in screen.getvalue().splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and "done 4/4" in lines[-1] and "\x1b[" not in screen.getvalue()

    client = mlflow_client(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "e2e"
    assert parent.data.params["strategy"] == "random" and parent.data.params["budget"] == "4"
    children = child_runs(client, outcome.parent_run_id)
    assert sorted(r.data.tags["trial_id"] for r in children) == ["t0001", "t0002", "t0003", "t0004"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert json.loads(run.data.params["ranks"]) and run.data.metrics["val_accuracy"] > 0
        assert run.data.tags["node_id"] == ray_runtime.get_runtime_context().get_node_id()  # where it ran
        assert run.data.tags["node_ip"] and run.data.tags["hostname"]
        files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        assert files == {"model/model.pt", "model/rank_config.yaml"}
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id, "pareto")}
    assert {"pareto/front.json", "pareto/history.json", "pareto/front.html"} <= artifacts
    hv = client.get_metric_history(outcome.parent_run_id, "hypervolume")
    assert sorted(m.step for m in hv) == [1, 2, 3, 4]  # one point per finished trial

    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "e2e")
    assert state.status == "finished" and len(state.order) == 4
    asks = [e for e in state.strategy_state["events"] if e.get("ask")]
    assert len(asks) == 4
    assert all(rec.info.get("model_logged") for rec in state.trials.values())

    front = service.front("e2e", storage=str(tmp_path / "store"))
    assert {r["trial_id"] for r in front} == {p["trial_id"] for p in outcome.front}


def test_search_keeps_its_experiment_on_s3(ray_runtime, tmp_path, tracking, s3_server):
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=2)
    where = f"s3://{s3_server['bucket']}/searches?endpoint={s3_server['endpoint']}"
    outcome = service.search(space, workers=2, name="on-s3", storage=where, tracking_uri=tracking,
                             show_progress=False)
    assert outcome.status == "finished" and outcome.n_ok == 2
    assert outcome.location == f"s3://{s3_server['bucket']}/searches/on-s3"
    store = Storage.parse(where)
    state = SearchState.load(store, "on-s3")
    assert state.status == "finished"
    trial_dirs = [d for d in store.list_dir("on-s3") if d.startswith("t000")]
    assert len(trial_dirs) == 2
    assert any(e.startswith("checkpoint_") for e in store.list_dir("on-s3", trial_dirs[0]))
    # The search is found again from its S3 state alone.
    assert service.locate_search(where.replace("/searches?", "/searches/on-s3?")).parent_run_id == outcome.parent_run_id
