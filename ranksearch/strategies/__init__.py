"""Rank and hyperparameter search strategies behind one ask/tell interface, and their registry.

    from ranksearch.strategies import get
    strategy = get("pstrn", space, seed=0, population=30)
    while not strategy.is_finished():
        p = strategy.ask_proposal()     # None: waiting for results of the current batch
        ...                             # train p.ranks under space.trial_config(p.hparams)
        strategy.tell(trial_id, TrialResult(p.ranks, metrics={"val_accuracy": 0.91},
                                            fidelity=20, hparams=dict(p.hparams)))

`ask()` returns the ranks alone (enough on a rank-only space, where `p.hparams` is empty).

Strategies are plain Python objects (no Ray, no MLflow). Modules are imported only when a
strategy is requested, so `import ranksearch.strategies` stays cheap. Installed packages add
strategies through the entry-point group `ranksearch.strategies` (loaded when first asked for);
`catalog()` lists every strategy with its typed options, and `check_options(name, options)`
validates options without building anything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ranksearch.strategies.base import Observation, Proposal, Strategy, StrategyError
from ranksearch.strategies.options import StrategyOptions, option

if TYPE_CHECKING:
    from torch import nn

    from ranksearch.space import SearchSpace

__all__ = [
    "ENTRY_POINT_GROUP",
    "Observation",
    "Proposal",
    "Strategy",
    "StrategyError",
    "StrategyOptions",
    "available",
    "catalog",
    "check_options",
    "from_space",
    "from_state",
    "get",
    "option",
    "options",
    "register",
    "seed_strategy",
    "strategy_class",
]

#: Installed packages add strategies under this entry-point group:
#: `[project.entry-points."ranksearch.strategies"] mine = "my_pkg.module:MyStrategy"`.
ENTRY_POINT_GROUP = "ranksearch.strategies"

_REGISTRY: dict[str, str | type[Strategy] | importlib.metadata.EntryPoint] = {
    "random": "ranksearch.strategies.random_search:RandomSearch",
    "uniform": "ranksearch.strategies.random_search:UniformSweep",
    "nsga2": "ranksearch.strategies.evolution:NSGA2Search",
    "pstrn": "ranksearch.strategies.evolution:PSTRN",
    "beam": "ranksearch.strategies.beam:BeamSearch",
    "rl": "ranksearch.strategies.rl:PolicyGradient",
    "bayes": "ranksearch.strategies.bayes:BayesSearch",
    "optuna-nsga2": "ranksearch.strategies.bayes:OptunaNSGA2",
    "learned": "ranksearch.strategies.learned:LearnedRanks",
}
_BUILTIN = frozenset(_REGISTRY)
_plugins_scanned = False


def _scan_plugins() -> None:
    """Add the installed distributions' strategies (names only: nothing is imported yet)."""
    global _plugins_scanned
    if _plugins_scanned:
        return
    _plugins_scanned = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            kept = "a built-in strategy" if ep.name in _BUILTIN else "another entry point"
            warnings.warn(f"strategy entry point '{ep.name} = {ep.value}'{_dist(ep)} is ignored: "
                          f"{kept} has that name; rename the entry point", stacklevel=3)
            continue
        _REGISTRY[ep.name] = ep


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f" (from {dist.name} {dist.version})" if dist is not None else ""


def available() -> list[str]:
    """Names of the registered strategies (built-in, registered and installed), sorted."""
    _scan_plugins()
    return sorted(_REGISTRY)


def register(name: str, target: str | type[Strategy]) -> None:
    """Add a strategy: a `Strategy` subclass or a lazy 'package.module:Class' path."""
    if not isinstance(name, str) or not name:
        raise StrategyError(f"a strategy name must be a non-empty string, got {name!r}")
    _scan_plugins()
    if name in _REGISTRY:
        raise StrategyError(f"a strategy named '{name}' is already registered")
    _REGISTRY[name] = target


def strategy_class(name: str) -> type[Strategy]:
    """The class behind a registered name (imports its module, or loads its entry point)."""
    _scan_plugins()
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy '{name}'; valid strategies: {', '.join(available())}")
    target = _REGISTRY[name]
    if isinstance(target, type):
        return target
    if isinstance(target, importlib.metadata.EntryPoint):
        where = f"strategy '{name}' (entry point '{target.value}'{_dist(target)})"
        try:
            loaded = target.load()
        except Exception as exc:  # any import-time failure of a third-party package
            raise StrategyError(f"{where} could not be loaded: {type(exc).__name__}: {exc}; "
                                "reinstall or fix that package, or uninstall it") from exc
    else:
        where = f"strategy '{name}' ('{target}')"
        module, _, attr = target.partition(":")
        loaded = getattr(importlib.import_module(module), attr)
    if not (isinstance(loaded, type) and issubclass(loaded, Strategy)):
        raise StrategyError(f"{where} is {loaded!r}, not a subclass of "
                            "ranksearch.strategies.Strategy")
    if loaded.name != name:
        raise StrategyError(f"{where}: its class {loaded.__name__} says name = {loaded.name!r}; "
                            f"set name = {name!r} (saved searches resume by that name)")
    _REGISTRY[name] = loaded
    return loaded


def options(name: str) -> dict[str, Any]:
    """The options a strategy accepts and their defaults, `budget` first."""
    cls = strategy_class(name)
    if cls.Options is not None:
        return {"budget": None, **cls.Options.defaults()}
    sig = inspect.signature(cls.__init__)  # an untyped strategy: its keyword-only arguments
    return {"budget": None, **{
        p.name: p.default for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("seed", "budget")
    }}


def check_options(name: str, opts: Mapping[str, Any] | None) -> StrategyOptions | None:
    """Validate a strategy's options without building it (the input edge's check).

    Raises the `StrategyError` building it would (unknown strategy, unknown option, wrong type
    or range); returns the typed options (None for an untyped strategy). `budget` may be given.
    """
    cls = strategy_class(name)
    opts = dict(opts or {})
    budget = opts.pop("budget", None)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                               or budget < 1):
        raise StrategyError(f"strategy '{name}': budget must be a positive integer, got {budget!r}")
    if cls.Options is not None:
        return cls.Options.parse(name, opts)
    unknown = sorted(set(opts) - set(options(name)))
    if unknown:
        raise StrategyError(f"strategy '{name}' has no option "
                            f"{', '.join(repr(u) for u in unknown)}; valid options (with "
                            f"defaults): {', '.join(f'{k}={v!r}' for k, v in options(name).items())}")
    return None


def catalog() -> list[dict[str, Any]]:
    """Every strategy: name, summary, and its options (name, type, default, help), by name.

    A third-party strategy that fails to load is listed with its error instead of options.
    """
    out = []
    for name in available():
        try:
            cls = strategy_class(name)
        except StrategyError as exc:
            out.append({"name": name, "summary": "", "options": [], "error": str(exc)})
            continue
        doc = inspect.getdoc(cls) or ""
        if cls.Options is not None:
            opts = cls.Options.describe()
        else:
            opts = [{"name": k, "type": "", "default": v, "help": ""}
                    for k, v in options(name).items() if k != "budget"]
        out.append({"name": name, "summary": doc.split("\n\n")[0].replace("\n", " "),
                    "options": opts})
    return out


def get(name: str, space: SearchSpace, *, seed: int | None = None, **opts: Any) -> Strategy:
    """Make strategy `name` for `space`. Unknown names and options are errors listing valid ones."""
    cls = strategy_class(name)
    if cls.Options is None:
        check_options(name, opts)  # a typed strategy validates its options as it is built
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
                  dense_net: nn.Module | None = None, *,
                  on_cost: Callable[[int], object] | None = None,
                  on_gated: Callable[[Any], object] | None = None) -> list[tuple[int, ...]]:
    """Add the seeds `space.config.strategy.seeds` lists to a strategy not asked yet ('effective'
    ones only when `dense_net` is given); returns the seeds it accepted. Seeds already added
    are skipped, so calling it again with the dense network adds just the 'effective' ones.
    'learned' seeds train once (`on_cost(samples)` is told what that consumed, `on_gated(gated)`
    is handed the trained gated net, whose cores `training.init: learned` starts trials from)."""
    from ranksearch.strategies.seeding import seed_strategy as _seed

    return _seed(strategy, space, dense_net, on_cost=on_cost, on_gated=on_gated)


def from_state(space: SearchSpace, state: dict[str, Any]) -> Strategy:
    """A strategy rebuilt from `state_dict()`: same name, options, seed, then the replayed history."""
    if not isinstance(state, dict) or "strategy" not in state:
        raise StrategyError("not a strategy state: expected the dict that state_dict() returned")
    opts = dict(state.get("options", {}))
    if state.get("budget") is not None:
        # the trials it planned for: a space whose budget is a cost (600ep) cannot say them again
        opts.setdefault("budget", state["budget"])
    strategy = get(state["strategy"], space, seed=state.get("seed"), **opts)
    strategy.load_state_dict(state)
    return strategy
