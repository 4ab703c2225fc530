"""Finding unseen feasible configurations: exhaustion is declared only when it is true."""

from __future__ import annotations

import fakes
import pytest

from ranksearch import strategies
from ranksearch.strategies import sampling


def feasible_set(strategy) -> set[tuple[int, ...]]:
    """Every feasible configuration, by a breadth-first walk up from the lowest one.

    The constraints bound the parameter count from above and the count grows with every rank,
    so the feasible set is closed downwards: raising one element a step at a time from the
    lowest configuration reaches all of it.
    """
    start = strategy.lowest
    found, frontier = {start}, [start]
    while frontier:
        nxt = []
        for cfg in frontier:
            for i, values in enumerate(strategy.values):
                j = values.index(cfg[i])
                if j + 1 < len(values):
                    up = cfg[:i] + (values[j + 1],) + cfg[i + 1:]
                    if up not in found and strategy.feasible(up):
                        found.add(up)
                        nxt.append(up)
        frontier = nxt
    return found


@pytest.fixture
def tight_space():
    """PSTRN's LeNet-5 with ranks 2..12 (11**20 configurations) and a budget only a few dozen
    of them meet."""
    probe = strategies.get("random", fakes.lenet5(high=12), seed=0, budget=1)
    low = probe.params(probe.lowest)
    return fakes.lenet5(high=12, constraints={"max_params": low + 40})


def test_random_search_finds_every_feasible_configuration_of_a_huge_space(tight_space):
    s = strategies.get("random", tight_space, seed=0, budget=10_000)
    assert s._search_size() > 10**20 and tight_space.config.constraints.max_params
    target = feasible_set(s)
    assert 10 < len(target) < 200  # few, so uniform draws repaired downwards keep repeating
    asked = []
    while (r := s.ask()) is not None:
        asked.append(r)
        s.tell(str(len(asked)), fakes.objective(tight_space, r))
    assert set(asked) == target and len(asked) == len(target)
    assert s.is_finished() and s.n_asked < s.budget


def test_search_unseen_is_exact_and_proves_exhaustion(tight_space):
    s = strategies.get("random", tight_space, seed=3, budget=10_000)
    target = feasible_set(s)
    got: set[tuple[int, ...]] = set()
    for _ in range(len(target)):
        cand = sampling.search_unseen(s, s.rng, exclude=got)
        assert cand is not None and cand in target and cand not in got
        got.add(cand)
    assert got == target
    assert sampling.search_unseen(s, s.rng, exclude=got) is None


def test_search_unseen_spreads_its_finds(tight_space):
    s = strategies.get("random", tight_space, seed=4, budget=10_000)
    finds = {sampling.search_unseen(s, s.rng) for _ in range(30)}
    assert len(finds) > 5  # random orders, not always the same configuration
