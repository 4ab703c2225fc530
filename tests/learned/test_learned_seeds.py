"""`seeds: [learned]`: rank vectors read off one short gated run seed a population strategy."""

from __future__ import annotations

import pytest

from ranksearch import SearchSpace, count_params, strategies
from ranksearch.errors import SpaceError
from ranksearch.learned.seeds import learned_rank_seeds


def _with_seeds(space: SearchSpace, seeds: list, *, name: str = "nsga2", **training: object) -> SearchSpace:
    doc = space.to_dict()
    doc["strategy"] = {**doc["strategy"], "name": name, "budget": 12, "seeds": seeds, "seed_count": 3,
                       "options": {}}
    doc["training"] = {**doc["training"], **training}
    return SearchSpace.from_dict(doc)


def test_learned_seeds_spread_over_the_range_and_repeat_for_a_seed(digits_space):
    a = learned_rank_seeds(digits_space, 3, epochs=1)
    assert len(a) == 3 and len(set(a)) == 3
    counts = [count_params(digits_space, r) for r in a]
    assert counts == sorted(counts, reverse=True)  # largest first
    assert counts[0] / counts[-1] > 4  # spread over the range, not bunched
    assert all(digits_space.check_ranks(r) == r for r in a)
    assert learned_rank_seeds(digits_space, 3, epochs=1) == a  # deterministic for the space's seed


def test_seeds_learned_go_first_in_a_population_strategy(digits_space):
    space = _with_seeds(digits_space, ["learned", [4] * 12], epochs=4)  # gated run: 1 epoch
    s = strategies.from_space(space)
    kinds = [s.info(r)["seeded"] for r in [s.ask() for _ in range(4)]]
    assert kinds == ["learned"] * 3 + ["explicit"]
    assert len(s.seeds) == 4 and all(s.is_seed(r) for r in s.seeds)


def test_learned_seeds_with_a_dense_start_need_the_dense_net(digits_space):
    space = _with_seeds(digits_space, ["learned"], init="dense")
    from ranksearch.strategies.seeding import needs_dense, space_seeds

    assert needs_dense(space)
    with pytest.raises(SpaceError, match="dense network"):
        space_seeds(space, None)
    s = strategies.get("nsga2", space, seed=0, budget=12)
    assert strategies.seed_strategy(s, space) == []  # left for the driver, which has the net


def test_an_unknown_seed_kind_lists_learned(digits_space):
    with pytest.raises(Exception, match="'learned'"):
        _with_seeds(digits_space, ["learnt"])
