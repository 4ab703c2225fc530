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
- a configuration is ranks plus hyperparameter values (`SearchSpace.hyper`; none on a rank-only
  space): "never propose the same configuration twice" compares both, on canonical values
  (`HyperSpace.key`: inactive conditional parameters dropped), and proposed values are checked
  against their domains (`HyperSpace.check`);
- `state_dict` is a versioned JSON-able log of the seeds, asks and tells; `load_state_dict`
  replays it into a fresh strategy, so every strategy (including those backed by pymoo or
  Optuna) resumes exactly where it stopped without pickling anything;
- seeds (`add_seeds`, before the first ask: equal ranks, ranks read from a dense model, rank
  vectors a user knows) are proposed before anything the subclass proposes, count against the
  budget, and their results reach the subclass through `_observe` like any other; a subclass
  may read `self.seeds` in `_start` (e.g. to put them into a first population).

How a subclass names a configuration: `_propose` may yield a rank vector (hyperparameters at
their defaults), a `Proposal(ranks, info, hparams)` with explicit values (what `bayes` does with
Optuna's native distributions), or a *decision vector*: the ranks followed by one grid level
code per hyperparameter (code = level index + 1, `HyperSpace.encode`), which is how the
integer-vector strategies (random, nsga2, pstrn, beam, rl) search hyperparameters as further
decisions. `self.values` / `self.n` describe that whole vector (the ranks' allowed values, then
the codes 1..levels of each hyperparameter); `self.rank_values` / `self.n_ranks` the ranks
alone. `canon` sets an inactive parameter's code to its default's, so two vectors that differ
only there are the same configuration; `params`, `feasible` and the cost helpers read only the
rank part; `Observation.x` is the told configuration as such a vector. On a rank-only space the
vector is the rank vector and everything behaves as before.

The searcher asks with `ask_proposal()` (ranks, info and hyperparameter values); `ask()` returns
the ranks alone, for rank-only callers.

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

import itertools
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from ranksearch.errors import SpaceError
from ranksearch.objectives import ACCURACY, COST_OBJECTIVES, Objectives
from ranksearch.space.hyper import HyperSpace
from ranksearch.strategies.errors import StrategyError
from ranksearch.strategies.options import StrategyOptions
from ranksearch.trial import RankConfig, TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

STATE_FORMAT = "ranksearch.strategy"
#: Largest hyperparameter grid whose canonical settings are counted one by one.
ENUMERATE_LIMIT = 200_000
#: 4 added "extend" events (a cost budget outlasting the planned trials); 3 added "hparams" to
#: asks and results on spaces with hyperparameters; 2 added "seeds"; all earlier versions load
STATE_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
#: A configuration's identity: its ranks and `HyperSpace.key` of its hyperparameter values.
Key = tuple[RankConfig, tuple[tuple[str, Any], ...]]
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
    #: the configuration as a decision vector: ranks, then one level code per hyperparameter
    #: (nearest grid level; equal to `ranks` on a rank-only space)
    x: tuple[int, ...] = ()


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
    #: False for a strategy that proposes hyperparameter values off the grid (Optuna's native
    #: distributions): a continuous domain then never runs out of configurations.
    grid_hparams: ClassVar[bool] = True
    #: False for a strategy that keeps hyperparameters at their defaults by design (`uniform`);
    #: the conformance suite then checks exactly that instead of checking that they vary.
    varies_hparams: ClassVar[bool] = True

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
        #: The searched hyperparameters (empty on a rank-only space).
        self.hyper: HyperSpace = getattr(space, "hyper", None) or HyperSpace()
        self.n_ranks = len(self.elements)
        self.rank_values: tuple[tuple[int, ...], ...] = tuple(tuple(e.values) for e in self.elements)
        #: Allowed values of each decision: the ranks, then each hyperparameter's level codes.
        self.values: tuple[tuple[int, ...], ...] = self.rank_values + tuple(
            tuple(range(1, k + 1)) for k in self.hyper.n_levels)
        self.n = len(self.values)
        self._allowed = tuple(frozenset(v) for v in self.rank_values)
        self._default_codes: tuple[int, ...] = self._codes(self.hyper.defaults()) if self.hyper else ()
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
        self._seen: set[Key] = set()
        self._outstanding: dict[Key, int] = {}
        self._info: dict[Key, dict[str, Any]] = {}
        self._told: set[str] = set()
        self._events: list[dict[str, Any]] = []
        self._extended = 0  # trials added to the plan by extend_budget
        self._seed_kinds: dict[Key, str] = {}  # accepted seeds, in order, and their kind
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
        """The ranks of the next configuration, or None (finished, or waiting for results).

        On a space with hyperparameters use `ask_proposal`, which also gives their values."""
        proposal = self.ask_proposal()
        return None if proposal is None else proposal.ranks

    def ask_proposal(self) -> Proposal | None:
        """The next configuration to evaluate, with its info and canonical hyperparameter values,
        or None (finished, or waiting for results)."""
        proposal = self._next()
        if proposal is not None:
            event: dict[str, Any] = {"ask": list(proposal.ranks)}
            if self.hyper:
                event["hparams"] = dict(proposal.hparams)
            self._events.append(event)
        elif not (self._events and self._events[-1].get("ask", 0) is None):
            # A None answer is logged once per run of them: replay must ask at the same points.
            self._events.append({"ask": None})
        return proposal

    def tell(self, trial_id: str, result: TrialResult) -> None:
        """Record a trial's outcome. A second report for the same trial id is ignored."""
        trial_id = str(trial_id)
        if trial_id in self._told:
            return
        if not isinstance(result, TrialResult):
            raise StrategyError(f"strategy '{self.name}': tell() needs a TrialResult, got "
                                f"{type(result).__name__}")
        ranks = self._check_told_ranks(result.ranks)
        if self.hyper and not result.hparams:
            # No values means the defaults; a caller that dropped the values it was asked to
            # train with would teach the strategy the wrong configuration: say so.
            asked = [dict(h) for r, h in self._outstanding if r == ranks]
            if asked and self.hyper.defaults() not in asked:
                raise StrategyError(
                    f"strategy '{self.name}': trial {trial_id} was told for ranks {list(ranks)} "
                    f"without hyperparameter values, but they were asked with {asked[0]}; "
                    "tell the values the trial trained with (TrialResult.hparams, from "
                    "ask_proposal)")
        hparams = self._check_hparams(result.hparams, f"was told a result (trial {trial_id}) with")
        key = self.key(ranks, hparams)
        self._told.add(trial_id)
        asked = self._outstanding.get(key, 0) > 0
        if asked:
            self._outstanding[key] -= 1
            if not self._outstanding[key]:
                del self._outstanding[key]
        elif any(self.key(p.ranks, p.hparams) == key for p in self._queue):
            # measured elsewhere before it was handed out: never hand it out to be trained again
            self._queue = deque(p for p in self._queue if self.key(p.ranks, p.hparams) != key)
        self._seen.add(key)
        obs = self._observation(trial_id, ranks, hparams, result, asked)
        self.observations.append(obs)
        self._events.append({"tell": trial_id, "result": _result_record(result)})
        self._observe(obs)

    def extend_budget(self, trials: int) -> None:
        """Plan `trials` more than the budget this strategy was made with.

        A cost budget (600ep) reaches a strategy as an estimated trial count; when a scheduler
        stops more trials than estimated, the search asks for more while the cost budget allows
        (`ranksearch.budget.plan_more`). Strategies that plan by the budget (phases, widths)
        plan by `planned_budget`, which an extension leaves alone, and go on in their last
        stage. The extension is logged, so a resumed search replays it at the same point."""
        if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
            raise StrategyError(f"strategy '{self.name}': extend_budget needs a positive number "
                                f"of trials, got {trials!r}")
        self.budget += int(trials)
        self._extended += int(trials)
        self._events.append({"extend": int(trials)})

    @property
    def planned_budget(self) -> int:
        """The trials this strategy was made to plan for (its budget before any extension)."""
        return self.budget - self._extended

    def is_finished(self) -> bool:
        """True when no further configuration will be proposed (budget used or space exhausted)."""
        if self.n_asked >= self.budget:
            return True
        if self._queue:
            return False
        return self._exhausted or len(self._seen) >= self._search_size()

    def info(self, ranks: Sequence[int], hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The strategy's bookkeeping for a proposed configuration (e.g. generation, phase):
        ranks and hyperparameter values, or a decision vector."""
        return dict(self._info.get(self.key(ranks, hparams), {}))

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

    def in_flight(self, x: Sequence[int], hparams: Mapping[str, Any] | None = None) -> bool:
        """True when this configuration was handed out and its result is not told yet."""
        return self.key(x, hparams) in self._outstanding

    # -- configurations: ranks, hyperparameter values and decision vectors ---------------------
    def key(self, x: Sequence[int], hparams: Mapping[str, Any] | None = None) -> Key:
        """The identity duplicate checks compare: `x` is ranks (then `hparams`, or the defaults
        when None) or a decision vector (ranks then level codes)."""
        if hparams is None:
            ranks, values = self.split(x)
        else:
            ranks, values = tuple(int(r) for r in x), hparams
        return ranks, (self.hyper.key(values) if self.hyper else ())

    def split(self, x: Sequence[int]) -> tuple[RankConfig, dict[str, Any]]:
        """(ranks, canonical hyperparameter values) of a decision vector; a bare rank vector
        gets the defaults."""
        x = tuple(int(v) for v in x)
        if not self.hyper:
            return x, {}
        if len(x) == self.n_ranks:
            return x, self.hyper.defaults()
        return x[: self.n_ranks], self.hyper.decode([c - 1 for c in x[self.n_ranks:]])

    def vector(self, ranks: Sequence[int], hparams: Mapping[str, Any] | None = None) -> tuple[int, ...]:
        """The decision vector of ranks and hyperparameter values (nearest level of each; an
        inactive or missing parameter at its default's level)."""
        r = tuple(int(v) for v in ranks[: self.n_ranks])
        if not self.hyper:
            return r
        return r + (self._codes(hparams) if hparams else self._default_codes)

    def canon(self, x: Sequence[int]) -> tuple[int, ...]:
        """The canonical decision vector: inactive hyperparameters at their default's code."""
        if not self.hyper:
            return x if isinstance(x, tuple) else tuple(int(v) for v in x)
        return self.vector(*self.split(x))

    def _codes(self, hparams: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(i + 1 for i in self.hyper.encode(hparams))
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
        'effective', ...) is kept in the configuration's `info`. A seed's hyperparameters are
        at their defaults.
        """
        if self._started:
            raise StrategyError(f"strategy '{self.name}': add_seeds must be called before the "
                                "first ask (seeds are what it proposes first)")
        accepted: list[RankConfig] = []
        for config in configs:
            ranks = self._check_vector(config, "was given the seed")
            hparams = self.hyper.defaults() if self.hyper else {}
            key = self.key(ranks, hparams)
            if key in self._seen or not self.feasible(ranks):
                continue
            self._seen.add(key)
            self._seed_kinds[key] = str(kind)
            self._queue.append(Proposal(ranks, {"seeded": str(kind)}, hparams))
            accepted.append(ranks)
        return accepted

    @property
    def seeds(self) -> tuple[tuple[int, ...], ...]:
        """The accepted seeds as decision vectors (the rank vectors on a rank-only space), in
        the order they are proposed."""
        return tuple(self.vector(r, dict(h)) for r, h in self._seed_kinds)

    def is_seed(self, x: Sequence[int], hparams: Mapping[str, Any] | None = None) -> bool:
        return self.key(x, hparams) in self._seed_kinds

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A versioned, JSON-able record of everything needed to continue exactly here."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "strategy": self.name,
            "strategy_version": self.version,
            "seed": self.seed,
            "budget": self.planned_budget,  # extensions are events
            "options": _jsonable(self.options),
            "seeds": [{"ranks": list(r), "kind": k} for (r, _h), k in self._seed_kinds.items()],
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
                want = None if event["ask"] is None else self.key(event["ask"], event.get("hparams") or {})
                proposal = self.ask_proposal()
                got = None if proposal is None else self.key(proposal.ranks, proposal.hparams)
                if got != want:
                    raise StrategyError(
                        f"strategy '{self.name}': resuming diverged at event {i}: the log "
                        f"asked {want}, replay gave {got}; the state was written by a "
                        "different version of the strategy or its libraries")
            elif "tell" in event:
                self.tell(event["tell"], _result_from_record(event["result"]))
            elif "extend" in event:
                self.extend_budget(int(event["extend"]))
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
        """Closed-form parameter count of the whole model (cached per rank vector; a decision
        vector's hyperparameter codes are ignored)."""
        key = tuple(int(r) for r in ranks[: self.n_ranks])
        p = self._params_cache.get(key)
        if p is None:
            from ranksearch.space import count_params

            p = self._params_cache[key] = int(count_params(self.space, key))
        return p

    def flops(self, ranks: Sequence[int]) -> int:
        key = tuple(int(r) for r in ranks[: self.n_ranks])
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

    def is_new(self, x: Sequence[int], hparams: Mapping[str, Any] | None = None) -> bool:
        """True when the configuration (ranks and `hparams`, default values when None, or a
        decision vector) was never proposed nor told."""
        return self.key(x, hparams) not in self._seen

    @property
    def lowest(self) -> tuple[int, ...]:
        """The lowest ranks (as a decision vector: hyperparameters at their defaults)."""
        return tuple(v[0] for v in self.rank_values) + self._default_codes

    @property
    def highest(self) -> tuple[int, ...]:
        """The highest ranks (as a decision vector: hyperparameters at their defaults)."""
        return tuple(v[-1] for v in self.rank_values) + self._default_codes

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

    # -- partial results ----------------------------------------------------------------------
    #: A pruned result's accuracy counts as accuracy * (PARTIAL_FLOOR + (1 - PARTIAL_FLOOR) *
    #: fraction of the full fidelity it was measured at): see `informative_f`.
    PARTIAL_FLOOR: ClassVar[float] = 0.5

    def fidelity_fraction(self, obs: Observation) -> float:
        """How much of a full training `obs` was measured at (1.0 when unknown and not pruned):
        its fidelity over the space's `training.epochs` (or `steps`, by the result's unit); a
        fidelity already given as a fraction (at most 1) is taken as is; unknown: 0.5."""
        training = getattr(getattr(self.space, "config", None), "training", None)
        full = getattr(training, "steps" if obs.result.fidelity_unit == "steps" else "epochs", None)
        if full:
            return min(1.0, max(0.0, obs.fidelity / float(full)))
        if 0.0 < obs.fidelity <= 1.0:
            return obs.fidelity
        return 0.5 if obs.status == "pruned" else 1.0

    def is_partial(self, obs: Observation) -> bool:
        """A pruned trial with usable metrics measured before the end of its training."""
        return obs.status == "pruned" and obs.usable and self.fidelity_fraction(obs) < 1.0

    def informative_f(self, obs: Observation) -> tuple[float, ...]:
        """The minimisation vector to learn from: `obs.f`, except that a partial result's
        accuracy is penalised for the training it missed (scaled by PARTIAL_FLOOR + (1 -
        PARTIAL_FLOOR) * fraction), so it counts as information, below a completed trial of the
        same partial accuracy and above a failed one, and partial results keep their order among
        themselves at equal fidelity. Costs are exact either way."""
        if not self.is_partial(obs):
            return obs.f
        scale = self.PARTIAL_FLOOR + (1.0 - self.PARTIAL_FLOOR) * self.fidelity_fraction(obs)
        out = []
        for o, v in zip(self.goals.items, obs.f, strict=True):
            if o.name == ACCURACY:
                worst = o.worst()
                v = worst + scale * (v - worst)
            out.append(v)
        return tuple(out)

    # -- internals ----------------------------------------------------------------------------
    def _next(self) -> Proposal | None:
        if self.is_finished():
            return None
        if not self._started:
            self._started = True
            self._start()
        if not self._queue:
            limit = self.budget - self.n_asked
            for item in self._propose(limit):
                proposal = self._resolve(item)
                key = self._check_proposal(proposal)
                self._seen.add(key)
                self._queue.append(proposal)
            if len(self._queue) > limit:
                raise StrategyError(f"strategy '{self.name}' proposed {len(self._queue)} "
                                    f"configurations but only {limit} were allowed")
        if not self._queue:
            return None
        proposal = self._queue.popleft()
        key = self.key(proposal.ranks, proposal.hparams)
        self.n_asked += 1
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        if proposal.info:
            self._info[key] = proposal.info
        return Proposal(proposal.ranks, dict(proposal.info), dict(proposal.hparams))

    def _resolve(self, item: Any) -> Proposal:
        """A subclass's proposal as (checked ranks, info, checked canonical hyperparameters)."""
        proposal = item if isinstance(item, Proposal) else Proposal(item, {})
        vec = proposal.ranks
        if self.hyper and not proposal.hparams:
            try:
                vec = list(vec)
            except TypeError:
                vec = []
            if len(vec) == self.n and self.n > self.n_ranks:  # a decision vector
                ranks = self._check_vector(vec[: self.n_ranks], "proposed")
                codes = vec[self.n_ranks:]
                for p, levels, c in zip(self.hyper.params, self.values[self.n_ranks:], codes, strict=True):
                    if isinstance(c, bool) or not isinstance(c, int | np.integer) or c not in levels:
                        raise StrategyError(f"strategy '{self.name}' proposed {vec!r}: the level code "
                                            f"of hyperparameter '{p.name}' must be an integer in "
                                            f"1..{len(levels)}, got {c!r}")
                return Proposal(ranks, dict(proposal.info),
                                self.hyper.decode([int(c) - 1 for c in codes]))
        ranks = self._check_vector(vec, "proposed")
        return Proposal(ranks, dict(proposal.info), self._check_hparams(proposal.hparams, "proposed"))

    def _check_hparams(self, values: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
        """Canonical hyperparameter values (the defaults when none are given); a value outside
        its domain or an unknown name is an error naming the strategy."""
        values = dict(values or {})
        if not self.hyper:
            if values:
                raise StrategyError(f"strategy '{self.name}' {what} hyperparameters "
                                    f"{sorted(values)}, but space '{self.space.name}' searches none")
            return {}
        try:
            return self.hyper.check(values)
        except SpaceError as exc:
            raise StrategyError(f"strategy '{self.name}' {what} hyperparameters {values}: "
                                f"{exc}") from None

    def _check_vector(self, ranks: Any, what: str) -> RankConfig:
        """Length, integers and bounds; `what` says where the vector came from."""
        try:
            ranks = list(ranks)
            values = tuple(int(r) for r in ranks)
            exact = all(float(a) == float(b) for a, b in zip(values, ranks, strict=True))
        except (TypeError, ValueError):
            values, exact = (), False
        if not exact or len(values) != self.n_ranks:
            extra = (f" (or {self.n}: the ranks, then a level code per hyperparameter)"
                     if self.hyper and what == "proposed" else "")
            raise StrategyError(f"strategy '{self.name}' {what} {ranks!r}: expected "
                                f"{self.n_ranks} integers, one per rank element{extra}")
        for element, allowed, v in zip(self.elements, self._allowed, values, strict=True):
            if v not in allowed:
                raise StrategyError(f"strategy '{self.name}' {what} {list(values)}: rank "
                                    f"element '{element.name}' = {v} is outside its bounds "
                                    f"{element.low}..{element.high}")
        return values

    def _check_proposal(self, proposal: Proposal) -> Key:
        values = proposal.ranks
        if not self.feasible(values):
            raise StrategyError(f"strategy '{self.name}' proposed {list(values)} with "
                                f"{self.params(values)} params, breaking the space's constraints "
                                f"(max_params={self.max_params}, "
                                f"min_compression={self.min_compression})")
        key = self.key(values, proposal.hparams)
        if key in self._seen:
            what = f"{list(values)} with {dict(proposal.hparams)}" if self.hyper else f"{list(values)}"
            raise StrategyError(f"strategy '{self.name}' proposed {what} twice; "
                                "a configuration is evaluated at most once")
        return key

    def _check_told_ranks(self, ranks: Any) -> RankConfig:
        try:
            values = tuple(int(r) for r in ranks)
        except (TypeError, ValueError):
            values = ()
        if len(values) != self.n_ranks or any(v not in a for v, a in zip(values, self._allowed, strict=True)):
            raise StrategyError(f"strategy '{self.name}': told a result for ranks {list(values)}, "
                                f"which is not a configuration of space '{self.space.name}'")
        return values

    def _search_size(self) -> float:
        size = getattr(self.space, "search_size", None)
        ranks = int(size) if size is not None else math.prod(len(v) for v in self.rank_values)
        return ranks * self._hyper_size() if self.hyper else ranks

    def _hyper_size(self) -> float:
        """How many distinct hyperparameter settings this strategy can propose: the canonical
        settings of the grid (conditions make several level vectors one setting), or infinite
        for a strategy that proposes continuous values off the grid."""
        if not self.grid_hparams:  # every value of each domain: an upper bound
            total = 1.0
            for p in self.hyper:
                if p.kind == "categorical":
                    total *= len(p.choices)
                elif p.kind == "float" and p.step is None:
                    return math.inf
                else:
                    total *= math.floor((p.high - p.low) / (p.step or 1) + 1e-9) + 1
            return total
        size = getattr(self, "_hyper_size_cache", None)
        if size is None:
            total = math.prod(self.hyper.n_levels)
            if total > ENUMERATE_LIMIT:
                size = total  # an upper bound; exhaustion is then found by the search itself
            else:
                size = len({self.hyper.key(self.hyper.decode(idx))
                            for idx in itertools.product(*(range(k) for k in self.hyper.n_levels))})
            self._hyper_size_cache = size
        return size

    def _check_feasible_exists(self) -> None:
        if not self.feasible(self.lowest):
            raise StrategyError(
                f"strategy '{self.name}': no configuration of space '{self.space.name}' meets its "
                f"constraints (the smallest has {self.params(self.lowest)} params; "
                f"max_params={self.max_params}, min_compression={self.min_compression}); "
                "loosen the constraints or lower the rank bounds")

    def _observation(self, trial_id: str, ranks: RankConfig, hparams: dict[str, Any],
                     result: TrialResult, asked: bool) -> Observation:
        usable = self.goals.usable(result)
        f = self.goals.vector(result, cost=self.costs(ranks), usable=usable)
        acc = result.value(ACCURACY)
        return Observation(
            trial_id=trial_id, ranks=ranks, status=result.status, usable=usable, f=f,
            accuracy=acc if usable and math.isfinite(acc) else 0.0, params=self.params(ranks),
            fidelity=float(result.fidelity), asked=asked, result=result, hparams=hparams,
            x=self.vector(ranks, hparams),
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
    record = {
        "ranks": list(result.ranks),
        "status": result.status,
        "metrics": {str(k): _finite_or_none(v) for k, v in result.metrics.items()},
        "fidelity": _finite_or_none(result.fidelity) or 0.0,
        "fidelity_unit": result.fidelity_unit,
        "error": result.error,
    }
    if result.hparams:  # absent on a rank-only space: its log reads as before
        record["hparams"] = _jsonable(dict(result.hparams))
    return record


def _result_from_record(record: dict[str, Any]) -> TrialResult:
    metrics = {k: (math.nan if v is None else float(v)) for k, v in record.get("metrics", {}).items()}
    return TrialResult(
        ranks=tuple(record["ranks"]), status=record.get("status", "ok"), metrics=metrics,
        fidelity=record.get("fidelity", 0.0), fidelity_unit=record.get("fidelity_unit", "epochs"),
        error=record.get("error"), hparams=dict(record.get("hparams") or {}),
    )
