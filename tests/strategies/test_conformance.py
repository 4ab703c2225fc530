"""The contract every registered strategy must meet (parametrised over the registry).

A newly registered strategy is picked up automatically. Runs use a cheap synthetic objective
on small fake spaces, never Ray and never training.
"""

from __future__ import annotations

import json
import math

import fakes
import pytest
from fakes import objective

from ranksearch import strategies
from ranksearch.strategies import StrategyError
from ranksearch.strategies.base import STATE_VERSION
from ranksearch.trial import TrialResult


@pytest.fixture
def small_space():
    return fakes.small()


@pytest.fixture
def tiny_space():
    return fakes.tiny()


NAMES = strategies.available()
BUDGET = 24


def run(strategy, space, *, results=None, max_calls: int = 2000) -> list[tuple[int, ...]]:
    """Drive a strategy to the end; tell each batch back in reverse order. Returns proposals."""
    results = results or (lambda r: objective(space, r))
    asked: list[tuple[int, ...]] = []
    for _ in range(max_calls):
        batch = []
        while True:
            r = strategy.ask()
            if r is None:
                break
            batch.append(r)
        if not batch:
            assert strategy.is_finished(), "ask() gave None with nothing in flight, yet not finished"
            return asked
        asked += batch
        for r in reversed(batch):
            strategy.tell(f"t{len(asked)}-{r}", results(r))
    raise AssertionError("the strategy never finished")


def check_proposal(space, strategy, r) -> None:
    assert isinstance(r, tuple) and all(type(v) is int for v in r)
    assert len(r) == space.n_ranks
    assert all(v in e.values for v, e in zip(r, space.elements, strict=True))
    assert strategy.feasible(r)


@pytest.mark.parametrize("name", NAMES)
def test_protocol(name, small_space):
    s = strategies.get(name, small_space, seed=1, budget=BUDGET)
    assert s.name == name and not s.is_finished()
    asked = run(s, small_space)
    assert 0 < len(asked) <= BUDGET
    assert len(set(asked)) == len(asked), "a configuration was proposed twice"
    for r in asked:
        check_proposal(small_space, s, r)
        assert isinstance(s.info(r), dict)
    assert s.is_finished() and s.ask() is None and s.pending == 0


@pytest.mark.parametrize("name", NAMES)
def test_keeps_workers_busy_or_waits_for_results(name, small_space):
    s = strategies.get(name, small_space, seed=2, budget=BUDGET)
    r = s.ask()
    assert r is not None
    second = s.ask()
    if second is None:  # a batch strategy waiting: something must be in flight
        assert s.pending == 1 and not s.is_finished()
    s.tell("a", objective(small_space, r))
    if second is not None:
        s.tell("b", objective(small_space, second))
    assert s.ask() is not None or s.is_finished()


@pytest.mark.parametrize("name", NAMES)
def test_failed_pruned_and_nan_results(name, small_space):
    kinds = [
        lambda r: TrialResult(r, status="failed", error="CUDA out of memory"),
        lambda r: TrialResult(r, status="pruned", metrics={"val_accuracy": 0.4}, fidelity=1),
        lambda r: TrialResult(r, status="pruned"),
        lambda r: TrialResult(r, metrics={"val_accuracy": math.nan}),
        lambda r: TrialResult(r, metrics={"val_accuracy": math.inf, "params": 5.0}),
        lambda r: objective(small_space, r),
    ]
    counter = iter(range(10**6))

    def results(r):
        return kinds[next(counter) % len(kinds)](r)

    s = strategies.get(name, small_space, seed=3, budget=BUDGET)
    asked = run(s, small_space, results=results)
    assert 0 < len(asked) <= BUDGET and len(set(asked)) == len(asked)
    assert any(not o.usable for o in s.observations)
    assert all(math.isfinite(v) for o in s.observations for v in o.f)
    json.dumps(s.state_dict(), allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_order_duplicate_and_unasked_results(name, small_space):
    s = strategies.get(name, small_space, seed=4, budget=BUDGET)
    batch = []
    while len(batch) < 3:
        r = s.ask()
        if r is None:
            break
        batch.append(r)
    assert batch
    for i, r in reversed(list(enumerate(batch))):
        s.tell(f"id{i}", objective(small_space, r))
        s.tell(f"id{i}", TrialResult(r, status="failed"))  # a late second report is ignored
    assert len(s.observations) == len(batch)
    assert all(o.status == "ok" for o in s.observations)
    stranger = small_space.equal_ranks(3)
    if stranger not in batch:
        s.tell("from-elsewhere", objective(small_space, stranger))
    asked = batch + run(s, small_space)
    assert len(set(asked)) == len(asked)
    assert s.is_finished()


@pytest.mark.parametrize("name", NAMES)
def test_tiny_space_is_exhausted(name, tiny_space):
    assert tiny_space.search_size == 4
    s = strategies.get(name, tiny_space, seed=5, budget=50)
    asked = run(s, tiny_space)
    assert len(set(asked)) == len(asked) <= 4
    assert s.is_finished() and s.ask() is None


@pytest.mark.parametrize("name", NAMES)
def test_single_configuration_space(name):
    space = fakes.FakeSpace([fakes.FakeLayer("fc", (2,), (2,))], choices=(3,), low=3, high=3)
    s = strategies.get(name, space, seed=0, budget=5)
    assert run(s, space) == [(3, 3)]


@pytest.mark.parametrize("name", NAMES)
def test_hard_constraints_are_never_broken(name):
    space = fakes.small(constraints={"max_params": 600})
    s = strategies.get(name, space, seed=6, budget=BUDGET)
    asked = run(s, space)
    assert asked and all(s.params(r) <= 600 for r in asked)


@pytest.mark.parametrize("name", NAMES)
def test_impossible_constraints_fail_early(name):
    space = fakes.small(constraints={"max_params": 10})
    with pytest.raises(StrategyError, match="constraints"):
        strategies.get(name, space, seed=0, budget=5)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name, small_space):
    a = run(strategies.get(name, small_space, seed=7, budget=BUDGET), small_space)
    b = run(strategies.get(name, small_space, seed=7, budget=BUDGET), small_space)
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_exactly(name, small_space):
    def drive(s, n_rounds, tell_last=True):
        """Ask a batch, tell it, n_rounds times; the last batch may stay in flight."""
        out, in_flight = [], []
        for k in range(n_rounds):
            batch = []
            while len(batch) < 4:
                r = s.ask()
                if r is None:
                    break
                batch.append(r)
            out += batch
            if k == n_rounds - 1 and not tell_last:
                in_flight = batch
            else:
                for r in batch:
                    s.tell(f"{r}", objective(small_space, r))
        return out, in_flight

    a = strategies.get(name, small_space, seed=8, budget=BUDGET)
    first, in_flight = drive(a, 3, tell_last=False)
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    assert state["strategy"] == name and state["version"] == STATE_VERSION
    b = strategies.get(name, small_space, seed=8, budget=BUDGET)
    b.load_state_dict(state)
    c = strategies.from_state(small_space, state)
    assert b.n_asked == c.n_asked == a.n_asked
    for s in (a, b, c):
        for r in in_flight:
            s.tell(f"{r}", objective(small_space, r))
    rest = [run(s, small_space) for s in (a, b, c)]
    assert rest[0] == rest[1] == rest[2]
    assert len(set(first + rest[0])) == len(first) + len(rest[0])


@pytest.mark.parametrize("name", NAMES)
def test_state_refuses_a_used_strategy_or_other_options(name, small_space):
    a = strategies.get(name, small_space, seed=9, budget=BUDGET)
    a.ask()
    state = a.state_dict()
    with pytest.raises(StrategyError, match="fresh"):
        a.load_state_dict(state)
    other = strategies.get("random" if name != "random" else "uniform", small_space, seed=9)
    with pytest.raises(StrategyError, match="belongs to"):
        other.load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_lists_valid_ones(name, small_space):
    with pytest.raises(StrategyError) as err:
        strategies.get(name, small_space, seed=0, no_such_option=1)
    text = str(err.value)
    assert "no_such_option" in text and "budget" in text
    assert set(strategies.options(name)) >= {"budget"}


@pytest.mark.parametrize("name", NAMES)
def test_failed_everything_still_finishes(name, small_space):
    s = strategies.get(name, small_space, seed=10, budget=BUDGET)
    asked = run(s, small_space, results=lambda r: TrialResult(r, status="failed"))
    assert 0 < len(asked) <= BUDGET
