"""Ranks learned in one training run: gates on every rank slice, pruning, fine-tuning.

`learn_ranks(space, target_compression=... | strength=..., seed=...)` is the trial-level entry
point; `GatedNet`, `choose_ranks` and `prune` are the parts it is built from. Modules: geometry
(which factor axes carry each rank position), layout (which positions share a gate), gates
(hard-concrete l0 gate, ARD prior), apply (the gated net and its exact expected parameter
count), prune (ranks from gates, and the plain net at those ranks), train (the learning run),
trial (that run as a Ray Tune trial of the `learned` strategy), seeds (`seeds: [learned]`),
warm (trials started from that run's cores cut to their ranks, `training.init: learned`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "learn_ranks": "ranksearch.learned.train",
    "LearnedOutcome": "ranksearch.learned.train",
    "GatedNet": "ranksearch.learned.apply",
    "RankLayout": "ranksearch.learned.layout",
    "choose_ranks": "ranksearch.learned.prune",
    "prune": "ranksearch.learned.prune",
}

__all__ = ["GatedNet", "LearnedOutcome", "RankLayout", "choose_ranks", "learn_ranks", "prune"]

if TYPE_CHECKING:
    from ranksearch.learned.apply import GatedNet
    from ranksearch.learned.layout import RankLayout
    from ranksearch.learned.prune import choose_ranks, prune
    from ranksearch.learned.train import LearnedOutcome, learn_ranks


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ranksearch.learned' has no attribute {name!r}")
