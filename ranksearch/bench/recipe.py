"""A training recipe searched at fixed ranks: PSTRN-M's TR-LeNet-5 on Fashion-MNIST.

    ranksearch bench recipe [SPACE.yaml] --workdir bench-recipe [--ranks 8,14,...] [--budget 60ep]

PSTRN-M's ranks (48,780 parameters, 8.8x) reach 8.26% test error with the production recipe
found by hand; PSTRN published 8.05%. This benchmark lets the search find the recipe instead,
with the same accounting and resume as `bench pstrn`:

1. dense: the dense LeNet-5 under the space's `dense_training` (20 epochs), the warm start and
   the distillation teacher; `--dense-from DIR` reuses the one another bench (`bench front`,
   `bench pstrn`) trained in DIR, whose cost is still reported.
2. search: `ranksearch run SPACE --fix-ranks RANKS` as a user runs it (Ray Tune, MLflow): the
   space's `hyperparameters:` alone, with its scheduler (MO-ASHA on passes over
   `training.subset`), within `--budget` (full-epoch equivalents; at most 150 by default).
3. final: the winner (`ranksearch best SEARCH --pick "max val_accuracy"`, written to
   `WORKDIR/best.yaml`: the rank-config file `ranksearch train` takes) trained with
   `final_training` and its values for 20 epochs, once per `--seeds` seed (model initialisation,
   shuffling and augmentation; the validation carve-out stays the space's), the test split read
   once per training. `--baseline` also trains the space's own `final_training` (the hand-found
   recipe) at the same ranks and seeds.

Printed: per recipe, each seed's test error and the median, beside PSTRN-M's published 8.05%,
with samples, full-epoch equivalents and wall time; the tuning's cost against its allowance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ranksearch.bench.pstrn import PSTRN_FASHION_M, BenchError, PstrnBench, run_stages, shared_dense

DEFAULT_SPACE = "search_spaces/pstrn_m_recipe_fashion.yaml"
SEARCH = "recipe"
#: The tuning's allowance, in full-epoch equivalents (what the search may spend at most).
MAX_TUNING_EPOCHS = 150
PICK = "max val_accuracy"


class RecipeBench(PstrnBench):
    """The recipe benchmark's stages over one work folder (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.ranks = list(args.ranks or PSTRN_FASHION_M.ranks)

    # stage 2 ----------------------------------------------------------------------------------
    def search_space(self, strategy: str) -> Any:
        from ranksearch.checks import check_space

        return check_space(self.space, budget=self.args.budget, fix_ranks=self.ranks)

    def describe(self, space: Any) -> str:
        t, spec = space.config.training, space.config.strategy
        return (f"{spec.name}, the recipe alone at ranks {','.join(map(str, self.ranks))}, budget {spec.cost_budget}, "
                f"subset {'all' if t.subset is None else format(t.subset, 'g')}, <= {t.epochs} passes, {len(space.hyper.params)} hyperparameters")

    # stage 3 ----------------------------------------------------------------------------------
    def winner(self) -> dict[str, Any]:
        """The best completed trial as a rank-config file (WORKDIR/best.yaml) and its values."""
        if "winner" in self.state:
            return self.state["winner"]
        from ranksearch import service

        row = self.state["searches"][SEARCH]
        config = service.best(row["name"], PICK, tracking_uri=row["tracking_uri"],
                              storage=str(self.work / "searches"))
        path = self.work / "best.yaml"
        config.save(path)
        self.state["winner"] = {"hparams": dict(config.hparams), "ranks": list(config.ranks),
                                "val_accuracy": config.metrics.get("val_accuracy"), "file": str(path)}
        self.save()
        self.log(f"winner: val {self.state['winner']['val_accuracy']:.4f} {self.state['winner']['hparams']}")
        return self.state["winner"]

    def recipe_job(self, label: str, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
        # hparams always set (also when empty): the result row then records the seed and values
        return dict(self.final_job(f"{label}:seed{seed}", self.ranks), hparams=dict(hparams), seed=seed)

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.dense()
        self.search(SEARCH)
        win = self.winner()
        seeds = [self.space.seed + i for i in range(self.args.seeds)]
        jobs = [self.recipe_job("found", win["hparams"], s) for s in seeds]
        if self.args.baseline:
            jobs += [self.recipe_job("hand", {}, s) for s in seeds]
        self.finals(jobs)
        self.state["wall_seconds"] = self.state.get("wall_seconds", 0.0) + time.time() - t0
        self.save()
        return self.report()

    def report(self) -> dict[str, Any]:
        from ranksearch.space import count_params

        dense, search = self.state["dense"], self.state["searches"][SEARCH]
        finals, n = self.state.get("finals", {}), self.n_full
        params = count_params(self.space, self.ranks)
        rows = []
        for label, title in (("found", "searched recipe"), ("hand", "hand-found recipe")):
            mine = [r for k, r in sorted(finals.items()) if k.startswith(f"{label}:")]
            if not mine:
                continue
            errors = [round(100 * (1 - r["test_accuracy"]), 2) for r in mine if r["test_accuracy"] is not None]
            samples = sum(r["samples"] for r in mine)
            rows.append({"row": title, "test_errors": errors,
                         "median_test_error": round(statistics.median(errors), 2) if errors else None,
                         "val_accuracies": [r["val_accuracy"] for r in mine], "samples": samples,
                         "epoch_equivalents": round(samples / n, 1),
                         "seconds": round(sum(r["seconds"] for r in mine))})
        tuning = search["samples"]
        out = {"space": self.space_path, "ranks": self.ranks, "params": params,
               "compression": round(self.space.dense_params / params, 2), "n_train_full": n,
               "winner": self.state.get("winner"), "rows": rows,
               "search": {"name": search["name"], "trials": search["n_trials"], "stopped_early": search["n_pruned"],
                          "samples": tuning, "epoch_equivalents": round(tuning / n, 1),
                          "allowance_epoch_equivalents": MAX_TUNING_EPOCHS,
                          "within_allowance": tuning <= MAX_TUNING_EPOCHS * n, "seconds": search["seconds"]},
               "dense": {"samples": dense["samples"], "epoch_equivalents": round(dense["samples"] / n, 1),
                         "test_error": round(100 * (1 - dense["test_accuracy"]), 2), "shared_from": dense.get("shared_from")},
               "pstrn_m_published_error": PSTRN_FASHION_M.error,
               "wall_seconds": round(self.state.get("wall_seconds", 0.0))}
        (self.work / "report.json").write_text(json.dumps(out, indent=1))
        (self.work / "report.md").write_text(markdown_table(out))
        return out


def markdown_table(report: dict[str, Any]) -> str:
    s, d = report["search"], report["dense"]
    head = (f"Ranks {','.join(map(str, report['ranks']))}: {report['params']:,} parameters, "
            f"{report['compression']:.2f}x.\n\n"
            "| recipe | test error % per seed | median | training samples | full-epoch equiv. | wall |\n"
            "|---|---|---|---|---|---|\n")
    lines = [f"| {r['row']} | {', '.join(f'{e:.2f}' for e in r['test_errors'])} | "
             f"{'n/a' if r['median_test_error'] is None else format(r['median_test_error'], '.2f')} | "
             f"{r['samples']:,} | {r['epoch_equivalents']:,.1f} | {r['seconds'] / 60:.0f} min |" for r in report["rows"]]
    lines.append(f"| PSTRN-M (published) | {report['pstrn_m_published_error']:.2f} | | | 60,000 (search) | |")
    wall = "" if s["seconds"] is None else f", {s['seconds'] / 60:.0f} min"
    foot = (f"\nTuning ({s['name']}): {s['trials']} trials ({s['stopped_early']} stopped early), "
            f"{s['samples']:,} samples = {s['epoch_equivalents']:,.1f} full-epoch equivalents of "
            f"{s['allowance_epoch_equivalents']} allowed ({'within' if s['within_allowance'] else 'OVER'}){wall}. "
            f"Dense warm start and teacher: {d['epoch_equivalents']:,.1f} full-epoch equivalents"
            f"{' (shared with ' + d['shared_from'] + ')' if d['shared_from'] else ''}, "
            f"test error {d['test_error']:.2f}%.\n")
    if report["winner"]:
        foot += f"Winning values: {json.dumps(report['winner']['hparams'], sort_keys=True)}\n"
    return head + "\n".join(lines) + "\n" + foot


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ranksearch.budget import BudgetError, parse_budget

    p = argparse.ArgumentParser(prog="ranksearch bench recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("space", nargs="?", default=DEFAULT_SPACE)
    p.add_argument("--workdir", default="bench-recipe", help="state, weights, search, report (default: %(default)s)")
    p.add_argument("--ranks", default=None, help="comma-separated rank vector (default: PSTRN-M's)")
    p.add_argument("--budget", default=None,
                   help=f"the tuning's budget, e.g. 60ep (default: the space's; at most {MAX_TUNING_EPOCHS}ep)")
    p.add_argument("--seeds", type=int, default=3, help="final trainings of the winner (default: %(default)s)")
    p.add_argument("--baseline", action="store_true", help="also train the hand-found recipe at the same seeds")
    p.add_argument("--dense-from", default=None, help="a bench work folder whose dense network to reuse")
    p.add_argument("--workers", type=int, default=2, help="trials / final trainings at once (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: WORKDIR/mlruns)")
    p.add_argument("--name-prefix", default="bench-recipe", help="search name (default: %(default)s)")
    a = p.parse_args(argv)
    if not Path(a.space).is_file():
        raise BenchError(f"space file {a.space!r} not found")
    if a.ranks is not None:
        try:
            a.ranks = [int(r) for r in a.ranks.split(",") if r.strip()]
        except ValueError:
            raise BenchError(f"--ranks {a.ranks!r}: give whole numbers separated by commas") from None
    if a.budget is not None:
        try:
            b = parse_budget(a.budget)
        except BudgetError as exc:
            raise BenchError(f"--budget {a.budget!r}: {exc}") from None
        if b.kind != "epochs" or b.amount > MAX_TUNING_EPOCHS:
            raise BenchError(f"--budget {a.budget!r}: give full-epoch equivalents up to {MAX_TUNING_EPOCHS}, "
                             "e.g. 60ep")
    for flag in ("seeds", "workers"):
        if getattr(a, flag) < 1:
            raise BenchError(f"--{flag} must be at least 1 (got {getattr(a, flag)})")
    if a.dense_from is not None:
        shared_dense(a.dense_from)
    # the space, ranks and budget as the search will take them, before any folder is made
    from ranksearch.checks import check_space
    from ranksearch.space import load_space

    check_space(load_space(a.space), budget=a.budget, fix_ranks=list(a.ranks or PSTRN_FASHION_M.ranks))
    # what `PstrnBench` reads that this benchmark fixes
    a.strategies, a.final_top, a.max_params = [SEARCH], 1, None
    return a


def main(argv: list[str] | None = None) -> int:
    code, bench, report = run_stages(argv, parse_args, RecipeBench)
    if code:
        return code
    print()
    print(markdown_table(report))
    print(f"report: {bench.work / 'report.md'} and report.json; the winner: {bench.work / 'best.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
