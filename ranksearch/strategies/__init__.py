"""Rank-search strategies behind one ask/tell interface, and their registry.

    from ranksearch.strategies import get
    strategy = get("pstrn", space, seed=0, population=30)
    while not strategy.is_finished():
        ranks = strategy.ask()          # None: waiting for results of the current batch
        ...
        strategy.tell(trial_id, TrialResult(ranks, metrics={"val_accuracy": 0.91}, fidelity=20))

Strategies are plain Python objects (no Ray, no MLflow). Modules are imported only when a
strategy is requested, so `import ranksearch.strategies` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from ranksearch.strategies.base import Observation, Proposal, Strategy, StrategyError

if TYPE_CHECKING:
    from torch import nn

    from ranksearch.space import SearchSpace

__all__ = [
    "Observation",
    "Proposal",
    "Strategy",
    "StrategyError",
    "available",
    "from_space",
    "from_state",
    "get",
    "options",
    "register",
    "seed_strategy",
]

_REGISTRY: dict[str, str | type[Strategy]] = {
    "random": "ranksearch.strategies.random_search:RandomSearch",
    "uniform": "ranksearch.strategies.random_search:UniformSweep",
    "nsga2": "ranksearch.strategies.evolution:NSGA2Search",
    "pstrn": "ranksearch.strategies.evolution:PSTRN",
    "beam": "ranksearch.strategies.beam:BeamSearch",
    "rl": "ranksearch.strategies.rl:PolicyGradient",
    "bayes": "ranksearch.strategies.bayes:BayesSearch",
    "optuna-nsga2": "ranksearch.strategies.bayes:OptunaNSGA2",
}


def available() -> list[str]:
    """Names of the registered strategies, sorted."""
    return sorted(_REGISTRY)


def register(name: str, target: str | type[Strategy]) -> None:
    """Add a strategy: a `Strategy` subclass or a lazy 'package.module:Class' path."""
    if not isinstance(name, str) or not name:
        raise StrategyError(f"a strategy name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise StrategyError(f"a strategy named '{name}' is already registered")
    _REGISTRY[name] = target


def strategy_class(name: str) -> type[Strategy]:
    """The class behind a registered name (imports its module)."""
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy '{name}'; valid strategies: {', '.join(available())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target


def options(name: str) -> dict[str, Any]:
    """The options a strategy accepts and their defaults (its keyword-only constructor arguments)."""
    sig = inspect.signature(strategy_class(name).__init__)
    return {
        p.name: p.default for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed"
    }


def get(name: str, space: SearchSpace, *, seed: int | None = None, **opts: Any) -> Strategy:
    """Make strategy `name` for `space`. Unknown names and options are errors listing valid ones."""
    cls = strategy_class(name)
    valid = options(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
        raise StrategyError(f"strategy '{name}' has no option {', '.join(repr(u) for u in unknown)}; "
                            f"valid options (with defaults): {listing}")
    return cls(space, seed=seed, **opts)


def from_space(space: SearchSpace, *, seed: int | None = None, dense_net: nn.Module | None = None,
               **overrides: Any) -> Strategy:
    """The strategy the space's `strategy` section names, with its options, budget and seeds.

    Explicit and 'equal' seeds are added here; 'effective' ones need the trained dense network:
    pass `dense_net`, or add them later with `seed_strategy` (before the first ask).
    """
    spec = space.config.strategy
    opts = dict(spec.options)
    opts.update(overrides)
    if "budget" in options(spec.name) and "budget" not in opts:
        opts["budget"] = spec.budget
    strategy = get(spec.name, space, seed=space.seed if seed is None else seed, **opts)
    if spec.seeds:
        seed_strategy(strategy, space, dense_net)
    return strategy


def seed_strategy(strategy: Strategy, space: SearchSpace | None = None,
                  dense_net: nn.Module | None = None) -> list[tuple[int, ...]]:
    """Add the seeds `space.config.strategy.seeds` lists to a strategy not asked yet ('effective'
    ones only when `dense_net` is given); returns the seeds it accepted. Seeds already added
    are skipped, so calling it again with the dense network adds just the 'effective' ones."""
    from ranksearch.strategies.seeding import seed_strategy as _seed

    return _seed(strategy, space, dense_net)


def from_state(space: SearchSpace, state: dict[str, Any]) -> Strategy:
    """A strategy rebuilt from `state_dict()`: same name, options, seed, then the replayed history."""
    if not isinstance(state, dict) or "strategy" not in state:
        raise StrategyError("not a strategy state: expected the dict that state_dict() returned")
    strategy = get(state["strategy"], space, seed=state.get("seed"), **state.get("options", {}))
    strategy.load_state_dict(state)
    return strategy
