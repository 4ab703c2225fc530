"""MO-ASHA: the promotion rule on synthetic rung results, then one small real search with it on."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import yaml
from tune_helpers import QUICKSTART, write_space

from ranksearch.space import SpaceError, count_params, load_space
from ranksearch.tune.scheduler import RungLedger, objective_vector, rung_epochs, rung_reference, top_of_rung


def test_rungs_sit_at_grace_times_powers_of_eta_below_the_budget():
    assert rung_epochs(1, 3, 3) == [1]
    assert rung_epochs(1, 3, 20) == [1, 3, 9]
    assert rung_epochs(2, 2, 20) == [2, 4, 8, 16]
    assert rung_epochs(5, 3, 5) == []
    with pytest.raises(ValueError):
        rung_epochs(0, 3, 9)


def test_promotion_keeps_the_top_third_by_non_dominated_rank():
    ledger = RungLedger(grace_epochs=1, reduction_factor=3, max_epochs=9)
    # (-accuracy, -log compression): minimisation vectors
    assert ledger.decide("a", 1, [-0.50, -1.0])  # alone at the rung: promoted
    assert not ledger.decide("b", 1, [-0.40, -0.5])  # dominated by a
    assert ledger.decide("c", 1, [-0.90, -2.0])  # dominates both
    # n=4, keep ceil(4/3)=2: d is on the first front with c, with c an extreme of it
    assert ledger.decide("d", 1, [-0.95, -0.1])
    # n=5, keep 2: e is dominated by c -> stopped; the decision for earlier trials stands
    assert not ledger.decide("e", 1, [-0.85, -1.9])
    assert sorted(ledger.rungs[1]) == ["a", "b", "c", "d", "e"]
    # between rungs nothing is decided; at the next rung it is recorded once
    assert ledger.decide("c", 2, [-0.9, -2.0]) and "c" not in ledger.rungs[3]
    assert ledger.decide("c", 3, [-0.91, -2.0]) and list(ledger.rungs[3]) == ["c"]
    assert ledger.decide("c", 4, [-0.2, -2.0]) and ledger.rungs[3]["c"] == [-0.91, -2.0]


def test_one_objective_with_tied_values_at_the_cut_keeps_the_best_and_does_not_fail():
    """Seen in a recipe search (single objective): two trials with the same accuracy straddled
    the cut, and the contribution call (two or more objectives only) ended the search."""
    ledger = RungLedger(grace_epochs=1, reduction_factor=3, max_epochs=9)
    for t, acc in (("t1", 0.84), ("t2", 0.8445), ("t3", 0.8445), ("t4", 0.80), ("t5", 0.81), ("t6", 0.79)):
        ledger.rungs[1][t] = [-acc]
    kept = top_of_rung(ledger.rungs[1], 2)
    assert kept == {"t2", "t3"}
    kept = top_of_rung(ledger.rungs[1], 1)
    assert len(kept) == 1 and kept <= {"t2", "t3"}
    assert top_of_rung(ledger.rungs[1], 1) == kept  # the same choice every time
    assert ledger.decide("t7", 1, [-0.8445]) is True  # a third tie: keep ceil(7/3) = 3, the three tied


def test_boundary_front_is_cut_by_hypervolume_contribution():
    from itertools import combinations

    from ranksearch.pareto import hypervolume

    ledger = RungLedger(grace_epochs=1, reduction_factor=2, max_epochs=4, reference=[5.0, 5.0])
    front = {"a": [0.0, 4.0], "b": [4.0, 0.0], "c": [1.0, 1.0], "d": [1.1, 0.9]}
    for t, f in front.items():
        ledger.rungs[1][t] = f
    # all non-dominated; keep ceil(4/2)=2. Crowding distance (the old rule) kept the extremes
    # a and b; dropping the least contributor one at a time keeps a pair close to the one
    # that holds the most volume under (5, 5) (greedy reduction, as in SMS-EMOA).
    def hv(pair):
        return hypervolume([front[t] for t in pair], [5.0, 5.0])

    kept = {t for t in front if ledger.promoted(1, t)}
    best = max(combinations(front, 2), key=hv)
    assert len(kept) == 2 and kept & {"c", "d"}
    assert hv(kept) > hv(("a", "b")) and hv(kept) >= 0.97 * hv(best)


@pytest.mark.parametrize("seed", range(5))
def test_a_full_rung_chooses_the_same_trials_in_any_arrival_order(seed):
    rng = np.random.default_rng(seed)
    # a rung of mostly non-dominated points (accuracy against log compression), with duplicates
    acc = rng.uniform(0.6, 0.95, 30)
    logc = 2.5 - 2.0 * (acc - 0.6) / 0.35 + rng.normal(0, 0.05, 30)
    vectors = [[-a, -c] for a, c in zip(acc, logc, strict=True)] + [[-acc[0], -logc[0]]] * 2
    ids = [f"t{i:02d}" for i in range(len(vectors))]
    chosen = set()
    for _ in range(20):
        order = rng.permutation(len(ids))
        rung = {ids[i]: vectors[i] for i in order}
        chosen.add(frozenset(top_of_rung(rung, 11, [-0.5, 0.0])))
    assert len(chosen) == 1


@pytest.mark.parametrize("seed", range(3))
def test_trials_fed_through_the_ledger_in_any_order_end_with_the_same_rung_choice(seed):
    """Decisions made on arrival depend on order only through the lenient start (the rung is
    not full yet); once every trial has arrived the rung's choice is the same for every order."""
    rng = np.random.default_rng(100 + seed)
    acc = rng.uniform(0.5, 0.95, 18)
    vectors = {f"t{i:02d}": [-a, -(2.0 - 1.5 * (a - 0.5) / 0.45 + rng.normal(0, 0.1))] for i, a in enumerate(acc)}
    finals = set()
    for _ in range(8):
        ledger = RungLedger(grace_epochs=1, reduction_factor=3, max_epochs=9, reference=[-0.4, 0.5])
        for t in rng.permutation(sorted(vectors)):
            ledger.decide(str(t), 1, vectors[str(t)])
        finals.add(frozenset(t for t in vectors if ledger.promoted(1, t)))
    assert len(finals) == 1 and len(next(iter(finals))) == 6


def test_a_more_accurate_non_dominated_newcomer_is_not_stopped_by_arrival_order():
    # The measured case: 0.80 at 14.7x arrives first, 0.95 at 8.3x second; eta 3 keeps one of two.
    space = load_space(QUICKSTART)
    ledger = RungLedger(grace_epochs=2, reduction_factor=3, max_epochs=8, reference=rung_reference(space))
    first = [-0.80, -math.log10(14.7)]
    second = [-0.95, -math.log10(8.3)]
    assert ledger.decide("t1", 2, first)  # alone: promoted (ASHA's lenient start)
    assert ledger.decide("t2", 2, second)  # the larger contribution wins, whoever came first
    # and in the other order the same trial is the one kept
    other = RungLedger(grace_epochs=2, reduction_factor=3, max_epochs=8, reference=rung_reference(space))
    other.rungs[2] = {"t2": second, "t1": first}
    assert other.promoted(2, "t2") and not other.promoted(2, "t1")


def test_a_trial_jumping_past_a_rung_is_judged_there_and_stopped_early():
    ledger = RungLedger(grace_epochs=1, reduction_factor=2, max_epochs=8)
    assert ledger.decide("a", 1, [0.0]) and ledger.decide("a", 2, [0.0])
    assert not ledger.decide("b", 4, [1.0])  # resumed at epoch 4: loses at rung 1, stops there
    assert "b" in ledger.rungs[1] and "b" not in ledger.rungs[2]


def test_objective_vector_uses_report_accuracy_and_exact_counts():
    space = load_space(QUICKSTART)
    ranks = (4,) * space.n_ranks
    vec = objective_vector(space, ranks, {"epoch": 1, "val_accuracy": 0.3, "best_val_accuracy": 0.5})
    assert vec[0] == -0.5  # val_accuracy, maximised
    assert vec[1] == pytest.approx(-math.log10(space.dense_params / count_params(space, ranks)))
    assert objective_vector(space, ranks, {"epoch": 1})[0] == math.inf


def test_scheduler_section_in_the_space_file(tmp_path):
    data = yaml.safe_load(QUICKSTART.read_text())
    assert load_space(QUICKSTART).config.scheduler is None  # default: FIFO
    data["scheduler"] = {"name": "mo_asha", "grace_epochs": 1, "reduction_factor": 3, "fidelity": "epochs"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    space = load_space(tmp_path / "s.yaml")
    assert space.config.scheduler.name == "mo_asha" and space.to_dict()["scheduler"]["reduction_factor"] == 3
    assert type(space).from_dict(space.to_dict()) == space
    data["scheduler"] = {"name": "mo_asha", "fidelity": "subset"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError):
        load_space(tmp_path / "bad.yaml")


@pytest.mark.ray
@pytest.mark.mlflow
def test_search_with_mo_asha_prunes_and_finishes_its_budget(ray_runtime, tmp_path, tracking):
    from mlflow import MlflowClient

    from ranksearch import service
    from ranksearch.tracking import load_search_cost, resolve_tracking_uri

    space = write_space(tmp_path / "space.yaml", epochs=3, budget=6,
                        scheduler={"name": "mo_asha", "grace_epochs": 1, "reduction_factor": 3})
    outcome = service.search(space, workers=2, name="asha", storage=str(tmp_path / "store"),
                             tracking_uri=tracking, show_progress=False)
    assert outcome.status == "finished" and outcome.n_trials == 6 and outcome.n_failed == 0
    by_status = {t["trial_id"]: t["status"] for t in outcome.trials}
    pruned = [t for t, s in by_status.items() if s == "pruned"]
    assert pruned and len(pruned) + outcome.n_ok == 6

    client = MlflowClient(resolve_tracking_uri(outcome.tracking_uri))
    parent = client.get_run(outcome.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")
    ids = [r.data.tags["trial_id"] for r in children]
    assert sorted(ids) == sorted(by_status)  # each trial recorded exactly once
    runs = {r.data.tags["trial_id"]: r for r in children}
    per_epoch = None
    for tid in pruned:
        run = runs[tid]
        assert run.data.tags["ranksearch.trial_status"] == "pruned" and run.info.status == "KILLED"
        assert run.data.metrics["val_accuracy"] > 0
        per_epoch = run.data.metrics["samples_seen"]  # stopped at the 1-epoch rung
    for tid, run in runs.items():
        if by_status[tid] == "ok":
            assert run.data.metrics["samples_seen"] == 3 * per_epoch

    # pruned trials stay visible, marked, and never on the front of completed trials
    every = {r["trial_id"]: r for r in service.all_trials(outcome.parent_run_id, tracking_uri=outcome.tracking_uri)}
    assert sorted(every) == sorted(by_status)
    for tid in pruned:
        assert every[tid]["state"] == "stopped at epoch 1" and not every[tid]["on_front"]
    front_ids = {r["trial_id"] for r in outcome.front}
    assert front_ids and front_ids == {t for t, r in every.items() if r["on_front"]}

    # search cost: the parent's total is the sum over trials, pruned ones counted partially
    total = sum(r.data.metrics["samples_seen"] for r in children)
    cost = load_search_cost(outcome.parent_run_id, outcome.tracking_uri)
    assert cost["samples_consumed"] == total == outcome.cost["samples_consumed"]
    assert cost["n_train_full"] == 1438 and cost["finished_trials"] == 6
    assert cost["epoch_equivalents"] == pytest.approx(total / 1438)
    assert total < 6 * 3 * per_epoch  # cheaper than running every trial to its budget

    # The rungs are in the search's record (so `resume` keeps them): every trial was
    # judged at the 1-epoch rung, and the stopped ones are exactly those not promoted there.
    from ranksearch.tune.scheduler import make_scheduler
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "asha")
    rung = state.scheduler_state["rungs"]["1"]
    assert sorted(rung) == sorted(by_status)
    restored = make_scheduler(load_space(space), state.scheduler_state).ledger
    assert {t for t in rung if not restored.promoted(1, t)} >= set(pruned)


@pytest.mark.ray
@pytest.mark.mlflow
def test_a_budget_in_epochs_is_spent_and_not_exceeded(ray_runtime, tmp_path, tracking):
    from ranksearch import service
    from ranksearch.training import full_train_size, trial_samples

    space = write_space(tmp_path / "space.yaml", epochs=2, budget=20,
                        scheduler={"name": "mo_asha", "grace_epochs": 1, "reduction_factor": 3})
    prepared = service.prepare_search(space, budget="9ep", workers=2, name="ep", storage=str(tmp_path / "store"),
                                      tracking_uri=tracking)
    loaded = prepared.space
    per_trial, n_full = trial_samples(loaded), full_train_size(loaded)
    assert prepared.settings.cost_budget == "9ep" and loaded.config.strategy.budget == "9ep"
    # planned for the expected cost of a trial under the rungs (1 epoch, then a third go on)
    assert prepared.settings.budget == int(9 * n_full / (per_trial * (1 + 1 / 3) / 2))
    # the plan is an expectation (MO-ASHA's lenient starts promote more than a third): make it
    # run out early, as it does when the rungs stop fewer trials than expected
    prepared = dataclasses.replace(prepared, settings=dataclasses.replace(prepared.settings, budget=2))
    outcome = service.run_prepared(prepared, show_progress=False)
    assert outcome.status == "finished" and outcome.n_trials > 2  # more were planned: budget was left
    spent = outcome.cost["samples_consumed"]
    assert spent <= 9 * n_full  # never past the budget
    assert spent + per_trial > 9 * n_full  # and stopped only when the next trial no longer fit
    assert outcome.cost["budget"] == "9ep" and outcome.cost["spent_samples"] == spent

    # the record holds the extensions: the strategy `resume` rebuilds from it has asked them all
    from ranksearch import strategies
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

    state = SearchState.load(Storage.parse(str(tmp_path / "store")), "ep")
    assert state.strategy_header["budget"] == 2
    extended = sum(e.get("extend", 0) for e in state.strategy_state["events"])
    assert extended >= outcome.n_trials - 2  # each extension plans what the budget left may fund
    replayed = strategies.from_state(loaded, state.strategy_state)
    assert replayed.n_asked == outcome.n_trials and replayed.budget == 2 + extended


# -- dense warm start (training.init: dense) --------------------------------------------------------
@pytest.mark.ray
@pytest.mark.mlflow
def test_dense_warm_start_is_trained_once_and_charged_to_the_search(ray_runtime, tmp_path, tracking):
    from ranksearch import service
    from ranksearch.tracking import load_search_cost, load_trials
    from ranksearch.tune.storage import Storage
    from ranksearch.tune.warmstart import DENSE_DIR, DENSE_FILE, ensure_dense

    path = write_space(tmp_path / "space.yaml", epochs=1, budget=2, training={"init": "dense"})
    store = str(tmp_path / "store")
    outcome = service.search(path, workers=2, name="warm", storage=store, tracking_uri=tracking,
                             show_progress=False)
    assert outcome.status == "finished" and outcome.n_ok == 2
    storage = Storage.parse(store)
    assert storage.exists("warm", DENSE_DIR, DENSE_FILE)
    rows = load_trials(outcome.parent_run_id, outcome.tracking_uri)
    trials = sum(r["metrics"]["samples_seen"] for r in rows)
    cost = load_search_cost(outcome.parent_run_id, outcome.tracking_uri)
    dense = 1150  # one epoch over digits' training part (1,438 rows less the 20% validation carve)
    assert cost["samples_consumed"] == trials + dense
    # the cached weights are reused, at no new cost
    again = ensure_dense(load_space(path), storage, "warm")
    assert again.reused and again.samples_seen == 0


@pytest.mark.ray
@pytest.mark.mlflow
def test_subset_trials_distil_from_a_dense_net_trained_with_its_own_recipe(ray_runtime, tmp_path, tracking):
    """dense_training sets the dense recipe (2 epochs here, trials run 1); trials train on a
    300-image subset, start from the dense weights and distil from them; weights installed
    beforehand under the same fingerprint are reused at no cost."""
    import torch

    from ranksearch import service
    from ranksearch.models import build_dense
    from ranksearch.tracking import load_search_cost, load_trials
    from ranksearch.tune.storage import Storage
    from ranksearch.tune.warmstart import ensure_dense, fingerprint, install_dense

    dense_recipe = {"epochs": 2, "batch_size": 64, "optimizer": {"name": "adam", "lr": 0.005}}
    path = write_space(tmp_path / "space.yaml", epochs=1, budget=2,
                       training={"init": "dense", "subset": 300, "distill": 0.5},
                       dense_training=dense_recipe)
    space = load_space(path)
    assert fingerprint(space)["training"]["epochs"] == 2
    store = str(tmp_path / "store")
    outcome = service.search(path, workers=2, name="distil", storage=store, tracking_uri=tracking,
                             show_progress=False)
    assert outcome.status == "finished" and outcome.n_ok == 2
    rows = load_trials(outcome.parent_run_id, outcome.tracking_uri)
    assert [r["metrics"]["samples_seen"] for r in rows] == [300, 300]
    cost = load_search_cost(outcome.parent_run_id, outcome.tracking_uri)
    assert cost["samples_consumed"] == 600 + 2 * 1150  # two dense epochs over 1,150 rows
    # Installed weights with the same fingerprint: the next search trains no dense network.
    storage = Storage.parse(store)
    net = build_dense(space.config.model, space.input_shape, space.num_classes)
    install_dense(space, storage, "installed", net.state_dict(), samples_seen=123, val_accuracy=0.5)
    again = ensure_dense(space, storage, "installed")
    assert again.reused and again.samples_seen == 0
    loaded = torch.load(again.path, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())


def test_rung_state_round_trip_and_mismatch():
    ledger = RungLedger(grace_epochs=1, reduction_factor=3, max_epochs=9)
    for i, acc in enumerate([0.5, 0.4, 0.9, 0.95]):
        ledger.decide(f"t{i}", 1, [-acc, -1.0])
    again = RungLedger(grace_epochs=1, reduction_factor=3, max_epochs=9)
    again.load_state_dict(ledger.state_dict())
    assert again.rungs == ledger.rungs
    # A trial judged before the restart is not judged again; a newcomer faces the full rung.
    assert again.decide("t0", 2, [-0.5, -1.0]) and len(again.rungs[1]) == 4
    assert not again.decide("t9", 1, [-0.45, -1.0])
    other = RungLedger(grace_epochs=2, reduction_factor=3, max_epochs=9)
    with pytest.raises(ValueError, match="rungs"):
        other.load_state_dict(ledger.state_dict())
