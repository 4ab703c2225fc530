"""An example strategy, small enough to read in a minute: what a new strategy needs.

A strategy subclasses `Strategy`, names itself, declares typed options (validated before
anything starts; `ranksearch strategies` lists them) and implements `_propose(limit)`: up to
`limit` new configurations, as decision vectors (the rank elements, then one grid level code per
hyperparameter; `self.values[j]` lists what decision j may take). The base class does the
rest: duplicate and bounds checks, constraints, seeds, telling results back as `Observation`s,
the budget, and the state a resumed search replays. `ranksearch.testing.check_strategy(HillClimb)`
runs the conformance suite on it (tests/strategies/test_example_strategy.py does).

Use it in Python with `strategies.register("hillclimb", "ranksearch.examples.hillclimb:HillClimb")`,
or from an installed package through the entry-point group `ranksearch.strategies`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ranksearch.strategies import Strategy, StrategyOptions, option, sampling


@dataclass(frozen=True)
class HillClimbOptions(StrategyOptions):
    start: int = option(4, "random configurations before climbing", low=1)


class HillClimb(Strategy):
    """Random starts, then one-step changes of the most accurate configuration so far."""

    name = "hillclimb"
    Options = HillClimbOptions

    def _propose(self, limit: int) -> list[tuple[int, ...]]:
        done = [o for o in self.observations if o.usable]
        climbing = self.n_asked >= self.opts.start
        if climbing and not done and self.pending:
            return []                                  # wait for a first result
        x = sampling.find_unseen(self, self.rng)       # random (and the fallback)
        if climbing and done:
            best = max(done, key=lambda o: o.accuracy).x   # ranks, then hyperparameter levels
            for j in self.rng.permutation(self.n):         # change one decision by one level
                values = self.values[j]
                i = values.index(best[j]) + int(self.rng.choice([-1, 1]))
                cand = best[:j] + (values[min(max(i, 0), len(values) - 1)],) + best[j + 1:]
                if self.feasible(cand) and self.is_new(cand):
                    x = cand
                    break
        if x is None:
            self.mark_exhausted()                      # nothing unseen is left
            return []
        return [x]
