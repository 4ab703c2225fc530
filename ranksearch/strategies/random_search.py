"""Baselines: uniform random search, and equal ranks swept over the bounds (TRN's choice)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ranksearch.strategies import sampling
from ranksearch.strategies.base import Proposal, Strategy
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig


@dataclass(frozen=True)
class RandomOptions(StrategyOptions):
    batch_size: int = option(1, "configurations proposed per ask (all drawn before any result)",
                             low=1)


@dataclass(frozen=True)
class UniformOptions(StrategyOptions):
    order: str = option("spread", "'spread' visits the extremes first then bisects (a short "
                        "budget still spans the compression range); or 'ascending', "
                        "'descending'", choices=("spread", "ascending", "descending"))


class RandomSearch(Strategy):
    """Every element drawn uniformly from its allowed values; infeasible draws are repaired.

    Hyperparameters are sampled with the ranks: each one's grid level uniformly (a log domain's
    levels are spaced in log space, so this is log-uniform), an inactive conditional one left
    out (`Strategy.canon`).

    The reference the benchmark divides by: it knows nothing of the compression axis. When
    `DRAWS` draws in a row meet only seen configurations (under a tight `max_params` repairs
    pile up on a few small ones, and each costs hundreds of parameter counts), it stops
    drawing for good and picks each next configuration by `sampling.find_unseen` instead, so
    the space is declared exhausted only when it is.
    """

    #: Failed draws in a row after which drawing is given up.
    DRAWS = 20

    name = "random"
    Options = RandomOptions
    opts: RandomOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.batch_size = self.opts.batch_size
        self._draws_futile = False

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        out: list[RankConfig] = []
        for _ in range(min(limit, self.batch_size)):
            cand = None
            if not self._draws_futile:
                cand = sampling.draw_feasible(self, self.rng, tries=self.DRAWS, exclude=set(out))
                self._draws_futile = cand is None
            if cand is None:
                cand = sampling.find_unseen(self, self.rng, exclude=set(out))
            if cand is None:
                self.mark_exhausted()
                break
            out.append(cand)
        return out


class UniformSweep(Strategy):
    """Equal ranks everywhere, swept over the bounds: the Tensor Ring Nets baseline.

    `order="spread"` visits the extremes first and then bisects, so a budget smaller than the
    number of levels still spans the whole compression range. Hyperparameters stay at their
    defaults: it is the rank baseline, and varies nothing else (the conformance suite's
    "hyperparameters vary" check exempts it).
    """

    name = "uniform"
    Options = UniformOptions
    opts: UniformOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.order = self.opts.order
        self._levels: list[RankConfig] | None = None

    def _start(self) -> None:
        levels = sorted({v for values in self.rank_values for v in values})
        configs: list[RankConfig] = []
        for r in levels:
            cfg = tuple(min(values, key=lambda v, r=r: (abs(v - r), v)) for values in self.rank_values)
            if cfg not in configs and self.feasible(cfg):
                configs.append(cfg)
        if self.order == "descending":
            configs.reverse()
        elif self.order == "spread":
            configs = [configs[i] for i in _bisection_order(len(configs))]
        self._levels = configs

    def _propose(self, limit: int) -> Iterable[Proposal]:
        assert self._levels is not None
        while self._levels and not self.is_new(self._levels[0]):
            self._levels.pop(0)
        if not self._levels:
            self.mark_exhausted()
            return []
        cfg = self._levels.pop(0)
        return [Proposal(cfg, {"equal_rank": max(cfg)})]


def _bisection_order(n: int) -> list[int]:
    """0, n-1, then midpoints of ever finer intervals: every prefix spans the range evenly."""
    if n <= 2:
        return list(range(n))
    order, seen = [0, n - 1], {0, n - 1}
    intervals = [(0, n - 1)]
    while intervals:
        nxt = []
        for a, b in intervals:
            if b - a < 2:
                continue
            m = (a + b) // 2
            if m not in seen:
                order.append(m)
                seen.add(m)
            nxt += [(a, m), (m, b)]
        intervals = nxt
    return order
