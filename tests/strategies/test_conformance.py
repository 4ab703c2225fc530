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
from ranksearch.strategies import Observation, Proposal, Strategy, StrategyOptions, option
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


class _DefaultsOnly(_Sweep):
    """Broken on a mixed space: proposes rank vectors only, so every hyperparameter stays at
    its default although the strategy claims to search them."""

    name = "test-defaults-only"

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        for _ in range(200):
            cfg = tuple(int(v[self.rng.integers(len(v))]) for v in self.rank_values)
            if self.is_new(cfg) and self.feasible(cfg):
                return [cfg]
        self.mark_exhausted()
        return []


class _IgnoresConditions(_Sweep):
    """Broken: proposes momentum with Adam (an inactive parameter) as an explicit value."""

    name = "test-ignores-conditions"

    def _propose(self, limit: int) -> Iterable[Proposal]:
        out = []
        for p in super()._propose(limit):
            ranks, values = self.split(p)
            if values.get("training.optimizer.name") == "adam":
                values = {**values, "training.optimizer.momentum": 0.7}
            out.append(Proposal(ranks, {}, values))
        return out


def test_a_correct_strategy_passes_with_one_call():
    testing.check_strategy(_Sweep, options={"start": 1})


@pytest.mark.parametrize(("broken", "failing"), [
    (_GlobalRandom, {"same_seed_same_proposals", "state_round_trip", "extended_plan"}),
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


def test_a_strategy_that_never_varies_hyperparameters_fails_the_mixed_check():
    with pytest.raises(AssertionError) as err:
        testing.check_strategy(_DefaultsOnly)
    text = str(err.value)
    assert text.startswith(f"1 of {len(testing.CHECKS)} conformance checks failed")
    assert "fails conformance check 'mixed_space'" in text
    assert "does not search them" in text


def test_inactive_values_are_dropped_not_proposed():
    """An inactive value given explicitly is dropped by canonicalisation: the configuration is
    the one without it, so the check that conditions hold still passes."""
    testing.run_check("mixed_space", _IgnoresConditions)
    s = _IgnoresConditions(testing.mixed(), seed=0, budget=3)
    p = s.ask_proposal()
    assert p.hparams["training.optimizer.name"] == "adam"
    assert "training.optimizer.momentum" not in p.hparams


def test_uniform_keeps_defaults_by_design():
    space = testing.mixed()
    s = strategies.get("uniform", space, seed=0, budget=10)
    asked = testing.drive_proposals(s, space)
    assert len(asked) > 3
    assert all(dict(p.hparams) == space.hyper.defaults() for p in asked)


def test_run_check_names_unknown_checks():
    with pytest.raises(KeyError, match="unknown conformance check 'nope'"):
        testing.run_check("nope", _Sweep)
