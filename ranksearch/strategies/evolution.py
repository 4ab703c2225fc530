"""NSGA-II over rank vectors (pymoo, ask/tell), and PSTRN's progressive version of it.

The genome is one integer per decision: an index into that decision's candidate grid. The
decisions are the rank elements, then (on a space with hyperparameters) one per hyperparameter,
whose candidates are its grid level codes (`HyperSpace.encode`; a log domain's levels are
spaced in log space): a mixed-variable genome that pymoo's integer operators breed as a whole,
an inactive conditional parameter's gene ignored at decode (`Strategy.canon`). For
`nsga2` the grid is every allowed value; for `pstrn` it is a few candidates around a centre,
re-centred and narrowed at each phase switch (Li et al., "Heuristic rank selection with
progressively searching tensor ring network": the good values of each element cluster in an
"interest region", so later phases search a finer grid around the best values found so far).
PSTRN narrows each numeric hyperparameter's level interval the same way, in steps scaled to
its own grid: the first phase spans all its levels, and each switch re-centres it on the mode of
the top configurations with a smaller step; a categorical keeps all its choices (no order).

pymoo runs the GA (binary tournament on domination then crowding, two-point crossover,
polynomial mutation rounded to integers, rank-and-crowding survival) with this strategy's own
random generator. On top of it, what we know before training is used:

- the initial population is spread over the compression axis (`init="spread"`), not uniform,
  after the seeds (`strategy.seeds`) that lie on the first grid, which join it as evaluated;
- a repair lowers ranks until a child meets `max_params` / `min_compression`;
- children that map to a configuration already evaluated (or proposed) are rejected during
  mating, and configurations met again across phases reuse their recorded objectives: nothing
  is evaluated twice;
- a trial pruned by a multi-fidelity scheduler with usable metrics counts by its partial result
  (`Strategy.informative_f`: accuracy penalised for the training it missed) in selection and
  pre-screening, and PSTRN's phase switch ranks pruned configurations after the completed ones
  (`PSTRN.ranked`), instead of counting them as failures;
- each generation breeds `prescreen` (default 5) times the children it needs and keeps the
  most promising: non-dominated sorting and crowding on the exact cost and an accuracy
  estimated from the nearest evaluated configurations (`prescreen=1` turns this off).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem

from ranksearch.pareto import rank_and_crowding_order
from ranksearch.strategies import sampling
from ranksearch.strategies.base import Proposal, StrategyError
from ranksearch.strategies.batch import BatchStrategy
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig


class Grid:
    """Candidate ranks per element; genome value i of element j means `candidates[j][i]`."""

    def __init__(self, candidates: Sequence[Sequence[int]]) -> None:
        self.candidates = tuple(tuple(int(v) for v in c) for c in candidates)
        self.xu = np.array([len(c) - 1 for c in self.candidates], dtype=float)

    def decode(self, x: Sequence[float]) -> RankConfig:
        return tuple(
            c[min(max(int(round(float(v))), 0), len(c) - 1)]
            for c, v in zip(self.candidates, x, strict=True)
        )

    def encode(self, ranks: Sequence[int]) -> np.ndarray:
        """Index of the candidate nearest each rank (the lower one on ties)."""
        return np.array([
            min(range(len(c)), key=lambda i, c=c, r=r: (abs(c[i] - r), c[i]))
            for c, r in zip(self.candidates, ranks, strict=True)
        ], dtype=float)


def centred_grid(values: Sequence[int], centre: int, step: int, count: int) -> tuple[int, ...]:
    """`count` candidates `step` apart around `centre`, kept inside the element's allowed values.

    The window slides rather than clips at a bound, so an element whose best values sit at the
    edge still gets `count` candidates there; each candidate snaps to the nearest allowed value.
    """
    lo, hi = values[0], values[-1]
    width = step * (count - 1)
    start = centre - width // 2
    start = max(lo, min(start, hi - width))
    raw = [start + k * step for k in range(count)]
    snapped = {min(values, key=lambda v, r=r: (abs(v - r), v)) for r in raw if lo - step < r < hi + step}
    return tuple(sorted(snapped))


@dataclass(frozen=True)
class EvolutionOptions(StrategyOptions):
    population: int = option(30, "NSGA-II population size", low=2)
    offspring: int | None = option(None, "children per generation (None: the population size)",
                                   low=1)
    crossover_prob: float = option(0.9, "two-point crossover probability", low=0, high=1)
    mutation_eta: float = option(3.0, "polynomial mutation's distribution index (larger: "
                                 "smaller steps)", low=0, low_open=True)
    mutation_prob: float | None = option(None, "per-element mutation probability (None: 1/n)",
                                         low=0, high=1)
    init: str = option("spread", "first population spread over the compression axis ('spread') "
                       "or uniform ('random')", choices=("spread", "random"))
    prescreen: int = option(5, "children bred per child kept, screened on exact cost and "
                            "estimated accuracy (1: off)", low=1)


@dataclass(frozen=True)
class PSTRNOptions(EvolutionOptions):
    steps: tuple[int, ...] = option((5, 2, 1), "grid step of each phase", low=1, min_len=1)
    candidates: int = option(5, "candidates per element in each phase's grid", low=2)
    boundaries: tuple[float, ...] = option(
        (0.5, 0.8), "phase switches as increasing fractions of the budget, one fewer than steps",
        low=0, high=1, low_open=True, high_open=True)
    top_k: int = option(5, "best configurations whose modes re-centre the grid at a switch",
                        low=1)
    centre: int | tuple[int, ...] | None = option(
        None, "first grid's centre: one rank, one per element, or None (start at the lower "
        "bound)", low=1)
    carry: bool = option(False, "seed each phase's GA with the previous population")

    def check(self, strategy: str) -> None:
        if len(self.boundaries) != len(self.steps) - 1 or list(self.boundaries) != sorted(
                self.boundaries):
            raise self.error(strategy, "boundaries", f"must be {len(self.steps) - 1} increasing "
                             "fractions of the budget in (0, 1), one per phase switch "
                             f"(steps has {len(self.steps)} phases)")


class _EvolutionBase(BatchStrategy):
    """NSGA-II generations over a `Grid`; subclasses decide the grid of each phase."""

    Options = EvolutionOptions
    opts: EvolutionOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        o = self.opts
        self.population = o.population
        self.offspring = o.population if o.offspring is None else o.offspring
        self.crossover_prob = o.crossover_prob
        self.mutation_eta = o.mutation_eta
        self.mutation_prob = o.mutation_prob
        self.init = o.init
        self.prescreen = o.prescreen
        self.generation = 0
        self.phase = 0
        self.grid: Grid | None = None
        self._algorithm: Any = None
        self._problem: Any = None
        self._gen_pop: Any = None
        self._gen_ranks: list[RankConfig] = []
        self._allow: set[RankConfig] = set()

    # -- pymoo plumbing -----------------------------------------------------------------------
    def _new_algorithm(self, grid: Grid, initial: np.ndarray | None) -> None:
        """A fresh NSGA-II on `grid`, seeded with `initial` genomes (or sampled ones)."""
        self.grid = grid
        n_obj = len(self.objectives)
        self._problem = Problem(n_var=self.n, n_obj=n_obj, xl=np.zeros(self.n), xu=grid.xu, vtype=int)
        sampling_: Any = IntegerRandomSampling() if initial is None else initial
        self._algorithm = NSGA2(
            pop_size=self.population,
            n_offsprings=self.offspring * self.prescreen,
            sampling=sampling_,
            crossover=TwoPointCrossover(prob=self.crossover_prob),
            mutation=PM(prob=1.0, prob_var=self.mutation_prob or 1.0 / self.n,
                        eta=self.mutation_eta, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=NoRevisit(self),
            repair=ConstraintRepair(self),
        )
        self._algorithm.setup(self._problem, termination=NoTermination())
        self._algorithm.random_state = self.rng  # one generator per strategy, no hidden seeds

    def _tell_generation(self) -> None:
        F = np.array([self._f_or_worst(r) for r in self._gen_ranks], dtype=float)
        Evaluator(skip_already_evaluated=False).eval(StaticProblem(self._problem, F=F), self._gen_pop)
        self._algorithm.tell(infills=self._gen_pop)
        self._gen_pop, self._gen_ranks = None, []

    def _f_or_worst(self, ranks: RankConfig) -> tuple[float, ...]:
        obs = self.known.get(ranks)
        if obs is not None:
            return self.informative_f(obs)  # a pruned member's partial result, penalised
        # never evaluated (budget ran out, or infeasible beyond repair): known cost, worst measured
        return self.worst_vector(ranks)

    # -- protocol hooks -----------------------------------------------------------------------
    def _next_batch(self, limit: int) -> Iterable[Proposal]:
        if self._gen_pop is not None:
            self._tell_generation()
            self.generation += 1
        self._before_generation()
        for _ in range(50):  # generations made only of known configurations cost nothing
            pop = self._algorithm.ask()
            self._allow.clear()
            if pop is None or len(pop) == 0:
                if not self._next_phase():
                    self.mark_exhausted()
                    return []
                continue
            if self.prescreen > 1 and self._algorithm.is_initialized:
                pop = self._screen(pop)
            ranks = [self.canon(self.grid.decode(x)) for x in pop.get("X")]
            self._gen_pop, self._gen_ranks = pop, ranks
            new = [r for r in dict.fromkeys(ranks) if r not in self.known and self.feasible(r)
                   and self.is_new(r)][:limit]
            # members asked before and still running (seeds in the first population): wait
            running = {r for r in ranks if r not in self.known and self.in_flight(r)}
            if new or running:
                self.wait_for(running)
                info = {"generation": self.generation, "phase": self.phase}
                return [Proposal(r, info) for r in new]
            self._tell_generation()
            self.generation += 1
        self.mark_exhausted()
        return []

    def _before_generation(self) -> None:
        """Hook run before each generation is bred (PSTRN switches phases here)."""

    def _seeds_on(self, grid: Grid) -> list[RankConfig]:
        """The seeds the grid can express exactly: they join the first population (the others
        are still evaluated first, and their results inform selection and phase switches)."""
        return [r for r in self.seeds if self.canon(grid.decode(grid.encode(r))) == r]

    def _next_phase(self) -> bool:
        """Move on when a phase can breed nothing new; False when there is nowhere to go."""
        return False

    def _initial_genomes(self, grid: Grid, carried: Sequence[RankConfig] = ()) -> np.ndarray | None:
        """The first population on `grid`: carried configurations, then spread or random ones."""
        chosen: list[RankConfig] = []
        for r in carried:
            cand = self.canon(grid.decode(grid.encode(r)))
            if cand not in chosen and self.feasible(cand):
                chosen.append(cand)
            if len(chosen) >= self.population:
                break
        self._allow = {r for r in chosen if not self.is_new(r)}
        missing = self.population - len(chosen)
        if missing > 0:
            if self.init == "spread":
                extra = sampling.spread(self, self.rng, missing, values=grid.candidates,
                                        accept=lambda r: self.is_new(r) and r not in chosen)
            else:
                extra = []
                for _ in range(missing * 20):
                    if len(extra) >= missing:
                        break
                    draw = self.canon(grid.decode(self.rng.integers(0, grid.xu + 1)))
                    cand = sampling.repair(self, draw, grid.candidates)
                    if cand is not None and self.is_new(cand) and cand not in chosen + extra:
                        extra.append(cand)
            chosen += extra
        if not chosen:
            return None
        return np.array([grid.encode(r) for r in chosen], dtype=float)

    # -- pre-screening ------------------------------------------------------------------------
    def _screen(self, pop: Any) -> Any:
        """Keep `offspring` of the bred children: best predicted fronts, spread by crowding.

        Accuracy is predicted from the nearest evaluated configurations (log-rank distance,
        inverse-distance weights); cost objectives are exact.
        """
        ranks = [self.canon(self.grid.decode(x)) for x in pop.get("X")]
        if len(ranks) <= self.offspring or len(self.known) < 3:
            return pop[: self.offspring]
        known = list(self.known)
        K = np.log(np.array(known, dtype=float))
        acc_idx = [i for i, o in enumerate(self.goals.items) if not o.is_cost]
        Fk = np.array([self.informative_f(self.known[r]) for r in known], dtype=float)
        C = np.log(np.array(ranks, dtype=float))
        d = np.sqrt(((C[:, None, :] - K[None, :, :]) ** 2).sum(axis=2)) + 1e-9
        k = min(5, len(known))
        nearest = np.argsort(d, axis=1)[:, :k]
        w = 1.0 / np.take_along_axis(d, nearest, axis=1)
        F = np.array([self.cost_vector(r) for r in ranks], dtype=float)
        for j in acc_idx:
            F[:, j] = (w * Fk[nearest, j]).sum(axis=1) / w.sum(axis=1)
        order = rank_and_crowding_order(F)
        return pop[np.sort(order[: self.offspring])]



class NoRevisit(DuplicateElimination):
    """Duplicates in rank space: within the batch, against `other`, and against the history."""

    def __init__(self, strategy: _EvolutionBase) -> None:
        super().__init__()
        self.strategy = strategy

    def _do(self, pop, other, is_duplicate):
        s = self.strategy
        ranks = [s.canon(s.grid.decode(x)) for x in pop.get("X")]
        if other is None:
            seen: set[RankConfig] = set()
            for i, r in enumerate(ranks):
                if r in seen or (r not in s._allow and (r in s.known or not s.is_new(r))):
                    is_duplicate[i] = True
                seen.add(r)
        else:
            others = {s.canon(s.grid.decode(x)) for x in other.get("X")}
            for i, r in enumerate(ranks):
                if r in others:
                    is_duplicate[i] = True
        return is_duplicate


class ConstraintRepair(Repair):
    """Lower genome values (largest parameter saving first) until the constraints hold."""

    def __init__(self, strategy: _EvolutionBase) -> None:
        super().__init__()
        self.strategy = strategy

    def _do(self, problem, X, **kwargs):
        s = self.strategy
        if s.max_params is None and s.min_compression is None:
            return X
        X = np.array(X, dtype=float)
        for row in X:
            ranks = s.grid.decode(row)
            if not s.feasible(ranks):
                fixed = sampling.repair(s, ranks, s.grid.candidates)
                if fixed is not None:
                    row[:] = s.grid.encode(fixed)
        return X


class NSGA2Search(_EvolutionBase):
    """Plain NSGA-II over every allowed value of every element (no progressive phases).

    The ablation PSTRN argues against: the same operators, initial population and
    pre-screening as `pstrn`, one phase on the full grid.
    """

    name = "nsga2"

    def _start(self) -> None:
        grid = Grid(self.values)
        self._new_algorithm(grid, self._initial_genomes(grid, self._seeds_on(grid)))


class PSTRN(_EvolutionBase):
    """Progressive NSGA-II: phases on ever finer grids re-centred on the best values so far.

    Defaults follow PSTRN's LeNet-5 search: three phases with steps 5, 2, 1 and 5 candidates per
    element; phase switches at 50% and 80% of the budget (1500 and 2400 of 3000); at a switch,
    each element's grid is re-centred on its most frequent value among the `top_k` best
    configurations evaluated so far (non-dominated rank, then crowding) and the GA restarts on
    it (`carry=True` seeds it with the previous population instead); population 30, 30
    children per generation. The first grid starts at each element's lower bound (rank =
    code * step + bias, as in PSTRN's {5, 10, ..., 25}); `centre` moves it.

    What PSTRN does not do and this adds (switch off with `init="random"`, `prescreen=1`):
    an initial population spread over the compression axis, and pre-screening of children.
    """

    name = "pstrn"
    Options = PSTRNOptions
    opts: PSTRNOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        o = self.opts
        centre = o.centre
        if isinstance(centre, tuple) and len(centre) != self.n_ranks:
            raise StrategyError(f"strategy '{self.name}': option 'centre' has {len(centre)} "
                                f"values; give one per rank element ({self.n_ranks}) or a single "
                                "integer")
        self.steps = o.steps
        self.candidates = o.candidates
        self.boundaries = o.boundaries
        self.top_k = o.top_k
        self.carry = o.carry
        if centre is None:  # the first grid starts at the lower bound: code * step + bias
            ranks = tuple(v[0] + self.steps[0] * (self.candidates - 1) // 2
                          for v in self.rank_values)
        elif isinstance(centre, int):
            ranks = tuple(centre for _ in self.rank_values)
        else:
            ranks = tuple(int(c) for c in centre)
        # a hyperparameter's first interest region is centred on its default's level
        self.centres = ranks + self.highest[self.n_ranks:]

    def phase_grid(self, centres: Sequence[int], step: int) -> Grid:
        grids = [centred_grid(v, c, step, self.candidates)
                 for v, c in zip(self.values[: self.n_ranks], centres, strict=False)]
        grids += [self._level_grid(p, v, c, step) for p, v, c in
                  zip(self.hyper.params if self.hyper else (), self.values[self.n_ranks:],
                      centres[self.n_ranks:], strict=True)]
        return Grid(grids)

    def _level_grid(self, param: Any, levels: Sequence[int], centre: int, step: int) -> tuple[int, ...]:
        """A hyperparameter's candidates in this phase. Rank steps (5, 2, 1) are in rank units
        and a hyperparameter has a handful of levels, so its steps are scaled to its own grid:
        the first phase spans every level (`candidates` of them, evenly spread), later phases
        narrow in proportion to the rank step, down to adjacent levels. A categorical has no
        order to narrow along (an interest region of optimizers is meaningless): all its
        choices stay in every phase."""
        if param.kind == "categorical":
            return tuple(levels)
        first = max(1, -(-(len(levels) - 1) // (self.candidates - 1)))  # ceil: span every level
        level_step = max(1, -(-first * step // self.steps[0]))
        return centred_grid(levels, centre, level_step, self.candidates)

    def _start(self) -> None:
        grid = self.phase_grid(self.centres, self.steps[0])
        self._new_algorithm(grid, self._initial_genomes(grid, self._seeds_on(grid)))

    def _before_generation(self) -> None:
        if (self.phase + 1 < len(self.steps)
                and self.n_asked >= self.boundaries[self.phase] * self.planned_budget):
            self._switch()

    def _next_phase(self) -> bool:
        if self.phase + 1 >= len(self.steps):
            return False
        self._switch()
        return True

    def ranked(self, configs: Sequence[RankConfig]) -> list[RankConfig]:
        """Best first: completed trials by non-dominated rank then crowding, then the pruned
        ones (partial results) ordered the same way by their partial objectives."""
        out: list[RankConfig] = []
        for group in ([r for r in configs if not self.is_partial(self.known[r])],
                      [r for r in configs if self.is_partial(self.known[r])]):
            if group:
                F = np.array([self.known[r].f for r in group], dtype=float)
                out += [group[i] for i in rank_and_crowding_order(F)]
        return out

    def _switch(self) -> None:
        """Re-centre every element on its mode among the top-k, narrow the step, restart the GA."""
        self.phase += 1
        known = list(self.known)
        if known:
            top = self.ranked(known)[: self.top_k]
            self.centres = tuple(
                _mode([r[j] for r in top], prefer=self.centres[j]) for j in range(self.n)
            )
        grid = self.phase_grid(self.centres, self.steps[self.phase])
        carried: list[RankConfig] = []
        if self.carry and self._algorithm is not None and self._algorithm.pop is not None:
            carried = [self.canon(self.grid.decode(x)) for x in self._algorithm.pop.get("X")]
        self._new_algorithm(grid, self._initial_genomes(grid, carried))


def _mode(values: list[int], *, prefer: int) -> int:
    """Most frequent value; ties go to the one nearest `prefer`, then the smaller."""
    counts = Counter(values)
    top = max(counts.values())
    return min((v for v, c in counts.items() if c == top), key=lambda v: (abs(v - prefer), v))
