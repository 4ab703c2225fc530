"""The whole Fashion-MNIST TR-LeNet-5 front with learned ranks, beside Cao 2024 and PSTRN.

    ranksearch bench front [SPACE.yaml] --workdir bench-front --targets 9,12,26,52,71

Cao et al. (IJCAI 2024) learn TR-LeNet-5's ranks in one training run and publish a front on
Fashion-MNIST (12x to 71x). This benchmark traces ours at the same target compressions, with
the same accounting as `bench pstrn` (whose dense stage, search plumbing, final trainings and
resume it reuses), all within 600 full-epoch equivalents:

1. dense: the dense LeNet-5, production recipe, 20 epochs (the warm start of everything).
2. learned: one real search (Ray Tune, MLflow) with the `learned` strategy, one trial per
   target compression, side by side: each trial starts from the dense weights decomposed at the
   upper ranks, trains with gates on every rank slice on a fixed `--subset` of the training
   images for `--gated-epochs` passes under the target's parameter budget, is pruned to the
   learned ranks (exact count <= dense / target) and fine-tuned for `--finetune-epochs`.
3. searches (`--searches pstrn+learned,pstrn`, none by default): each a two-objective search
   (accuracy, compression) over the whole target range within `--search-budget`, trials as in
   `bench pstrn` (subset, MO-ASHA); `NAME+learned` is learned-then-searched: seeded with rank
   vectors read off one short gated run and warm-started from its cores. Its most accurate
   completed trial within each target is that target's point (one training serves several).
4. final: every learned rank vector, each search's points, and the equal-rank TRN of the largest
   equal rank within each target, trained with the production recipe (20 epochs, dense warm
   start); the test split is read once per trained configuration. `--recipe-from DIR` trains
   them all with the recipe a `ranksearch bench recipe` run in DIR found instead (its winner's
   values applied to the production recipe, as `ranksearch train` applies a rank-config file's),
   and charges that run's tuning samples to the total.

Printed per target: ours (learned ranks, final training), the equal-rank TRN, Cao 2024's
published point (its own compression count; read off its plot, +-0.2 pp), with samples,
full-epoch equivalents and wall time; then dense and PSTRN-M/S. A learned point's cost is its
trial plus its final training, a searched point's the whole search plus its final training; the
total adds the dense run and the equal-rank trainings (also given apart: they are baselines).
Everything is saved to `WORKDIR/bench.json` as it finishes: started again with the same
arguments, the run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.anchors import CAO_FASHION_DENSE_ACCURACY, CAO_FASHION_FRONT, PSTRN_POINTS
from ranksearch.bench.pstrn import PSTRN_SAMPLES, BenchError, PstrnBench, _strategy_options, run_stages
from ranksearch.errors import RanksearchError

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

DEFAULT_SPACE = "search_spaces/pstrn_lenet5_fashion.yaml"
DEFAULT_TARGETS = (9.0, 12.0, 26.0, 52.0, 71.0)
#: The whole run's allowance, in full-epoch equivalents (1/100 of PSTRN's search).
BUDGET_EPOCHS = 600
STRATEGY = "learned"
#: What a further search's population strategies are sized for (its budget is in epochs).
SEARCH_TRIALS_PLANNED = 60


class FrontBench(PstrnBench):
    """The front benchmark's stages over one work folder (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.budget_samples = BUDGET_EPOCHS * self.n_full

    # stage 2 ----------------------------------------------------------------------------------
    def search_space(self, strategy: str) -> SearchSpace:
        from ranksearch.space import SearchSpace

        a = self.args
        d = self.space.to_dict()
        final = d.get("final_training") or d["training"]
        d["dense_training"] = dict(final, init="scratch")
        if strategy != STRATEGY:
            return SearchSpace.from_dict(self._searched(d, strategy),
                                         source=f"{self.space_path} (bench front, {strategy})")
        d["training"] = {
            "epochs": a.gated_epochs, "batch_size": 128, "init": "dense", "subset": a.subset,
            "optimizer": {"name": "adam", "lr": 0.002}, "schedule": {"name": "cosine"}, "device": "cpu",
        }
        d.pop("scheduler", None)  # FIFO: mid-run accuracy is the gated net's, no ground to stop on
        d.pop("constraints", None)
        d["objectives"] = [{"name": "val_accuracy", "direction": "max"},
                           {"name": "compression_ratio", "direction": "max"}]
        d["strategy"] = {"name": STRATEGY, "budget": len(a.targets), "options": {
            "gate": a.gate, "targets": list(a.targets), "epochs": a.gated_epochs,
            "finetune_epochs": a.finetune_epochs}}
        d["resources"] = {"cpus_per_trial": 1, "max_concurrent": a.workers}
        return SearchSpace.from_dict(d, source=f"{self.space_path} (bench front)")

    def _searched(self, d: dict[str, Any], strategy: str) -> dict[str, Any]:
        """A two-objective search over the whole target range (`--searches NAME[+learned]`): the
        per-trial recipe of `bench pstrn` (dense warm start, subset, MO-ASHA), sizes from the
        largest target down; `+learned` seeds it with rank vectors read off one short gated run
        and warm-starts every trial from that run's cores (`training.init: learned`)."""
        a = self.args
        name, _, extra = strategy.partition("+")
        d["training"] = {
            "epochs": a.search_epochs, "batch_size": 128, "init": "learned" if extra else "dense",
            "subset": a.subset, "optimizer": {"name": "adam", "lr": 0.002}, "schedule": {"name": "cosine"},
            "device": "cpu",
        }
        d["scheduler"] = {"name": "mo_asha", "grace_epochs": 1, "reduction_factor": 3}
        d["constraints"] = {"max_params": math.floor(self.space.dense_params / min(a.targets))}
        d["objectives"] = [{"name": "val_accuracy", "direction": "max"},
                           {"name": "compression_ratio", "direction": "max"}]
        d["strategy"] = {"name": name, "budget": a.search_budget,
                         "options": _strategy_options(name, SEARCH_TRIALS_PLANNED)}
        if extra:
            d["strategy"].update(seeds=["learned"], seed_count=len(a.targets))
        d["resources"] = {"cpus_per_trial": 1, "max_concurrent": a.workers}
        return d

    def describe(self, space: SearchSpace) -> str:
        t, spec = space.config.training, space.config.strategy
        return (f"{spec.name}{' with learned seeds' if spec.seeds else ''}, budget {spec.cost_budget}, "
                f"subset {t.subset:g}, <= {t.epochs} passes, init {t.init}")

    def searched_at(self, strategy: str, target: float) -> dict[str, Any] | None:
        """The search's most accurate completed trial within dense / target."""
        cap = self.space.dense_params / target
        rows = [r for r in self.state["searches"][strategy]["trials"]
                if r["status"] == "ok" and r["val_accuracy"] is not None and r["params"] is not None
                and r["params"] <= cap]
        return max(rows, key=lambda r: r["val_accuracy"]) if rows else None

    def search(self, strategy: str) -> dict[str, Any]:
        """The search as `bench pstrn` runs it, plus each learned trial's target and cost (read
        from the search's own record)."""
        row = super().search(strategy)
        if strategy == STRATEGY and "learned" not in row:
            from ranksearch.tune.state import SearchState
            from ranksearch.tune.storage import Storage

            state = SearchState.load(Storage.parse(str(self.work / "searches")), row["name"])
            learned = []
            for rec in state.trials.values():
                result = rec.trial_result()
                if result is None:
                    continue
                m = result.metrics
                learned.append({"target": m.get("learn_target_compression"), "ranks": list(result.ranks),
                                "status": result.status, "val_accuracy": m.get("val_accuracy"),
                                "params": m.get("params"), "samples": int(m.get("samples_seen") or 0),
                                "seconds": rec.result.get("info", {}).get("trial_seconds")
                                if isinstance(rec.result, dict) else None})
            row["learned"] = learned
            self.save()
        return row

    def learned_at(self, target: float) -> dict[str, Any] | None:
        rows = [r for r in self.state["searches"][STRATEGY]["learned"]
                if r["status"] == "ok" and r["target"] is not None and math.isclose(r["target"], target)]
        return rows[0] if rows else None

    def equal_within(self, target: float) -> list[int] | None:
        """The largest equal rank whose count is within dense / target."""
        from ranksearch.space import count_params

        cap = self.space.dense_params / target
        best = None
        for r in range(self.space.config.ranks.min, self.space.config.ranks.max + 1):
            ranks = self.space.equal_ranks(r)
            if count_params(self.space, ranks) <= cap:
                best = list(ranks)
        return best

    def recipe(self) -> dict[str, Any]:
        """The final trainings' values: none (the production recipe), or the winner of the
        `bench recipe` run in `--recipe-from`, read once and kept (a resumed run trains with the
        values it started with)."""
        src = self.args.recipe_from
        have = self.state.get("recipe")
        if have is not None:
            if src is not None and Path(src).resolve() != Path(have["from"]):
                raise BenchError(f"--recipe-from {src}: this work folder's finals use the recipe from "
                                 f"{have['from']}; give that folder or a new --workdir")
            return have
        if src is None:
            return {"from": None, "hparams": {}, "samples": 0, "seconds": 0.0}
        self.state["recipe"] = {**self.args.recipe_found, "from": str(Path(src).resolve())}
        self.save()
        self.log(f"final trainings with the recipe found in {src}: {self.state['recipe']['hparams']}")
        return self.state["recipe"]

    def final_job(self, key: str, ranks: list[int], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
        return super().final_job(key, ranks, {**self.recipe()["hparams"], **(hparams or {})})

    # all --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.dense()
        self.recipe()
        self.search(STRATEGY)
        # the learned points first, then the searches' points, then the equal-rank baselines:
        # an interrupted run has the front before its comparison rows
        jobs, equal_keys = [], {}
        for c in self.args.targets:
            point = self.learned_at(c)
            if point is not None:
                jobs.append(self.final_job(_key("learned", c), point["ranks"]))
        self.finals(jobs)
        jobs, seen = [], set()
        for strategy in self.args.searches:
            self.search(strategy)
            for c in self.args.targets:
                trial = self.searched_at(strategy, c)
                if trial is not None and (strategy, tuple(trial["ranks"])) not in seen:
                    seen.add((strategy, tuple(trial["ranks"])))  # one training serves several targets
                    jobs.append(self.final_job(_key(strategy, c), trial["ranks"]))
        for c in self.args.targets:
            eq = self.equal_within(c)
            if eq is not None and tuple(eq) not in equal_keys:
                equal_keys[tuple(eq)] = _key("equal", c)
                jobs.append(self.final_job(_key("equal", c), eq))
        self.finals(jobs)
        self.state["wall_seconds"] = self.state.get("wall_seconds", 0.0) + time.time() - t0
        self.save()
        return self.report()

    def report(self) -> dict[str, Any]:
        from ranksearch.space import count_params

        dense = self.state["dense"]
        finals = self.state.get("finals", {})
        dp, n = self.space.dense_params, self.n_full
        search = self.state["searches"][STRATEGY]

        def acc(x: float | None) -> float | None:
            return None if x is None else round(100 * x, 2)

        points = []
        for c in self.args.targets:
            point, final = self.learned_at(c), finals.get(_key("learned", c))
            eq = self.equal_within(c)
            eq_final = next((finals[k] for k in finals if k.startswith("equal:")
                             and eq is not None and finals[k]["ranks"] == eq), None)
            cao = min(CAO_FASHION_FRONT, key=lambda p: abs(math.log(p.compression / c)))
            row: dict[str, Any] = {"target": c, "cao": None, "ours": None, "equal": None}
            if abs(math.log(cao.compression / c)) < 0.1:
                row["cao"] = {"compression": cao.compression, "test_accuracy": cao.accuracy}
            if point is not None and final is not None:
                samples = point["samples"] + final["samples"]
                row["ours"] = {"ranks": final["ranks"], "params": final["params"],
                               "compression": round(dp / final["params"], 2),
                               "learned_val_accuracy": point["val_accuracy"],
                               "val_accuracy": final["val_accuracy"], "test_accuracy": acc(final["test_accuracy"]),
                               "samples": samples, "epoch_equivalents": round(samples / n, 1),
                               "seconds": round((point["seconds"] or 0) + final["seconds"])}
            row["searched"] = {}
            for strategy in self.args.searches:
                if strategy not in self.state.get("searches", {}):
                    continue
                trial = self.searched_at(strategy, c)
                sf = None if trial is None else next(
                    (finals[k] for k in finals if k.startswith(f"{strategy}:") and finals[k]["ranks"] == trial["ranks"]),
                    None)
                if sf is not None:
                    shared = self.state["searches"][strategy]["samples"]
                    row["searched"][strategy] = {
                        "ranks": sf["ranks"], "params": sf["params"], "compression": round(dp / sf["params"], 2),
                        "search_val_accuracy": trial["val_accuracy"], "val_accuracy": sf["val_accuracy"],
                        "test_accuracy": acc(sf["test_accuracy"]), "samples": shared + sf["samples"],
                        "epoch_equivalents": round((shared + sf["samples"]) / n, 1), "search_shared": True,
                        "seconds": round((self.state["searches"][strategy]["seconds"] or 0) + sf["seconds"])}
            if eq_final is not None:
                row["equal"] = {"rank": eq[0], "params": eq_final["params"],
                                "compression": round(dp / eq_final["params"], 2),
                                "val_accuracy": eq_final["val_accuracy"],
                                "test_accuracy": acc(eq_final["test_accuracy"]), "samples": eq_final["samples"],
                                "epoch_equivalents": round(eq_final["samples"] / n, 1),
                                "seconds": eq_final["seconds"]}
            points.append(row)
        searches = self.state.get("searches", {})
        recipe = self.recipe()
        total = dense["samples"] + sum(r["samples"] for r in searches.values()) \
            + sum(r["samples"] for r in finals.values()) + recipe["samples"]
        baselines = sum(r["samples"] for k, r in finals.items() if k.startswith("equal:"))
        anchors = []
        for p in PSTRN_POINTS:
            if p.dataset == "fashion_mnist" and p.model == "lenet5":
                try:
                    comp = round(dp / count_params(self.space, p.ranks), 2)
                except RanksearchError:  # another space: the published count
                    comp = p.compression
                anchors.append({"row": f"{p.variant} (published)", "compression": comp,
                                "test_accuracy": round(100 - p.error, 2), "samples": PSTRN_SAMPLES})
        out = {"space": self.space_path, "targets": list(self.args.targets), "n_train_full": n,
               "points": points,
               "dense": {"params": dense["params"], "val_accuracy": dense["val_accuracy"],
                         "test_accuracy": acc(dense["test_accuracy"]), "samples": dense["samples"],
                         "seconds": dense["seconds"], "cao_dense_test_accuracy": CAO_FASHION_DENSE_ACCURACY},
               "pstrn": anchors, "search_samples": search["samples"],
               "total_samples": total, "total_epoch_equivalents": round(total / n, 1),
               "baseline_samples": baselines, "searches": {k: r["samples"] for k, r in searches.items()},
               "recipe": recipe,
               "budget_epoch_equivalents": BUDGET_EPOCHS, "within_budget": total <= self.budget_samples,
               "wall_seconds": round(self.state.get("wall_seconds", 0.0))}
        (self.work / "report.json").write_text(json.dumps(out, indent=1))
        (self.work / "report.md").write_text(markdown_table(out))
        return out


def shared_recipe(src: str) -> dict[str, Any]:
    """The winner of the `bench recipe` run in folder `src`: its values and its tuning's cost."""
    try:
        state = json.loads((Path(src) / "bench.json").read_text())
        search = next(iter(state["searches"].values()))
        out = {"hparams": dict(state["winner"]["hparams"]), "samples": int(search["samples"]),
               "seconds": float(search["seconds"] or 0.0)}
    except (OSError, KeyError, ValueError, TypeError, StopIteration, AttributeError):
        raise BenchError(f"--recipe-from {src}: no finished recipe search there (bench.json with a "
                         "'winner' from `ranksearch bench recipe`); run that bench first or leave "
                         "--recipe-from out") from None
    return out


def _key(kind: str, target: float) -> str:
    return f"{kind}:{target:g}x"


def markdown_table(report: dict[str, Any]) -> str:
    """One line per (target, row): ours, the equal-rank TRN, Cao 2024; then dense and PSTRN."""
    head = ("| target | configuration | params | compression | test acc % | val acc | training samples | "
            "full-epoch equiv. | wall |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []

    def fmt(x: Any, spec: str) -> str:
        return "" if x is None else format(x, spec)

    for p in report["points"]:
        t = f"{p['target']:g}x"
        searched = [(f"ranksearch {k} (search shared by the targets)", v) for k, v in (p.get("searched") or {}).items()]
        for label, r in (("ranksearch learned", p["ours"]), *searched,
                         (f"equal-rank TRN (r={p['equal']['rank']})" if p["equal"] else "equal-rank TRN", p["equal"])):
            if r is None:
                continue
            wall = "" if r.get("seconds") is None else f"{r['seconds'] / 60:.0f} min"
            lines.append(f"| {t} | {label} | {r['params']:,} | {r['compression']:.2f}x | "
                         f"{fmt(r['test_accuracy'], '.2f')} | {fmt(r['val_accuracy'], '.4f')} | "
                         f"{r['samples']:,} | {r['epoch_equivalents']:,.1f} | {wall} |")
        if p["cao"]:
            lines.append(f"| {t} | Cao 2024 (published, plot +-0.2) | | {p['cao']['compression']:g}x | "
                         f"{p['cao']['test_accuracy']:.1f} | | | ~1 training | |")
    d = report["dense"]
    lines.append(f"| 1x | dense | {d['params']:,} | 1.00x | {fmt(d['test_accuracy'], '.2f')} | "
                 f"{fmt(d['val_accuracy'], '.4f')} | {d['samples']:,} | "
                 f"{d['samples'] / report['n_train_full']:,.1f} | {d['seconds'] / 60:.0f} min |")
    for a in report["pstrn"]:
        lines.append(f"| | {a['row']} | | {a['compression']:.2f}x | {a['test_accuracy']:.2f} | | "
                     f"{a['samples']:,} | 60,000 | |")
    n = report["n_train_full"]
    foot = (f"\nTotal: {report['total_samples']:,} samples = {report['total_epoch_equivalents']:,.1f} full-epoch "
            f"equivalents of {report['budget_epoch_equivalents']} allowed "
            f"({'within' if report['within_budget'] else 'OVER'} budget; the equal-rank baselines "
            f"{report.get('baseline_samples', 0) / n:,.1f} of them); wall {report['wall_seconds'] / 60:.0f} min.\n")
    recipe = report.get("recipe") or {}
    if recipe.get("from"):
        foot += (f"Final trainings with the recipe found by `bench recipe` in {recipe['from']} "
                 f"({recipe['samples'] / n:,.1f} full-epoch equivalents of tuning, in the total): "
                 f"{json.dumps(recipe['hparams'], sort_keys=True)}.\n")
    return head + "\n".join(lines) + "\n" + foot


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ranksearch bench front", description=__doc__.split("\n\n")[0])
    p.add_argument("space", nargs="?", default=DEFAULT_SPACE)
    p.add_argument("--workdir", default="bench-front", help="state, weights, search, report (default: %(default)s)")
    p.add_argument("--targets", default=",".join(f"{t:g}" for t in DEFAULT_TARGETS),
                   help="target compressions, comma-separated (default: %(default)s)")
    p.add_argument("--gate", default="hard_concrete", choices=("hard_concrete", "ard"),
                   help="the rank gate (default: %(default)s)")
    p.add_argument("--subset", type=int, default=10_000, help="training images per learned trial (default: %(default)s)")
    p.add_argument("--gated-epochs", type=int, default=10, help="gated passes over the subset (default: %(default)s)")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="passes at the learned ranks before the final training (default: %(default)s)")
    p.add_argument("--searches", default="",
                   help="further two-objective searches over the targets' range, comma-separated: NAME "
                        "(searched) or NAME+learned (learned-then-searched: learned seeds and warm start), "
                        "e.g. pstrn+learned (default: none)")
    p.add_argument("--search-budget", default="100ep", help="each further search's budget (default: %(default)s)")
    p.add_argument("--search-epochs", type=int, default=3,
                   help="passes over the subset per search trial, MO-ASHA after 1 (default: %(default)s)")
    p.add_argument("--recipe-from", default=None,
                   help="a `ranksearch bench recipe` work folder: final trainings use the recipe it found "
                        "(its tuning counted in the total); default: the space's production recipe")
    p.add_argument("--workers", type=int, default=2, help="trials / final trainings at once (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: WORKDIR/mlruns)")
    p.add_argument("--name-prefix", default="bench-front", help="search name (default: %(default)s)")
    a = p.parse_args(argv)
    try:
        a.targets = [float(t) for t in a.targets.split(",") if t.strip()]
    except ValueError:
        raise BenchError(f"--targets {a.targets!r}: give compressions as numbers, e.g. 9,12,26") from None
    if not a.targets or any(not (t > 1 and math.isfinite(t)) for t in a.targets) or len(set(a.targets)) != len(a.targets):
        raise BenchError(f"--targets {','.join(f'{t:g}' for t in a.targets) or '(none)'}: give distinct "
                         "target compressions above 1")
    from ranksearch import strategies
    from ranksearch.budget import BudgetError, parse_budget

    a.searches = [x.strip() for x in a.searches.split(",") if x.strip()]
    bad = [x for x in a.searches if x.partition("+")[0] not in strategies.available()
           or x.partition("+")[0] in (STRATEGY, "uniform") or x.partition("+")[2] not in ("", "learned")]
    if bad or len(set(a.searches)) != len(a.searches):
        raise BenchError(f"--searches {','.join(bad) or a.searches}: give distinct strategies other than learned "
                         f"and uniform ({', '.join(strategies.available())}), each optionally with '+learned'")
    try:
        parse_budget(a.search_budget)
    except BudgetError as exc:
        raise BenchError(f"--search-budget {a.search_budget!r}: {exc}") from None
    for flag in ("subset", "gated_epochs", "workers", "search_epochs"):
        if getattr(a, flag) < 1:
            raise BenchError(f"--{flag.replace('_', '-')} must be at least 1 (got {getattr(a, flag)})")
    if a.finetune_epochs < 0:
        raise BenchError(f"--finetune-epochs must be at least 0 (got {a.finetune_epochs})")
    if not Path(a.space).is_file():
        raise BenchError(f"space file {a.space!r} not found")
    # read (and refused) here, before anything runs
    a.recipe_found = None if a.recipe_from is None else shared_recipe(a.recipe_from)
    # what `PstrnBench` reads that this benchmark fixes
    a.strategies, a.budget, a.trial_epochs, a.final_top = [STRATEGY, *a.searches], len(a.targets), a.gated_epochs, 1
    a.max_params, a.dense_from = None, None
    return a


def main(argv: list[str] | None = None) -> int:
    code, bench, report = run_stages(argv, parse_args, FrontBench)
    if code:
        return code
    print()
    print(markdown_table(report))
    print(f"report: {bench.work / 'report.md'} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
