"""Experiment storage (local folder or S3) and the search state that `resume` reads."""

from __future__ import annotations

import json
import math
import pickle

import pytest

from ranksearch.trial import TrialResult
from ranksearch.tune.state import STATE_FILE, SearchState
from ranksearch.tune.storage import Storage, StorageError


def test_parse_local_and_s3(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    local = Storage.parse(str(tmp_path / "a" / ".." / "runs"))
    assert local.is_local and local.root == str(tmp_path / "runs") and local.ray_args() == {"storage_path": local.root}
    assert Storage.parse(None).root.endswith("runs/ray")
    s3 = Storage.parse("s3://bucket/some/prefix/?endpoint=http://127.0.0.1:9000&region=eu-west-1")
    assert (s3.scheme, s3.root, s3.uri, s3.endpoint, s3.region) == (
        "s3", "bucket/some/prefix", "s3://bucket/some/prefix", "http://127.0.0.1:9000", "eu-west-1")
    assert s3.display("name", STATE_FILE) == "s3://bucket/some/prefix/name/search.json"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:7000")
    assert Storage.parse("s3://bucket").endpoint == "http://127.0.0.1:7000"
    clone = pickle.loads(pickle.dumps(s3))
    assert clone == s3 and clone._fs is None


@pytest.mark.parametrize("spec, words", [
    ("gs://bucket/x", "unsupported scheme"),
    ("s3:///prefix", "no bucket"),
    ("s3://b/p?colour=red", "unknown option"),
    ("s3://b/p?endpoint=127.0.0.1:9000", "must be a URL"),
    ("", "empty"),
])
def test_bad_storage_specs(spec, words):
    with pytest.raises(StorageError, match=words):
        Storage.parse(spec)


def test_local_io_is_atomic_and_lists(tmp_path):
    store = Storage.parse(str(tmp_path))
    store.write_text("one", "s", "f.txt")
    store.write_text("two", "s", "f.txt")
    assert store.read_text("s", "f.txt") == "two"
    assert store.list_dir("s") == ["f.txt"]  # no temp files left behind
    assert store.exists("s", "f.txt") and not store.exists("s", "g.txt")
    assert store.list_dir("missing") == []
    with pytest.raises(FileNotFoundError):
        store.read_text("s", "g.txt")


def _state(store: Storage) -> SearchState:
    state = SearchState(name="demo", space={"name": "x"}, settings={"strategy": "random", "budget": 3},
                        parent_run_id="abc", strategy_header={"format": "ranksearch.strategy", "seed": 1})
    state.open_log(store)
    state.save(store)
    ok = TrialResult((1, 2), metrics={"val_accuracy": 0.5, "latency": math.inf})
    failed = TrialResult((2, 2), status="failed", metrics={"val_accuracy": math.nan}, error="boom")
    state.record(
        {"e": "session", "at": 1.0, "resume": False},
        {"e": "proposed", "id": "t0001", "ranks": [1, 2], "info": {"generation": 0}, "next_index": 2},
        {"e": "attempt", "id": "t0001", "tune_id": "x1", "dir": "t0001_x1"},
        {"e": "strategy", "events": [{"ask": [1, 2]}]},
        {"e": "proposed", "id": "t0002", "ranks": [2, 2], "next_index": 3},
        {"e": "proposed", "id": "t0003", "ranks": [3, 3], "next_index": 4},
        {"e": "attempt", "id": "t0003", "tune_id": "x3", "dir": "t0003_x3"},
        {"e": "finished", "id": "t0002", "result": failed.to_dict()},
        {"e": "finished", "id": "t0001", "result": ok.to_dict()},
        {"e": "rung", "m": "1", "id": "t0001", "v": [-0.5, 1.0]},
    )
    return state


def test_state_round_trip_keeps_non_finite_values(tmp_path):
    store = Storage.parse(str(tmp_path))
    live = _state(store)
    live.close_log()
    raw = json.loads((tmp_path / "demo" / STATE_FILE).read_text())  # strict JSON on disk
    assert raw["format"] == "ranksearch.search" and raw["version"] == 2
    assert "trials" not in raw  # trials live in the append-only record, not in the header
    back = SearchState.load(store, "demo")
    assert [r.trial_id for r in back.finished_trials] == ["t0002", "t0001"]
    assert [r.trial_id for r in back.unfinished_trials] == ["t0003"]
    assert back.trials["t0001"].attempts == [{"tune_id": "x1", "dir": "t0001_x1"}]
    ok = back.trials["t0001"].trial_result()
    assert ok.metrics["latency"] == math.inf and ok.info == {}
    failed = back.trials["t0002"].trial_result()
    assert math.isnan(failed.metrics["val_accuracy"]) and failed.error == "boom"
    assert back.strategy_state == {"format": "ranksearch.strategy", "seed": 1, "events": [{"ask": [1, 2]}]}
    assert back.parent_run_id == "abc" and back.next_index == 4
    assert back.rungs == {"1": {"t0001": [-0.5, 1.0]}}
    # what was applied live is exactly what a reader rebuilds
    assert [r.to_dict() for r in back.trials.values()] == [r.to_dict() for r in live.trials.values()]


def test_record_is_append_only_and_survives_a_torn_last_line(tmp_path):
    store = Storage.parse(str(tmp_path))
    _state(store).close_log()
    path = tmp_path / "demo" / "record.jsonl"
    before = path.read_text()
    state = SearchState.load(store, "demo")
    state.open_log(store)
    state.record({"e": "finished", "id": "t0003", "result": TrialResult((3, 3)).to_dict()})
    state.close_log()
    after = path.read_text()
    assert after.startswith(before) and after.count("\n") == before.count("\n") + 1
    with open(path, "a") as f:
        f.write('{"e": "finished", "id": "t00')  # a driver killed in the middle of a write
    back = SearchState.load(store, "demo")
    assert [r.trial_id for r in back.finished_trials] == ["t0002", "t0001", "t0003"]
    with open(path, "w") as f:
        f.write('{"e": "session"\n' + before)
    with pytest.raises(StorageError, match="line 1 is not valid JSON"):
        SearchState.load(store, "demo")


def test_version_1_state_is_read_and_carried_into_the_record(tmp_path):
    store = Storage.parse(str(tmp_path))
    result = TrialResult((1, 2), metrics={"val_accuracy": 0.5}).to_dict()
    v1 = {"format": "ranksearch.search", "version": 1, "name": "old", "status": "interrupted",
          "parent_run_id": "p", "settings": {"strategy": "random"}, "space": {"name": "x"},
          "strategy_state": {"format": "ranksearch.strategy", "events": [{"ask": [1, 2]}]},
          "scheduler_state": None, "next_index": 3, "order": ["t0001"],
          "trials": {"t0001": {"ranks": [1, 2], "status": "ok", "result": result, "info": {"model_logged": True},
                               "attempts": [{"tune_id": "a", "dir": "t0001_a"}]},
                     "t0002": {"ranks": [2, 2], "status": "running", "attempts": []}}}
    store.write_text(json.dumps(v1), "old", STATE_FILE)
    state = SearchState.load(store, "old")
    assert [r.trial_id for r in state.finished_trials] == ["t0001"] and state.next_index == 3
    state.open_log(store)  # the first session on it writes the old trials as events
    state.save(store)
    state.close_log()
    again = SearchState.load(store, "old")
    assert [r.trial_id for r in again.finished_trials] == ["t0001"]
    assert [r.trial_id for r in again.unfinished_trials] == ["t0002"]
    assert again.trials["t0001"].info["model_logged"] and again.next_index == 3
    assert again.strategy_state["events"] == [{"ask": [1, 2]}]


def test_state_errors(tmp_path):
    store = Storage.parse(str(tmp_path))
    with pytest.raises(StorageError, match="no search 'nope'"):
        SearchState.load(store, "nope")
    store.write_text("{not json", "bad", STATE_FILE)
    with pytest.raises(StorageError, match="not valid JSON"):
        SearchState.load(store, "bad")
    store.write_text(json.dumps({"format": "other"}), "other", STATE_FILE)
    with pytest.raises(StorageError, match="not a ranksearch search state"):
        SearchState.load(store, "other")


def test_s3_storage_against_a_real_s3_server(s3_server):
    store = Storage.parse(f"s3://{s3_server['bucket']}/searches?endpoint={s3_server['endpoint']}")
    store.check_writable()
    _state(store).close_log()
    assert store.exists("demo", STATE_FILE)
    back = SearchState.load(store, "demo")
    assert back.trials["t0001"].status == "ok" and [r.trial_id for r in back.finished_trials] == ["t0002", "t0001"]
    assert store.list_dir("demo") == ["record", STATE_FILE]  # S3 cannot append: one object per write
    assert len(store.list_dir("demo", "record")) == 1
    missing = Storage.parse(f"s3://no-such-bucket/x?endpoint={s3_server['endpoint']}")
    with pytest.raises(StorageError, match="does not exist"):
        missing.check_writable()
