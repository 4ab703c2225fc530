"""A test-only strategy that proposes random ranks AND random hyperparameter values (one grid
level per parameter, conditions respected), so execution tests see values that differ across
trials whatever the built-in strategies do. Importable by name from a subprocess driver."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ranksearch import strategies
from ranksearch.strategies import Strategy
from ranksearch.strategies.base import Proposal

NAME = "test-random-recipe"


class RandomRecipe(Strategy):
    name = NAME

    def __init__(self, space, *, seed: int | None = None, budget: int | None = None) -> None:
        super().__init__(space, seed=seed, budget=budget)
        self._values: dict[tuple[int, ...], dict[str, Any]] = {}

    def _propose(self, limit: int) -> Iterable[Proposal]:
        out: list[Proposal] = []
        rank_values = getattr(self, "rank_values", self.values)  # the ranks alone, on any base class
        while len(out) < min(limit, 2):
            ranks = tuple(int(self.rng.choice(v)) for v in rank_values)
            if not self.is_new(ranks) or any(p.ranks == ranks for p in out):
                continue
            raw = {p.name: p.levels[int(self.rng.integers(len(p.levels)))] for p in self.space.hyper}
            values = self.space.hyper.canonical(raw)
            self._values[ranks] = values
            out.append(Proposal(ranks, {}, values))
        return out

    def hparams(self, ranks: Iterable[int]) -> dict[str, Any]:
        """The values proposed with these ranks (what the Tune adapter asks for)."""
        return dict(self._values.get(tuple(int(r) for r in ranks), {}))


def register() -> None:
    if NAME not in strategies.available():
        strategies.register(NAME, RandomRecipe)


if __name__ == "__main__":  # a search driver of its own, to be killed: python recipe_strategy.py SPACE STORE MLRUNS NAME
    import sys

    from ranksearch import service

    register()
    space, store, mlruns, name = sys.argv[1:5]
    service.search(space, strategy=NAME, workers=2, name=name, storage=store, tracking_uri=mlruns,
                   show_progress=False)
