"""A real `learned` search on Ray: trials learn distinct rank vectors with exact counts."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console
from tune_helpers import child_runs, mlflow_client, write_space

from ranksearch import count_params, load_space, service
from ranksearch.space import SearchSpace
from ranksearch.tune.state import SearchState
from ranksearch.tune.storage import Storage

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]


def test_a_real_search_learns_distinct_rank_vectors_with_exact_counts(ray_runtime, tmp_path, tracking):
    path = write_space(tmp_path / "space.yaml", epochs=2, budget=2,
                       strategy={"name": "learned", "budget": 2,
                                 "options": {"targets": [6.0, 30.0], "epochs": 2, "finetune_epochs": 1}})
    space = load_space(path)
    outcome = service.search(path, workers=2, name="learned-e2e", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, console=Console(file=io.StringIO()))
    assert outcome.status == "finished" and (outcome.n_trials, outcome.n_ok) == (2, 2)
    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "learned-e2e")
    learned = {}
    for rec in state.trials.values():
        result = rec.trial_result()
        ranks = tuple(result.ranks)
        assert tuple(rec.ranks) != ranks  # the proposal was a placeholder; the result is learned
        params = count_params(space, ranks)
        assert result.metrics["params"] == params  # exact, at the learned ranks
        target = result.metrics["learn_target_compression"]
        assert params <= space.dense_params / target  # the budget was met
        assert 0 < result.metrics["val_accuracy"] <= 1 and result.metrics["samples_seen"] > 0
        learned[target] = ranks
    assert rec.info.get("model_logged")
    # one round: both trials ran side by side
    spans = [(r.trial_result().info["started_at"], r.trial_result().info["ended_at"]) for r in state.trials.values()]
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1
    assert len(set(learned.values())) == 2
    assert count_params(space, learned[30.0]) < count_params(space, learned[6.0])

    client = mlflow_client(outcome.tracking_uri)
    runs = child_runs(client, outcome.parent_run_id)
    assert sorted(json.loads(r.data.params["ranks"]) for r in runs) == sorted(map(list, learned.values()))
    assert all(math.isfinite(r.data.metrics["val_accuracy"]) for r in runs)
    # the logged weights are the pruned, fine-tuned net: they load at the learned ranks
    pick = service.best("learned-e2e", "max val_accuracy", tracking_uri=tracking, storage=str(tmp_path / "store"))
    assert pick.ranks in learned.values()
    model = pick.build_model(weights=True)
    assert sum(p.numel() for p in model.parameters()) == count_params(space, pick.ranks)


def test_learned_seeds_go_first_and_their_training_is_charged(ray_runtime, tmp_path, tracking):
    path = write_space(tmp_path / "space.yaml", epochs=1, budget=3,
                       strategy={"name": "random", "budget": 3, "seeds": ["learned"], "seed_count": 2})
    outcome = service.search(path, workers=2, name="learned-seeds", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, console=Console(file=io.StringIO()))
    assert outcome.status == "finished" and outcome.n_trials == 3
    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "learned-seeds")
    kinds = [state.trials[t].info.get("seeded") for t in sorted(state.trials)]
    assert kinds == ["learned", "learned", None]
    # the seeds' one gated epoch over the digits training rows, charged like a warm start
    assert state.overhead_samples == 1150
    client = mlflow_client(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.metrics["warm_start_samples"] == 1150  # the search's cost outside trials


def test_learned_init_starts_every_trial_from_the_learned_cores(ray_runtime, tmp_path, tracking):
    import torch

    from ranksearch.learned.seeds import learned_rank_seeds
    from ranksearch.learned.warm import cut, learned_cores
    from ranksearch.training import train_config
    from ranksearch.tune.warmstart import learned_model, learned_path, load_learned

    path = write_space(tmp_path / "space.yaml", epochs=2, budget=4, training={"init": "learned"},
                       strategy={"name": "random", "budget": 4, "seeds": ["learned"], "seed_count": 2})
    space = load_space(path)
    store = Storage.parse(str(tmp_path / "store"))
    outcome = service.search(path, workers=2, name="learned-warm", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, console=Console(file=io.StringIO()))
    assert outcome.status == "finished" and (outcome.n_trials, outcome.n_ok) == (4, 4)
    state = SearchState.load(store, "learned-warm")
    recs = [state.trials[t] for t in sorted(state.trials)]
    assert [r.info.get("seeded") for r in recs] == ["learned", "learned", None, None]
    assert all(r.trial_result().info.get("init") == "learned" for r in recs)  # seeds and the rest alike
    assert state.overhead_samples == 1150  # the one gated epoch, charged once; trials add nothing

    # the kept cores are the gated run's: made again here (same seed), they match
    saved = load_learned(learned_path(store, "learned-warm"), store)
    gated = []
    learned_rank_seeds(space, 2, epochs=1, on_gated=gated.append)
    again = learned_cores(gated[0])
    assert saved.ranks == again.ranks
    for key, value in again.state.items():
        torch.testing.assert_close(saved.state[key], value, rtol=1e-4, atol=1e-5)

    # every trial started from them; at ranks at least the learned ones (the largest learned seed),
    # its first epoch beats the same ranks from scratch (far below them it need not: measured on
    # digits after a 1-epoch gated run, cuts to much smaller ranks trained worse than scratch)
    client = mlflow_client(outcome.tracking_uri)
    runs = {tuple(json.loads(r.data.params["ranks"])): r for r in child_runs(client, outcome.parent_run_id)}
    warm, cold = {}, {}
    doc = space.to_dict()
    scratch = SearchSpace.from_dict({**doc, "training": {**doc["training"], "init": "scratch"}})
    for rec in recs:
        ranks = tuple(rec.trial_result().ranks)
        model = learned_model(space, ranks, learned_path(store, "learned-warm"), store)
        assert sum(p.numel() for p in model.parameters()) == count_params(space, ranks)
        for a, b in zip(model.state_dict().values(), cut(space, ranks, again).state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        history = client.get_metric_history(runs[ranks].info.run_id, "val_accuracy")
        warm[ranks] = min(history, key=lambda m: (m.step, m.timestamp)).value
        if all(r >= c for r, c in zip(ranks, saved.ranks, strict=True)):
            cold[ranks] = train_config(scratch, ranks, max_epochs=1, measure_latency=False).val_accuracy
    assert cold, (saved.ranks, list(warm))  # the largest learned seed covers the learned ranks
    for ranks, acc in cold.items():
        assert warm[ranks] > acc + 0.02, (ranks, warm[ranks], acc)
