"""Bayesian optimisation over rank vectors through Optuna's ask/tell interface.

`bayes` uses multi-objective TPE by default (`sampler="tpe"`), Optuna's GP sampler with log
expected hypervolume improvement (`"gp"`), or BoTorch's qNEHVI (`"botorch"`, needs the
`optuna-integration` and `botorch` packages). Several candidates can be out at once: TPE
treats running trials with a constant liar, the GP sampler with q-batch acquisition.

What is known before training is used: the first `n_startup` configurations (seeds included)
are spread over the compression axis instead of drawn uniformly; a candidate that breaks `max_params` or
`min_compression` is told to the sampler at once as infeasible (never trained); a candidate
already evaluated is never trained twice: the first time the study proposes a configuration
whose result it lacks (one told from elsewhere), it is told the recorded objectives; once the
study has the result, a repeat is told FAILED, which samplers ignore. (Telling each repeat its
objectives again, as before, counts one measurement many times: TPE's density of good
configurations then piles up on the repeated points. On NAS-Bench-201, 10 seeds, TPE repeated
a quarter of its proposals, and the change cut the median regret at 200 evaluations from
0.0094 / 0.0076 / 0.0023 to 0.0060 / 0.0054 / 0.0015 on ImageNet16-120 / CIFAR-100 / CIFAR-10.)
Seeds enter the study as enqueued trials of its own, told when their results arrive (Optuna's
way to seed).

Hyperparameters are searched natively: each takes its Optuna distribution (`HyperSpace.
distributions`: float / int with log and step, categorical) and is suggested define-by-run after
the ranks, a conditional one only when its condition holds on the values suggested before it,
so the sampler sees exactly the active parameters. Values are continuous (not the strategies'
grid); startup configurations spread over the compression axis draw them on the grid.

A trial pruned by a multi-fidelity scheduler with usable metrics is information, not a failure:
it is told to the study as a COMPLETE trial whose accuracy is penalised for the training it
missed (`Strategy.informative_f`: scaled by 0.5 + 0.5 * fraction of the full epochs). Telling it
PRUNED with an intermediate value was the alternative; it is not taken because Optuna's
multi-objective samplers learn only from complete trials (and `Trial.report` does not support
several objectives), so a pruned state would throw the measurement away.

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
from ranksearch.strategies.base import Key, Observation, Proposal, Strategy, StrategyError
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

    grid_hparams = False
    #: 2: a repeated configuration is told FAILED once the study has its result
    version = 2

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        sampler, n_startup, startup, batch_size, sampler_options = self._settings()
        if "deterministic_objective" in (sampler_options or {}) and sampler != "gp":
            raise StrategyError(f"strategy '{self.name}': deterministic=true is an option of the GP "
                                f"sampler (it fits no observation noise), not of '{sampler}'; "
                                "set sampler: gp or drop deterministic")
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
        self._hdists: dict[str, Any] = {}
        self._keys: list[str] = []
        self._trial_of: dict[Key, Any] = {}
        self._f: dict[Key, tuple[float, ...]] = {}
        self._in_study: set[Key] = set()  # configurations the study holds a COMPLETE trial of
        self._startup_left: list[tuple[RankConfig, dict[str, Any]]] = []

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

        for element, values in zip(self.elements, self.rank_values, strict=True):
            steps = {b - a for a, b in zip(values, values[1:], strict=False)}
            if len(values) == 1 or len(steps) == 1:
                step = steps.pop() if steps else 1
                dist: Any = IntDistribution(values[0], values[-1], step=step)
            else:
                dist = CategoricalDistribution(list(values))
            self._dists[element.name] = dist
        self._keys = [e.name for e in self.elements]
        self._hdists = self.hyper.distributions() if self.hyper else {}
        clash = sorted(set(self._keys) & set(self._hdists))
        if clash:
            raise StrategyError(f"strategy '{self.name}': hyperparameter '{clash[0]}' has the name "
                                "of a rank element; rename one of them")
        sampler = self._make_sampler(int(self.rng.integers(2**31 - 1)))
        with _quiet():
            storage = optuna.storages.InMemoryStorage()
            storage.create_new_study([StudyDirection.MINIMIZE] * len(self.objectives), "ranksearch")
            self._study = optuna.Study("ranksearch", storage, sampler=sampler)
        n_spread = min(self.n_startup, self.budget) - len(self.seeds)
        if self.startup == "spread" and n_spread > 0:
            self._startup_left = [self.split(x) for x in sampling.spread(self, self.rng, n_spread)]

    def _suggest_hparams(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: each hyperparameter whose condition holds on the values before it."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        values: dict[str, Any] = {}
        for p in self.hyper:
            if not self.hyper.is_active(p.name, values):
                continue
            d = self._hdists[p.name]
            if isinstance(d, CategoricalDistribution):
                values[p.name] = trial.suggest_categorical(p.name, list(d.choices))
            elif isinstance(d, IntDistribution):
                values[p.name] = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
            else:
                values[p.name] = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
        return self.hyper.canonical(values)

    def _tell_known(self, trial: Any, key: Key) -> None:
        """Tell a candidate that costs no training: an evaluated one, or an infeasible one."""
        from optuna.trial import TrialState

        ranks = key[0]
        if key in self._f:
            if key in self._in_study:  # a repeat: the study has this measurement already
                with _quiet():
                    self._study.tell(trial, state=TrialState.FAIL)
            else:
                self._complete(trial, self._f[key], 0.0)
                self._in_study.add(key)
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
        chosen: set[Key] = set()
        while len(out) < room:
            key = self._ask_one(chosen)
            if key is None:
                if not out and self.pending == 0:
                    self.mark_exhausted()
                break
            chosen.add(key)
            out.append(Proposal(key[0], {"optuna_trial": self._trial_of[key].number}, dict(key[1])))
        return out

    def _ask_one(self, chosen: set[Key]) -> Key | None:
        from optuna.trial import TrialState

        while self._startup_left:
            ranks, hparams = self._startup_left.pop(0)
            key = self.key(ranks, hparams)
            if key not in self._seen and key not in chosen and self.feasible(ranks):
                return self._enqueue(ranks, hparams)
        for _ in range(30):
            with _quiet():
                trial = self._study.ask(self._dists)
                hparams = self._suggest_hparams(trial) if self.hyper else {}
            ranks = tuple(int(trial.params[k]) for k in self._keys)
            key = self.key(ranks, hparams)
            if self.feasible(ranks) and key not in self._seen and key not in chosen:
                self._trial_of[key] = trial
                return key
            if key in chosen or key in self._trial_of and key not in self._f:
                # asked before and still running: the sampler repeats itself; fail this copy
                with _quiet():
                    self._study.tell(trial, state=TrialState.FAIL)
                continue
            self._tell_known(trial, key)
        # the sampler keeps repeating itself: fall back to a random configuration not seen yet
        x = sampling.new_feasible(self, self.rng, exclude={self.vector(r, dict(h)) for r, h in chosen})
        return None if x is None else self._enqueue(*self.split(x))

    def _enqueue(self, ranks: RankConfig, hparams: dict[str, Any]) -> Key:
        """Put a configuration of our choosing into the study as its next trial."""
        with _quiet():
            self._study.enqueue_trial({**dict(zip(self._keys, ranks, strict=True)), **hparams},
                                      skip_if_exists=False)
            trial = self._study.ask(self._dists)
            got_h = self._suggest_hparams(trial) if self.hyper else {}
        got = tuple(int(trial.params[k]) for k in self._keys)
        key = self.key(ranks, hparams)
        if got != ranks or self.key(got, got_h) != key:  # pragma: no cover - Optuna honours them
            raise StrategyError(f"strategy '{self.name}': Optuna changed an enqueued trial "
                                f"({list(ranks)}, {hparams} became {list(got)}, {got_h})")
        self._trial_of[key] = trial
        return key

    def _observe(self, obs: Observation) -> None:
        from optuna.trial import TrialState

        key = self.key(obs.ranks, obs.hparams)
        trial = self._trial_of.get(key)
        first = key not in self._f
        if trial is None and first and key in self._seed_kinds and self._study is not None:
            self._enqueue(obs.ranks, dict(obs.hparams))  # a seed joins the study as a trial of its own
            trial = self._trial_of[key]
        f = self.informative_f(obs)  # a pruned trial's partial result, penalised
        if obs.usable:
            self._f.setdefault(key, f)
        if trial is None or not first:
            return  # told for a configuration Optuna never proposed, or reported again
        del self._trial_of[key]
        if obs.usable:
            self._complete(trial, f, 0.0)
            self._in_study.add(key)
        else:
            with _quiet():
                self._study.tell(trial, state=TrialState.FAIL)
            self._f.setdefault(key, obs.f)


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
    deterministic: bool = option(False, "the objectives give the same values every time a "
                                 "configuration is evaluated (a table lookup, a seeded "
                                 "simulator): the GP sampler then fits no observation noise")


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
        return o.sampler, o.n_startup, o.startup, o.batch_size, (
            {"deterministic_objective": True} if o.deterministic else {})


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGAIISampler: the reference genetic algorithm for the benchmark."""

    name = "optuna-nsga2"
    Options = OptunaNSGA2Options
    opts: OptunaNSGA2Options

    def _settings(self) -> tuple[str, int, str, int | None, dict[str, Any]]:
        o = self.opts
        batch = o.batch_size if o.batch_size is not None else o.population
        return "nsga2", 0, "sampler", batch, {"population_size": o.population}
