"""Every registered strategy passes the shipped conformance suite, and the suite can fail.

A newly registered strategy is picked up automatically. Runs use a cheap synthetic objective
on small fake spaces, never Ray and never training (see `ranksearch.testing`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from ranksearch import strategies, testing
from ranksearch.strategies import Observation, Strategy, StrategyOptions, option
from ranksearch.trial import RankConfig


@pytest.mark.parametrize("check", testing.CHECKS)
@pytest.mark.parametrize("name", strategies.available())
def test_registered_strategy_conforms(name, check):
    testing.run_check(check, name)


@dataclass(frozen=True)
class _SweepOptions(StrategyOptions):
    start: int = option(0, "index of the first value swept", low=0)


class _Sweep(Strategy):
    """A correct minimal strategy: every element at the same index, one at a time."""

    name = "test-sweep"
    Options = _SweepOptions

    def __init__(self, space, **kwargs) -> None:
        super().__init__(space, **kwargs)
        self._k = self.opts.start

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        while self._k < max(len(v) for v in self.values):
            k = self._k
            self._k += 1
            cfg = tuple(v[min(k, len(v) - 1)] for v in self.values)
            if self.is_new(cfg) and self.feasible(cfg):
                return [cfg]
        cand = self.rng.choice(len(self.values[0]))  # draw only from self.rng
        cfg = tuple(v[min(int(cand), len(v) - 1)] for v in self.values)
        if self.is_new(cfg) and self.feasible(cfg):
            return [cfg]
        self.mark_exhausted()
        return []


class _GlobalRandom(_Sweep):
    """Broken: draws from Python's global RNG, so a seed does not fix its proposals."""

    name = "test-global-random"

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        for _ in range(50):
            cfg = tuple(random.choice(v) for v in self.values)
            if self.is_new(cfg) and self.feasible(cfg):
                return [cfg]
        self.mark_exhausted()
        return []


class _Stalls(_Sweep):
    """Broken: after four proposals it waits forever without saying it is finished."""

    name = "test-stalls"

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        return super()._propose(limit) if self.n_asked < 4 else []


class _CrashesOnFailures(_Sweep):
    """Broken: reads the accuracy of a failed trial as if it had one."""

    name = "test-crashes"

    def _observe(self, obs: Observation) -> None:
        if not obs.usable:
            raise ValueError(f"no accuracy for {obs.ranks}")


def test_a_correct_strategy_passes_with_one_call():
    testing.check_strategy(_Sweep, options={"start": 1})


@pytest.mark.parametrize(("broken", "failing"), [
    (_GlobalRandom, {"same_seed_same_proposals", "state_round_trip"}),
    (_Stalls, {"protocol", "all_failed_still_finishes"}),
    (_CrashesOnFailures, {"failed_pruned_and_nan_results", "all_failed_still_finishes"}),
])
def test_broken_strategies_fail_the_suite_with_clear_messages(broken, failing):
    with pytest.raises(AssertionError) as err:
        testing.check_strategy(broken)
    text = str(err.value)
    for check in failing:
        assert f"strategy '{broken.name}' fails conformance check '{check}'" in text
    if broken is not _Stalls:
        assert text.startswith(f"{len(failing)} of {len(testing.CHECKS)} conformance checks failed")


def test_run_check_names_unknown_checks():
    with pytest.raises(KeyError, match="unknown conformance check 'nope'"):
        testing.run_check("nope", _Sweep)
