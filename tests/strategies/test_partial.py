"""Pruned trials with usable metrics are information (issue 14): bayes and pstrn learn from their
partial results, penalised for the training they missed, instead of reading them as final."""

from __future__ import annotations

import pytest

from ranksearch import strategies
from ranksearch.testing import spaces
from ranksearch.trial import TrialResult


def _result(ranks, acc, *, status="ok", fidelity=4):
    return TrialResult(ranks, status=status, metrics={"val_accuracy": acc}, fidelity=fidelity)


def test_informative_f_penalises_only_partial_results():
    space = spaces.small()  # training.epochs = 4
    s = strategies.get("random", space, seed=0, budget=10)
    a, b, c, d = (space.equal_ranks(r) for r in (2, 3, 4, 5))
    s.tell("done", _result(a, 0.8))
    s.tell("half", _result(b, 0.8, status="pruned", fidelity=2))
    s.tell("full", _result(c, 0.8, status="pruned", fidelity=4))  # pruned at the last epoch
    s.tell("failed", TrialResult(d, status="failed"))
    done, half, full, failed = s.observations
    assert s.informative_f(done) == done.f and s.informative_f(full) == full.f
    assert not s.is_partial(done) and s.is_partial(half) and not s.is_partial(full)
    assert s.fidelity_fraction(half) == 0.5
    acc = s.goals.names.index("val_accuracy")
    # accuracy 0.8 at half the epochs counts as 0.8 * (0.5 + 0.5 * 0.5) = 0.6
    assert s.informative_f(half)[acc] == pytest.approx(-0.6)
    assert failed.f[acc] > s.informative_f(half)[acc] > done.f[acc]
    assert s.informative_f(half)[1 - acc] == half.f[1 - acc]  # costs stay exact


def test_bayes_tells_a_pruned_trial_as_complete_with_its_penalised_value():
    space = spaces.small()
    s = strategies.get("bayes", space, seed=0, budget=10, n_startup=2, batch_size=2)
    first, second = s.ask(), s.ask()
    s.tell("a", _result(first, 0.9, status="pruned", fidelity=1))
    s.tell("b", _result(second, 0.7))
    trials = {tuple(int(t.params[k]) for k in s._keys): t for t in s._study.trials}
    acc = s.goals.names.index("val_accuracy")
    pruned, done = trials[first], trials[second]
    assert pruned.state.name == "COMPLETE" and done.state.name == "COMPLETE"
    # 0.9 at a quarter of the epochs counts as 0.9 * 0.625 = 0.5625: below the completed 0.7
    assert pruned.values[acc] == pytest.approx(-0.5625)
    assert done.values[acc] == pytest.approx(-0.7)


def test_pstrn_ranks_pruned_configurations_after_completed_ones():
    space = spaces.small()
    s = strategies.get("pstrn", space, seed=0, budget=40, population=6)
    configs = [space.equal_ranks(r) for r in (2, 3, 4, 5)]
    s.tell("p1", _result(configs[3], 0.95, status="pruned", fidelity=1))
    s.tell("p2", _result(configs[2], 0.90, status="pruned", fidelity=1))
    s.tell("c1", _result(configs[1], 0.60))
    s.tell("c2", _result(configs[0], 0.50))
    order = s.ranked([tuple(c) for c in configs])
    assert set(order[:2]) == {configs[0], configs[1]}  # completed first (both non-dominated)
    assert set(order[2:]) == {configs[2], configs[3]}  # pruned after, though more accurate
    # and in the GA's selection a pruned member counts by its penalised partial accuracy
    acc = s.goals.names.index("val_accuracy")
    assert s._f_or_worst(configs[3])[acc] == pytest.approx(-0.95 * 0.625)
