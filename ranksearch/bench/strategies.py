"""Strategy benchmark: every strategy on the same work, compared by hypervolume.

    ranksearch bench strategies SPACE.yaml --evaluator synthetic --budget 300 --seeds 5
    python -m ranksearch.bench.strategies SPACE.yaml --evaluator train --budget 40 --seeds 2

Each (strategy, seed) run asks and tells through the ordinary strategy interface, without Ray,
keeping `workers` configurations in flight like the search service does. Hypervolume is taken
in the (validation accuracy, log10 compression ratio) plane, both maximised, from the space's
reference point (`hypervolume.reference`, default (0.5, 0)), after every 10% of the budget.
Reported per strategy: the median and spread over seeds at each checkpoint, the final front
size, and the ratio of the median final hypervolume to random search's. A PNG plot of
hypervolume against evaluations is written next to a JSON copy of every number.

Evaluators:
- `synthetic`: a cheap, seeded landscape. Accuracy rises with every rank element with
  diminishing returns (a power law), each element and layer with its own sensitivity, plus
  per-configuration noise; the cost is the space's exact parameter count.
- `train`: trains each configuration for the space's per-trial budget with
  `ranksearch.training.train_config`, one after another; results are cached per
  configuration, so strategies that meet the same configuration share its training.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranksearch.errors import RanksearchError
from ranksearch.pareto import plane_hypervolume
from ranksearch.trial import RankConfig, TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

REFERENCE_STRATEGY = "random"
CHECKPOINTS = 10  # hypervolume after every 10% of the budget


# -- evaluators -----------------------------------------------------------------------------------
class SyntheticEvaluator:
    """A seeded accuracy landscape over rank vectors, with exact parameter counts.

    accuracy = floor + (ceiling - floor) * exp(-D),   D = scale * sum_i s_i * r_i ** -alpha

    The sensitivities s_i (a per-layer factor times a per-element factor, summing to 1) and the
    landscape are fixed by `landscape_seed` (the space's seed by default); the noise, drawn per
    configuration, by `seed`. With the defaults an equal rank of 2 scores about 0.72, 4 about
    0.84, 10 about 0.90 and 30 about 0.915, like TR-LeNet-5 on Fashion-MNIST.
    """

    kind = "synthetic"

    def __init__(self, space: SearchSpace, *, seed: int = 0, landscape_seed: int | None = None,
                 ceiling: float = 0.92, floor: float | None = None, alpha: float = 1.5,
                 scale: float = 0.79, spread: float = 0.6, noise: float = 0.004) -> None:
        self.space = space
        self.seed = int(seed)
        rng = np.random.default_rng(space.seed if landscape_seed is None else landscape_seed)
        layer_of = [e.members[0][0] if e.members else e.name for e in space.elements]
        layers = list(dict.fromkeys(layer_of))
        layer_w = dict(zip(layers, rng.lognormal(0.0, spread, len(layers)), strict=True))
        s = np.array([layer_w[name] for name in layer_of]) * rng.lognormal(0.0, spread, len(layer_of))
        self.sensitivity = s / s.sum()
        self.alpha = float(alpha)
        self.scale = float(scale)
        self.ceiling = float(ceiling)
        classes = getattr(space, "num_classes", 10)
        self.floor = 1.0 / classes if floor is None else float(floor)
        self.noise = float(noise)
        training = space.config.training
        self.fidelity = float(training.epochs or training.steps or 1)
        self.fidelity_unit = "epochs" if training.epochs else "steps"
        self._params: dict[RankConfig, int] = {}

    def accuracy(self, ranks: Sequence[int]) -> float:
        """Noise-free accuracy of a configuration."""
        r = np.asarray(ranks, dtype=float)
        deficit = self.scale * float(np.sum(self.sensitivity * r ** -self.alpha))
        return self.floor + (self.ceiling - self.floor) * math.exp(-deficit)

    def params(self, ranks: RankConfig) -> int:
        p = self._params.get(ranks)
        if p is None:
            from ranksearch.space import count_params

            p = self._params[ranks] = int(count_params(self.space, ranks))
        return p

    def __call__(self, ranks: Sequence[int]) -> TrialResult:
        key = tuple(int(r) for r in ranks)
        rng = np.random.default_rng([self.seed, *key])
        acc = min(max(self.accuracy(key) + rng.normal(0.0, self.noise), 0.0), 1.0)
        params = self.params(key)
        return TrialResult(
            ranks=key, status="ok",
            metrics={"val_accuracy": acc, "params": float(params),
                     "compression_ratio": self.space.dense_params / params},
            fidelity=self.fidelity, fidelity_unit=self.fidelity_unit,
        )


class TrainEvaluator:
    """Trains each configuration for the space's short budget (sequentially, cached).

    Training runs with `threads` torch threads (1 by default, restored afterwards): these small
    models train several times faster single-threaded on a busy 2-core machine.
    """

    kind = "train"

    def __init__(self, space: SearchSpace, *, seed: int = 0, device: str = "cpu",
                 threads: int | None = 1) -> None:
        from ranksearch.training import get_splits

        self.space = space
        self.device = device
        self.threads = threads
        self.splits = get_splits(space)
        self._cache: dict[RankConfig, TrialResult] = {}

    def __call__(self, ranks: Sequence[int]) -> TrialResult:
        key = tuple(int(r) for r in ranks)
        if key not in self._cache:
            import torch

            from ranksearch.training import train_config

            before = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                out = train_config(self.space, key, splits=self.splits, device=self.device,
                                   measure_latency=False)
            finally:
                torch.set_num_threads(before)
            status = "ok" if out.status == "ok" else "failed"
            self._cache[key] = TrialResult(
                ranks=key, status=status,
                metrics={"val_accuracy": float(out.val_accuracy), "params": float(out.params),
                         "compression_ratio": self.space.dense_params / out.params},
                fidelity=float(out.epochs_done), fidelity_unit="epochs", error=out.error,
                info={"samples_seen": out.samples_seen, "train_seconds": out.train_seconds},
            )
        return self._cache[key]


EVALUATORS: dict[str, Callable[..., Any]] = {"synthetic": SyntheticEvaluator, "train": TrainEvaluator}


# -- one run --------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One strategy on one seed: the hypervolume curve and what it cost."""

    strategy: str
    seed: int
    checkpoints: list[int]
    hypervolume: list[float]
    evaluations: int
    front_size: int
    strategy_seconds: float
    eval_seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def final(self) -> float:
        return self.hypervolume[-1] if self.hypervolume else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "seed": self.seed, "checkpoints": self.checkpoints,
            "hypervolume": self.hypervolume, "evaluations": self.evaluations,
            "front_size": self.front_size, "strategy_seconds": round(self.strategy_seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3),
            "curve": [list(p) for p in self.curve], "error": self.error,
        }


def checkpoints_for(budget: int, n: int = CHECKPOINTS) -> list[int]:
    return [max(1, math.ceil(budget * k / n)) for k in range(1, n + 1)]


def run_strategy(space: SearchSpace, name: str, evaluator: Callable[[RankConfig], TrialResult], *,
                 budget: int, seed: int, workers: int = 1,
                 options: dict[str, Any] | None = None) -> RunRecord:
    """Run one strategy to its budget with `workers` configurations in flight at a time."""
    from ranksearch.strategies import get

    reference = tuple(space.config.hypervolume.reference)
    marks = checkpoints_for(budget)
    strategy = get(name, space, seed=seed, budget=budget, **(options or {}))
    front = _Front(reference)
    hv_marks: list[float] = []
    curve: list[tuple[int, float]] = []
    n_done = 0
    t_strategy = t_eval = 0.0
    while n_done < budget:
        t0 = time.perf_counter()
        batch: list[RankConfig] = []
        while len(batch) < workers:
            ranks = strategy.ask()
            if ranks is None:
                break
            batch.append(ranks)
        t_strategy += time.perf_counter() - t0
        if not batch:
            break  # finished (budget or exhausted space): nothing is in flight here
        for ranks in batch:
            t1 = time.perf_counter()
            result = evaluator(ranks)
            t_eval += time.perf_counter() - t1
            t2 = time.perf_counter()
            strategy.tell(f"{name}-{seed}-{n_done}", result)
            t_strategy += time.perf_counter() - t2
            n_done += 1
            if result.ok:
                front.add(result.value("val_accuracy"), result.value("compression_ratio"))
            curve.append((n_done, front.hypervolume))
            while len(hv_marks) < len(marks) and n_done >= marks[len(hv_marks)]:
                hv_marks.append(front.hypervolume)
    hv_marks += [front.hypervolume] * (len(marks) - len(hv_marks))
    return RunRecord(
        strategy=name, seed=seed, checkpoints=marks, hypervolume=hv_marks, evaluations=n_done,
        front_size=len(front.points), strategy_seconds=t_strategy, eval_seconds=t_eval,
        curve=curve,
    )


class _Front:
    """The running non-dominated set in the accuracy / compression plane and its hypervolume."""

    def __init__(self, reference: Sequence[float]) -> None:
        self.reference = (float(reference[0]), float(reference[1]))
        self.points: list[tuple[float, float]] = []
        self.hypervolume = 0.0

    def add(self, accuracy: float, compression: float) -> None:
        if not (math.isfinite(accuracy) and math.isfinite(compression) and compression > 0):
            return
        p = (accuracy, math.log10(compression))
        if any(q[0] >= p[0] and q[1] >= p[1] for q in self.points):
            return
        self.points = [q for q in self.points if not (p[0] >= q[0] and p[1] >= q[1])] + [p]
        self.hypervolume = plane_hypervolume(
            [q[0] for q in self.points], [10 ** q[1] for q in self.points], self.reference).value


# -- the benchmark --------------------------------------------------------------------------------
@dataclass
class StrategySummary:
    strategy: str
    checkpoints: list[int]
    median: list[float]
    low: list[float]
    high: list[float]
    front_size: float
    ratio_to_random: float | None
    seconds: float
    evaluations: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise(records: Sequence[RunRecord]) -> list[StrategySummary]:
    by_name: dict[str, list[RunRecord]] = {}
    for rec in records:
        by_name.setdefault(rec.strategy, []).append(rec)
    medians = {k: statistics.median(r.final for r in v) for k, v in by_name.items()}
    ref = medians.get(REFERENCE_STRATEGY)
    out = []
    for name, recs in by_name.items():
        cols = list(zip(*(r.hypervolume for r in recs), strict=True))
        out.append(StrategySummary(
            strategy=name, checkpoints=recs[0].checkpoints,
            median=[statistics.median(c) for c in cols], low=[min(c) for c in cols],
            high=[max(c) for c in cols],
            front_size=statistics.median(r.front_size for r in recs),
            ratio_to_random=(medians[name] / ref) if ref else None,
            seconds=statistics.median(r.strategy_seconds for r in recs),
            evaluations=statistics.median(r.evaluations for r in recs),
        ))
    return out


def _run_seed(args: tuple) -> list[RunRecord]:
    """Every strategy on one seed, sharing one evaluator (and so its cache of trainings)."""
    space_path, names, kind, budget, seed, workers = args
    from ranksearch.space import load_space

    space = load_space(space_path)
    evaluator = EVALUATORS[kind](space, seed=seed)
    return [run_strategy(space, n, evaluator, budget=budget, seed=seed, workers=workers)
            for n in names]


def run_benchmark(space_path: str | Path, *, evaluator: str = "synthetic", budget: int = 300,
                  seeds: int = 5, strategies: Sequence[str] | None = None,
                  workers: int | None = None, jobs: int = 1,
                  progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run every (strategy, seed) pair and summarise; returns a JSON-able report."""
    from ranksearch.space import load_space
    from ranksearch.strategies import StrategyError, available

    names = list(strategies) if strategies else _default_order(available())
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise StrategyError(f"unknown strategies {unknown}; valid: {', '.join(available())}")
    if evaluator not in EVALUATORS:
        raise StrategyError(f"unknown evaluator '{evaluator}'; valid: {', '.join(EVALUATORS)}")
    space = load_space(space_path)
    workers = workers or space.config.resources.max_concurrent
    t0 = time.perf_counter()
    records: list[RunRecord] = []

    def done(rec: RunRecord) -> None:
        records.append(rec)
        if progress:
            progress(f"{rec.strategy} seed {rec.seed}: hv {rec.final:.4f} "
                     f"({rec.evaluations} evals, {rec.strategy_seconds:.1f}s strategy, "
                     f"{rec.eval_seconds:.1f}s evaluating)")

    tasks = [(str(space_path), names, evaluator, budget, seed, workers) for seed in range(seeds)]
    if jobs > 1 and seeds > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(jobs, seeds)) as pool:
            for recs in pool.imap(_run_seed, tasks):
                for rec in recs:
                    done(rec)
        records.sort(key=lambda r: (names.index(r.strategy), r.seed))
    else:
        for _, _, kind, _, seed, _ in tasks:
            ev = EVALUATORS[kind](space, seed=seed)
            for name in names:
                done(run_strategy(space, name, ev, budget=budget, seed=seed, workers=workers))
    summary = summarise(records)
    return {
        "space": space.name, "source": str(space_path), "evaluator": evaluator, "budget": budget,
        "seeds": seeds, "workers": workers,
        "hypervolume_plane": "val_accuracy (max) x log10 compression_ratio (max)",
        "reference": list(space.config.hypervolume.reference),
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": [s.to_dict() for s in summary],
        "runs": [r.to_dict() for r in records],
    }


def _default_order(names: Sequence[str]) -> list[str]:
    first = [n for n in (REFERENCE_STRATEGY, "uniform") if n in names]
    return first + [n for n in names if n not in first]


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table: median hypervolume per 10% of the budget, final spread, ratios."""
    rows = report["summary"]
    if not rows:
        return "no runs"
    marks = rows[0]["checkpoints"]
    head = ["strategy"] + [f"{10 * (i + 1)}%" for i in range(len(marks))] + [
        "final [min-max]", "front", "x random", "s/run"]
    lines = [head]
    for r in rows:
        ratio = r["ratio_to_random"]
        lines.append(
            [r["strategy"]] + [f"{v:.4f}" for v in r["median"]]
            + [f"{r['low'][-1]:.4f}-{r['high'][-1]:.4f}", f"{r['front_size']:g}",
               "-" if ratio is None else f"{ratio:.3f}", f"{r['seconds']:.1f}"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = [
        f"space {report['space']}, evaluator {report['evaluator']}, budget {report['budget']}, "
        f"{report['seeds']} seeds, {report['workers']} workers, {report.get('seconds', 0):.0f} s; hypervolume of "
        f"{report['hypervolume_plane']} from reference {tuple(report['reference'])}; "
        "columns: median after each 10% of the budget",
    ]
    for row in lines:
        text.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(text)


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Median hypervolume against evaluations (band: min to max over seeds), as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in report["summary"]:
        x = s["checkpoints"]
        line, = ax.plot(x, s["median"], marker="o", ms=3, label=s["strategy"])
        ax.fill_between(x, s["low"], s["high"], color=line.get_color(), alpha=0.12)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (val accuracy x log10 compression)")
    ax.set_title(f"{report['space']} - {report['evaluator']} evaluator, "
                 f"{report['seeds']} seeds (median, min-max band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `ranksearch bench strategies` (shared with `python -m ranksearch.bench.strategies`)."""
    parser.add_argument("space", help="search-space YAML file")
    parser.add_argument("--evaluator", choices=sorted(EVALUATORS), default="synthetic")
    parser.add_argument("--budget", type=int, default=300, help="evaluations per run")
    parser.add_argument("--seeds", type=int, default=5, help="runs per strategy (seeds 0..S-1)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated subset (default: every registered strategy)")
    parser.add_argument("--workers", type=int, default=None,
                        help="configurations in flight (default: the space's max_concurrent)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run in parallel processes (each trains single-threaded)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", default=None,
                        help="folder for report.json and hypervolume.png "
                             "(default: runs/bench/strategies-<space>-<evaluator>)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    if args.budget < 1 or args.seeds < 1:
        print("error: --budget and --seeds must be positive", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.strategies.split(",") if n.strip()] if args.strategies else None

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    try:
        report = run_benchmark(args.space, evaluator=args.evaluator, budget=args.budget,
                               seeds=args.seeds, strategies=names, workers=args.workers,
                               jobs=args.jobs, progress=progress)
    except RanksearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/bench/strategies-{report['space']}-{report['evaluator']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    png = plot(report, out / "hypervolume.png")
    report["files"] = {"report": str(out / "report.json"), "plot": str(png)}
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    else:
        print(format_table(report))
        print(f"wrote {out / 'report.json'} and {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ranksearch bench strategies", description=__doc__.split("\n\n")[0])
    return run_from_args(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
