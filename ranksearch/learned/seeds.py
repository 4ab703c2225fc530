"""Seeds for population strategies read off one short learned-rank run (`seeds: [learned]`).

Why one run gives many seeds: the trained gates order every element's slices (gate score, then
the slices' energy), and `prune.choose_ranks(gated, max_params=P, fill=True)` trims and fills
the ranks in that order to any budget P. So a single gated run of a fraction of the recipe
(`SHORT`, at least one epoch; no fine-tuning), pushed towards the middle of the feasible
compression range, gives `n` rank vectors whose parameter counts spread over the whole
feasible range, each shaped by what the data said about every slice. That is cheaper than one
learned run per seed (a quarter of one training in all, against n), and needs no earlier
search to read from.

The run's cores can seed the trials too: `on_gated(gated)` is handed the trained gated net, and
with `training.init: learned` the driver keeps its pruned cores (`ranksearch.learned.warm`:
the net at the ranks the gates kept, slices in gate order) in the search's storage; every trial
then starts from them cut to its own ranks (the highest-gated slices, new slices where its ranks
exceed the learned ones) instead of its own initialisation. The run is charged once, not per trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ranksearch.trial import RankConfig

if TYPE_CHECKING:
    from torch import nn

    from ranksearch.learned.apply import GatedNet
    from ranksearch.space import SearchSpace

log = logging.getLogger(__name__)

#: The gated run's share of the recipe's epochs.
SHORT = 0.25


def learned_rank_seeds(space: SearchSpace, n: int, *, dense_net: nn.Module | None = None,
                       epochs: int | None = None,
                       feasible: Callable[[RankConfig], bool] | None = None,
                       on_cost: Callable[[int], object] | None = None,
                       on_gated: Callable[[GatedNet], object] | None = None) -> list[RankConfig]:
    """Up to `n` distinct feasible rank vectors read off one short gated run (largest first).

    `epochs`: the gated run's (default `SHORT` of the recipe's, at least 1). `dense_net`: the
    trained dense network, needed when the recipe starts from it (`training.init: dense`).
    `feasible(ranks)`: the hard-constraint test (default: the space's constraints).
    `on_cost(samples)` is told the training samples the gated run consumed (a search charges
    them to its cost, like the dense warm start). `on_gated(gated)` is handed the trained gated
    net (its cores warm-start trials with `training.init: learned`, see `ranksearch.learned.warm`).
    """
    from ranksearch.learned.prune import choose_ranks
    from ranksearch.learned.train import learn_ranks
    from ranksearch.space import count_params
    from ranksearch.strategies.seeding import _feasible_fn, _spread

    if n <= 0:
        return []
    test = feasible or _feasible_fn(space, None, None)
    recipe = space.config.training
    if epochs is None:
        epochs = max(1, int(round((recipe.epochs or 1) * SHORT)))
    lowest = tuple(e.values[0] for e in space.elements)
    small, large = count_params(space, lowest), count_params(space, space.upper)
    dense = float(space.dense_params)
    # push the gates towards the middle of the range (log scale), never below 1x compression
    middle = math.sqrt(small * large)
    target = max(dense / middle, 1.0 + 1e-6)
    out = learn_ranks(space, target_compression=target, epochs=epochs, finetune_epochs=0,
                      dense_state=None if dense_net is None else dense_net.state_dict())
    gated = out.gated
    assert gated is not None  # learn_ranks always returns its gated net
    if on_cost is not None:
        on_cost(int(out.metrics["samples_seen"]))
    if on_gated is not None:
        on_gated(gated)
    log.info("learned seeds: one gated run of %d epochs at %.1fx, %d training samples, %.0f s",
             epochs, target, int(out.metrics["samples_seen"]), out.metrics["seconds"])
    budgets = np.exp(np.linspace(math.log(large), math.log(small), max(2, 3 * n)))
    path: list[RankConfig] = []
    for budget in budgets:
        ranks, _ = choose_ranks(gated, max_params=int(budget), fill=True)
        ranks = tuple(int(r) for r in ranks)
        if ranks not in path and test(ranks):
            path.append(ranks)
    return _spread(space, path[::-1], n)  # ascending counts in; n spread, largest first
