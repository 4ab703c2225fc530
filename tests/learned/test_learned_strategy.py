"""The `learned` strategy: options, proposals carrying their knob, placeholder release, report
helpers (the real Ray search is in tests/tune/test_learned_search.py)."""

from __future__ import annotations

import pytest

from ranksearch import strategies
from ranksearch.learned.trial import LearnSpec, extra_metrics, reported_ranks
from ranksearch.strategies import StrategyError
from ranksearch.testing import spaces
from ranksearch.trial import TrialResult


def test_every_knob_is_proposed_at_once_with_its_trial_spec():
    space = spaces.small()
    s = strategies.get("learned", space, seed=0, budget=5, targets=[1.2, 1.6, 2.5], epochs=2,
                       finetune_epochs=1, gate="ard")
    asked = []
    while (r := s.ask()) is not None:
        asked.append(r)
    assert len(asked) == 3 and len(set(asked)) == 3 and s.is_finished()
    specs = [LearnSpec.from_config(s.info(r)["learn"]) for r in asked]
    assert [(p.knob, p.value, p.index, p.gate, p.epochs, p.finetune_epochs) for p in specs] == [
        ("target_compression", v, i, "ard", 2, 1) for i, v in enumerate((1.2, 1.6, 2.5))]
    assert specs[0].learn_kwargs()["kind"] == "ard"
    # placeholders aim at the targets: larger target compression, fewer parameters
    sizes = [s.params(r) for r in asked]
    assert sizes == sorted(sizes, reverse=True)


def test_a_learned_result_releases_its_placeholder():
    space = spaces.small()
    s = strategies.get("learned", space, seed=0, budget=2, targets=[2.0, 4.0])
    a, b = s.ask(), s.ask()
    assert s.pending == 2
    learned = next(space.equal_ranks(r) for r in range(1, 9) if space.equal_ranks(r) not in (a, b))
    s.tell("t1", TrialResult(learned, metrics={"val_accuracy": 0.9, "learn_index": 1.0}))
    assert s.pending == 1 and s.learned == [(1, learned, 0.9)]
    assert s.observations[-1].ranks == learned
    s.tell("t2", TrialResult(b, status="failed", metrics={"learn_index": 1.0}))  # no double release
    assert s.pending == 1


def test_default_targets_spread_over_the_feasible_range():
    space = spaces.small()
    s = strategies.get("learned", space, seed=0, budget=4)
    s.ask()
    lo, hi = s._feasible_range()
    assert len(s.knobs) == 4 and all(max(lo, 1.0) < k < hi for k in s.knobs)
    assert list(s.knobs) == sorted(s.knobs)


@pytest.mark.parametrize(("opts", "fragment"), [
    ({"knob": "strength"}, "'targets'"),
    ({"targets": [0.5]}, "> 1"),
    ({"targets": [2.0, 2.0]}, "repeats"),
    ({"gate": "l1"}, "'gate'"),
])
def test_bad_options_are_errors_naming_them(opts, fragment):
    with pytest.raises(StrategyError, match=fragment):
        strategies.get("learned", spaces.small(), seed=0, budget=3, **opts)


def test_a_target_that_breaks_the_constraints_is_an_error():
    space = spaces.small(constraints={"max_params": 300})
    with pytest.raises(StrategyError, match="constraints"):
        strategies.get("learned", space, seed=0, budget=3, targets=[1.1])


def test_report_helpers_read_learned_ranks_and_extras(digits_space):
    ranks = digits_space.equal_ranks(3)
    assert reported_ranks(digits_space, {"rs_ranks": list(ranks)}) == ranks
    assert reported_ranks(digits_space, {"val_accuracy": 1.0}) is None
    assert extra_metrics({"rs_extra_learn_index": 2, "rs_extra_bad": "x", "val_accuracy": 1}) == {
        "learn_index": 2.0}


def test_a_strength_trial_runs_with_the_ard_gate(digits_space):
    from ranksearch.learned.trial import run_learned

    spec = LearnSpec(gate="ard", knob="strength", value=300.0, epochs=1, finetune_epochs=0)
    assert spec.learn_kwargs() == {"kind": "ard", "strength": 300.0, "epochs": 1, "finetune_epochs": 0}
    seen = []
    out = run_learned(digits_space, spec, num_threads=1, on_epoch=seen.append)
    assert digits_space.check_ranks(out.ranks) == out.ranks
    assert sum(p.numel() for p in out.model.parameters()) == out.metrics["params"]
    assert [r["phase"] for r in seen] == ["gated"] and seen[0]["samples_seen"] > 0


@pytest.mark.parametrize("doc", [
    {"gate": "l0", "knob": "strength", "value": 1.0},
    {"gate": "ard", "knob": "budget", "value": 1.0},
    {"gate": "ard", "knob": "target_compression", "value": 1.0},
    {"gate": "ard", "knob": "strength", "value": -1.0},
])
def test_a_bad_trial_spec_is_an_error_naming_it(doc):
    with pytest.raises(ValueError, match="learned trial"):
        LearnSpec.from_config(doc)
