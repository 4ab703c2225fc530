"""SearchTracker against a real MLflow server (artifacts in moto S3) and a local SQLite store."""

from __future__ import annotations

import json
import math
import random
import re
import time
from pathlib import Path

import pytest

from ranksearch.trial import TrialResult

pytestmark = pytest.mark.mlflow

SECRET = "hunter2-do-not-log"
OPTIONS = {"population": 8, "aws_secret_access_key": SECRET, "nested": {"api_token": SECRET, "depth": 2}}
EPOCHS = 3


def synthetic_trials(n: int = 12, seed: int = 0, failed=(4,), pruned=(8,)) -> list[tuple[str, TrialResult]]:
    """Cheap deterministic trials: bigger ranks, more accuracy and less compression."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ranks = tuple(rng.randint(1, 12) for _ in range(4))
        params = 2_000 + 900 * sum(ranks) + rng.randint(0, 3_000)
        acc = 0.55 + 0.4 * (1 - math.exp(-sum(ranks) / 12)) + rng.uniform(-0.04, 0.04)
        metrics = {"val_accuracy": round(acc, 4), "params": float(params),
                   "compression_ratio": 266_610 / params, "flops": 2.0 * params}
        tid = f"t{i:03d}"
        if i in failed:
            result = TrialResult(ranks, status="failed", error="RuntimeError: loss is NaN at epoch 2")
        elif i in pruned:
            result = TrialResult(ranks, status="pruned", metrics={"val_accuracy": 0.3}, fidelity=1)
        else:
            result = TrialResult(ranks, metrics=metrics, fidelity=EPOCHS, info={"generation": i // 4})
        out.append((tid, result))
    return out


def log_trial(tracker, tid: str, result: TrialResult, *, driver_inserts: bool = True) -> None:
    """One trial as the driver reports it: started, epochs, then the archive's insert and the
    tracker told what it changed (`driver_inserts=False`: the tracker inserts, as benchmarks do)."""
    tracker.trial_started(tid, result.ranks, {"generation": tid[-1], "phase": "explore"})
    acc = result.metrics.get("val_accuracy", 0.5)
    for epoch in range(1, EPOCHS + 1):
        tracker.trial_epoch(tid, epoch, {"train_loss": 2.0 / epoch, "val_loss": 2.2 / epoch,
                                         "val_accuracy": acc * epoch / EPOCHS})
        if result.status == "pruned" and epoch == 1:
            break
    update = tracker.archive.insert(tid, result) if driver_inserts else None
    tracker.trial_finished(tid, result, update)


def independent_front(results: dict[str, TrialResult]) -> set[str]:
    ok = {t: r for t, r in results.items() if r.ok}

    def dominates(a, b):
        fa = (a.metrics["val_accuracy"], a.metrics["compression_ratio"])
        fb = (b.metrics["val_accuracy"], b.metrics["compression_ratio"])
        return all(x >= y for x, y in zip(fa, fb, strict=True)) and fa != fb

    return {t for t, r in ok.items() if not any(dominates(o, r) for o in ok.values())}


def download_json(client, run_id: str, path: str, tmp: Path):
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp))).read_text())


def check_search(uri: str, parent_id: str, trials: list[tuple[str, TrialResult]], tmp: Path,
                 space_name: str) -> dict:
    """Everything a finished search must have left in MLflow."""
    from mlflow import MlflowClient

    from ranksearch import tracking
    from ranksearch.pareto import plane_hypervolume

    client = MlflowClient(tracking_uri=tracking.resolve_tracking_uri(uri))
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.TAG_STATUS] == "finished"
    assert parent.data.tags[tracking.TAG_KIND] == "search"
    p = parent.data.params
    assert p["strategy"] == "random" and p["budget"] == "12" and p["seed"] == "7"
    assert p["options.population"] == "8"
    assert p["options.aws_secret_access_key"] == tracking.MASK
    assert p["options.nested.api_token"] == tracking.MASK
    assert SECRET not in json.dumps(p) + json.dumps(parent.data.tags)

    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    by_tid = {r.data.tags["trial_id"]: r for r in children}
    assert len(children) == len(trials) == len(by_tid)
    results = dict(trials)
    for tid, result in trials:
        run = by_tid[tid]
        assert run.data.params["ranks"] == json.dumps(list(result.ranks))
        names = ("fc1.r0", "fc1.r1", "fc2.r0", "fc2.r1")
        assert [run.data.params[n] for n in names] == [str(r) for r in result.ranks]
        assert run.data.tags["phase"] == "explore"
        hist = client.get_metric_history(run.info.run_id, "train_loss")
        expected_epochs = [1] if result.status == "pruned" else [1, 2, 3]
        assert sorted(set(m.step for m in hist)) == expected_epochs  # a restarted trial logs again
        if result.status == "ok":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["val_accuracy"] == pytest.approx(result.metrics["val_accuracy"])
            assert run.data.metrics["params"] == result.metrics["params"]
        elif result.status == "failed":
            assert run.info.status == "FAILED"
            assert "loss is NaN" in run.data.tags["error"]
            assert run.data.tags["pareto_optimal"] == "false"
        else:
            assert run.info.status == "KILLED"
            assert run.data.tags["ranksearch.trial_status"] == "pruned"

    # hypervolume: one point per finished trial, steps 1..n, never decreasing
    hv = sorted(client.get_metric_history(parent_id, "hypervolume"), key=lambda m: m.step)
    assert [m.step for m in hv] == list(range(1, len(trials) + 1))
    assert all(b.value >= a.value - 1e-12 for a, b in zip(hv, hv[1:], strict=False))
    sizes = client.get_metric_history(parent_id, "front_size")
    assert sorted(m.step for m in sizes) == list(range(1, len(trials) + 1))

    names = {f.path for f in client.list_artifacts(parent_id, "pareto")}
    assert {"pareto/front.json", "pareto/front.html", "pareto/front.png", "pareto/history.json"} <= names
    assert "space.yaml" in {f.path for f in client.list_artifacts(parent_id)}
    space_yaml = Path(client.download_artifacts(parent_id, "space.yaml", str(tmp))).read_text()
    assert SECRET not in space_yaml and "aws_secret_access_key: '***'" in space_yaml

    front_doc = download_json(client, parent_id, "pareto/front.json", tmp)
    front_ids = {e["trial_id"] for e in front_doc["front"]}
    assert front_ids == independent_front(results)
    assert all(e["run_id"] == by_tid[e["trial_id"]].info.run_id for e in front_doc["front"])
    ok = [r for r in results.values() if r.ok]
    expected_hv = plane_hypervolume([r.metrics["val_accuracy"] for r in ok],
                                    [r.metrics["compression_ratio"] for r in ok]).value
    assert front_doc["hypervolume"] == pytest.approx(expected_hv)
    assert hv[-1].value == pytest.approx(expected_hv)
    for tid, _ in trials:
        want = "true" if tid in front_ids else "false"
        assert by_tid[tid].data.tags.get("pareto_optimal") == want, tid

    history = download_json(client, parent_id, "pareto/history.json", tmp)
    assert [h["n_finished"] for h in history] == list(range(1, len(trials) + 1))
    assert set(history[-1]["front"]) == front_ids
    assert [h["hypervolume"] for h in history] == pytest.approx([m.value for m in hv])
    assert all("samples_consumed" in h for h in history)  # the tracker's cost beside the archive's

    html = Path(client.download_artifacts(parent_id, "pareto/front.html", str(tmp))).read_text()
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html), "front.html must work offline"
    assert "plotly" in html.lower() and len(html) > 1_000_000  # the plotly bundle is inline

    # the CLI's read-back functions
    assert tracking.find_search(parent_id, uri) == parent_id
    assert tracking.find_search(by_tid[trials[0][0]].info.run_id, uri) == parent_id
    assert tracking.find_search(parent.info.run_name, uri) == parent_id
    loaded = tracking.load_front(parent_id, uri)
    assert {e["trial_id"] for e in loaded} == front_ids
    rows = tracking.load_trials(parent_id, uri)
    assert {r["trial_id"] for r in rows} == set(results)
    assert {r["trial_id"] for r in rows if r["pareto_optimal"]} == front_ids
    assert tracking.load_results(parent_id, uri) == results
    return {"client": client, "parent": parent, "children": by_tid, "front": front_ids}


def run_search(tracker, trials, *, driver_inserts: bool = True) -> None:
    tracker.start()
    for tid, result in trials:
        log_trial(tracker, tid, result, driver_inserts=driver_inserts)
    tracker.finish()


def test_search_against_server_with_s3_artifacts(live_server, moto_s3, fake_space, tmp_path):
    from ranksearch.tracking import SearchTracker

    space = fake_space("server_search", OPTIONS)
    trials = synthetic_trials()
    tracker = SearchTracker(space, tracking_uri=live_server.url, run_name="server-run", flush_interval=0.2)
    t0 = time.perf_counter()
    run_search(tracker, trials)
    elapsed = time.perf_counter() - t0
    assert tracker.stats["dropped"] == 0
    assert tracker.logged_trials() == {t for t, _ in trials}
    assert {r["trial_id"] for r in tracker.front()} == independent_front(dict(trials))
    info = check_search(live_server.url, tracker.parent_run_id, trials, tmp_path, "server_search")
    assert tracking_experiment(info) == "server_search"
    assert elapsed < 30

    # the artifacts really are objects in the S3 bucket, under the parent run
    s3 = moto_s3.client()
    bucket = live_server.artifacts.split("/")[2]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    mine = [k for k in keys if tracker.parent_run_id in k]
    for name in ("pareto/front.json", "pareto/front.html", "pareto/front.png", "pareto/history.json",
                 "space.yaml"):
        assert any(k.endswith(name) for k in mine), (name, mine)
    obj = next(k for k in mine if k.endswith("pareto/front.json"))
    body = json.loads(s3.get_object(Bucket=bucket, Key=obj)["Body"].read())
    assert {e["trial_id"] for e in body["front"]} == info["front"]


def tracking_experiment(info) -> str:
    return info["client"].get_experiment(info["parent"].info.experiment_id).name


@pytest.mark.parametrize("delivery", ["thread", "process"])
def test_search_against_local_sqlite(fake_space, local_store, tmp_path, delivery):
    from ranksearch.tracking import SearchTracker, find_search

    space = fake_space("local_search", OPTIONS)
    trials = synthetic_trials(seed=1, failed=(2,), pruned=())
    uri = f"sqlite:///{local_store / 'mlflow.db'}"
    tracker = SearchTracker(space, tracking_uri=uri, flush_interval=0.1, delivery=delivery)
    run_search(tracker, trials)
    info = check_search(uri, tracker.parent_run_id, trials, tmp_path / "dl", "local_search")
    # artifacts sit next to the database, not in the working directory
    assert list((local_store / "mlartifacts").rglob("front.json"))
    assert find_search("local_search", uri) == tracker.parent_run_id  # by experiment name
    assert info["front"]
    assert all(tracker.run_id(t) for t, _ in trials)  # run ids reach the driver from either writer


def test_plain_folder_store(fake_space, local_store):
    """A folder path means <folder>/mlflow.db with artifacts in <folder>/mlartifacts."""
    from ranksearch.tracking import SearchTracker, load_front, resolve_tracking_uri

    assert resolve_tracking_uri(str(local_store)) == f"sqlite:///{local_store / 'mlflow.db'}"
    trials = synthetic_trials(n=4, failed=(), pruned=())
    tracker = SearchTracker(fake_space("folder_search"), tracking_uri=str(local_store), flush_interval=0.1)
    run_search(tracker, trials, driver_inserts=False)  # no archive given: the tracker keeps one
    assert {e["trial_id"] for e in load_front(tracker.parent_run_id, str(local_store))} == \
        independent_front(dict(trials))
    assert list((local_store / "mlartifacts").rglob("front.png"))


def test_resume_continues_without_duplicates(live_server, fake_space, tmp_path):
    """A resumed driver rebuilds its archive from its own record and tells the tracker again:
    finished runs are not rewritten, no trial gets a second run, the parent's metrics keep one
    point per step, and the front tags end as a fresh search's would."""
    from mlflow import MlflowClient

    from ranksearch.archive import FrontArchive
    from ranksearch.tracking import SearchTracker

    space = fake_space("resume_search", OPTIONS)
    trials = synthetic_trials(n=9, seed=3, failed=(1,), pruned=())
    first = SearchTracker(space, tracking_uri=live_server.url, flush_interval=0.1)
    first.start()
    for tid, result in trials[:4]:
        log_trial(first, tid, result)
    first.trial_started(trials[4][0], trials[4][1].ranks)  # interrupted mid-trial
    first.trial_epoch(trials[4][0], 1, {"train_loss": 1.0})
    first.finish("KILLED")
    interrupted_run = first.run_id(trials[4][0])
    assert interrupted_run
    client = MlflowClient(live_server.url)
    assert client.get_run(interrupted_run).info.status == "KILLED"  # not left RUNNING
    # a driver killed between a finished trial's tags and its end-of-run write (seen in CI under
    # load) leaves that run RUNNING with its finish tags: the resume ends it
    half_written = first.run_id(trials[2][0])
    client.update_run(half_written, status="RUNNING")

    # The resumed driver rebuilds its archive from its record before it opens tracking, and
    # tells the tracker only what MLflow lacks (nothing here).
    archive = FrontArchive.for_space(space)
    for tid, result in trials[:4]:
        archive.insert(tid, result)
    second = SearchTracker(space, archive=archive, tracking_uri=live_server.url,
                           parent_run_id=first.parent_run_id, flush_interval=0.1)
    assert second.start() == first.parent_run_id
    assert second.logged_trials() == {t for t, _ in trials[:4]}
    assert second.flush(timeout=30)
    assert second.stats["ops"] == 0  # nothing MLflow already holds is written again
    assert client.get_run(half_written).info.status == "FINISHED"
    assert second.hypervolume == first.hypervolume > 0
    assert {r["trial_id"] for r in second.front()} == {r["trial_id"] for r in first.front()}
    # starting known trials again (Ray restores them) reuses their runs
    for tid, result in trials[:5]:
        assert second.trial_started(tid, result.ranks) == first.run_id(tid)
    for tid, result in trials[4:]:
        log_trial(second, tid, result)
    second.finish()

    parent = client.get_run(first.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{first.parent_run_id}'")
    tids = [r.data.tags["trial_id"] for r in children]
    assert sorted(tids) == sorted(t for t, _ in trials)  # no duplicates
    assert client.get_run(interrupted_run).info.status == "FINISHED"
    check_search(live_server.url, first.parent_run_id, trials, tmp_path, "resume_search")


@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["thread", "process"])
def test_server_outage_loses_nothing(live_server, fake_space, tmp_path, delivery):
    from ranksearch.tracking import SearchTracker

    space = fake_space("outage_search", OPTIONS)
    trials = synthetic_trials(n=12, seed=5, failed=(6,), pruned=(9,))
    tracker = SearchTracker(space, tracking_uri=live_server.url, flush_interval=0.2, retry_for=300,
                            delivery=delivery)
    tracker.start()
    for tid, result in trials[:4]:
        log_trial(tracker, tid, result)
    assert tracker.flush(timeout=30)

    live_server.stop()
    down_at = time.monotonic()
    slowest = 0.0
    for tid, result in trials[4:10]:
        t0 = time.perf_counter()
        log_trial(tracker, tid, result)
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(1.0)
    assert tracker.flush() is False  # still down: says so, does not hang
    while time.monotonic() - down_at < 10:
        time.sleep(0.5)
    time.sleep(0.5)  # the tracking process reports its counters every 0.2 s
    assert tracker.stats["failed_attempts"] >= 3
    assert tracker.pending_writes > 0
    assert slowest < 0.25, f"a tracker call blocked for {slowest:.3f} s during the outage"

    live_server.start()  # same port, same backend; takes several seconds more of downtime
    downtime = time.monotonic() - down_at
    for tid, result in trials[10:]:
        log_trial(tracker, tid, result)
    assert tracker.flush(timeout=60)
    tracker.finish()
    assert tracker.stats["dropped"] == 0
    assert downtime >= 10
    print(f"outage: server down {downtime:.1f} s, {tracker.stats['failed_attempts']} failed attempts, stats {tracker.stats}")
    check_search(live_server.url, tracker.parent_run_id, trials, tmp_path, "outage_search")


def test_calls_return_quickly_and_are_batched(live_server, fake_space):
    from ranksearch.tracking import SearchTracker

    trials = synthetic_trials(n=20, seed=9, failed=(), pruned=())
    tracker = SearchTracker(fake_space("batched_search"), tracking_uri=live_server.url, flush_interval=1.0)
    tracker.start()
    t0 = time.perf_counter()
    for tid, result in trials:
        log_trial(tracker, tid, result)
    caller = (time.perf_counter() - t0) / len(trials)
    tracker.finish()
    per_trial = tracker.stats["calls"] / len(trials)
    print(f"caller {caller * 1e3:.2f} ms/trial, {per_trial:.2f} client calls/trial, stats {tracker.stats}")
    assert caller < 0.05
    assert per_trial <= 5


def test_unreachable_store_fails_start_clearly(fake_space, unused_port):
    from ranksearch.tracking import SearchTracker, TrackingError

    tracker = SearchTracker(fake_space(), tracking_uri=f"http://127.0.0.1:{unused_port}", start_timeout=1.0)
    with pytest.raises(TrackingError, match="cannot use the MLflow store"):
        tracker.start()


def test_mask_secrets():
    from ranksearch.tracking import MASK, is_secret_key, mask_secrets

    assert all(is_secret_key(k) for k in ("token", "aws_secret_access_key", "password", "api_key", "key"))
    assert not any(is_secret_key(k) for k in ("population", "lr", "budget", "keep_best"))
    masked = mask_secrets({"db": "postgresql://bob:pw123@host/db", "opts": [{"token": "x"}], "n": 3})
    assert masked == {"db": f"postgresql://bob:{MASK}@host/db", "opts": [{"token": MASK}], "n": 3}
    assert MASK in mask_secrets("AKIAABCDEFGHIJKLMNOP")


def test_importing_ranksearch_does_not_import_mlflow():
    import subprocess
    import sys

    code = ("import sys, ranksearch, ranksearch.tracking, ranksearch.frontviz, ranksearch.dashboard; "
            "bad = [m for m in ('mlflow', 'plotly', 'matplotlib', 'flask') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_store_is_mlruns_in_the_working_directory(tmp_path, monkeypatch):
    """None means <cwd>/mlruns/mlflow.db (artifacts beside it), as in the service and the CLI;
    $MLFLOW_TRACKING_URI still wins."""
    from ranksearch.tracking import resolve_tracking_uri
    from ranksearch.tracking.store import local_artifact_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert local_artifact_root(uri) == (tmp_path / "mlruns" / "mlartifacts").as_uri()
    assert not (tmp_path / "mlruns").exists()  # resolving creates nothing
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5999"


def test_constraints_round_trip_through_the_parent_tags(fake_space):
    """The dashboard and the readers decide eligibility with the constraints the search ran with."""
    from ranksearch.archive import FrontArchive
    from ranksearch.tracking import schema

    archive = FrontArchive.for_space(fake_space("c", constraints={"max_params": 9000, "min_compression": 2.5}))
    tags = {schema.TAG_OBJECTIVES: json.dumps(archive.objectives.pairs),
            schema.TAG_CONSTRAINTS: schema.constraints_tag(archive.objectives)}
    back = schema.search_objectives(tags, {schema.PARAM_DENSE: "266610"})
    assert back == archive.objectives
    assert schema.search_objectives({}, {}).pairs == list(schema.DEFAULT_OBJECTIVES)


def test_trials_breaking_a_constraint_stay_off_the_front(fake_space, local_store, tmp_path):
    """Eligibility is the archive's (ranksearch.objectives): a trial over max_params is tagged
    false and left out of the front and the hypervolume, however good its accuracy."""
    from ranksearch.tracking import SearchTracker, load_front, load_trials

    trials = synthetic_trials(n=8, seed=4, failed=(), pruned=())
    params = sorted(r.metrics["params"] for _, r in trials)
    limit = int(params[len(params) // 2])  # half the trials break it
    space = fake_space("constrained", constraints={"max_params": limit})
    tracker = SearchTracker(space, tracking_uri=str(local_store), flush_interval=0.1)
    run_search(tracker, trials)
    over = {t for t, r in trials if r.metrics["params"] > limit}
    assert over and len(over) < len(trials)
    front = {e["trial_id"] for e in load_front(tracker.parent_run_id, str(local_store))}
    assert front and not front & over
    assert front == independent_front({t: r for t, r in trials if t not in over})
    tags = {r["trial_id"]: r["pareto_optimal"] for r in load_trials(tracker.parent_run_id, str(local_store))}
    assert all(tags[t] is False for t in over)


def test_load_front_reads_tags_then_snapshot_then_rebuilds(fake_space, local_store):
    """`load_front` reads what the tracker wrote: the pareto_optimal tags; without them the
    pareto/front.json snapshot; a search with neither (logged before either existed) has its
    front built from its stored trials by `archive.front_of`. All three agree."""
    from mlflow import MlflowClient

    from ranksearch.tracking import SearchTracker, load_front, resolve_tracking_uri

    trials = synthetic_trials(n=10, seed=6, failed=(3,), pruned=(5,))
    tracker = SearchTracker(fake_space("old_search"), tracking_uri=str(local_store), flush_interval=0.1)
    run_search(tracker, trials)
    expected = independent_front(dict(trials))
    parent = tracker.parent_run_id

    def ids() -> set[str]:
        return {e["trial_id"] for e in load_front(parent, str(local_store))}

    assert ids() == expected  # from the tags
    client = MlflowClient(resolve_tracking_uri(str(local_store)))
    for tid, _ in trials:
        client.delete_tag(tracker.run_id(tid), "pareto_optimal")
    snapshot = next((local_store / "mlartifacts").rglob("front.json"))
    doc = json.loads(snapshot.read_text())
    doc["front"] = doc["front"][:1]  # marks the snapshot, to see that it is what was read
    snapshot.write_text(json.dumps(doc))
    assert ids() == {doc["front"][0]["trial_id"]}
    snapshot.unlink()
    assert ids() == expected  # rebuilt from the stored results


def test_process_writer_works_from_a_script_without_a_main_guard(tmp_path):
    """The tracking process is a plain subprocess, not multiprocessing's spawn (which re-runs
    the caller's main script): a user's script without `if __name__ == "__main__"` works."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(
        "from ranksearch.space import load_space\n"
        "from ranksearch.tracking import SearchTracker\n"
        "from ranksearch.trial import TrialResult\n"
        f"space = load_space({str(Path(__file__).resolve().parents[2] / 'search_spaces' / 'quickstart_digits.yaml')!r})\n"
        f"t = SearchTracker(space, tracking_uri={str(tmp_path / 'mlruns')!r}, delivery='process')\n"
        "t.start()\n"
        "ranks = (3,) * space.n_ranks\n"
        "t.trial_started('t1', ranks, {})\n"
        "t.trial_finished('t1', TrialResult(ranks, metrics={'val_accuracy': 0.9, 'params': 500.0}))\n"
        "t.finish()\n"
        "print('RUN', t.parent_run_id, t.run_id('t1'), t.stats['ops'])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RUN"))
    _, parent, child, ops = line.split()
    assert parent != "None" and child != "None" and int(ops) >= 4
    from ranksearch.tracking import load_trials

    rows = load_trials(parent, str(tmp_path / "mlruns"))
    assert [r["trial_id"] for r in rows] == ["t1"] and rows[0]["run_status"] == "FINISHED"
