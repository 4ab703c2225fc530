"""Modified beam search over rank vectors (after Eo, Kang and Rhee, 2021/2023).

Start from the highest ranks; each step, every configuration in the beam has children that
lower one rank element by a step (to at most `factor` times its value, at least one allowed
value down); the children are scored by the accuracy their trial reports (short fidelity is
enough: only the ranking matters) per unit of parameters saved, and the best `width` become
the next beam. The descent passes every compression level on its way down, so one descent
traces a whole front; `targets` (compression ratios) can end it earlier.

The exact parameter count of every child is known before training. It is used to pre-screen:
of each parent's children only `children` are evaluated, chosen by how cheaply (accuracy lost
per log-parameter saved) lowering that element has cost before; elements never tried go first.
When a descent ends with budget left, a wider one starts from the top again, reusing every
result already measured.

Hyperparameters are further decisions of the same descent: on a space with them, a
configuration is a decision vector (ranks, then a level code per hyperparameter) and a parent's
children also include each active hyperparameter moved one grid level up or down. Such a move
saves no parameters, so its score (accuracy lost per decade saved, over a floor of 1e-9
decades) ranks a move that gained accuracy before any rank move and one that lost accuracy
after them all; hyperparameter moves are tried once the rank elements have a history (they
save nothing, and untried elements go largest saving first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranksearch.strategies import sampling
from ranksearch.strategies.base import Proposal
from ranksearch.strategies.batch import BatchStrategy
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig


@dataclass(frozen=True)
class BeamOptions(StrategyOptions):
    width: int | None = option(None, "configurations kept per step; None: the widest (up to 4) "
                               "whose whole descent fits in the budget", low=1)
    children: int = option(3, "children evaluated per parent (cheapest-looking elements first)",
                           low=1)
    factor: float = option(0.4, "a step lowers a rank to at most this fraction of its value "
                           "(at least one allowed value down)", low=0, high=1, low_open=True,
                           high_open=True)
    targets: tuple[float, ...] | None = option(
        None, "compression ratios; a descent ends once it reaches the largest", low=0,
        low_open=True, min_len=1)


class BeamSearch(BatchStrategy):
    """Descent from high ranks, one element one step at a time, keeping the best `width`.

    `width=None` picks the widest beam (up to 4) whose whole descent fits in the budget.
    """

    name = "beam"
    Options = BeamOptions
    opts: BeamOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        o = self.opts
        self.width = o.width or 1
        self._auto_width = o.width is None
        self.children = o.children
        self.factor = o.factor
        self.targets = o.targets
        self.beam: list[RankConfig] = []
        self.step = 0
        self.descent = 0
        self._pending_children: list[tuple[RankConfig, int, RankConfig]] = []
        # move (a rank element, or a hyperparameter and direction) -> accuracy lost per log10
        # param saved
        self._cost: dict[Any, list[float]] = {}
        self._start_cfg: RankConfig | None = None

    # -- moves --------------------------------------------------------------------------------
    def lower(self, ranks: RankConfig, i: int) -> RankConfig | None:
        """`ranks` with element i lowered one step, or None when it is already at its lowest."""
        values = self.values[i]
        j = values.index(ranks[i])
        if j == 0:
            return None
        limit = ranks[i] * self.factor
        k = max((m for m in range(j) if values[m] <= limit), default=j - 1)
        return ranks[:i] + (values[k],) + ranks[i + 1:]

    def shift(self, x: RankConfig, i: int, d: int) -> RankConfig | None:
        """Hyperparameter `i` (a decision after the ranks) moved `d` levels, or None when that
        leaves its grid or changes nothing (an inactive parameter)."""
        values = self.values[i]
        j = values.index(x[i]) + d
        if not 0 <= j < len(values):
            return None
        child = self.canon(x[:i] + (values[j],) + x[i + 1:])
        return None if child == x else child

    def _efficiency(self, parent: RankConfig, child: RankConfig) -> float:
        """Accuracy lost per decade of parameters saved (lower is better)."""
        saved = math.log10(self.params(parent)) - math.log10(self.params(child))
        return (self.known[parent].accuracy - self.known[child].accuracy) / max(saved, 1e-9)

    def _reached_target(self, ranks: RankConfig) -> bool:
        return self.targets is not None and self.compression(ranks) >= max(self.targets)

    # -- protocol hooks -----------------------------------------------------------------------
    def _start(self) -> None:
        self._start_cfg = sampling.repair(self, self.highest)
        if self._auto_width and self._start_cfg is not None:
            self.width = self.auto_width(self._start_cfg)

    def auto_width(self, start: RankConfig) -> int:
        """The widest beam (1..4) whose full descent from `start` fits in the budget."""
        steps = 0
        for i in range(self.n_ranks):
            cfg: RankConfig | None = start
            while cfg is not None:
                cfg = self.lower(cfg, i)
                steps += cfg is not None
        return int(min(4, max(1, self.budget // max(1, steps * self.children))))

    def _next_batch(self, limit: int) -> Iterable[Proposal]:
        for _ in range(10_000):  # steps made only of measured configurations cost nothing
            if not self.beam:
                start = self._start_cfg
                if start is None:
                    self.mark_exhausted()
                    return []
                if start not in self.known:
                    if not self.is_new(start):
                        return []  # asked, still running
                    return [Proposal(start, {"beam_step": 0, "descent": self.descent})]
                self.beam = [start]
                continue
            if self._pending_children:
                self._select()
                continue
            chosen = self._choose_children()
            if not chosen:
                if not self._next_descent():
                    self.mark_exhausted()
                    return []
                continue
            self._pending_children = chosen
            new = list(dict.fromkeys(c for _, _, c in chosen if c not in self.known and self.is_new(c)))
            unknown_running = [c for _, _, c in chosen if c not in self.known and not self.is_new(c)]
            if unknown_running:
                return []  # told elsewhere or in flight: wait for it
            if new:
                new = new[:limit]
                info = {"beam_step": self.step + 1, "descent": self.descent}
                return [Proposal(c, info) for c in new]
        self.mark_exhausted()
        return []

    def _choose_children(self) -> list[tuple[RankConfig, int, RankConfig]]:
        """Each parent's most promising children (untried elements first, then cheapest)."""
        out: list[tuple[RankConfig, int, RankConfig]] = []
        taken: set[RankConfig] = set()
        for parent in self.beam:
            if self._reached_target(parent):
                continue
            options = []
            moves = [(i, self.lower(parent, i)) for i in range(self.n_ranks)]
            moves += [((i, d), self.shift(parent, i, d)) for i in range(self.n_ranks, self.n)
                      for d in (-1, 1)]
            for i, child in moves:
                if child is None or child in taken or not self.feasible(child):
                    continue
                history = self._cost.get(i)
                known = child in self.known
                # untried elements first; measured children are free; then the cheapest
                est = -math.inf if history is None else float(np.mean(history[-3:]))
                saving = math.log10(self.params(parent)) - math.log10(self.params(child))
                options.append((0 if known else 1, est, -saving, float(self.rng.random()), i, child))
            if self.n > self.n_ranks:  # moves of hyperparameters carry (index, direction)
                options = [(*o[:4], str(o[4]), o[4], o[5]) for o in options]
            options.sort()
            for *_, i, child in options[: self.children]:
                out.append((parent, i, child))
                taken.add(child)
        return out

    def _select(self) -> None:
        """Score the measured children and keep the best `width` as the next beam."""
        scored = []
        for parent, i, child in self._pending_children:
            if child not in self.known:
                continue  # the budget ran out before it was evaluated
            eff = self._efficiency(parent, child)
            self._cost.setdefault(i, []).append(eff)
            scored.append((eff, child))
        self._pending_children = []
        scored.sort()
        beam: list[RankConfig] = []
        for _, child in scored:
            if child not in beam:
                beam.append(child)
            if len(beam) == self.width:
                break
        self.step += 1
        self.beam = beam

    def _next_descent(self) -> bool:
        """Start again from the top with a wider beam; False if that can reach nothing new."""
        if self.descent >= 8:
            return False
        self.descent += 1
        self.width += 1
        self.beam = []
        self.step = 0
        return True
