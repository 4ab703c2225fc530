"""The strategy contract: ask/tell, budget, duplicates, hard constraints, objectives and resume.

A strategy proposes rank vectors (`ask`) and learns from trial results (`tell`). The base class
owns everything every strategy must get right the same way, so subclasses only decide *what*
to propose next:

- proposals are checked where they are made (length, bounds, `max_params` / `min_compression`,
  never a configuration proposed before) and a violation names the strategy;
- objective direction is handled once, by `ranksearch.objectives`: subclasses see a
  minimisation vector `Observation.f` built from the space's objectives, with params /
  compression / FLOPs taken from the closed-form counts (on a log10 scale, since they span
  orders of magnitude) and failed, pruned without metrics or non-finite results counted as the
  worst values; `feasible` is `Objectives.feasible` on the exact parameter count;
- results may arrive out of order, twice (the first report wins), or for configurations the
  strategy never asked for (kept as extra information);
- `state_dict` is a versioned JSON-able log of the seeds, asks and tells; `load_state_dict`
  replays it into a fresh strategy, so every strategy (including those backed by pymoo or
  Optuna) resumes exactly where it stopped without pickling anything;
- seeds (`add_seeds`, before the first ask: equal ranks, ranks read from a dense model, rank
  vectors a user knows) are proposed before anything the subclass proposes, count against the
  budget, and their results reach the subclass through `_observe` like any other; a subclass
  may read `self.seeds` in `_start` (e.g. to put them into a first population).

Subclasses implement `_propose(limit)` and usually `_observe(obs)`, and declare their options as
an `Options` dataclass (`ranksearch.strategies.options`), validated once here into `self.opts`;
strategies that breed whole batches derive from `ranksearch.strategies.batch.BatchStrategy`.
`ranksearch.testing.check_strategy` checks a subclass against this contract. Two rules keep
replay exact:
draw from `self.rng` only inside those hooks (or `_start`, run on the first ask), never in
`__init__`; and a `_propose` that returns nothing must leave the strategy unchanged, or change
it so that calling it again at once changes nothing more (a run of empty asks is logged once).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from ranksearch.objectives import ACCURACY, COST_OBJECTIVES, Objectives
from ranksearch.strategies.errors import StrategyError
from ranksearch.strategies.options import StrategyOptions
from ranksearch.trial import RankConfig, TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

STATE_FORMAT = "ranksearch.strategy"
STATE_VERSION = 2  # 2 added "seeds"; version 1 states (no seeds) still load
_READABLE_VERSIONS = (1, 2)
__all__ = ["ACCURACY", "COST_OBJECTIVES", "Observation", "Proposal", "Strategy", "StrategyError",
           "StrategyOptions"]


class Proposal(NamedTuple):
    """A configuration to evaluate (ranks plus hyperparameter values) and the strategy's
    bookkeeping for it (generation, phase...)."""

    ranks: RankConfig
    info: dict[str, Any]
    #: hyperparameter values, canonical (`SearchSpace.hyper.canonical`); empty for rank-only spaces
    hparams: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Observation:
    """A told result as strategies see it."""

    trial_id: str
    ranks: RankConfig
    status: str
    usable: bool  # the measured objectives are finite numbers (ok, or pruned with metrics)
    f: tuple[float, ...]  # minimisation vector over the space's objectives; worst when unusable
    accuracy: float  # validation accuracy, 0.0 when unusable
    params: int
    fidelity: float
    asked: bool  # the strategy proposed these ranks and was waiting for them
    result: TrialResult = field(repr=False, compare=False)
    hparams: Mapping[str, Any] = field(default_factory=dict)


class Strategy:
    """Base class of every rank-search strategy (see the module docstring for the contract)."""

    #: Registry name; also used in error messages.
    name: ClassVar[str] = "strategy"
    #: Bump when a change makes old state logs replay differently.
    version: ClassVar[int] = 1
    #: The options this strategy takes: a frozen `StrategyOptions` dataclass, validated once
    #: here and kept as `self.opts`. None means untyped: a subclass that takes its own keyword
    #: arguments and hands them to this constructor as a plain `options` dict (recorded only).
    Options: ClassVar[type[StrategyOptions] | None] = None

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int | None = None,
        budget: int | None = None,
        options: Mapping[str, Any] | StrategyOptions | None = None,
        **kwargs: Any,
    ) -> None:
        self.space = space
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**32))
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        if budget is None:
            budget = space.config.strategy.trial_budget
            if budget is None:
                raise StrategyError(
                    f"strategy '{self.name}': the space's budget {space.config.strategy.budget!r} is a "
                    "cost; give the trials to plan for (budget=N, or strategy.max_trials in the space)")
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
            raise StrategyError(f"strategy '{self.name}': budget must be a positive integer, "
                                f"got {budget!r}")
        self.budget = int(budget)
        #: The validated options (None for an untyped subclass).
        self.opts: StrategyOptions | None = self._parse_options(options, kwargs)
        self.options: dict[str, Any] = _jsonable(
            self.opts.to_dict() if self.opts is not None else dict(options or {}))
        self.elements = tuple(space.elements)
        self.n = len(self.elements)
        self.values: tuple[tuple[int, ...], ...] = tuple(tuple(e.values) for e in self.elements)
        self._allowed = tuple(frozenset(v) for v in self.values)
        #: Directions, scales, worst values and constraints: the one shared definition.
        self.goals = Objectives.from_space(space)
        self.max_params: int | None = self.goals.max_params
        self.min_compression: float | None = self.goals.min_compression
        self.objectives: tuple[tuple[str, str], ...] = tuple(self.goals.pairs)
        self._params_cache: dict[RankConfig, int] = {}
        self._flops_cache: dict[RankConfig, int] = {}
        # protocol state
        self._started = False
        self._exhausted = False
        self._queue: deque[Proposal] = deque()
        self._seen: set[RankConfig] = set()
        self._outstanding: dict[RankConfig, int] = {}
        self._info: dict[RankConfig, dict[str, Any]] = {}
        self._told: set[str] = set()
        self._events: list[dict[str, Any]] = []
        self._seed_kinds: dict[RankConfig, str] = {}  # accepted seeds, in order, and their kind
        self.n_asked = 0
        self.observations: list[Observation] = []
        self._check_feasible_exists()

    def _parse_options(self, options: Mapping[str, Any] | StrategyOptions | None,
                       kwargs: dict[str, Any]) -> StrategyOptions | None:
        cls = type(self).Options
        if cls is None:
            if kwargs:
                raise StrategyError(f"strategy '{self.name}' takes no option "
                                    f"{', '.join(repr(k) for k in sorted(kwargs))}; its class "
                                    "declares none (no Options dataclass)")
            return None
        if isinstance(options, StrategyOptions):
            if not isinstance(options, cls) or kwargs:
                raise StrategyError(f"strategy '{self.name}': give its options as one "
                                    f"{cls.__name__} or as keyword arguments, not both")
            return options
        return cls.parse(self.name, {**dict(options or {}), **kwargs})

    # -- the public protocol ------------------------------------------------------------------
    def ask(self) -> RankConfig | None:
        """The next configuration to evaluate, or None (finished, or waiting for results)."""
        ranks = self._next()
        if ranks is not None:
            self._events.append({"ask": list(ranks)})
        elif not (self._events and self._events[-1].get("ask", 0) is None):
            # A None answer is logged once per run of them: replay must ask at the same points.
            self._events.append({"ask": None})
        return ranks

    def tell(self, trial_id: str, result: TrialResult) -> None:
        """Record a trial's outcome. A second report for the same trial id is ignored."""
        trial_id = str(trial_id)
        if trial_id in self._told:
            return
        if not isinstance(result, TrialResult):
            raise StrategyError(f"strategy '{self.name}': tell() needs a TrialResult, got "
                                f"{type(result).__name__}")
        ranks = self._check_told_ranks(result.ranks)
        self._told.add(trial_id)
        asked = self._outstanding.get(ranks, 0) > 0
        if asked:
            self._outstanding[ranks] -= 1
            if not self._outstanding[ranks]:
                del self._outstanding[ranks]
        elif any(p.ranks == ranks for p in self._queue):
            # measured elsewhere before it was handed out: never hand it out to be trained again
            self._queue = deque(p for p in self._queue if p.ranks != ranks)
        self._seen.add(ranks)
        obs = self._observation(trial_id, ranks, result, asked)
        self.observations.append(obs)
        self._events.append({"tell": trial_id, "result": _result_record(result)})
        self._observe(obs)

    def is_finished(self) -> bool:
        """True when no further configuration will be proposed (budget used or space exhausted)."""
        if self.n_asked >= self.budget:
            return True
        if self._queue:
            return False
        return self._exhausted or len(self._seen) >= self._search_size()

    def info(self, ranks: Sequence[int]) -> dict[str, Any]:
        """The strategy's bookkeeping for a proposed configuration (e.g. generation, phase)."""
        return dict(self._info.get(tuple(int(r) for r in ranks), {}))

    def log_since(self, start: int) -> list[dict[str, Any]]:
        """The ask/tell log from position `start` on: what a search's append-only record keeps,
        so `load_state_dict({**header, "events": log})` replays it (header = `state_dict()`
        taken before the first ask)."""
        return [dict(e) for e in self._events[start:]]

    @property
    def log_length(self) -> int:
        return len(self._events)

    @property
    def pending(self) -> int:
        """Number of asked configurations whose result has not been told yet."""
        return sum(self._outstanding.values())

    @property
    def started(self) -> bool:
        """True once the first ask was made (seeds can no longer be added)."""
        return self._started

    # -- seeds --------------------------------------------------------------------------------
    def add_seeds(self, configs: Iterable[Sequence[int]], *, kind: str = "explicit") -> list[RankConfig]:
        """Propose these configurations first, before any of the strategy's own; call before
        the first ask. Returns the ones accepted.

        A seed with the wrong length or a rank out of bounds is an error, like such a proposal;
        one that breaks `max_params` / `min_compression`, or was seeded, told or proposed
        before, is skipped. Seeds count against the budget; `kind` ('explicit', 'equal',
        'effective', ...) is kept in the configuration's `info`.
        """
        if self._started:
            raise StrategyError(f"strategy '{self.name}': add_seeds must be called before the "
                                "first ask (seeds are what it proposes first)")
        accepted: list[RankConfig] = []
        for config in configs:
            ranks = self._check_vector(config, "was given the seed")
            if ranks in self._seen or not self.feasible(ranks):
                continue
            self._seen.add(ranks)
            self._seed_kinds[ranks] = str(kind)
            self._queue.append(Proposal(ranks, {"seeded": str(kind)}))
            accepted.append(ranks)
        return accepted

    @property
    def seeds(self) -> tuple[RankConfig, ...]:
        """The accepted seeds, in the order they are proposed."""
        return tuple(self._seed_kinds)

    def is_seed(self, ranks: Sequence[int]) -> bool:
        return tuple(int(r) for r in ranks) in self._seed_kinds

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A versioned, JSON-able record of everything needed to continue exactly here."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "strategy": self.name,
            "strategy_version": self.version,
            "seed": self.seed,
            "budget": self.budget,
            "options": _jsonable(self.options),
            "seeds": [{"ranks": list(r), "kind": k} for r, k in self._seed_kinds.items()],
            "events": [dict(e) for e in self._events],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`: replays the recorded seeds, asks and tells into this strategy.

        The strategy must be fresh (nothing asked or told yet) and made with the same options;
        it takes over the recorded seed and budget.
        """
        self._check_state(state)
        if self._events or self.observations:
            raise StrategyError(f"strategy '{self.name}': load_state_dict needs a freshly made "
                                "strategy; make a new one (ranksearch.strategies.from_state)")
        self.seed = int(state["seed"])
        self.rng = np.random.default_rng(self.seed)
        self.budget = int(state["budget"])
        # the state's seeds replace any added to this strategy (nothing was asked or told yet)
        self._queue.clear()
        self._seen.clear()
        self._seed_kinds.clear()
        for item in state.get("seeds", []):
            self.add_seeds([item["ranks"]], kind=item.get("kind", "explicit"))
        for i, event in enumerate(state["events"]):
            if "ask" in event:
                want = None if event["ask"] is None else tuple(int(r) for r in event["ask"])
                got = self.ask()
                if got != want:
                    raise StrategyError(
                        f"strategy '{self.name}': resuming diverged at event {i}: the log "
                        f"asked {want}, replay gave {got}; the state was written by a "
                        "different version of the strategy or its libraries")
            elif "tell" in event:
                self.tell(event["tell"], _result_from_record(event["result"]))
            else:
                raise StrategyError(f"strategy '{self.name}': unknown event in state: {event}")

    def _check_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise StrategyError(f"strategy '{self.name}': not a strategy state (expected a dict "
                                f"with format '{STATE_FORMAT}')")
        if state.get("version") not in _READABLE_VERSIONS:
            raise StrategyError(f"strategy '{self.name}': state version {state.get('version')} "
                                f"is not supported (this code reads versions "
                                f"{', '.join(map(str, _READABLE_VERSIONS))})")
        if state.get("strategy") != self.name:
            raise StrategyError(f"strategy '{self.name}': the state belongs to strategy "
                                f"'{state.get('strategy')}'")
        if state.get("strategy_version") != self.version:
            raise StrategyError(f"strategy '{self.name}': the state was written by version "
                                f"{state.get('strategy_version')} of it, this is {self.version}")
        theirs, ours = state.get("options", {}), _jsonable(self.options)
        if theirs != ours:
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise StrategyError(f"strategy '{self.name}': options differ from the state's "
                                f"({', '.join(diff)}); make it with {theirs} or use "
                                "ranksearch.strategies.from_state")

    # -- hooks for subclasses -----------------------------------------------------------------
    def _start(self) -> None:
        """Called once, on the first ask: build internals that draw from `self.rng`."""

    def _propose(self, limit: int) -> Iterable[RankConfig | Proposal]:
        """Up to `limit` new configurations (may be empty: waiting for results or exhausted)."""
        raise NotImplementedError

    def _observe(self, obs: Observation) -> None:
        """Learn from one told result (results may come in any order)."""

    def mark_exhausted(self) -> None:
        """Say that no new configuration can be found: `is_finished` becomes true."""
        self._exhausted = True

    # -- helpers for subclasses ---------------------------------------------------------------
    def params(self, ranks: Sequence[int]) -> int:
        """Closed-form parameter count of the whole model (cached per rank vector)."""
        key = tuple(int(r) for r in ranks)
        p = self._params_cache.get(key)
        if p is None:
            from ranksearch.space import count_params

            p = self._params_cache[key] = int(count_params(self.space, key))
        return p

    def flops(self, ranks: Sequence[int]) -> int:
        key = tuple(int(r) for r in ranks)
        v = self._flops_cache.get(key)
        if v is None:
            from ranksearch.space import count_flops

            v = self._flops_cache[key] = int(count_flops(self.space, key))
        return v

    def compression(self, ranks: Sequence[int]) -> float:
        return self.space.dense_params / self.params(ranks)

    def feasible(self, ranks: Sequence[int]) -> bool:
        """True when the configuration meets the hard constraints known before training."""
        if self.max_params is None and self.min_compression is None:
            return True  # no need to count parameters
        return self.goals.feasible(self.params(ranks))

    def is_new(self, ranks: Sequence[int]) -> bool:
        """True when the configuration was never proposed nor told."""
        return tuple(int(r) for r in ranks) not in self._seen

    @property
    def lowest(self) -> RankConfig:
        return tuple(v[0] for v in self.values)

    @property
    def highest(self) -> RankConfig:
        return tuple(v[-1] for v in self.values)

    def cost_vector(self, ranks: Sequence[int]) -> tuple[float, ...]:
        """The minimisation vector's known-before-training part; measured objectives are nan."""
        f = self.goals.vector({}, cost=self.costs(ranks), usable=True)
        return tuple(math.nan if not o.is_cost else v for o, v in zip(self.goals.items, f, strict=True))

    def worst_vector(self, ranks: Sequence[int]) -> tuple[float, ...]:
        """The vector of a configuration never measured: exact costs, worst measured values."""
        return self.goals.vector({}, cost=self.costs(ranks), usable=False)

    def costs(self, ranks: Sequence[int]) -> dict[str, float]:
        """The closed-form cost metrics among the objectives (FLOPs only when asked for)."""
        out: dict[str, float] = {}
        if not self.space.has_closed_form:
            return out  # a user function's costs are measured: it reports them
        names = self.goals.names
        if "params" in names or "compression_ratio" in names:
            p = self.params(ranks)
            out["params"] = float(p)
            out["compression_ratio"] = self.space.dense_params / p
        if "flops" in names:
            out["flops"] = float(max(self.flops(ranks), 1))
        return out

    # -- internals ----------------------------------------------------------------------------
    def _next(self) -> RankConfig | None:
        if self.is_finished():
            return None
        if not self._started:
            self._started = True
            self._start()
        if not self._queue:
            limit = self.budget - self.n_asked
            for item in self._propose(limit):
                proposal = item if isinstance(item, Proposal) else Proposal(item, {})
                ranks = self._check_proposal(proposal.ranks)
                self._seen.add(ranks)
                self._queue.append(Proposal(ranks, dict(proposal.info)))
            if len(self._queue) > limit:
                raise StrategyError(f"strategy '{self.name}' proposed {len(self._queue)} "
                                    f"configurations but only {limit} were allowed")
        if not self._queue:
            return None
        proposal = self._queue.popleft()
        ranks, info = proposal.ranks, proposal.info
        self.n_asked += 1
        self._outstanding[ranks] = self._outstanding.get(ranks, 0) + 1
        if info:
            self._info[ranks] = info
        return ranks

    def _check_vector(self, ranks: Any, what: str) -> RankConfig:
        """Length, integers and bounds; `what` says where the vector came from."""
        try:
            ranks = list(ranks)
            values = tuple(int(r) for r in ranks)
            exact = all(float(a) == float(b) for a, b in zip(values, ranks, strict=True))
        except (TypeError, ValueError):
            values, exact = (), False
        if not exact or len(values) != self.n:
            raise StrategyError(f"strategy '{self.name}' {what} {ranks!r}: expected "
                                f"{self.n} integers, one per rank element")
        for element, allowed, v in zip(self.elements, self._allowed, values, strict=True):
            if v not in allowed:
                raise StrategyError(f"strategy '{self.name}' {what} {list(values)}: rank "
                                    f"element '{element.name}' = {v} is outside its bounds "
                                    f"{element.low}..{element.high}")
        return values

    def _check_proposal(self, ranks: Any) -> RankConfig:
        values = self._check_vector(ranks, "proposed")
        if not self.feasible(values):
            raise StrategyError(f"strategy '{self.name}' proposed {list(values)} with "
                                f"{self.params(values)} params, breaking the space's constraints "
                                f"(max_params={self.max_params}, "
                                f"min_compression={self.min_compression})")
        if values in self._seen:
            raise StrategyError(f"strategy '{self.name}' proposed {list(values)} twice; "
                                "a configuration is evaluated at most once")
        return values

    def _check_told_ranks(self, ranks: Any) -> RankConfig:
        try:
            values = tuple(int(r) for r in ranks)
        except (TypeError, ValueError):
            values = ()
        if len(values) != self.n or any(v not in a for v, a in zip(values, self._allowed, strict=True)):
            raise StrategyError(f"strategy '{self.name}': told a result for ranks {list(values)}, "
                                f"which is not a configuration of space '{self.space.name}'")
        return values

    def _search_size(self) -> int:
        size = getattr(self.space, "search_size", None)
        return int(size) if size is not None else math.prod(len(v) for v in self.values)

    def _check_feasible_exists(self) -> None:
        if not self.feasible(self.lowest):
            raise StrategyError(
                f"strategy '{self.name}': no configuration of space '{self.space.name}' meets its "
                f"constraints (the smallest has {self.params(self.lowest)} params; "
                f"max_params={self.max_params}, min_compression={self.min_compression}); "
                "loosen the constraints or lower the rank bounds")

    def _observation(self, trial_id: str, ranks: RankConfig, result: TrialResult,
                     asked: bool) -> Observation:
        usable = self.goals.usable(result)
        f = self.goals.vector(result, cost=self.costs(ranks), usable=usable)
        acc = result.value(ACCURACY)
        return Observation(
            trial_id=trial_id, ranks=ranks, status=result.status, usable=usable, f=f,
            accuracy=acc if usable and math.isfinite(acc) else 0.0, params=self.params(ranks),
            fidelity=float(result.fidelity), asked=asked, result=result,
        )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, budget={self.budget}, "
                f"asked={self.n_asked}, told={len(self.observations)})")


# -- JSON helpers ---------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """Options as plain JSON data (tuples become lists), so states compare and serialise."""
    return json.loads(json.dumps(obj, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"option value {obj!r} is not JSON-serialisable")


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _result_record(result: TrialResult) -> dict[str, Any]:
    """What replay needs of a result, in strict JSON (non-finite numbers become null)."""
    return {
        "ranks": list(result.ranks),
        "status": result.status,
        "metrics": {str(k): _finite_or_none(v) for k, v in result.metrics.items()},
        "fidelity": _finite_or_none(result.fidelity) or 0.0,
        "fidelity_unit": result.fidelity_unit,
        "error": result.error,
    }


def _result_from_record(record: dict[str, Any]) -> TrialResult:
    metrics = {k: (math.nan if v is None else float(v)) for k, v in record.get("metrics", {}).items()}
    return TrialResult(
        ranks=tuple(record["ranks"]), status=record.get("status", "ok"), metrics=metrics,
        fidelity=record.get("fidelity", 0.0), fidelity_unit=record.get("fidelity_unit", "epochs"),
        error=record.get("error"),
    )
