"""Ranks learned in training: one gated training run per trial, each with its own knob.

The strategy does not pick rank vectors: it picks the knob of a learned-rank trial (a target
compression, or a penalty strength) and the trial learns the ranks (`ranksearch.learned`: gates
on every rank slice, prune, fine-tune). All knobs are proposed at once, so the trials run side
by side and trace a front in one round.

How it fits the ask/tell contract, which speaks in rank vectors: each proposal carries its
knob in `info["learn"]` (the searcher adapter puts it in the trial's config) and, as its rank
vector, a placeholder: an unseen feasible configuration of about the target's size (the
contract wants every proposal new and within bounds). The trial reports the ranks it learned
and the adapter makes them the result's ranks, so the result, the archive and the front hold
the learned ranks with exact parameter counts. The placeholder is never trained; the result
carries its knob's index (`learn_index`), which releases it here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranksearch.learned.trial import GATE_KINDS, KNOBS, LearnSpec
from ranksearch.strategies import sampling
from ranksearch.strategies.base import Proposal, Strategy
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig, TrialResult

#: The lowest target compression a default spread uses (a target must exceed 1x).
MIN_TARGET = 1.01


@dataclass(frozen=True)
class LearnedOptions(StrategyOptions):
    gate: str = option("hard_concrete", "the gate on every rank slice: 'hard_concrete' (a "
                       "probabilistic l0 gate, Cao et al. 2024) or 'ard' (an automatic-rank-"
                       "determination prior, Hawkins et al. 2022)", choices=tuple(GATE_KINDS))
    knob: str = option("target_compression", "what each trial is given: a 'target_compression' "
                       "(dense params / params, whole model) or a penalty 'strength'",
                       choices=KNOBS)
    targets: tuple[float, ...] = option((), "the knob's values, one trial each; empty: `budget` "
                                        "target compressions spread evenly (log scale) over the "
                                        "space's feasible range (a plan extended under a cost "
                                        "budget adds the midpoints of the widest gaps)", low=0)
    epochs: int | None = option(None, "epochs of each trial's gated run (None: the recipe's)",
                                low=1)
    finetune_epochs: int | None = option(None, "epochs of fine-tuning at the learned ranks "
                                         "(None: as `epochs`; 0: none)", low=0)

    def check(self, strategy: str) -> None:
        if self.knob == "strength" and not self.targets:
            raise self.error(strategy, "targets", "is empty: with knob 'strength' give the strengths "
                             "to try (e.g. [30, 100, 300])")
        if self.knob == "target_compression" and any(t <= 1 for t in self.targets):
            raise self.error(strategy, "targets", "holds a target compression <= 1; each must be > 1")
        if len(set(self.targets)) != len(self.targets):
            raise self.error(strategy, "targets", "repeats a value; each value is one trial")


class LearnedRanks(Strategy):
    """Learned ranks: each trial trains once with gates on every rank slice and prunes to them.

    Its options choose the gate and the knob; every knob is proposed at once (one round of
    parallel trials traces a front), and each result's ranks are the ranks that trial learned.
    """

    name = "learned"
    #: Each knob trains under the recipe's default hyperparameters: the knob is the search here
    #: (a `hyperparameters:` block is accepted and left at its defaults).
    varies_hparams = False
    #: Jittered tries for a placeholder near the knob's size.
    TRIES = 12
    Options = LearnedOptions
    opts: LearnedOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        #: The knob of each trial (a default spread is made on the first ask, once the budget
        #: is final: a resumed strategy takes its budget from the saved state).
        self.knobs: tuple[float, ...] = self.opts.targets
        self._check_targets()
        self._next_knob = 0
        self._placeholders: dict[int, RankConfig] = {}
        #: (knob index, learned ranks, validation accuracy) of every usable result, as told.
        self.learned: list[tuple[int, RankConfig, float]] = []

    # -- the knobs ------------------------------------------------------------------------------
    def _feasible_range(self) -> tuple[float, float]:
        """Compression of the largest and of the smallest feasible configuration."""
        top = sampling.repair(self, self.highest) or self.lowest
        return self.compression(top), self.compression(self.lowest)

    def _spread_targets(self, n: int) -> tuple[float, ...]:
        lo, hi = self._feasible_range()
        lo, hi = max(lo, MIN_TARGET), max(hi, MIN_TARGET)
        if n == 1:
            return (math.sqrt(lo * hi),)
        step = (math.log(hi) - math.log(lo)) / (n + 1)
        values = [math.exp(math.log(lo) + (k + 1) * step) for k in range(n)]
        return tuple(dict.fromkeys(round(v, 6) for v in values))

    def _check_targets(self) -> None:
        if self.opts.knob != "target_compression":
            return
        for t in self.knobs:
            params = self.space.dense_params / t
            if not self.goals.feasible(max(1, math.floor(params))):
                raise self.opts.error(self.name, "targets", f"asks for {t}x ({params:.0f} params), which "
                                      f"breaks the space's constraints (max_params={self.max_params}, "
                                      f"min_compression={self.min_compression})")

    def spec(self, index: int) -> LearnSpec:
        """The learned-rank trial of knob `index`."""
        return LearnSpec(gate=self.opts.gate, knob=self.opts.knob, value=float(self.knobs[index]),
                         index=index, epochs=self.opts.epochs, finetune_epochs=self.opts.finetune_epochs)

    # -- proposals ------------------------------------------------------------------------------
    def _start(self) -> None:
        if not self.knobs:
            self.knobs = self._spread_targets(self.budget)

    def _target_log_params(self, index: int) -> float:
        """Where the knob aims on a log parameter scale (strengths: by rank, larger = smaller)."""
        if self.opts.knob == "target_compression":
            return math.log(self.space.dense_params / self.knobs[index])
        lo, hi = math.log(self.params(self.lowest)), math.log(self.params(self.highest))
        order = sorted(range(len(self.knobs)), key=lambda i: self.knobs[i])
        pos = (order.index(index) + 0.5) / len(self.knobs)
        return hi - pos * (hi - lo)

    def _placeholder(self, index: int, taken: set[RankConfig]) -> RankConfig | None:
        """An unseen feasible configuration of about the knob's size (never trained): the
        closest in log parameters among a common log-level (bisected to the target) and
        `TRIES` jittered ones, like `sampling.spread` draws them; any unseen one otherwise."""
        target = self._target_log_params(index)
        best, best_gap = None, math.inf
        for k in range(self.TRIES + 1):
            z = np.zeros(self.n) if k == 0 else self.rng.normal(0.0, 0.2, self.n)
            a, b = -1.0, 2.0
            for _ in range(14):  # the count grows with the common level
                mid = 0.5 * (a + b)
                if math.log(self.params(sampling.at_level(self, mid, z))) < target:
                    a = mid
                else:
                    b = mid
            for level in (a, b):
                cand = sampling.repair(self, sampling.at_level(self, level, z))
                if cand is not None:  # ranks only: the trial trains under the default values
                    cand = self.split(cand)[0]
                if cand is None or cand in taken or not self.is_new(cand):
                    continue
                gap = abs(math.log(self.params(cand)) - target)
                if gap < best_gap:
                    best, best_gap = cand, gap
        if best is not None:
            return best
        # any unseen rank vector: an unseen decision vector may differ from seen ones only in
        # its level codes, so skip those (bounded: every skipped vector joins the exclusions)
        exclude = set(taken)
        for _ in range(256):
            found = sampling.find_unseen(self, self.rng, exclude=exclude)
            if found is None:
                return None
            ranks = self.split(found)[0]
            if ranks not in taken and self.is_new(ranks):
                return ranks
            exclude.add(tuple(found))
        return None

    def _refined_targets(self, n: int) -> tuple[float, ...]:
        """`n` more target compressions for a plan extended past the spread (`extend_budget`):
        the log-scale midpoint of the widest gap between the targets so far (and the feasible
        range's ends), one at a time."""
        lo, hi = self._feasible_range()
        points = sorted({math.log(max(lo, MIN_TARGET)), math.log(max(hi, MIN_TARGET)),
                         *(math.log(k) for k in self.knobs)})
        new: list[float] = []
        for _ in range(n):
            a, b = max(zip(points, points[1:], strict=False), key=lambda g: g[1] - g[0])
            mid = 0.5 * (a + b)
            value = round(math.exp(mid), 6)
            if value in self.knobs or value in new:
                break  # the range is used up at this resolution
            new.append(value)
            points = sorted([*points, mid])
        return tuple(new)

    def _propose(self, limit: int) -> Iterable[Proposal]:
        out: list[Proposal] = []
        taken: set[RankConfig] = set()
        if self._next_knob >= len(self.knobs) and not self.opts.targets:
            self.knobs += self._refined_targets(limit)  # the plan was extended: fill the gaps
        while self._next_knob < len(self.knobs) and len(out) < limit:
            index = self._next_knob
            ranks = self._placeholder(index, taken)
            if ranks is None:
                self.mark_exhausted()
                break
            self._next_knob += 1
            taken.add(ranks)
            self._placeholders[index] = ranks
            spec = self.spec(index)
            out.append(Proposal(ranks, {"learn": spec.to_config(),
                                        "learn_knob": f"{spec.knob}={spec.value:g}"}))
        if self._next_knob >= len(self.knobs) and (self.opts.targets or not out):
            # every given knob proposed (the queued ones are still handed out), or no gap left
            self.mark_exhausted()
        return out

    # -- results --------------------------------------------------------------------------------
    def tell(self, trial_id: str, result: TrialResult) -> None:
        """As the base class; a learned result (ranks other than its placeholder's) also
        releases its placeholder, found by the result's `learn_index`."""
        before = len(self.observations)
        super().tell(trial_id, result)
        if len(self.observations) == before:
            return
        obs = self.observations[-1]
        index = result.metrics.get("learn_index")
        if index is None or not math.isfinite(index):
            return
        index = int(index)
        placeholder = self._placeholders.get(index)
        if obs.usable:
            self.learned.append((index, obs.ranks, obs.accuracy))
        key = None if placeholder is None else self.key(placeholder, dict(result.hparams) or None)
        if key is not None and placeholder != obs.ranks and self._outstanding.get(key, 0) > 0:
            # the base class counted the result against its learned ranks; the placeholder it
            # stood for is settled too (the base keeps one count per outstanding proposal)
            self._outstanding[key] -= 1
            if not self._outstanding[key]:
                del self._outstanding[key]
