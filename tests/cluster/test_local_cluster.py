"""Searches on a real multi-node Ray cluster on loopback, submitted through the Jobs API.

The session's stack (conftest.py) has a head that runs job drivers only and two worker nodes
of 1 CPU each, so two trials at once must use both nodes. Storage is S3 (moto) and tracking an
MLflow server whose artifacts are in the same S3: nothing is shared through the local disk.

Which node ran a trial is read from Tune's experiment state on S3 (the PID in each trial's last
result) joined with Ray's actor table (PID -> node id); when trials also tag their child run
with `node_id`, the two must agree.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import write_space

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.mlflow, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _job_id(proc) -> str:
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    assert lines, f"no job id printed:\n{proc.stderr}"
    return lines[-1].strip()


def _wait_ok(stack, job_id: str, timeout: float) -> None:
    status = stack.wait_job(job_id, timeout)
    assert status == "SUCCEEDED", f"job {job_id} ended {status}:\n{stack.logs(job_id)[-6000:]}"


def _trial_nodes(stack, name: str) -> dict[str, list[str]]:
    """Per trial: the node id of each Tune attempt that reported, oldest first."""
    pid_node = {int(a["pid"]): a["node_id"] for a in stack.trainable_actors() if a.get("pid")}
    return {tid: [pid_node[a["pid"]] for a in attempts if a.get("pid") in pid_node]
            for tid, attempts in stack.tune_trials(name).items()}


def _check_mlflow(stack, state: dict, budget: int) -> dict[str, object]:
    """The search's parent run and exactly one finished child run per trial; returns the runs."""
    client = stack.mlflow_client()
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = stack.child_runs(state["parent_run_id"])
    by_trial: dict[str, list] = {}
    for run in children:
        by_trial.setdefault(run.data.tags["trial_id"], []).append(run)
    assert sorted(by_trial) == sorted(state["trials"]) and len(by_trial) == budget
    for tid, runs in by_trial.items():
        assert len(runs) == 1, f"{tid} has {len(runs)} child runs"
        assert runs[0].info.status == "FINISHED" and runs[0].data.tags["ranksearch.trial_status"] == "ok"
        assert "val_accuracy" in runs[0].data.metrics
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")}
    assert {"pareto/front.json", "pareto/history.json"} <= names
    return {tid: runs[0] for tid, runs in by_trial.items()}


def _check_node_tags(runs: dict, nodes: dict[str, list[str]]) -> None:
    """When trials record their node (child-run tag `node_id`), it must match Ray's record."""
    tagged = {tid: run.data.tags.get("node_id") for tid, run in runs.items()}
    if any(tagged.values()):
        assert tagged == {tid: n[-1] for tid, n in nodes.items()}


def test_submitted_search_runs_on_both_worker_nodes_and_lands_in_mlflow_and_s3(local_stack, tmp_path):
    stack = local_stack
    hyper = {"training.optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": True},
             "training.optimizer.name": {"choices": ["adam", "sgd"]},
             "training.optimizer.momentum": {"low": 0.8, "high": 0.95, "when": {"training.optimizer.name": "sgd"}}}
    space = write_space(tmp_path / "space.yaml", epochs=3, budget=4, hyperparameters=hyper)
    t0 = time.monotonic()
    proc = stack.cli("submit", str(space), "--name", "multinode", "--storage", stack.storage)
    job_id = _job_id(proc)
    assert job_id.startswith("ranksearch-run-multinode-")
    _wait_ok(stack, job_id, 180)
    elapsed = time.monotonic() - t0

    # The job, through the command line.
    status = json.loads(stack.cli("jobs", "status", job_id, "--json").stdout)
    assert (status["status"], status["search"], status["kind"]) == ("SUCCEEDED", "multinode", "run")
    listed = json.loads(stack.cli("jobs", "list", "--json").stdout)
    assert job_id in {r["job_id"] for r in listed}
    logs = stack.cli("jobs", "logs", job_id).stdout
    assert "search multinode: finished, 4 ok, 0 failed" in logs

    # S3: the search's state and one checkpoint with weights per trial.
    state = stack.search_state("multinode")
    assert state["status"] == "finished" and len(state["order"]) == 4
    keys = stack.keys_under(stack.search_prefix("multinode"))
    for tid, rec in state["trials"].items():
        assert rec["status"] == "ok"
        trial_dir = f"{stack.search_prefix('multinode')}{rec['attempts'][-1]['dir']}/"
        assert any(k.startswith(trial_dir) and k.endswith("/model.pt") for k in keys), tid
    # MLflow, with its artifacts in the same S3.
    runs = _check_mlflow(stack, state, budget=4)
    artifacts = stack.keys_under("mlartifacts/")
    assert any(state["parent_run_id"] in k and k.endswith("pareto/front.json") for k in artifacts)
    assert sum(k.endswith("/model.pt") for k in artifacts) >= 4  # each trial's weights, logged

    # Both worker nodes ran trials (the head has no CPU: none ran there).
    workers = stack.worker_nodes()
    nodes = _trial_nodes(stack, "multinode")
    assert sorted(nodes) == sorted(state["trials"]) and all(nodes.values())
    assert {n[-1] for n in nodes.values()} == set(workers.values())
    _check_node_tags(runs, nodes)

    # Each trial's hyperparameter values: in the record on S3, as hp.* params of its child run,
    # and the domains on the parent.
    for tid, run in runs.items():
        values = state["trials"][tid]["hparams"]
        assert values and {k.removeprefix("hp."): v for k, v in run.data.params.items()
                           if k.startswith("hp.")} == {k: str(v) for k, v in values.items()}
    parent_params = stack.mlflow_client().get_run(state["parent_run_id"]).data.params
    assert {k.removeprefix("hp_domain.") for k in parent_params if k.startswith("hp_domain.")} == set(hyper)

    # No token or key in anything a user or MLflow sees.
    client = stack.mlflow_client()
    parent = client.get_run(state["parent_run_id"])
    seen = "\n".join([proc.stdout, proc.stderr, logs, json.dumps(stack.job(job_id)), json.dumps(status),
                      json.dumps(parent.data.params), json.dumps(parent.data.tags),
                      *[json.dumps([r.data.params, r.data.tags]) for r in runs.values()]])
    for secret in stack.secrets():
        assert secret not in seen
    print(f"multi-node search of 4 trials: {elapsed:.1f} s from submit to success")


def test_submit_refuses_a_local_only_path_on_a_multi_node_cluster(local_stack, tmp_path):
    stack = local_stack
    space = write_space(tmp_path / "space.yaml", epochs=1, budget=1)
    before = {r["job_id"] for r in json.loads(stack.cli("jobs", "list", "--json").stdout)}
    proc = stack.cli("submit", str(space), "--storage", str(tmp_path / "store"), check=False)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert "3 alive nodes" in err and "s3://BUCKET/PREFIX" in err and "--shared-storage" in err
    proc = stack.cli("submit", str(space), "--storage", "runs/ray", check=False)
    assert proc.returncode == 2 and "relative path" in proc.stderr
    after = {r["job_id"] for r in json.loads(stack.cli("jobs", "list", "--json").stdout)}
    assert after == before  # nothing was submitted


def test_a_stopped_job_ends_cleanly_and_resume_finishes_the_budget(local_stack, tmp_path):
    stack = local_stack
    space = write_space(tmp_path / "space.yaml", epochs=10, batch_size=16, budget=6)
    job_id = _job_id(stack.cli("submit", str(space), "--name", "stopme", "--storage", stack.storage))

    deadline = time.monotonic() + 150
    state = None
    while time.monotonic() < deadline:  # stop it with trials done and trials running
        state = stack.search_state("stopme") or {}
        running = [r for r in (state.get("trials") or {}).values() if r["status"] == "running"]
        if len(state.get("order") or []) >= 1 and running:
            break
        assert stack.job(job_id)["status"] in ("PENDING", "RUNNING"), stack.logs(job_id)[-4000:]
        time.sleep(0.5)
    else:
        pytest.fail(f"the search never had a finished and a running trial: {state}")
    t_stop = time.time()
    proc = stack.cli("jobs", "stop", job_id)
    assert f"job {job_id}: STOPPED" in proc.stderr
    assert "ranksearch jobs resume stopme" in " ".join(proc.stderr.split())

    # It ended cleanly: the driver recorded the search as interrupted, in S3 and in MLflow.
    state = stack.search_state("stopme")
    assert state["status"] == "interrupted"
    assert 1 <= len(state["order"]) < 6
    done_before = {tid: len(state["trials"][tid]["attempts"]) for tid in state["order"]}
    assert "search stopme: interrupted" in stack.logs(job_id)
    assert stack.mlflow_client().get_run(state["parent_run_id"]).info.status == "KILLED"

    # resume, as a new job: the same search, finished trials never re-run.
    proc = stack.cli("jobs", "resume", "stopme", "--storage", stack.storage)
    job2 = _job_id(proc)
    assert job2.startswith("ranksearch-resume-stopme-")
    _wait_ok(stack, job2, 200)
    final = stack.search_state("stopme")
    assert final["status"] == "finished" and len(final["order"]) == 6
    assert final["parent_run_id"] == state["parent_run_id"]
    assert all(r["status"] == "ok" for r in final["trials"].values())
    for tid, attempts in done_before.items():
        assert len(final["trials"][tid]["attempts"]) == attempts, f"{tid} ran again"
    runs = _check_mlflow(stack, final, budget=6)
    for tid in done_before:  # their one run is the first driver's (its end is written asynchronously)
        assert runs[tid].info.start_time <= t_stop * 1000


def test_a_search_survives_losing_a_worker_node(local_stack, tmp_path):
    stack = local_stack
    workers = stack.worker_nodes()
    assert set(workers) == {"w1", "w2"}
    space = write_space(tmp_path / "space.yaml", epochs=15, batch_size=16, budget=4)
    job_id = _job_id(stack.cli("submit", str(space), "--name", "nodeloss", "--storage", stack.storage,
                               "--retries", "2"))
    prefix = stack.search_prefix("nodeloss")

    # Kill w2 once both running trials have a checkpoint on S3 (whichever runs there has one).
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        state = stack.search_state("nodeloss") or {}
        running = [r for r in (state.get("trials") or {}).values() if r["status"] == "running"]
        keys = stack.keys_under(prefix) if len(running) == 2 else []
        if len(running) == 2 and all(
                any(k.startswith(f"{prefix}{r['attempts'][-1]['dir']}/checkpoint_") and k.endswith("checkpoint.pt")
                    for k in keys) for r in running):
            break
        assert stack.job(job_id)["status"] in ("PENDING", "RUNNING"), stack.logs(job_id)[-4000:]
        time.sleep(0.3)
    else:
        pytest.fail("two trials never ran with checkpoints at the same time")
    try:
        stack.kill_worker(2)
        _wait_ok(stack, job_id, 200)
        assert set(stack.worker_nodes()) == {"w1"}

        # The budget completed, every trial ok and recorded once.
        state = stack.search_state("nodeloss")
        assert state["status"] == "finished" and len(state["order"]) == 4
        assert all(r["status"] == "ok" for r in state["trials"].values())
        runs = _check_mlflow(stack, state, budget=4)

        # The trial that lost its node was retried from its checkpoint on the surviving node.
        tune = stack.tune_trials("nodeloss")
        nodes = _trial_nodes(stack, "nodeloss")
        interrupted = [tid for tid, attempts in tune.items() if any(a["num_failures"] for a in attempts)]
        assert interrupted, f"no trial lost its node: {tune}"
        for tid in interrupted:
            assert nodes[tid][-1] == workers["w1"], f"{tid} finished on {nodes[tid]}"
            assert tune[tid][-1]["resumed_from"] == "tune"
            assert runs[tid].data.tags.get("resumed_from") == "tune"
        # w2 did run this search's trials until it died (Tune keeps only the last attempt's
        # result, so the actor table says where the first attempt ran).
        on_w2 = [a for a in stack.trainable_actors(job_id) if a["node_id"] == workers["w2"]]
        assert on_w2 and all(a["state"] == "DEAD" for a in on_w2)
        _check_node_tags(runs, nodes)
        assert "retrying from its last checkpoint" in stack.logs(job_id)
    finally:
        stack.start_worker(2)  # leave the cluster as the session found it
