"""Bayesian optimisation over rank vectors through Optuna's ask/tell interface.

`bayes` uses multi-objective TPE by default (`sampler="tpe"`), Optuna's GP sampler with log
expected hypervolume improvement (`"gp"`), or BoTorch's qNEHVI (`"botorch"`, needs the
`optuna-integration` and `botorch` packages). Several candidates can be out at once: TPE
treats running trials with a constant liar, the GP sampler with q-batch acquisition.

What is known before training is used: the first `n_startup` configurations (seeds included)
are spread over the compression axis instead of drawn uniformly; a candidate that breaks `max_params` or
`min_compression` is told to the sampler at once as infeasible (never trained); a candidate
already evaluated is told its recorded objectives (never trained twice). Seeds enter the
study as enqueued trials of its own, told when their results arrive (Optuna's way to seed).

`optuna-nsga2` is Optuna's own NSGAIISampler (population 30), run through the same protocol as
the reference our evolutionary strategies are compared with; it gets no such help beyond the
duplicate and constraint handling every strategy must do.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ranksearch.strategies import sampling
from ranksearch.strategies.base import Observation, Proposal, Strategy, StrategyError
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig

_BOTORCH_HINT = "pip install optuna-integration botorch"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's info logs and experimental warnings for one call, then restore them."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class OptunaStrategy(Strategy):
    """Strategy backed by an in-memory Optuna study; subclasses pick the sampler."""

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        sampler, n_startup, startup, batch_size, sampler_options = self._settings()
        if sampler == "botorch":
            try:
                import botorch  # noqa: F401
                import optuna_integration  # noqa: F401
            except ImportError:
                raise StrategyError(f"strategy '{self.name}': sampler 'botorch' (qNEHVI) needs the "
                                    f"optuna-integration and botorch packages: {_BOTORCH_HINT}; "
                                    "or use sampler='tpe' or 'gp'") from None
        if batch_size is None:
            batch_size = space.config.resources.max_concurrent
        self.sampler_name = sampler
        self.n_startup = n_startup
        self.batch_size = batch_size
        self.startup = startup
        self.sampler_options = dict(sampler_options or {})
        self._study: Any = None
        self._dists: dict[str, Any] = {}
        self._keys: list[str] = []
        self._trial_of: dict[RankConfig, Any] = {}
        self._f: dict[RankConfig, tuple[float, ...]] = {}
        self._startup_left: list[RankConfig] = []

    def _settings(self) -> tuple[str, int, str, int | None, dict[str, Any]]:
        """(sampler, n_startup, startup, batch_size, sampler options) from `self.opts`."""
        raise NotImplementedError

    # -- study --------------------------------------------------------------------------------
    def _make_sampler(self, seed: int) -> Any:
        import optuna

        opts = dict(self.sampler_options)
        if self.sampler_name == "tpe":
            opts.setdefault("n_startup_trials", self.n_startup if self.startup == "sampler" else 0)
            opts.setdefault("multivariate", True)
            opts.setdefault("constant_liar", True)
            return optuna.samplers.TPESampler(seed=seed, **opts)
        if self.sampler_name == "gp":
            opts.setdefault("n_startup_trials", self.n_startup if self.startup == "sampler" else 0)
            return optuna.samplers.GPSampler(seed=seed, **opts)
        if self.sampler_name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **opts)
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        from optuna_integration import BoTorchSampler

        opts.setdefault("n_startup_trials", self.n_startup if self.startup == "sampler" else 0)
        return BoTorchSampler(seed=seed, **opts)

    def _start(self) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution
        from optuna.study import StudyDirection

        for element, values in zip(self.elements, self.values, strict=True):
            steps = {b - a for a, b in zip(values, values[1:], strict=False)}
            if len(values) == 1 or len(steps) == 1:
                step = steps.pop() if steps else 1
                dist: Any = IntDistribution(values[0], values[-1], step=step)
            else:
                dist = CategoricalDistribution(list(values))
            self._dists[element.name] = dist
        self._keys = [e.name for e in self.elements]
        sampler = self._make_sampler(int(self.rng.integers(2**31 - 1)))
        with _quiet():
            storage = optuna.storages.InMemoryStorage()
            storage.create_new_study([StudyDirection.MINIMIZE] * len(self.objectives), "ranksearch")
            self._study = optuna.Study("ranksearch", storage, sampler=sampler)
        n_spread = min(self.n_startup, self.budget) - len(self.seeds)
        if self.startup == "spread" and n_spread > 0:
            self._startup_left = sampling.spread(self, self.rng, n_spread)

    def _tell_known(self, trial: Any, ranks: RankConfig) -> None:
        """Tell a candidate that costs no training: an evaluated one, or an infeasible one."""
        from optuna.trial import TrialState

        if ranks in self._f:
            self._complete(trial, self._f[ranks], 0.0)
            return
        excess = self._excess(ranks)
        if excess > 0:
            self._complete(trial, self.worst_vector(ranks), excess)
        else:
            with _quiet():
                self._study.tell(trial, state=TrialState.FAIL)

    def _complete(self, trial: Any, f: Any, excess: float) -> None:
        with _quiet():
            if self.max_params is not None or self.min_compression is not None:
                trial.set_constraint("hard", excess)
            self._study.tell(trial, list(f))

    def _excess(self, ranks: RankConfig) -> float:
        """How far a configuration is over its constraints (relative; 0 when feasible)."""
        p = self.params(ranks)
        over = 0.0
        if self.max_params is not None:
            over = max(over, p / self.max_params - 1.0)
        if self.min_compression is not None:
            over = max(over, self.min_compression / (self.space.dense_params / p) - 1.0)
        return over

    # -- protocol hooks -----------------------------------------------------------------------
    def _propose(self, limit: int) -> Iterable[Proposal]:
        room = min(limit, self.batch_size - self.pending)
        out: list[Proposal] = []
        chosen: set[RankConfig] = set()
        while len(out) < room:
            ranks = self._ask_one(chosen)
            if ranks is None:
                if not out and self.pending == 0:
                    self.mark_exhausted()
                break
            chosen.add(ranks)
            out.append(Proposal(ranks, {"optuna_trial": self._trial_of[ranks].number}))
        return out

    def _ask_one(self, chosen: set[RankConfig]) -> RankConfig | None:
        from optuna.trial import TrialState

        while self._startup_left:
            ranks = self._startup_left.pop(0)
            if self.is_new(ranks) and ranks not in chosen and self.feasible(ranks):
                return self._enqueue(ranks)
        for _ in range(30):
            with _quiet():
                trial = self._study.ask(self._dists)
            ranks = tuple(int(trial.params[k]) for k in self._keys)
            if self.feasible(ranks) and self.is_new(ranks) and ranks not in chosen:
                self._trial_of[ranks] = trial
                return ranks
            if ranks in chosen or ranks in self._trial_of and ranks not in self._f:
                # asked before and still running: the sampler repeats itself; fail this copy
                with _quiet():
                    self._study.tell(trial, state=TrialState.FAIL)
                continue
            self._tell_known(trial, ranks)
        # the sampler keeps repeating itself: fall back to a random configuration not seen yet
        ranks = sampling.new_feasible(self, self.rng, exclude=chosen)
        return None if ranks is None else self._enqueue(ranks)

    def _enqueue(self, ranks: RankConfig) -> RankConfig:
        """Put a configuration of our choosing into the study as its next trial."""
        with _quiet():
            self._study.enqueue_trial(dict(zip(self._keys, ranks, strict=True)),
                                      skip_if_exists=False)
            trial = self._study.ask(self._dists)
        got = tuple(int(trial.params[k]) for k in self._keys)
        if got != ranks:  # pragma: no cover - Optuna honours enqueued parameters
            raise StrategyError(f"strategy '{self.name}': Optuna changed an enqueued trial")
        self._trial_of[ranks] = trial
        return ranks

    def _observe(self, obs: Observation) -> None:
        from optuna.trial import TrialState

        trial = self._trial_of.get(obs.ranks)
        first = obs.ranks not in self._f
        if trial is None and first and self.is_seed(obs.ranks) and self._study is not None:
            self._enqueue(obs.ranks)  # a seed joins the study as a trial of its own
            trial = self._trial_of[obs.ranks]
        if obs.usable:
            self._f.setdefault(obs.ranks, obs.f)
        if trial is None or not first:
            return  # told for a configuration Optuna never proposed, or reported again
        del self._trial_of[obs.ranks]
        if obs.usable:
            self._complete(trial, obs.f, 0.0)
        else:
            with _quiet():
                self._study.tell(trial, state=TrialState.FAIL)
            self._f.setdefault(obs.ranks, obs.f)


@dataclass(frozen=True)
class BayesOptions(StrategyOptions):
    sampler: str = option("tpe", "multi-objective TPE, Optuna's GP with log-EHVI, BoTorch's "
                          f"qNEHVI ({_BOTORCH_HINT}) or random", choices=("tpe", "gp", "botorch",
                                                                           "random"))
    n_startup: int = option(20, "configurations before the model is used (seeds included)",
                            low=0)
    startup: str = option("spread", "how the startup configurations are chosen: spread over "
                          "the compression axis, or by the sampler", choices=("spread", "sampler"))
    batch_size: int | None = option(None, "configurations out at once (None: the space's "
                                    "max_concurrent)", low=1)


@dataclass(frozen=True)
class OptunaNSGA2Options(StrategyOptions):
    population: int = option(30, "NSGAIISampler's population size", low=2)
    batch_size: int | None = option(None, "configurations out at once (None: the population)",
                                    low=1)


class BayesSearch(OptunaStrategy):
    """Multi-objective Bayesian optimisation: TPE (default), GP log-EHVI, or BoTorch qNEHVI."""

    name = "bayes"
    Options = BayesOptions
    opts: BayesOptions

    def _settings(self) -> tuple[str, int, str, int | None, dict[str, Any]]:
        o = self.opts
        return o.sampler, o.n_startup, o.startup, o.batch_size, {}


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGAIISampler: the reference genetic algorithm for the benchmark."""

    name = "optuna-nsga2"
    Options = OptunaNSGA2Options
    opts: OptunaNSGA2Options

    def _settings(self) -> tuple[str, int, str, int | None, dict[str, Any]]:
        o = self.opts
        batch = o.batch_size if o.batch_size is not None else o.population
        return "nsga2", 0, "sampler", batch, {"population_size": o.population}
