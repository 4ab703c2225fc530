"""The contract every strategy must meet, as checks a strategy author runs on their own class.

    from ranksearch.testing import check_strategy
    check_strategy(MyStrategy, options={"width": 3})     # raises AssertionError listing failures

or one pytest test per check:

    @pytest.mark.parametrize("check", ranksearch.testing.CHECKS)
    def test_conformance(check):
        ranksearch.testing.run_check(check, MyStrategy, options={"width": 3})

Each check drives fresh strategies on the small fake spaces of `ranksearch.testing.spaces` with
a cheap synthetic objective (no Ray, no training): the ask/tell protocol, the bounds and
duplicate contract, failed, pruned and NaN results, out-of-order, repeated and unasked
results, exhausted spaces, constraints, determinism for a seed, the state round trip, seeds
proposed first, unknown options, and a mixed space (ranks plus hyperparameters with a
condition, `spaces.mixed`): proposals valid and canonical, a conditional parameter present
exactly when its condition holds, no configuration twice (ranks and values), the budget kept,
the state round trip exact, and the hyperparameters really varied; and a plan extended past its
budget (`extend_budget`, what a cost budget with room left does) goes on and replays. A strategy that keeps them
at their defaults by design declares `varies_hparams = False` (`uniform`, the equal-rank
baseline); the check then asserts exactly that. Compare `optuna/testing/pytest_samplers.py`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ranksearch.strategies.base import STATE_VERSION, Proposal, Strategy, StrategyError
from ranksearch.testing import spaces
from ranksearch.trial import TrialResult

__all__ = ["BUDGET", "CHECKS", "check_strategy", "drive", "drive_proposals", "run_check"]

#: Configurations each check's runs may propose.
BUDGET = 24
Maker = Callable[..., Strategy]


class _Target:
    """How to make the strategy under test: a class, or a registered name, with options."""

    def __init__(self, target: type[Strategy] | str, options: Mapping[str, Any] | None) -> None:
        from ranksearch import strategies

        self.cls = strategies.strategy_class(target) if isinstance(target, str) else target
        if not (isinstance(self.cls, type) and issubclass(self.cls, Strategy)):
            raise TypeError(f"check_strategy needs a Strategy subclass or a registered name, "
                            f"got {target!r}")
        self.name = self.cls.name
        self.options = dict(options or {})

    def __call__(self, space: Any, *, seed: int, budget: int = BUDGET) -> Strategy:
        return self.cls(space, seed=seed, budget=budget, **self.options)

    @property
    def registered(self) -> bool:
        """True when `ranksearch.strategies` resolves the class's name to this class."""
        from ranksearch import strategies

        try:
            return strategies.strategy_class(self.name) is self.cls
        except StrategyError:
            return False


# -- driving ------------------------------------------------------------------------------------
def drive(strategy: Strategy, space: Any, *, results: Callable[[tuple[int, ...]], TrialResult] | None = None,
          max_calls: int = 2000) -> list[tuple[int, ...]]:
    """Run a strategy to its end like a pool of workers would: ask until None, tell the batch
    back in reverse order, repeat. Returns every proposal's ranks (`drive_proposals` gives the
    hyperparameter values too)."""
    return [p.ranks for p in drive_proposals(strategy, space, results=results, max_calls=max_calls)]


def drive_proposals(strategy: Strategy, space: Any, *,
                    results: Callable[[tuple[int, ...]], TrialResult] | None = None,
                    max_calls: int = 2000) -> list[Proposal]:
    """`drive` through `ask_proposal`: each result is told with the proposal's hyperparameter
    values (`results` gets the ranks; by default `spaces.objective` scores the values too)."""
    asked: list[Proposal] = []
    for _ in range(max_calls):
        batch = []
        while True:
            p = strategy.ask_proposal()
            if p is None:
                break
            batch.append(p)
        if not batch:
            assert strategy.is_finished(), "ask() gave None with nothing in flight, yet is_finished() is False"
            return asked
        asked += batch
        for p in reversed(batch):
            if results is None:
                result = spaces.objective(space, p.ranks, hparams=dict(p.hparams))
            else:
                result = dataclasses.replace(results(p.ranks), hparams=dict(p.hparams))
            strategy.tell(f"t{len(asked)}-{p.ranks}-{sorted(p.hparams.items())}", result)
    raise AssertionError(f"the strategy did not finish within {max_calls} rounds of asks")


def _check_proposal(space: Any, strategy: Strategy, r: Any) -> None:
    assert isinstance(r, tuple) and all(type(v) is int for v in r), f"proposal {r!r} is not a tuple of ints"
    assert len(r) == space.n_ranks, f"proposal {r} has {len(r)} values, the space {space.n_ranks}"
    assert all(v in e.values for v, e in zip(r, space.elements, strict=True)), f"proposal {r} is out of bounds"
    assert strategy.feasible(r), f"proposal {r} breaks the space's constraints"


def _no_repeats(asked: Sequence[tuple[int, ...]]) -> None:
    repeats = sorted({r for r in asked if asked.count(r) > 1})
    assert not repeats, f"configurations proposed twice: {repeats[:3]}"


# -- the checks ---------------------------------------------------------------------------------
def check_protocol(make: _Target) -> None:
    """ask/tell to the end: in-bounds, feasible, new proposals within the budget; then finished."""
    space = spaces.small()
    s = make(space, seed=1)
    assert s.name == make.name, f"the strategy's name is {s.name!r}"
    assert not s.is_finished(), "is_finished() is True before anything was asked"
    asked = drive(s, space)
    assert 0 < len(asked) <= BUDGET, f"{len(asked)} proposals for a budget of {BUDGET}"
    _no_repeats(asked)
    for r in asked:
        _check_proposal(space, s, r)
        assert isinstance(s.info(r), dict)
    assert s.is_finished() and s.ask() is None, "asks go on after the end"
    assert s.pending == 0


def check_keeps_workers_busy_or_waits(make: _Target) -> None:
    """A second ask either gives work or waits with something in flight."""
    space = spaces.small()
    s = make(space, seed=2)
    r = s.ask()
    assert r is not None, "the first ask gave nothing"
    second = s.ask()
    if second is None:
        assert s.pending == 1 and not s.is_finished(), "waiting with nothing in flight"
    s.tell("a", spaces.objective(space, r))
    if second is not None:
        s.tell("b", spaces.objective(space, second))
    assert s.ask() is not None or s.is_finished(), "nothing to propose after its results came back"


def check_failed_pruned_and_nan_results(make: _Target) -> None:
    """Failed, pruned and non-finite results are told too and must not crash the strategy."""
    space = spaces.small()
    kinds = [
        lambda r: TrialResult(r, status="failed", error="CUDA out of memory"),
        lambda r: TrialResult(r, status="pruned", metrics={"val_accuracy": 0.4}, fidelity=1),
        lambda r: TrialResult(r, status="pruned"),
        lambda r: TrialResult(r, metrics={"val_accuracy": math.nan}),
        lambda r: TrialResult(r, metrics={"val_accuracy": math.inf, "params": 5.0}),
        lambda r: spaces.objective(space, r),
    ]
    counter = iter(range(10**6))
    s = make(space, seed=3)
    asked = drive(s, space, results=lambda r: kinds[next(counter) % len(kinds)](r))
    assert 0 < len(asked) <= BUDGET
    _no_repeats(asked)
    assert any(not o.usable for o in s.observations)
    assert all(math.isfinite(v) for o in s.observations for v in o.f), "a non-finite objective vector"
    json.dumps(s.state_dict(), allow_nan=False)


def check_all_failed_still_finishes(make: _Target) -> None:
    """Every trial failing still ends the search."""
    space = spaces.small()
    s = make(space, seed=10)
    asked = drive(s, space, results=lambda r: TrialResult(r, status="failed"))
    assert 0 < len(asked) <= BUDGET


def check_out_of_order_duplicate_and_unasked_results(make: _Target) -> None:
    """Results in reverse order, reported twice, or for configurations never asked."""
    space = spaces.small()
    s = make(space, seed=4)
    batch = []
    while len(batch) < 3:
        r = s.ask()
        if r is None:
            break
        batch.append(r)
    assert batch, "the first ask gave nothing"
    for i, r in reversed(list(enumerate(batch))):
        s.tell(f"id{i}", spaces.objective(space, r))
        s.tell(f"id{i}", TrialResult(r, status="failed"))  # a late second report is ignored
    assert len(s.observations) == len(batch), "a second report of a trial was not ignored"
    assert all(o.status == "ok" for o in s.observations)
    stranger = space.equal_ranks(3)
    if stranger not in batch:
        s.tell("from-elsewhere", spaces.objective(space, stranger))
    asked = batch + drive(s, space)
    _no_repeats(asked)
    assert s.is_finished()


def check_exhausts_a_tiny_space(make: _Target) -> None:
    """Four configurations and a budget of 50: each at most once, then finished."""
    space = spaces.tiny()
    s = make(space, seed=5, budget=50)
    asked = drive(s, space)
    _no_repeats(asked)
    assert len(asked) <= 4
    assert s.is_finished() and s.ask() is None


def check_single_configuration_space(make: _Target) -> None:
    """A space of one configuration: proposed once, then finished."""
    space = spaces.FakeSpace([spaces.FakeLayer("fc", (2,), (2,))], choices=(3,), low=3, high=3)
    s = make(space, seed=0, budget=5)
    asked = drive(s, space)
    assert asked == [(3, 3)], f"proposed {asked}"


def check_hard_constraints_are_never_broken(make: _Target) -> None:
    """Every proposal meets max_params."""
    space = spaces.small(constraints={"max_params": 600})
    s = make(space, seed=6)
    asked = drive(s, space)
    assert asked and all(s.params(r) <= 600 for r in asked)


def check_impossible_constraints_fail_early(make: _Target) -> None:
    """Constraints no configuration meets are an error when the strategy is made."""
    space = spaces.small(constraints={"max_params": 10})
    try:
        make(space, seed=0, budget=5)
    except StrategyError as exc:
        assert "constraints" in str(exc), f"the error does not say why: {exc}"
        return
    raise AssertionError("a strategy was made for a space no configuration fits")


def check_same_seed_same_proposals(make: _Target) -> None:
    """The seed alone fixes the proposals (one numpy Generator, no global RNG)."""
    space = spaces.small()
    a = drive(make(space, seed=7), space)
    b = drive(make(space, seed=7), space)
    assert a == b, "two runs with seed 7 proposed different configurations"


def check_state_round_trip(make: _Target) -> None:
    """state_dict is versioned JSON; a fresh strategy loaded from it continues identically
    (on a rank-only space and on a mixed one)."""
    _state_round_trip(make, spaces.small())
    _state_round_trip(make, spaces.mixed())


def _state_round_trip(make: _Target, space: Any) -> None:
    def result(p: Proposal) -> TrialResult:
        return spaces.objective(space, p.ranks, hparams=dict(p.hparams))

    def rounds(s: Strategy, n: int) -> tuple[list, list]:
        out, in_flight = [], []
        for k in range(n):
            batch = []
            while len(batch) < 4:
                r = s.ask_proposal()
                if r is None:
                    break
                batch.append(r)
            out += batch
            if k == n - 1:
                in_flight = batch
            else:
                for r in batch:
                    s.tell(f"{r.ranks}{r.hparams}", result(r))
        return out, in_flight

    a = make(space, seed=8)
    first, in_flight = rounds(a, 3)
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    assert state["strategy"] == make.name and state["version"] == STATE_VERSION
    copies = [make(space, seed=8)]
    copies[0].load_state_dict(state)
    if make.registered:
        from ranksearch import strategies

        copies.append(strategies.from_state(space, state))
    for c in copies:
        assert c.n_asked == a.n_asked, "a reloaded strategy counts a different number of asks"
    for s in (a, *copies):
        for r in in_flight:
            s.tell(f"{r.ranks}{r.hparams}", result(r))
    rest = [[_config(p) for p in drive_proposals(s, space)] for s in (a, *copies)]
    assert all(r == rest[0] for r in rest), "a reloaded strategy continued differently"
    _no_repeats([_config(p) for p in first] + rest[0])


def check_extended_plan(make: _Target) -> None:
    """After its planned trials, `extend_budget` (a cost budget with room left) lets it go on
    without repeats, and its state replays the extension."""
    space = spaces.small()
    a = make(space, seed=5, budget=4)
    first = drive_proposals(a, space)
    assert len(first) <= 4 and a.planned_budget == 4, "the planned count changed on its own"
    a.extend_budget(3)
    more = drive_proposals(a, space)
    assert len(first) + len(more) <= 7, f"{len(first) + len(more)} proposals for 4 planned and 3 added"
    if len(first) == 4:
        assert more, "nothing proposed after extend_budget, with the space not exhausted"
    _no_repeats([_config(p) for p in first + more])
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    assert state["budget"] == 4 and {"extend": 3} in state["events"], "the extension is not in the state"
    b = make(space, seed=5, budget=4)
    b.load_state_dict(state)
    assert (b.budget, b.n_asked) == (a.budget, a.n_asked), "a reloaded strategy lost the extension"
    a.extend_budget(2)
    b.extend_budget(2)
    assert [_config(p) for p in drive_proposals(a, space)] == [_config(p) for p in drive_proposals(b, space)], \
        "a reloaded strategy continued differently after the extension"


def _config(p: Proposal) -> tuple:
    """A proposal's identity: ranks and sorted hyperparameter values."""
    return p.ranks, tuple(sorted(p.hparams.items()))


def check_mixed_space(make: _Target) -> None:
    """On ranks plus hyperparameters with a condition: valid canonical values, conditions
    respected, no configuration twice, the budget kept, and the values varied."""
    space = spaces.mixed()
    hyper = space.hyper
    s = make(space, seed=12)
    asked = drive_proposals(s, space)
    assert 0 < len(asked) <= BUDGET, f"{len(asked)} proposals for a budget of {BUDGET}"
    for p in asked:
        _check_proposal(space, s, p.ranks)
        values = dict(p.hparams)
        assert hyper.check(values) == values, f"hyperparameters {values} are not canonical"
        for name in hyper.names:
            active = hyper.is_active(name, values)
            assert (name in values) == active, (
                f"'{name}' is {'missing' if active else 'present'} in {values}, though its "
                f"condition {'holds' if active else 'does not hold'}")
        assert s.info(p.ranks, values) == dict(p.info)
    _no_repeats([_config(p) for p in asked])
    settings = {tuple(sorted(p.hparams.items())) for p in asked}
    if getattr(s, "varies_hparams", True):
        assert len(settings) >= min(4, len(asked)), (
            f"{len(asked)} proposals use only {len(settings)} hyperparameter settings: the "
            "strategy does not search them (declare varies_hparams = False if that is its design)")
        names = {n for p in asked for n in p.hparams}
        assert names == set(hyper.names), f"never proposed {sorted(set(hyper.names) - names)}"
    else:
        assert settings == {tuple(sorted(hyper.defaults().items()))}, (
            "a strategy with varies_hparams = False proposed non-default values")
    assert s.is_finished() and s.ask() is None, "asks go on after the end"
    # a result for a setting it never proposed is taken as information, and never proposed again
    stranger = Proposal(space.equal_ranks(2), {}, hyper.canonical(
        {"training.optimizer.name": "sgd", "training.optimizer.momentum": 0.62}))
    t = make(space, seed=13)
    t.tell("elsewhere", spaces.objective(space, stranger.ranks, hparams=dict(stranger.hparams)))
    assert t.observations[0].hparams == stranger.hparams
    rest = drive_proposals(t, space)
    assert _config(stranger) not in {_config(p) for p in rest}, "proposed a configuration told before"


def check_state_refuses_a_used_strategy_or_another_one(make: _Target) -> None:
    """load_state_dict wants a fresh strategy of the same name."""
    from ranksearch.strategies.random_search import RandomSearch, UniformSweep

    space = spaces.small()
    a = make(space, seed=9)
    a.ask()
    state = a.state_dict()
    for target, fragment in ((a, "fresh"),
                             ((UniformSweep if make.name == "random" else RandomSearch)(space, seed=9),
                              "belongs to")):
        try:
            target.load_state_dict(state)
        except StrategyError as exc:
            assert fragment in str(exc), f"unclear error: {exc}"
        else:
            raise AssertionError(f"load_state_dict accepted a state it must refuse ({fragment})")


def check_seeds_come_first(make: _Target) -> None:
    """Seeds given before the first ask are proposed first, once, and count against the budget."""
    space = spaces.small()
    s = make(space, seed=11)
    seeds = [space.equal_ranks(2), space.equal_ranks(5)]
    assert s.add_seeds(seeds, kind="explicit") == seeds
    asked = drive(s, space)
    assert asked[:2] == seeds, f"the first proposals were {asked[:2]}, not the seeds {seeds}"
    _no_repeats(asked)
    assert len(asked) <= BUDGET


def check_unknown_option_is_an_error(make: _Target) -> None:
    """An option the strategy does not declare is an error naming it."""
    try:
        make.cls(spaces.small(), seed=0, **make.options, no_such_option=1)
    except (StrategyError, TypeError) as exc:
        assert "no_such_option" in str(exc), f"the error does not name the option: {exc}"
        return
    raise AssertionError("an unknown option was accepted silently")


_CHECKS: dict[str, Callable[[_Target], None]] = {
    "protocol": check_protocol,
    "keeps_workers_busy_or_waits": check_keeps_workers_busy_or_waits,
    "failed_pruned_and_nan_results": check_failed_pruned_and_nan_results,
    "all_failed_still_finishes": check_all_failed_still_finishes,
    "out_of_order_duplicate_and_unasked_results": check_out_of_order_duplicate_and_unasked_results,
    "exhausts_a_tiny_space": check_exhausts_a_tiny_space,
    "single_configuration_space": check_single_configuration_space,
    "hard_constraints_are_never_broken": check_hard_constraints_are_never_broken,
    "impossible_constraints_fail_early": check_impossible_constraints_fail_early,
    "same_seed_same_proposals": check_same_seed_same_proposals,
    "state_round_trip": check_state_round_trip,
    "state_refuses_a_used_strategy_or_another_one": check_state_refuses_a_used_strategy_or_another_one,
    "seeds_come_first": check_seeds_come_first,
    "unknown_option_is_an_error": check_unknown_option_is_an_error,
    "mixed_space": check_mixed_space,
    "extended_plan": check_extended_plan,
}
#: The names of the checks, for `pytest.mark.parametrize("check", CHECKS)`.
CHECKS: tuple[str, ...] = tuple(_CHECKS)


def run_check(check: str, target: type[Strategy] | str,
              options: Mapping[str, Any] | None = None) -> None:
    """Run one check on a strategy class (or registered name) made with `options`.

    Raises AssertionError naming the strategy and the check, with what went wrong; an
    exception the strategy raises counts as a failure too.
    """
    if check not in _CHECKS:
        raise KeyError(f"unknown conformance check {check!r}; checks: {', '.join(CHECKS)}")
    make = _Target(target, options)
    try:
        _CHECKS[check](make)
    except AssertionError as exc:
        raise AssertionError(f"strategy '{make.name}' fails conformance check '{check}' "
                             f"({_CHECKS[check].__doc__.splitlines()[0]}): {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"strategy '{make.name}' fails conformance check '{check}': it "
                             f"raised {type(exc).__name__}: {exc}") from exc


def check_strategy(target: type[Strategy] | str, options: Mapping[str, Any] | None = None, *,
                   checks: Sequence[str] | None = None) -> None:
    """Run every conformance check (or `checks`) on a strategy; one AssertionError lists all
    that failed."""
    failures = []
    for check in checks or CHECKS:
        try:
            run_check(check, target, options)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} of {len(checks or CHECKS)} conformance checks "
                             "failed:\n- " + "\n- ".join(failures))
