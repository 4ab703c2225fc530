"""The batch barrier shared by generation-based strategies (GA generations, beam steps, RL batches).

Such a strategy proposes a whole batch at once (so parallel workers have work) and may only
breed the next one once every member has been told back. The barrier, and the record of the
first result told for each configuration, live here once instead of in each strategy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ranksearch.strategies.base import Observation, Proposal, Strategy
from ranksearch.trial import RankConfig


class BatchStrategy(Strategy):
    """Proposes a batch through `_next_batch`, then answers nothing until all of it is told.

    Configurations are decision vectors (`Strategy.canon`; the rank vectors on a rank-only
    space). `known` maps each told configuration to its first observation (a later report of the same
    configuration, e.g. a retry, does not overwrite it). A subclass that must also wait for
    configurations already in flight (a seed in its first population) names them with
    `wait_for` from inside `_next_batch`.
    """

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.known: dict[RankConfig, Observation] = {}
        self._waiting: set[RankConfig] = set()

    @property
    def waiting(self) -> frozenset[RankConfig]:
        """Members of the current batch whose result has not been told yet."""
        return frozenset(self._waiting)

    def wait_for(self, configs: Iterable[RankConfig]) -> None:
        """Hold the next batch until these configurations are told too."""
        self._waiting.update(configs)

    def _next_batch(self, limit: int) -> Iterable[RankConfig | Proposal]:
        """The next batch (at most `limit`), bred from `known`; empty when there is none."""
        raise NotImplementedError

    def _observe_batch_member(self, obs: Observation) -> None:
        """Optional hook: learn from one told result as it arrives."""

    # -- Strategy hooks -----------------------------------------------------------------------
    def _propose(self, limit: int) -> Iterable[RankConfig | Proposal]:
        if self._waiting:
            return []
        batch = [p if isinstance(p, Proposal) else Proposal(p, {}) for p in self._next_batch(limit)]
        self._waiting.update(self.vector(p.ranks, p.hparams) if p.hparams else self.canon(p.ranks)
                             for p in batch)
        return batch

    def _observe(self, obs: Observation) -> None:
        self.known.setdefault(obs.x, obs)
        self._waiting.discard(obs.x)
        self._observe_batch_member(obs)
