"""Shared ways to draw, spread and repair rank vectors.

Configurations here are a strategy's decision vectors (ranks, then a level code per
hyperparameter; `Strategy.values`): hyperparameter codes are drawn like ranks but never move a
parameter count, so `spread` draws them uniformly and `repair` lowers ranks only; results are
canonical (`Strategy.canon`). On a rank-only space they are rank vectors.

Every strategy knows each candidate's exact parameter count before training it. These helpers
turn that into proposals: `spread` draws configurations whose parameter counts are spaced evenly
on a log scale (the compression axis of the front) instead of piling up where uniform sampling
puts them, and `repair` lowers ranks until a configuration meets `max_params`/`min_compression`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ranksearch.trial import RankConfig

if TYPE_CHECKING:
    from ranksearch.strategies.base import Strategy

#: Largest search space that is enumerated when random draws stop finding new configurations.
ENUMERATE_LIMIT = 200_000


def uniform(strategy: Strategy, rng: np.random.Generator) -> RankConfig:
    """Each element drawn uniformly from its allowed values."""
    return tuple(int(v[rng.integers(len(v))]) for v in strategy.values)


def log_positions(values: Sequence[int]) -> np.ndarray:
    """Where each allowed value sits on a log scale between the element's bounds (0..1)."""
    logs = np.log(np.asarray(values, dtype=float))
    span = logs[-1] - logs[0]
    return (logs - logs[0]) / span if span > 0 else np.zeros(len(values))


def at_level(strategy: Strategy, level: float, jitter: np.ndarray,
             values: Sequence[Sequence[int]] | None = None) -> RankConfig:
    """Every element at log-position `level + jitter[i]` of its candidates (clipped to the ends)."""
    out = []
    for cands, z in zip(values or strategy.values, jitter, strict=True):
        pos = log_positions(cands)
        target = min(max(level + z, 0.0), 1.0)
        out.append(int(cands[int(np.argmin(np.abs(pos - target)))]))
    return tuple(out)


def spread(strategy: Strategy, rng: np.random.Generator, n: int, *,
           jitter: float | Sequence[float] = (0.05, 0.15, 0.3),
           accept: Callable[[RankConfig], bool] | None = None,
           values: Sequence[Sequence[int]] | None = None) -> list[RankConfig]:
    """`n` new feasible configurations whose log parameter counts are stratified over the range.

    Each draw picks a target in a stratum of [log params(lowest), log params(highest feasible)],
    a random per-element offset, and the common level that meets the target (bisection: the
    count grows with the level). `accept` filters further (default: not seen yet). `values`
    restricts each element to a candidate list (e.g. a GA phase's grid).
    """
    accept = accept or strategy.is_new
    jitters = (float(jitter),) if isinstance(jitter, int | float) else tuple(float(j) for j in jitter)
    values = tuple(tuple(v) for v in (values or strategy.values))
    if strategy.n_ranks == 0:  # hyperparameters only (a user function): no compression axis to spread over
        return _uniform(strategy, rng, n, accept, values)
    lo = math.log(strategy.params(tuple(v[0] for v in values)))
    hi = math.log(strategy.params(tuple(v[-1] for v in values)))
    if strategy.max_params is not None:
        hi = min(hi, math.log(strategy.max_params))
    if strategy.min_compression is not None:
        hi = min(hi, math.log(strategy.space.dense_params / strategy.min_compression))
    out: list[RankConfig] = []
    chosen: set[RankConfig] = set()
    order = rng.permutation(n)
    for k in range(n):
        for _attempt in range(20):
            target = lo + (order[k] + rng.random()) / n * (hi - lo)
            z = rng.normal(0.0, jitters[order[k] % len(jitters)], strategy.n)
            a, b = -1.0, 2.0
            for _ in range(14):
                mid = 0.5 * (a + b)
                if math.log(strategy.params(at_level(strategy, mid, z, values))) < target:
                    a = mid
                else:
                    b = mid
            raw = at_level(strategy, b, z, values)
            if strategy.n > strategy.n_ranks:  # hyperparameters: uniform over their candidates
                raw = raw[: strategy.n_ranks] + tuple(
                    int(c[rng.integers(len(c))]) for c in values[strategy.n_ranks:])
            cand = repair(strategy, raw, values)
            if cand is not None and cand not in chosen and accept(cand):
                out.append(cand)
                chosen.add(cand)
                break
    return out


def _uniform(strategy: Strategy, rng: np.random.Generator, n: int, accept: Callable[[RankConfig], bool],
             values: Sequence[Sequence[int]]) -> list[RankConfig]:
    """`n` new configurations drawn uniformly from each coordinate's candidates."""
    out: list[RankConfig] = []
    chosen: set[RankConfig] = set()
    for _ in range(20 * n):
        if len(out) == n:
            break
        cand = tuple(int(c[rng.integers(len(c))]) for c in values)
        if cand not in chosen and accept(cand):
            out.append(cand)
            chosen.add(cand)
    return out


def repair(strategy: Strategy, ranks: Sequence[int],
           values: Sequence[Sequence[int]] | None = None) -> RankConfig | None:
    """Lower ranks greedily (largest saving first) until the constraints hold; None if impossible.

    Each element moves down its candidate list (`values`, default: the element's allowed values);
    a rank not in that list first snaps to the nearest candidate below it.
    """
    cand = tuple(tuple(v) for v in (values or strategy.values))
    cfg = [int(r) for r in ranks]
    if strategy.feasible(cfg):
        return strategy.canon(tuple(cfg))
    if not strategy.feasible(tuple(v[0] for v in cand)):
        return None
    pos = [max(0, int(np.searchsorted(c, r, side="right")) - 1) for c, r in zip(cand, cfg, strict=True)]
    cfg = [c[j] for c, j in zip(cand, pos, strict=True)]
    while not strategy.feasible(cfg):
        base = strategy.params(cfg)
        best, best_saving = -1, -1
        for i, c in enumerate(cand[: strategy.n_ranks]):  # hyperparameters save nothing
            if pos[i] == 0:
                continue
            trial = cfg.copy()
            trial[i] = c[pos[i] - 1]
            saving = base - strategy.params(trial)
            if saving > best_saving:
                best, best_saving = i, saving
        if best < 0:
            return None
        pos[best] -= 1
        cfg[best] = cand[best][pos[best]]
    return strategy.canon(tuple(cfg))


def new_feasible(strategy: Strategy, rng: np.random.Generator,
                 draw: Callable[[], Sequence[int]] | None = None, *, tries: int = 200,
                 exclude: set[RankConfig] | frozenset[RankConfig] = frozenset()) -> RankConfig | None:
    """A configuration never seen before that meets the constraints, or None when there is none.

    Draws (uniformly unless `draw` is given) and repairs, up to `tries` times. When the draws
    keep meeting seen configurations (a tight `max_params` repairs most draws onto the same few
    small ones), `find_unseen` settles it: None means no unseen feasible configuration exists.
    """
    cand = draw_feasible(strategy, rng, draw, tries=tries, exclude=exclude)
    return cand if cand is not None else find_unseen(strategy, rng, exclude=exclude)


def draw_feasible(strategy: Strategy, rng: np.random.Generator,
                  draw: Callable[[], Sequence[int]] | None = None, *, tries: int = 200,
                  exclude: set[RankConfig] | frozenset[RankConfig] = frozenset(),
                  ) -> RankConfig | None:
    """Up to `tries` draws, each repaired; the first unseen one, or None (which proves nothing)."""
    draw = draw or (lambda: uniform(strategy, rng))
    for _ in range(tries):
        cand = repair(strategy, draw())
        if cand is not None and strategy.is_new(cand) and cand not in exclude:
            return cand
    return None


def find_unseen(strategy: Strategy, rng: np.random.Generator, *,
                exclude: set[RankConfig] | frozenset[RankConfig] = frozenset()) -> RankConfig | None:
    """An unseen feasible configuration, or None when provably none is left: small spaces are
    enumerated (one pick, uniform over what is left), larger ones searched by `search_unseen`."""
    left = unseen_feasible(strategy, exclude=exclude)
    if left is None:
        return search_unseen(strategy, rng, exclude=exclude)
    return left[int(rng.integers(len(left)))] if left else None


def search_unseen(strategy: Strategy, rng: np.random.Generator, *,
                  exclude: set[RankConfig] | frozenset[RankConfig] = frozenset(),
                  ) -> RankConfig | None:
    """An unseen feasible configuration by a randomised depth-first search, or None if none exists.

    Elements are fixed one at a time (in a random order, each trying its values in a random
    order) while the others wait at their lowest values. The parameter count grows with every
    rank, so the constraints (an upper bound on it) hold for some completion of a partial
    configuration exactly when they hold with the rest at their lowest: branches that fail this
    are cut, and every branch entered holds a feasible configuration. The search therefore meets
    at most (seen + 1) feasible configurations and checks at most n * max(values) candidates
    per configuration met, and a None answer is a proof that none is left, on any space size.
    """
    if not strategy.feasible(strategy.lowest):
        return None
    order = [int(i) for i in rng.permutation(strategy.n)]
    cfg = list(strategy.lowest)

    def descend(depth: int) -> RankConfig | None:
        if depth == strategy.n:
            ranks = strategy.canon(tuple(cfg))
            return ranks if strategy.is_new(ranks) and ranks not in exclude else None
        i = order[depth]
        values = strategy.values[i]
        for j in rng.permutation(len(values)):
            cfg[i] = values[int(j)]
            if strategy.feasible(cfg):
                found = descend(depth + 1)
                if found is not None:
                    return found
        cfg[i] = values[0]
        return None

    return descend(0)


def unseen_feasible(strategy: Strategy, *, exclude: set[RankConfig] | frozenset[RankConfig] = frozenset(),
                    ) -> list[RankConfig] | None:
    """Every feasible configuration not yet seen, or None when the space is too big to list."""
    if math.prod(len(v) for v in strategy.values) > ENUMERATE_LIMIT:
        return None
    found = (strategy.canon(c) for c in itertools.product(*strategy.values))
    return list(dict.fromkeys(c for c in found
                              if strategy.is_new(c) and c not in exclude and strategy.feasible(c)))
