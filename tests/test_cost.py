"""Search cost accounting: samples per trial, their sum, epoch equivalents, and where they show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ranksearch.space import load_space
from ranksearch.trial import TrialResult

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart_digits.yaml"


@pytest.fixture(scope="module")
def space():
    return load_space(QUICKSTART)


def test_full_train_size_is_the_training_set_before_the_validation_carve(space):
    from ranksearch.training import full_train_size

    assert full_train_size(space) == 1797 - 359  # digits: what the fixed 20% test hold-out leaves
    fashion = load_space(QUICKSTART.parent / "pstrn_lenet5_fashion.yaml")
    try:
        n = full_train_size(fashion)
    except Exception as exc:  # noqa: BLE001 - the Debian data package is optional
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    assert n == 60_000


def test_reports_carry_samples_for_finished_and_stopped_trials(space):
    from ranksearch.tune.searcher import result_from_report

    ranks = (2,) * space.n_ranks
    final = result_from_report(space, ranks, {"rs_final": True, "rs_status": "ok", "val_accuracy": 0.9,
                                              "epochs_done": 3, "samples_seen": 3450})
    assert final.status == "ok" and final.metrics["samples_seen"] == 3450
    stopped = result_from_report(space, ranks, {"epoch": 1, "val_accuracy": 0.5, "best_val_accuracy": 0.5,
                                                "samples_seen": 1150})
    assert stopped.status == "pruned" and stopped.fidelity == 1 and stopped.metrics["samples_seen"] == 1150
    # no count in the report: the most the adapter saw reported stands
    bare = result_from_report(space, ranks, {"epoch": 2, "best_val_accuracy": 0.6}, samples_seen=2300)
    assert bare.metrics["samples_seen"] == 2300


def test_an_errored_trial_is_charged_what_it_consumed(space):
    from ranksearch.strategies import get
    from ranksearch.tune.searcher import StrategySearcher

    told: dict[str, TrialResult] = {}

    class Listener:
        def on_proposed(self, *args, **kwargs) -> None:
            pass

        def on_told(self, trial_id, tune_id, result) -> None:
            told[trial_id] = result

    searcher = StrategySearcher(get("random", space, seed=0, budget=2), max_concurrent=2, listener=Listener())
    assert isinstance(searcher.suggest("tuneA"), dict)
    searcher.on_trial_result("tuneA", {"epoch": 1, "samples_seen": 1150})
    searcher.on_trial_result("tuneA", {"epoch": 2, "samples_seen": 2300})
    searcher.on_trial_complete("tuneA", None, error=True)
    searcher.fail("tuneA", "RuntimeError: boom")
    (result,) = told.values()
    assert result.status == "failed" and result.metrics["samples_seen"] == 2300


@pytest.mark.mlflow
def test_search_cost_in_mlflow_and_front_output(space, tmp_path, capsys):
    from mlflow import MlflowClient

    from ranksearch.cli import main
    from ranksearch.tracking import SearchTracker, load_search_cost, resolve_tracking_uri

    uri = str(tmp_path / "store")
    tracker = SearchTracker(space, tracking_uri=uri, run_name="cost", flush_interval=0.1, train_size=1000)
    tracker.start()
    ranks = (3,) * space.n_ranks
    results = {
        "t0001": TrialResult(ranks, "ok", {"val_accuracy": 0.9, "compression_ratio": 5.0, "params": 10.0,
                                           "samples_seen": 3000.0}, fidelity=3),
        "t0002": TrialResult(ranks, "pruned", {"val_accuracy": 0.4, "samples_seen": 1000.0}, fidelity=1),
        "t0003": TrialResult(ranks, "failed", {"samples_seen": 500.0}, error="boom"),
    }
    for tid, result in results.items():
        tracker.trial_started(tid, ranks)
        tracker.trial_finished(tid, result)
    assert tracker.search_cost() == {"samples_consumed": 4500.0, "epoch_equivalents": 4.5}
    tracker.finish()

    client = MlflowClient(resolve_tracking_uri(uri))
    history = client.get_metric_history(tracker.parent_run_id, "samples_consumed")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(1, 3000.0), (2, 4000.0), (3, 4500.0)]
    children = client.search_runs([client.get_run(tracker.parent_run_id).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")
    per_trial = {r.data.tags["trial_id"]: r.data.metrics["samples_seen"] for r in children}
    assert per_trial == {t: r.metrics["samples_seen"] for t, r in results.items()}
    assert sum(per_trial.values()) == 4500.0  # the recorded total is the sum over trials

    cost = load_search_cost(tracker.parent_run_id, uri)
    assert cost == {"samples_consumed": 4500, "epoch_equivalents": 4.5, "n_train_full": 1000,
                    "finished_trials": 3}
    main_args = ["front", tracker.parent_run_id, "--tracking-uri", uri]
    main([*main_args, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (doc["samples_consumed"], doc["epoch_equivalents"], doc["n_train_full"]) == (4500, 4.5, 1000)
    main(main_args)
    text = capsys.readouterr().out
    assert "search cost: 4,500 training samples over 3 trials = 4.50 epoch equivalents" in text
