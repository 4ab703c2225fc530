"""Multi-fidelity benchmark: each strategy with FIFO and with MO-ASHA at equal training cost.

    ranksearch bench fidelity [SPACE.yaml|digits|fashion] --budget 308ep --seeds 5 --jobs 2
    ranksearch bench fidelity fashion --subset 3000 --epochs 6 --seeds 5 --jobs 2

Every (strategy, scheduler, seed) run spends the same budget of full-epoch equivalents (passes
over the dataset's full training set) through one loop: the strategy proposes while the next
trial, run to its full budget, still fits (`ranksearch.budget.CostLimit`, the rule a real search
uses); `workers` trials are in flight; after each epoch the scheduler says whether the trial
goes on; a finished or stopped trial is told back (status "ok" or "pruned", as the Searcher
adapter tells it). Schedulers:

- `fifo`: every trial runs to its full budget;
- `mo_asha`: ranksearch's `RungLedger` (non-dominated sorting, ties by hypervolume
  contribution), with the space's `scheduler:` settings or `--grace` / `--eta`;
- `syne_moasha`: Syne Tune's MOASHA (non-dominated sorting with an epsilon-net) at the same
  rungs, as a reference; it needs `pip install --no-deps syne-tune` (its scheduler imports
  only numpy and pandas; the full package would pull xgboost and statsmodels).

Training is real (`ranksearch.training.train_config`) but each configuration is trained once
per benchmark and shared by every run that proposes it: its learning curve is extended epoch by
epoch on demand, resuming exactly from a per-configuration checkpoint, so a run that stops a
trial at epoch 2 pays 2 epochs and a later run that takes it to epoch 8 reuses them. Time is
simulated (one epoch = one time unit per worker), which keeps the comparison about cost, not
about how loaded the machine was. The curves use the space's training seed; the bench seed
drives the strategy (and Syne Tune's scheduler).

Hypervolume is that of the completed trials' front (pruned ones never enter it) in the
(validation accuracy, log10 compression) plane from the space's reference point, recorded
against full-epoch equivalents consumed. Reported per (strategy, scheduler): the median and
spread over seeds at every 10% of the budget, trials run and stopped, and the cost at which a
run first reaches 99% of FIFO's final hypervolume (same strategy and seed) as a fraction of
what FIFO spent.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.budget import (
    Budget,
    BudgetError,
    CostLimit,
    expected_epochs,
    parse_budget,
    plan_more,
    trials_for,
)
from ranksearch.errors import RanksearchError
from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

SCHEDULERS = ("fifo", "mo_asha", "syne_moasha")
STRATEGIES = ("random", "bayes", "pstrn")
CHECKPOINTS = 10
SPACE_ALIASES = {"digits": "quickstart_digits.yaml", "fashion": "pstrn_lenet5_fashion.yaml"}


class FidelityBenchError(RanksearchError):
    """A benchmark setting that cannot be run; the message names it and says what to change."""


# -- learning curves --------------------------------------------------------------------------------
class Curves:
    """Per-configuration validation accuracy after each epoch, trained on demand and shared.

    `accuracy(ranks, epoch)` trains the configuration up to `epoch` (resuming from its checkpoint
    under `workdir`), so no epoch of any configuration is trained twice in one benchmark. A run
    that fails yields NaN from the epoch it failed at.
    """

    def __init__(self, space: SearchSpace, workdir: str | Path, *, threads: int | None = 1) -> None:
        from ranksearch.training import get_splits

        self.space = space
        self.workdir = Path(workdir)
        self.threads = threads
        self.splits = get_splits(space)
        self.max_epochs = int(space.config.training.epochs)
        self._curves: dict[tuple[int, ...], list[float]] = {}
        self._failed: set[tuple[int, ...]] = set()
        self.epochs_trained = 0
        self.seconds = 0.0

    def accuracy(self, ranks: Sequence[int], epoch: int, *, ahead: int | None = None) -> float:
        """Validation accuracy after `epoch`; when training is needed it goes on to `ahead`
        (the scheduler's next decision point) in one call, which saves a resume per epoch."""
        key = tuple(int(r) for r in ranks)
        if len(self._curves.setdefault(key, [])) < epoch and key not in self._failed:
            self._train(key, max(epoch, ahead or epoch))
        curve = self._curves[key]
        return curve[epoch - 1] if len(curve) >= epoch else math.nan

    def _train(self, key: tuple[int, ...], epoch: int) -> None:
        from ranksearch.training import train_config

        folder = self.workdir / "-".join(map(str, key))
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        out = train_config(self.space, key, splits=self.splits, checkpoint_dir=folder,
                           max_epochs=min(epoch, self.max_epochs), measure_latency=False,
                           num_threads=self.threads)
        self.seconds += time.perf_counter() - t0
        before = len(self._curves[key])
        self._curves[key] = [float(h.get("val_accuracy", math.nan)) for h in out.history]
        self.epochs_trained += max(0, len(self._curves[key]) - before)
        if out.status == "failed":
            self._failed.add(key)


# -- schedulers (stopping rules inside the loop) ---------------------------------------------------
class _Fifo:
    name = "fifo"
    milestones: tuple[int, ...] = ()
    eta = 0

    def add(self, trial_id: str) -> None:
        pass

    def go_on(self, trial_id: str, epoch: int, vector: list[float]) -> bool:
        return True


class _MoAsha:
    """ranksearch's MO-ASHA rule (`RungLedger`), as the Tune scheduler applies it."""

    name = "mo_asha"

    def __init__(self, space: SearchSpace, *, grace: int, eta: int, seed: int) -> None:
        from ranksearch.tune.scheduler import RungLedger, rung_reference

        self.ledger = RungLedger(grace_epochs=grace, reduction_factor=eta,
                                 max_epochs=int(space.config.training.epochs), reference=rung_reference(space))
        self.milestones, self.eta = self.ledger.milestones, eta

    def add(self, trial_id: str) -> None:
        pass

    def go_on(self, trial_id: str, epoch: int, vector: list[float]) -> bool:
        return self.ledger.decide(trial_id, epoch, vector)


class _SyneMoasha:
    """Syne Tune's MOASHA (one bracket, its default non-dominated priority) at the same rungs."""

    name = "syne_moasha"

    def __init__(self, space: SearchSpace, *, grace: int, eta: int, seed: int) -> None:
        from ranksearch.tune.scheduler import rung_epochs

        try:
            from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
        except ImportError as exc:
            raise FidelityBenchError(
                f"the syne_moasha scheduler needs Syne Tune ({exc}): pip install --no-deps 'syne-tune>=0.16' "
                "(the `syne` extra), or leave syne_moasha out of --schedulers") from None
        max_epochs = int(space.config.training.epochs)
        self.n_objectives = len([o for o in space.objectives if o.name != "latency"])
        self.metrics = [f"objective{i}" for i in range(self.n_objectives)]
        self.scheduler = MOASHA({}, metrics=self.metrics, do_minimize=True, time_attr="epoch",
                                max_t=max_epochs, grace_period=grace, reduction_factor=eta, random_seed=seed)
        self.milestones, self.eta = rung_epochs(grace, eta, max_epochs), eta
        self._trials: dict[str, Any] = {}

    def add(self, trial_id: str) -> None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial

        trial = Trial(trial_id=len(self._trials), config={}, creation_time=datetime.now())
        self._trials[trial_id] = trial
        self.scheduler.on_trial_add(trial)

    def go_on(self, trial_id: str, epoch: int, vector: list[float]) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        big = 1e9  # Syne Tune's sort needs finite values; a missing accuracy ranks last
        result = {"epoch": epoch, **{m: (v if math.isfinite(v) else big) for m, v in zip(self.metrics, vector, strict=True)}}
        return self.scheduler.on_trial_result(self._trials[trial_id], result) == SchedulerDecision.CONTINUE


def make_rule(name: str, space: SearchSpace, *, grace: int, eta: int, seed: int) -> Any:
    if name == "fifo":
        return _Fifo()
    if name == "mo_asha":
        return _MoAsha(space, grace=grace, eta=eta, seed=seed)
    if name == "syne_moasha":
        return _SyneMoasha(space, grace=grace, eta=eta, seed=seed)
    raise FidelityBenchError(f"unknown scheduler '{name}'; valid: {', '.join(SCHEDULERS)}")


# -- one run ----------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One (strategy, scheduler, seed): hypervolume against full-epoch equivalents consumed."""

    strategy: str
    scheduler: str
    seed: int
    budget_epochs: float
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epochs consumed, hv)
    trials: int = 0
    pruned: int = 0
    failed: int = 0
    spent_epochs: float = 0.0
    front_size: int = 0
    error: str | None = None

    @property
    def final(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0

    def hv_at(self, epochs: float) -> float:
        """The hypervolume once `epochs` full-epoch equivalents had been consumed."""
        hv = 0.0
        for spent, value in self.curve:
            if spent > epochs + 1e-9:
                break
            hv = value
        return hv

    def epochs_to(self, target: float) -> float | None:
        """Full-epoch equivalents consumed when the hypervolume first reached `target`."""
        return next((spent for spent, value in self.curve if value >= target - 1e-12), None)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "scheduler": self.scheduler, "seed": self.seed,
                "budget_epochs": self.budget_epochs, "trials": self.trials, "pruned": self.pruned,
                "failed": self.failed, "spent_epochs": round(self.spent_epochs, 4),
                "front_size": self.front_size, "final_hypervolume": self.final, "error": self.error,
                "curve": [[round(s, 4), v] for s, v in self.curve]}


@dataclass
class _Running:
    trial_id: str
    ranks: tuple[int, ...]
    order: int
    epoch: int = 0
    best: float = -math.inf
    due: float = 0.0
    costs: dict[str, float] = field(default_factory=dict)


def run_one(space: SearchSpace, strategy_name: str, scheduler: str, seed: int, budget: Budget,
            curves: Curves, *, workers: int = 2, grace: int = 1, eta: int = 3,
            options: dict[str, Any] | None = None) -> RunRecord:
    """One search on learning curves: propose while the next full trial fits the budget, run
    `workers` trials side by side (one simulated time unit per epoch), let the scheduler stop
    trials at its rungs, tell each outcome to the strategy."""
    from ranksearch.archive import FrontArchive
    from ranksearch.objectives import COST_OBJECTIVES
    from ranksearch.strategies import get
    from ranksearch.strategies import options as strategy_options
    from ranksearch.training import full_train_size, trial_samples
    from ranksearch.tune.scheduler import objective_vector
    from ranksearch.tune.searcher import cost_metrics

    max_epochs = curves.max_epochs
    per_trial = float(trial_samples(space))
    per_epoch = per_trial / max_epochs
    n_full = full_train_size(space)
    rule = make_rule(scheduler, space, grace=grace, eta=eta, seed=seed)
    fraction = expected_epochs(max_epochs, rule.milestones, rule.eta) / max_epochs
    planned = trials_for(budget, trial_samples=per_trial, n_train_full=n_full, expected_fraction=fraction)
    opts = dict(options or {})
    if "budget" in strategy_options(strategy_name):
        opts.setdefault("budget", planned)
    strategy = get(strategy_name, space, seed=seed, **opts)
    limit = CostLimit(budget.samples(n_full), per_trial, expected_fraction=fraction)
    archive = FrontArchive.for_space(space, keep_history=False)
    needed = tuple(o.name for o in space.objectives if o.name in COST_OBJECTIVES)
    record = RunRecord(strategy_name, scheduler, seed, budget.samples(n_full) / n_full)
    running: dict[str, _Running] = {}
    clock, consumed, started = 0.0, 0.0, 0
    blocked = False  # the strategy waits for results (a batch strategy between batches)
    while True:
        while len(running) < workers and not blocked:
            seen = [r.epoch * per_epoch for r in running.values()]
            plan_more(strategy, limit, seen)  # the planned count was an estimate: spend the budget
            if strategy.is_finished() or not limit.allows(seen):
                break
            ranks = strategy.ask()
            if ranks is None:
                blocked = True
                break
            tid = f"{strategy_name}-{scheduler}-{seed}-{started}"
            key = tuple(int(r) for r in ranks)
            running[tid] = _Running(tid, key, started, due=clock + 1.0,
                                    costs=cost_metrics(space, key, names=needed) if needed else {})
            rule.add(tid)
            started += 1
        if not running:
            break
        trial = min(running.values(), key=lambda r: (r.due, r.order))
        clock = trial.due
        trial.epoch += 1
        consumed += per_epoch
        ahead = next((m for m in rule.milestones if m >= trial.epoch), max_epochs)
        acc = curves.accuracy(trial.ranks, trial.epoch, ahead=ahead)
        costs = trial.costs
        if math.isfinite(acc):
            trial.best = max(trial.best, acc)
            vector = objective_vector(space, trial.ranks, {"epoch": trial.epoch, "best_val_accuracy": trial.best},
                                      costs)
            go = trial.epoch < max_epochs and rule.go_on(trial.trial_id, trial.epoch, vector)
        else:
            go = False
        if go:
            trial.due = clock + 1.0
        else:
            del running[trial.trial_id]
            status = ("failed" if not math.isfinite(acc)
                      else "ok" if trial.epoch >= max_epochs else "pruned")
            metrics = {**costs, "samples_seen": trial.epoch * per_epoch}
            if math.isfinite(trial.best):
                metrics["val_accuracy"] = trial.best
            result = TrialResult(ranks=trial.ranks, status=status, metrics=metrics, fidelity=float(trial.epoch),
                                 error="training failed" if status == "failed" else None)
            strategy.tell(trial.trial_id, result)
            limit.finish(trial.epoch * per_epoch)
            blocked = False
            record.trials += 1
            record.pruned += status == "pruned"
            record.failed += status == "failed"
            archive.insert(trial.trial_id, result)
        record.curve.append((consumed / n_full, archive.hypervolume))
    record.spent_epochs = consumed / n_full
    record.front_size = len(archive.front_ids())
    return record


# -- the benchmark ----------------------------------------------------------------------------------
@dataclass
class Summary:
    """One (strategy, scheduler) over seeds: median, low and high at each budget checkpoint."""

    strategy: str
    scheduler: str
    checkpoints: list[float]  # full-epoch equivalents
    median: list[float]
    low: list[float]
    high: list[float]
    trials: float
    pruned: float
    spent_epochs: float
    #: per seed, epochs this run needed to reach 99% of FIFO's final hypervolume (same strategy
    #: and seed) over the epochs FIFO spent; None where it never got there
    to_99: list[float | None]
    #: per seed, the final hypervolume over FIFO's (same strategy and seed)
    vs_fifo: list[float | None]

    @property
    def to_99_median(self) -> float | None:
        vals = [v if v is not None else math.inf for v in self.to_99]
        if not vals:
            return None
        m = statistics.median(vals)
        return None if math.isinf(m) else m

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "to_99_median": self.to_99_median}


def summarise(records: Sequence[RunRecord], budget_epochs: float) -> list[Summary]:
    marks = [budget_epochs * k / CHECKPOINTS for k in range(1, CHECKPOINTS + 1)]
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.strategy, rec.scheduler), []).append(rec)
    out = []
    for (strategy, scheduler), recs in groups.items():
        fifo = {r.seed: r for r in groups.get((strategy, "fifo"), [])}
        cols = [[r.hv_at(m) for r in recs] for m in marks]
        to_99: list[float | None] = []
        vs_fifo: list[float | None] = []
        for r in recs:
            base = fifo.get(r.seed)
            if base is None or base.final <= 0:
                to_99.append(None)
                vs_fifo.append(None)
                continue
            reached = r.epochs_to(0.99 * base.final)
            to_99.append(None if reached is None else reached / base.spent_epochs)
            vs_fifo.append(r.final / base.final)
        out.append(Summary(strategy, scheduler, marks, [statistics.median(c) for c in cols],
                           [min(c) for c in cols], [max(c) for c in cols],
                           statistics.median(r.trials for r in recs), statistics.median(r.pruned for r in recs),
                           statistics.median(r.spent_epochs for r in recs), to_99, vs_fifo))
    return out


def prepare_space(space_arg: str | Path, *, epochs: int | None = None, subset: float | None = None) -> SearchSpace:
    """The benchmark's space: a file, or `digits` / `fashion` (the shipped spaces), with the
    per-trial epochs and training subset overridden when given."""
    from ranksearch.resources import resolve_space_path
    from ranksearch.space import load_space

    path = resolve_space_path(SPACE_ALIASES.get(str(space_arg), str(space_arg)))
    space = load_space(path)
    if epochs is None and subset is None:
        return space
    data = space.to_dict()
    if epochs is not None:
        if epochs < 1:
            raise FidelityBenchError(f"--epochs {epochs}: give at least 1 epoch per trial")
        data["training"]["epochs"] = int(epochs)
        data["training"].pop("steps", None)
    if subset is not None:
        data["training"]["subset"] = subset
    return type(space).from_dict(data, source=str(path))


def _run_seed(space: SearchSpace, seed: int, budget: Budget, *, strategies: Sequence[str],
              schedulers: Sequence[str], workers: int, grace: int, eta: int, workdir: str | Path | None,
              progress: Callable[[str], Any] | None = None) -> tuple[list[RunRecord], int, float]:
    """Every (strategy, scheduler) of one seed on one set of shared curves; returns the records,
    the configuration-epochs trained and the seconds spent training."""
    records: list[RunRecord] = []
    with tempfile.TemporaryDirectory(prefix="rs-fidelity-") as tmp:
        curves = Curves(space, workdir or tmp)
        for strategy in strategies:
            for scheduler in schedulers:
                rec = run_one(space, strategy, scheduler, seed, budget, curves, workers=workers,
                              grace=grace, eta=eta)
                records.append(rec)
                if progress:
                    progress(f"{strategy:>7} {scheduler:<12} seed {seed}: hv {rec.final:.4f} after "
                             f"{rec.spent_epochs:.1f} ep ({rec.trials} trials, {rec.pruned} stopped)")
    return records, curves.epochs_trained, curves.seconds


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(space: SearchSpace, *, budget: str | Budget, seeds: int = 5,
                  strategies: Sequence[str] = STRATEGIES, schedulers: Sequence[str] = SCHEDULERS,
                  workers: int | None = None, grace: int | None = None, eta: int | None = None,
                  workdir: str | Path | None = None, jobs: int = 1,
                  progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Every (strategy, scheduler, seed) at the same budget; returns a JSON-able report.

    `jobs` > 1 runs that many seeds at once in worker processes, each with its own curves (the
    runs of one seed share most configurations, different seeds few, so little training is
    repeated; a configuration's curve does not depend on which process trained it)."""
    from ranksearch.strategies import available
    from ranksearch.training import full_train_size

    try:
        parsed = parse_budget(budget, what="--budget")
    except BudgetError as exc:
        raise FidelityBenchError(str(exc)) from None
    if not parsed.is_cost:
        raise FidelityBenchError(f"--budget {budget}: the comparison is at equal training cost; give full-epoch "
                                 "equivalents (96ep) or training samples (2e5 samples), not trials")
    if space.config.training.epochs is None:
        raise FidelityBenchError(f"{space.source}: training.steps is set; the benchmark counts epochs "
                                 "(set training.epochs or pass --epochs)")
    unknown = [s for s in strategies if s not in available()]
    if unknown:
        raise FidelityBenchError(f"unknown strategies {unknown}; valid: {', '.join(available())}")
    bad = [s for s in schedulers if s not in SCHEDULERS]
    if bad:
        raise FidelityBenchError(f"unknown schedulers {bad}; valid: {', '.join(SCHEDULERS)}")
    if seeds < 1:
        raise FidelityBenchError(f"--seeds {seeds}: give at least 1")
    spec = space.config.scheduler
    grace = grace if grace is not None else (spec.grace_epochs if spec and spec.name == "mo_asha" else 1)
    eta = eta if eta is not None else (spec.reduction_factor if spec and spec.name == "mo_asha" else 3)
    workers = workers or space.config.resources.max_concurrent
    budget_epochs = parsed.samples(full_train_size(space)) / full_train_size(space)
    if jobs < 1:
        raise FidelityBenchError(f"--jobs {jobs}: give at least 1")
    t0 = time.perf_counter()
    kwargs = {"strategies": list(strategies), "schedulers": list(schedulers), "workers": workers,
              "grace": grace, "eta": eta}
    records: list[RunRecord] = []
    epochs_trained, train_seconds = 0, 0.0
    if jobs == 1:
        results = [_run_seed(space, seed, parsed, **kwargs, workdir=workdir, progress=progress)
                   for seed in range(seeds)]
    else:
        from ranksearch.bench.pool import worker_pool

        with worker_pool(min(jobs, seeds)) as pool:
            futures = [pool.submit(_run_seed, space, seed, parsed, **kwargs,
                                   workdir=Path(workdir) / f"seed-{seed}" if workdir else None,
                                   progress=_to_stderr if progress else None)  # a worker reports to its stderr
                       for seed in range(seeds)]
            results = [f.result() for f in futures]
    for seed_records, trained, seconds in results:
        records.extend(seed_records)
        epochs_trained += trained
        train_seconds += seconds
    summaries = summarise(records, budget_epochs)
    return {
        "space": space.name, "budget": str(parsed), "budget_epochs": budget_epochs,
        "max_epochs": int(space.config.training.epochs), "subset": space.config.training.subset,
        "grace": grace, "eta": eta, "workers": workers, "seeds": seeds,
        "reference": list(space.config.hypervolume.reference),
        "jobs": jobs, "epochs_trained": epochs_trained, "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "summaries": [s.to_dict() for s in summaries], "runs": [r.to_dict() for r in records],
    }


def format_report(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "never" if v is None else f"{v:.0%}"

    lines = [f"{report['space']}: budget {report['budget']} ({report['budget_epochs']:.1f} full-epoch "
             f"equivalents), {report['max_epochs']} epochs per trial, rungs grace {report['grace']} eta "
             f"{report['eta']}, {report['workers']} workers, {report['seeds']} seeds",
             f"{'strategy':>8} {'scheduler':<12} {'hv@30%':>7} {'hv@50%':>7} {'hv@100%':>21} {'trials':>6} "
             f"{'stopped':>7} {'vs FIFO':>7} {'99% of FIFO at':>14}"]
    third, half = round(0.3 * CHECKPOINTS) - 1, CHECKPOINTS // 2 - 1  # checkpoint indices of 30%, 50%
    for s in report["summaries"]:
        vs = [v for v in s["vs_fifo"] if v is not None]
        lines.append(
            f"{s['strategy']:>8} {s['scheduler']:<12} {s['median'][third]:>7.4f} {s['median'][half]:>7.4f} "
            f"{s['median'][-1]:>7.4f} [{s['low'][-1]:.4f}-{s['high'][-1]:.4f}] {s['trials']:>6g} "
            f"{s['pruned']:>7g} {(statistics.median(vs) if vs else math.nan):>7.3f} "
            f"{pct(s['to_99_median']):>14}")
    lines.append("hv: median [min-max] over seeds; 'vs FIFO': median of final hv / FIFO's (same strategy, seed); "
                 "'99% of FIFO at': median epochs to reach 99% of FIFO's final hv, over FIFO's epochs.")
    lines.append(f"trained {report['epochs_trained']} configuration-epochs in {report['train_seconds']} s "
                 f"(shared by all runs); total {report['seconds']} s")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | Path) -> None:
    """Median hypervolume against full-epoch equivalents, one line per (strategy, scheduler)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"fifo": "-", "mo_asha": "--", "syne_moasha": ":"}
    for s in report["summaries"]:
        line, = ax.plot(s["checkpoints"], s["median"], styles.get(s["scheduler"], "-"),
                        label=f"{s['strategy']} {s['scheduler']}")
        ax.fill_between(s["checkpoints"], s["low"], s["high"], color=line.get_color(), alpha=0.12)
    ax.set_xlabel("full-epoch equivalents consumed")
    ax.set_ylabel("hypervolume (accuracy, log10 compression)")
    ax.set_title(f"{report['space']}: median and range over {report['seeds']} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ranksearch bench fidelity", description=__doc__.split("\n")[0])
    parser.add_argument("space", nargs="?", default="digits",
                        help="a space file, or digits / fashion (the shipped spaces); default digits")
    parser.add_argument("--budget", default=None,
                        help="training cost per run: full-epoch equivalents (96ep) or samples (2e5 samples); "
                             "default: what 12 FIFO trials cost")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    parser.add_argument("--workers", type=int, default=None, help="trials in flight (default: the space's)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run at once, one process each (default: %(default)s; 2 on a 2-core machine)")
    parser.add_argument("--grace", type=int, default=None, help="first rung, in epochs (default: the space's or 1)")
    parser.add_argument("--eta", type=int, default=None, help="reduction factor (default: the space's or 3)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the space's)")
    parser.add_argument("--subset", type=float, default=None,
                        help="train on this many training images (a fraction when < 1)")
    parser.add_argument("--out", default="bench-fidelity", help="folder for fidelity.json and fidelity.png")
    args = parser.parse_args(argv)
    try:
        space = prepare_space(args.space, epochs=args.epochs, subset=args.subset)
        budget = args.budget
        if budget is None:
            from ranksearch.training import full_train_size, trial_samples

            budget = f"{12 * trial_samples(space) / full_train_size(space):.4g}ep"
        report = run_benchmark(space, budget=budget, seeds=args.seeds,
                               strategies=[s for s in args.strategies.split(",") if s],
                               schedulers=[s for s in args.schedulers.split(",") if s],
                               workers=args.workers, grace=args.grace, eta=args.eta, jobs=args.jobs,
                               progress=_to_stderr)
    except (RanksearchError, ValueError) as exc:
        print(f"ranksearch bench fidelity: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "fidelity.png")
    print(format_report(report))
    print(f"wrote {out / 'fidelity.json'} and {out / 'fidelity.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
