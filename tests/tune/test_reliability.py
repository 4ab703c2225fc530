"""Failures a search must survive: raising and diverging trials, a retried trial, a killed
driver, and a tracking server that goes away for 20 seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from faulty import expected_status
from tune_helpers import BIN, MlflowServer, child_runs, mlflow_client, stop_group, write_space

from ranksearch import service
from ranksearch.cli import main
from ranksearch.tune.state import STATE_FILE, SearchState
from ranksearch.tune.storage import Storage, StorageError

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]


def test_raising_and_diverging_trials_are_recorded_and_the_budget_completes(ray_runtime, tmp_path, tracking):
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=6, seed=0,
                        model={"name": "faulty:make", "options": {"mode": "mixed"}})
    # No retries here (the next test covers them): an errored actor is not reused, and each
    # fresh one costs seconds.
    outcome = service.search(space, workers=2, name="faulty", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, retries=0, show_progress=False)
    assert outcome.status == "finished" and outcome.n_trials == 6
    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "faulty")
    seen = Counter()
    for rec in state.finished_trials:
        result = rec.trial_result()
        status, words = expected_status(int(result.metrics["params"]))
        assert result.status == status, (rec.trial_id, result)
        if words:
            assert words in result.error
        seen[words or "ok"] += 1
    assert seen["injected failure"] and seen["non-finite"] and seen["ok"]  # seed 0 mixes all three
    client = mlflow_client(outcome.tracking_uri)
    runs = {r.data.tags["trial_id"]: r for r in child_runs(client, outcome.parent_run_id)}
    assert len(runs) == 6
    for rec in state.finished_trials:
        run = runs[rec.trial_id]
        assert run.data.tags["ranksearch.trial_status"] == rec.status
        if rec.status == "failed":
            assert run.info.status == "FAILED" and run.data.tags["error"]


def test_a_failed_trial_is_retried_from_its_last_checkpoint(ray_runtime, tmp_path, tracking):
    marker = tmp_path / "failed-once"
    space = write_space(tmp_path / "space.yaml", epochs=3, budget=1,
                        model={"name": "faulty:make",
                               "options": {"mode": "fail_once", "marker": str(marker), "after_steps": 25}})
    outcome = service.search(space, workers=1, name="retry", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, retries=1, show_progress=False)
    assert marker.exists() and outcome.n_ok == 1
    rec = SearchState.load(Storage.parse(str(tmp_path / "store")), "retry").trials["t0001"]
    result = rec.trial_result()
    assert result.status == "ok" and result.fidelity == 3
    assert result.info["resumed_from"] == "tune"  # not from scratch: epoch 1's checkpoint


def _read_state(path: Path) -> SearchState | None:
    """The search's record as a resumed driver would read it (None before it exists)."""
    try:
        return SearchState.load(Storage.parse(str(path.parent.parent)), path.parent.name)
    except (OSError, ValueError, StorageError):
        return None


@pytest.mark.slow
def test_a_killed_driver_resumes_without_rerunning_finished_trials(ray_runtime, tmp_path):
    space = write_space(tmp_path / "space.yaml", epochs=4, budget=6)
    store, mlruns = tmp_path / "store", tmp_path / "mlruns"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a driver with its own Ray
    common = ["--storage", str(store), "--tracking-uri", str(mlruns), "-q"]
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([str(BIN / "ranksearch"), "run", str(space), "--name", "killed", "--workers", "2",
                             *common], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    state_file = store / "killed" / STATE_FILE
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            doc = _read_state(state_file)
            if doc and len(doc.order) >= 2:
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("no trial finished in time:\n" + (tmp_path / "run.log").read_text()[-3000:])
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: no chance to clean up
        proc.wait(timeout=30)
    finally:
        stop_group(proc, signal.SIGKILL)  # whatever the driver left in its process group
        log.close()
    before = SearchState.load(Storage.parse(str(store)), "killed")
    assert before.status == "running" and 2 <= len(before.order) < 6

    # `ranksearch resume`, in this process: a new driver on the session's Ray runtime.
    main(["resume", "killed", *common])
    after = SearchState.load(Storage.parse(str(store)), "killed")
    assert after.status == "finished" and sorted(after.order) == [f"t{i:04d}" for i in range(1, 7)]
    for tid in before.order:  # finished before the kill: kept as they were, never re-run
        assert after.trials[tid].result == before.trials[tid].result
        assert len(after.trials[tid].attempts) == 1
    events_before = before.strategy_state["events"]
    assert after.strategy_state["events"][: len(events_before)] == events_before  # the strategy went on
    asks = [tuple(e["ask"]) for e in after.strategy_state["events"] if e.get("ask")]
    assert len(asks) == 6 == len(set(asks))

    client = mlflow_client(after.settings["tracking_uri"])
    runs = child_runs(client, after.parent_run_id)
    per_trial = Counter(r.data.tags["trial_id"] for r in runs)
    assert per_trial == {f"t{i:04d}": 1 for i in range(1, 7)}  # exactly one child run per trial
    assert all(r.info.status in ("FINISHED", "FAILED") and "ranksearch.trial_status" in r.data.tags for r in runs)
    assert client.get_run(after.parent_run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_tracking_server_outage_of_20s_loses_no_trial(ray_runtime, tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    try:
        space = write_space(tmp_path / "space.yaml", epochs=2, budget=4)
        state_file = tmp_path / "store" / "outage" / STATE_FILE
        outage: dict[str, float] = {}

        def take_server_down() -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:  # down while trials run, before any finishes
                doc = _read_state(state_file)
                if doc and any(t.status == "running" for t in doc.trials.values()):
                    break
                time.sleep(0.05)
            server.stop()
            outage["down"] = time.monotonic()
            time.sleep(20)
            server.start()
            outage["up"] = time.monotonic()

        thread = threading.Thread(target=take_server_down, daemon=True)
        thread.start()
        outcome = service.search(space, workers=2, name="outage", storage=str(tmp_path / "store"),
                                 tracking_uri=server.uri, show_progress=False)
        thread.join(timeout=300)
        assert outage["up"] - outage["down"] >= 20
        assert outcome.status == "finished" and outcome.n_trials == 4

        client = mlflow_client(server.uri)
        runs = child_runs(client, outcome.parent_run_id)
        assert sorted(r.data.tags["trial_id"] for r in runs) == [f"t{i:04d}" for i in range(1, 5)]
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["ranksearch.trial_status"] == "ok"
            assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} >= {"model/model.pt"}
        hv = client.get_metric_history(outcome.parent_run_id, "hypervolume")
        assert sorted(m.step for m in hv) == list(range(1, 5))
        assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"
    finally:
        server.stop()


@pytest.mark.slow
def test_sigterm_stops_a_search_cleanly_and_resume_finishes_it(ray_runtime, tmp_path):
    """A scheduler's stop (SIGTERM) is handled like Ctrl-C: exit 130, state 'interrupted', the
    parent MLflow run closed as KILLED; `resume` then completes the budget."""
    space = write_space(tmp_path / "space.yaml", epochs=4, budget=5)
    store, mlruns = tmp_path / "store", tmp_path / "mlruns"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    common = ["--storage", str(store), "--tracking-uri", str(mlruns), "-q"]
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([str(BIN / "ranksearch"), "run", str(space), "--name", "termed", "--workers", "2",
                             *common], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    state_file = store / "termed" / STATE_FILE
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            doc = _read_state(state_file)
            if doc and len(doc.order) >= 1:
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("no trial finished in time:\n" + (tmp_path / "run.log").read_text()[-3000:])
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        stop_group(proc, signal.SIGKILL)
        log.close()
    assert code == 130, (tmp_path / "run.log").read_text()[-3000:]
    before = SearchState.load(Storage.parse(str(store)), "termed")
    assert before.status == "interrupted" and 1 <= len(before.order) < 5
    client = mlflow_client(before.settings["tracking_uri"])
    assert client.get_run(before.parent_run_id).info.status == "KILLED"

    main(["resume", "termed", *common])
    after = SearchState.load(Storage.parse(str(store)), "termed")
    assert after.status == "finished" and len(after.order) == 5
    for tid in before.order:
        assert after.trials[tid].result == before.trials[tid].result
    assert client.get_run(after.parent_run_id).info.status == "FINISHED"
