"""The Tune adapter, the record and the trainable with hyperparameters, driven directly (no Ray)."""

from __future__ import annotations

import json

import pytest
from recipe_strategy import RandomRecipe, register
from tune_helpers import ROOT

from ranksearch import load_space, strategies
from ranksearch.strategies.base import Proposal
from ranksearch.tune.searcher import SEARCHER_VERSION, StrategySearcher
from ranksearch.tune.state import SearchState, TrialRecord
from ranksearch.tune.trainable import FINAL_KEY, trial_space

register()


@pytest.fixture(scope="module")
def space():
    return load_space(ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml")


def final(acc: float = 0.9) -> dict:
    return {FINAL_KEY: True, "rs_status": "ok", "rs_error": "", "val_accuracy": acc, "final_val_accuracy": acc,
            "epochs_done": 2, "latency_ms": 0.2, "train_seconds": 1.0}


class Listener:
    def __init__(self) -> None:
        self.proposed: dict[str, dict] = {}
        self.told: dict[str, object] = {}

    def on_proposed(self, trial_id, tune_id, ranks, info, resume_from, *, hparams) -> None:
        self.proposed[trial_id] = hparams

    def on_told(self, trial_id, tune_id, result) -> None:
        self.told[trial_id] = result

    def on_tell_error(self, trial_id, error) -> None:
        raise AssertionError(error)


def test_a_strategy_without_values_trains_the_spaces_defaults(space):
    s = StrategySearcher(strategies.get("uniform", space, seed=0, budget=2), listener=Listener())
    config = s.suggest("A")
    assert config["hparams"] == space.hyper.defaults() and config["hparams"]
    assert json.loads(json.dumps(config)) == config  # Tune's trial config stays JSON-able
    s.on_trial_complete("A", final())
    assert s.listener.told["t0001"].hparams == space.hyper.defaults()


def test_proposed_values_travel_to_the_trial_the_result_and_the_saved_state(space, tmp_path):
    listener = Listener()
    s = StrategySearcher(RandomRecipe(space, seed=3, budget=4), max_concurrent=4, listener=listener)
    configs = {tid: s.suggest(tid) for tid in "ABC"}
    values = [c["hparams"] for c in configs.values()]
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 3  # they vary
    for c in configs.values():
        assert c["hparams"] == space.hyper.canonical(c["hparams"]) == s.strategy.hparams(c["ranks"])
        assert listener.proposed[c["trial_id"]] == c["hparams"]
        inactive = c["hparams"]["training.optimizer.name"] != "sgd"
        assert inactive == ("training.optimizer.momentum" not in c["hparams"])
    s.on_trial_complete("A", final(0.8))
    s.fail("B", "boom")
    assert listener.told["t0001"].hparams == configs["A"]["hparams"]
    assert listener.told["t0002"].hparams == configs["B"]["hparams"]  # a failed trial keeps them too
    assert listener.told["t0002"].status == "failed"

    path = tmp_path / "searcher.json"
    s.save(str(path))
    again = StrategySearcher(RandomRecipe(space, seed=3, budget=4))
    again.restore(str(path))
    assert json.load(path.open())["version"] == SEARCHER_VERSION
    again.on_trial_complete("C", final(0.7))  # a late completion after the restore keeps its values
    assert again.strategy.observations[-1].result.hparams == configs["C"]["hparams"]


def test_a_proposal_answered_by_ask_proposal_is_read_for_its_values(space):
    class AsksProposals(RandomRecipe):
        name = "test-asks-proposals"

        def ask_proposal(self):
            parent = getattr(super(), "ask_proposal", None)
            got = parent() if parent is not None else RandomRecipe.ask(self)
            if got is None:
                return None
            ranks = got.ranks if isinstance(got, Proposal) else got
            return Proposal(ranks, {"generation": 7}, {"training.optimizer.lr": 0.01})

    listener = Listener()
    s = StrategySearcher(AsksProposals(space, seed=0, budget=1), listener=listener)
    config = s.suggest("A")
    assert config["hparams"]["training.optimizer.lr"] == 0.01
    assert config["hparams"] == space.hyper.canonical({"training.optimizer.lr": 0.01})
    s.on_trial_complete("A", final())
    assert listener.told["t0001"].info == {"generation": 7}  # the proposal's bookkeeping


def test_a_version_1_searcher_state_still_loads(space):
    s = StrategySearcher(RandomRecipe(space, seed=0, budget=2))
    state = s.get_state()
    state["version"] = 1
    state.pop("hparams")
    s.set_state(state)
    assert s._hparams == {}


def test_the_record_keeps_each_trials_values():
    values = {"training.optimizer.name": "sgd", "training.optimizer.lr": 0.001, "training.optimizer.momentum": 0.9}
    state = SearchState(name="x", space={}, settings={})
    state.apply({"e": "proposed", "id": "t0001", "ranks": [1, 2], "hparams": values, "next_index": 2})
    state.apply({"e": "proposed", "id": "t0002", "ranks": [2, 2], "next_index": 3})  # an older record
    assert state.trials["t0001"].hparams == values and state.trials["t0002"].hparams == {}
    rec = state.trials["t0001"]
    assert TrialRecord.from_dict("t0001", rec.to_dict()).hparams == values
    # a finished event for a trial the record never saw proposed takes the result's values
    state.apply({"e": "finished", "id": "t0003", "result": {"ranks": [3, 3], "status": "ok", "hparams": values}})
    assert state.trials["t0003"].hparams == values


def test_a_trial_trains_under_its_recipe(space):
    values = space.hyper.canonical({"training.optimizer.name": "sgd", "training.optimizer.lr": 0.02,
                                    "training.optimizer.momentum": 0.95, "training.batch_size": 32})
    ts = trial_space(space, values, key="k")
    opt = ts.config.training.optimizer
    assert (opt.name, opt.lr, opt.momentum, ts.config.training.batch_size) == ("sgd", 0.02, 0.95, 32)
    assert ts.elements == space.elements and ts is trial_space(space, dict(values), key="k")  # cached
    assert space.config.training.optimizer.lr == 0.005  # the search's own recipe is untouched
    assert trial_space(space, {}) is space
