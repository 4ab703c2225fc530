"""Experiment storage (local folder or S3) and the search state that `resume` reads."""

from __future__ import annotations

import json
import math
import pickle

import pytest

from ranksearch.trial import TrialResult
from ranksearch.tune.state import STATE_FILE, SearchState, TrialRecord
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


def _state() -> SearchState:
    state = SearchState(name="demo", space={"name": "x"}, settings={"strategy": "random", "budget": 3},
                        parent_run_id="abc", strategy_state={"events": [{"ask": [1, 2]}]}, next_index=3)
    state.trials["t0001"] = TrialRecord("t0001", [1, 2], {"generation": 0}, status="ok",
                                        attempts=[{"tune_id": "x1", "dir": "t0001_x1"}],
                                        result=TrialResult((1, 2), metrics={"val_accuracy": 0.5,
                                                                            "latency": math.inf}).to_dict())
    state.trials["t0002"] = TrialRecord("t0002", [2, 2], status="failed",
                                        result=TrialResult((2, 2), status="failed",
                                                           metrics={"val_accuracy": math.nan},
                                                           error="boom").to_dict())
    state.trials["t0003"] = TrialRecord("t0003", [3, 3], status="running")
    state.order = ["t0002", "t0001"]
    return state


def test_state_round_trip_keeps_non_finite_values(tmp_path):
    store = Storage.parse(str(tmp_path))
    _state().save(store)
    raw = json.loads((tmp_path / "demo" / STATE_FILE).read_text())  # strict JSON on disk
    assert raw["format"] == "ranksearch.search"
    back = SearchState.load(store, "demo")
    assert [r.trial_id for r in back.finished_trials] == ["t0002", "t0001"]
    assert [r.trial_id for r in back.unfinished_trials] == ["t0003"]
    ok = back.trials["t0001"].trial_result()
    assert ok.metrics["latency"] == math.inf and ok.info == {}
    failed = back.trials["t0002"].trial_result()
    assert math.isnan(failed.metrics["val_accuracy"]) and failed.error == "boom"
    assert back.strategy_state == {"events": [{"ask": [1, 2]}]} and back.parent_run_id == "abc"


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
    _state().save(store)
    assert store.exists("demo", STATE_FILE)
    assert SearchState.load(store, "demo").trials["t0001"].status == "ok"
    assert store.list_dir("demo") == [STATE_FILE]
    missing = Storage.parse(f"s3://no-such-bucket/x?endpoint={s3_server['endpoint']}")
    with pytest.raises(StorageError, match="does not exist"):
        missing.check_writable()
