"""PSTRN's own benchmark at one hundredth of its work: TR-LeNet-5 on Fashion-MNIST.

    ranksearch bench pstrn [SPACE.yaml] --workdir bench-pstrn --strategies pstrn,bayes

PSTRN evaluated up to 3,000 candidates for 20 epochs each (60,000 candidate-epochs, 3.6 billion
training samples). This benchmark gives every strategy at most 1/100 of that, 36 million samples
(600 full-epoch equivalents), for everything: the search and the final training.

Stages, each saved to `WORKDIR/bench.json` as it finishes, so an interrupted run continues
where it stopped when started again with the same arguments (searches continue through the
service's own resume; final trainings from their per-epoch checkpoints):

1. dense: the dense LeNet-5 trained once with the space's production recipe
   (`final_training`, 20 epochs). It is the dense baseline row, the warm start of every trial
   and final training (cores decomposed from it, `from_dense`), and its samples are charged to
   every strategy that uses it. `--dense-from DIR` reuses the one another bench (`bench front`,
   `bench recipe`, `bench pstrn`) trained in DIR; its cost is still charged.
2. search, per strategy: a real search (Ray Tune, MLflow) on the training split with validation
   carved from it. Trials start from the dense weights, train on a fixed stratified subset of
   the training images (`--subset`) for up to `--trial-epochs` passes, and the ASHA scheduler
   stops the weaker ones after `--grace` passes. The question is the best accuracy at
   compression >= 8.8x, so the search maximises validation accuracy under that size cap
   (`constraints.max_params`; PSTRN-S likewise searches accuracy alone; `--max-params` sets
   another cap, e.g. an earlier answer's size, to ask for lower error at no lower compression). With two objectives
   (accuracy and compression) 40 trials spread over the whole 8.8x-250x range and few land
   near the cap: measured, the most accurate configurations found had 19k-34k parameters.
   `NAME+seeds` (e.g. `pstrn+seeds`) first proposes equal-rank configurations and ones shaped
   by the dense layers' effective ranks (`strategy.seeds: [equal, effective]`).
3. final: the `--final-top` most accurate configurations of the completed trials' Pareto front
   (validation accuracy vs compression, within the cap) are trained with
   the production recipe for 20 epochs from the dense warm start; the one with the best
   validation accuracy is the strategy's answer and the test split is read once per trained
   configuration. The equal-rank TRN of about the same size is trained the same way.

The printed table puts these next to PSTRN-M and PSTRN-S's published points, with the samples,
full-epoch equivalents and wall time each row spent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.anchors import PSTRN_POINTS
from ranksearch.bench.pool import worker_pool
from ranksearch.errors import RanksearchError

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

DEFAULT_SPACE = "search_spaces/pstrn_lenet5_fashion.yaml"
TARGET_COMPRESSION = 8.8
PSTRN_FASHION_M, PSTRN_FASHION_S = (
    next(p for p in PSTRN_POINTS if p.dataset == "fashion_mnist" and p.variant == v) for v in ("PSTRN-M", "PSTRN-S"))
PSTRN_SAMPLES = 3000 * 20 * 60_000  # 3.6 billion: 3,000 candidates x 20 epochs x 60,000 images
BUDGET_FRACTION = 0.01
STATE_FILE = "bench.json"
SEED_COUNT = 3  # per seed kind: 6 of a 40-trial budget


class BenchError(RanksearchError):
    """Bad benchmark arguments (exit code 2)."""


# -- the work ------------------------------------------------------------------------------------
def _final_recipe(space: SearchSpace, *, init: str) -> Any:
    recipe = space.config.final_training or space.config.training
    return recipe.model_copy(update={"init": init, "device": "cpu"})


def _train_job(job: dict[str, Any]) -> dict[str, Any]:
    """One 20-epoch production training (runs in a worker process): dense or a rank config.

    A rank config trains from the dense warm start under the production recipe, or under that
    recipe with `job["hparams"]` (`training.*` values, as `ranksearch train` applies a rank-config
    file's) at `job["seed"]` (default the space's)."""
    import torch

    from ranksearch.models import build_dense, build_model, build_warm
    from ranksearch.rankconfig import training_with_values
    from ranksearch.space import load_space
    from ranksearch.training import get_splits, train_model

    torch.set_num_threads(int(job.get("threads", 1)))
    space = load_space(job["space"])
    seed = int(job.get("seed", space.seed))
    splits = get_splits(space)
    started = time.time()
    teacher = None
    if job["ranks"] is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(space.seed)
            net = build_dense(space.config.model, space.input_shape, space.num_classes)
        recipe = _final_recipe(space, init="scratch")
    else:
        recipe = training_with_values(_final_recipe(space, init="dense"), job.get("hparams") or {})
        state = torch.load(job["dense"], map_location="cpu", weights_only=True)
        net, dense_net = build_warm(space, tuple(job["ranks"]), state, seed=seed)
        if recipe.init == "scratch":  # the same ranks, cores initialised at random instead
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = build_model(space, tuple(job["ranks"]))
        teacher = dense_net if recipe.distill > 0 else None
    ckpt = Path(job["checkpoint_dir"])
    ckpt.mkdir(parents=True, exist_ok=True)
    out = train_model(net, splits, recipe, seed=seed, checkpoint_dir=ckpt, evaluate_test=True,
                      measure_latency=False, teacher=teacher)
    if job["ranks"] is None and out.ok:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, job["dense_out"])
    return {"key": job["key"], "ranks": job["ranks"], "status": out.status, "error": out.error,
            "val_accuracy": out.val_accuracy, "test_accuracy": out.test_accuracy,
            "best_epoch": out.best_epoch, "epochs": out.epochs_done, "params": out.params,
            "samples": out.samples_seen, "seconds": round(time.time() - started, 1),
            **({"seed": seed, "hparams": job["hparams"]} if "hparams" in job else {})}


class PstrnBench:
    """The benchmark's stages over one work folder (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ranksearch.space import load_space

        self.args = args
        self.space_path = str(Path(args.space).resolve())
        self.space = load_space(self.space_path)
        self.work = Path(args.workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / STATE_FILE
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.n_full = self._n_full()
        self.max_params = args.max_params or math.floor(self.space.dense_params / TARGET_COMPRESSION)
        self.budget_samples = int(PSTRN_SAMPLES * BUDGET_FRACTION)

    def _n_full(self) -> int:
        from ranksearch.training import full_train_size

        return full_train_size(self.space)

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.state_path)

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # stage 1 ----------------------------------------------------------------------------------
    def dense(self) -> dict[str, Any]:
        if "dense" in self.state:
            return self.state["dense"]
        if self.args.dense_from is not None:
            other = Path(self.args.dense_from).resolve()
            row = shared_dense(self.args.dense_from)
            shutil.copyfile(other / "dense.pt", self.work / "dense.pt")
            self.state["dense"] = dict(row, shared_from=str(other))
            self.save()
            self.log(f"dense: reused from {other} (val {row['val_accuracy']:.4f}; its cost still counted)")
            return self.state["dense"]
        epochs = _final_recipe(self.space, init="scratch").epochs
        self.log(f"dense {self.space.config.model.name}: production recipe, {epochs} epochs")
        job = {"key": "dense", "space": self.space_path, "ranks": None,
               "checkpoint_dir": str(self.work / "final" / "dense"),
               "dense_out": str(self.work / "dense.pt"), "threads": self.args.workers}
        row = _train_job(job)
        if row["status"] != "ok":
            raise RuntimeError(f"dense training failed: {row['error']}")
        self.state["dense"] = row
        self.save()
        self.log(f"dense: val {row['val_accuracy']:.4f} test error {100 * (1 - row['test_accuracy']):.2f}% "
                 f"in {row['seconds']:.0f} s")
        return row

    # stage 2 ----------------------------------------------------------------------------------
    def search_space(self, strategy: str) -> SearchSpace:
        from ranksearch.space import SearchSpace

        a = self.args
        d = self.space.to_dict()
        final = d.get("final_training") or d["training"]
        d["dense_training"] = dict(final, init="scratch")
        d["training"] = {
            "epochs": a.trial_epochs, "batch_size": 128, "init": "dense", "subset": a.subset,
            "optimizer": {"name": "adam", "lr": 0.002}, "schedule": {"name": "cosine"},
            "device": "cpu",
        }
        d["scheduler"] = {"name": "mo_asha", "grace_epochs": a.grace, "reduction_factor": 3}
        d["constraints"] = dict(d.get("constraints") or {}, max_params=self.max_params)
        base, _, extra = strategy.partition("+")
        d["objectives"] = [{"name": "val_accuracy", "direction": "max"}]
        d["strategy"] = {"name": base, "budget": a.budget, "options": _strategy_options(base, a.budget)}
        if extra == "seeds":
            d["strategy"].update(seeds=["equal", "effective"], seed_count=SEED_COUNT)
        d["resources"] = {"cpus_per_trial": 1, "max_concurrent": a.workers}
        return SearchSpace.from_dict(d, source=f"{self.space_path} (bench pstrn, {strategy})")

    def describe(self, space: SearchSpace) -> str:
        a = self.args
        return (f"{space.config.strategy.name}, {a.budget} trials, subset {a.subset}, <= {a.trial_epochs} passes, "
                f"max_params {self.max_params:,}")

    def search(self, strategy: str) -> dict[str, Any]:
        from ranksearch import service
        from ranksearch.tune.storage import Storage
        from ranksearch.tune.warmstart import install_dense

        done = self.state.setdefault("searches", {}).get(strategy)
        if done:
            return done
        name = f"{self.args.name_prefix}-{strategy.replace('+', '-')}"
        storage = str(self.work / "searches")
        tracking = service.default_tracking_uri(self.args.tracking_uri or str(self.work / "mlruns"))
        found = service.find_state(name, storage=storage)
        t0 = time.time()
        if found is not None and found[1].status != "finished":
            self.log(f"search {name}: resuming")
            outcome = service.resume(name, storage=storage, tracking_uri=tracking, show_progress=False)
        elif found is None:
            space = self.search_space(strategy)
            dense = self.state["dense"]
            import torch

            state = torch.load(self.work / "dense.pt", map_location="cpu", weights_only=True)
            install_dense(space, Storage.parse(storage), name, state, samples_seen=dense["samples"],
                          val_accuracy=dense["val_accuracy"])
            self.log(f"search {name}: {self.describe(space)}")
            outcome = service.search(space, name=name, storage=storage, tracking_uri=tracking,
                                     show_progress=False)
        else:
            outcome = None
        if outcome is not None and outcome.status != "finished":
            # stopped (Ctrl-C, SIGTERM) or failed: nothing is recorded as done, so starting the
            # bench again resumes the search instead of training finals on a partial one
            raise BenchError(f"search {name} {outcome.status}; start the bench again with the same "
                             "arguments to resume it")
        from ranksearch.tracking import load_search_cost, load_trials

        ref = service.locate_search(name, tracking_uri=tracking, storage=storage)
        trials = load_trials(ref.parent_run_id, tracking)
        samples = load_search_cost(ref.parent_run_id, tracking)["samples_consumed"] or 0
        row = {"name": name, "tracking_uri": tracking, "parent_run_id": ref.parent_run_id,
               "n_trials": len(trials), "n_ok": sum(t["status"] == "ok" for t in trials),
               "n_pruned": sum(t["status"] == "pruned" for t in trials),
               "samples": samples, "seconds": round(time.time() - t0, 1)
               if outcome is not None else None,
               "trials": [{"ranks": list(t["ranks"]), "val_accuracy": t["metrics"].get("val_accuracy"),
                           "params": t["metrics"].get("params"), "status": t["status"],
                           **({"hparams": dict(t["hparams"])} if t.get("hparams") else {})}
                          for t in trials]}
        self.state["searches"][strategy] = row
        self.save()
        self.log(f"search {name}: {row['n_trials']} trials ({row['n_pruned']} stopped early), "
                 f"{samples:,} samples = {samples / self.n_full:.1f} epoch-eq")
        return row

    def candidates(self, strategy: str) -> list[dict[str, Any]]:
        """The most accurate members of the completed trials' (accuracy, compression) front, as
        their trial rows (ranks, and the hyperparameter values of a joint search)."""
        from ranksearch.archive import front_of
        from ranksearch.objectives import Objectives
        from ranksearch.trial import TrialResult

        rows = [r for r in self.state["searches"][strategy]["trials"]
                if r["status"] == "ok" and r["val_accuracy"] is not None and r["params"] is not None]
        objectives = Objectives.from_pairs([("val_accuracy", "max"), ("params", "min")],
                                           max_params=self.max_params)
        results = [(str(i), TrialResult(tuple(r["ranks"]), metrics={"val_accuracy": float(r["val_accuracy"]),
                                                                   "params": float(r["params"])}))
                   for i, r in enumerate(rows)]
        front = sorted((rows[int(i)] for i in front_of(objectives, results)),
                       key=lambda r: -float(r["val_accuracy"]))
        return front[: self.args.final_top]

    # stage 3 ----------------------------------------------------------------------------------
    def finals(self, jobs: list[dict[str, Any]]) -> None:
        finals = self.state.setdefault("finals", {})
        todo = [j for j in jobs if j["key"] not in finals]
        if not todo:
            return
        self.log(f"final training: {len(todo)} configurations, {self.args.workers} at a time")
        with worker_pool(self.args.workers) as pool:
            for row in pool.map(_train_job, todo):
                finals[row["key"]] = row
                self.save()
                err = "n/a" if row["test_accuracy"] is None else f"{100 * (1 - row['test_accuracy']):.2f}%"
                self.log(f"final {row['key']}: {row['params']:,} params, val {row['val_accuracy']:.4f}, "
                         f"test error {err}, {row['seconds']:.0f} s")

    def final_job(self, key: str, ranks: list[int], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """A production training of `ranks`; with `hparams` (a joint search's values) under the
        production recipe with those values applied, as `ranksearch train` applies them."""
        return {"key": key, "space": self.space_path, "ranks": list(ranks),
                "dense": str(self.work / "dense.pt"),
                "checkpoint_dir": str(self.work / "final" / _dir_name(key, ranks)), "threads": 1,
                **({"hparams": dict(hparams)} if hparams else {})}

    def equal_rank(self) -> list[int]:
        from ranksearch.space import count_params

        best = None
        for r in range(self.space.config.ranks.min, self.space.config.ranks.max + 1):
            ranks = self.space.equal_ranks(r)
            if count_params(self.space, ranks) <= self.max_params:
                best = list(ranks)
        if best is None:
            raise BenchError(f"no equal rank fits {self.max_params:,} parameters")
        return best

    # all --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.dense()
        for s in self.args.strategies:
            self.search(s)
        jobs = [self.final_job("equal", self.equal_rank())]
        for s in self.args.strategies:
            for i, row in enumerate(self.candidates(s)):
                jobs.append(self.final_job(f"{s}:{i + 1}", row["ranks"], row.get("hparams")))
        self.finals(jobs)
        self.state.setdefault("wall_seconds", 0.0)
        self.state["wall_seconds"] += time.time() - t0
        self.save()
        return self.report()

    def report(self) -> dict[str, Any]:
        from ranksearch.space import count_params

        dense = self.state["dense"]
        finals = self.state.get("finals", {})
        dp = self.space.dense_params
        rows = []

        def err(acc: float | None) -> float | None:
            return None if acc is None else round(100 * (1 - acc), 2)

        for s in self.args.strategies:
            search = self.state["searches"][s]
            mine = [finals[k] for k in finals if k.startswith(f"{s}:")]
            if not mine:
                continue
            pick = max(mine, key=lambda r: r["val_accuracy"])
            samples = dense["samples"] + search["samples"] + sum(r["samples"] for r in mine)
            rows.append({
                "row": f"ranksearch {s}", "ranks": pick["ranks"], "hparams": pick.get("hparams") or {},
                "params": pick["params"],
                "compression": round(dp / pick["params"], 2), "val_accuracy": pick["val_accuracy"],
                "test_error": err(pick["test_accuracy"]), "samples": samples,
                "epoch_equivalents": round(samples / self.n_full, 1),
                "search_samples": search["samples"], "final_trained": len(mine),
                "finals": [{"ranks": r["ranks"], "params": r["params"], "val_accuracy": r["val_accuracy"],
                            "test_error": err(r["test_accuracy"])} for r in mine],
                "seconds": round((search["seconds"] or 0) + sum(r["seconds"] for r in mine)
                                 + dense["seconds"], 0),
                "within_budget": samples <= self.budget_samples,
            })
        eq = finals.get("equal")
        if eq:
            samples = dense["samples"] + eq["samples"]
            rows.append({"row": f"equal-rank TRN (r={eq['ranks'][0]})", "ranks": eq["ranks"],
                         "params": eq["params"], "compression": round(dp / eq["params"], 2),
                         "val_accuracy": eq["val_accuracy"], "test_error": err(eq["test_accuracy"]),
                         "samples": samples, "epoch_equivalents": round(samples / self.n_full, 1),
                         "seconds": round(eq["seconds"] + dense["seconds"], 0)})
        rows.append({"row": f"dense {self.space.config.model.name}", "ranks": None, "params": dense["params"], "compression": 1.0,
                     "val_accuracy": dense["val_accuracy"], "test_error": err(dense["test_accuracy"]),
                     "samples": dense["samples"], "epoch_equivalents": round(dense["samples"] / self.n_full, 1),
                     "seconds": dense["seconds"]})
        for label, anchor in (("PSTRN-M (published)", PSTRN_FASHION_M), ("PSTRN-S (published)", PSTRN_FASHION_S)):
            try:
                params = count_params(self.space, anchor.ranks)
                comp = round(dp / params, 2)
            except RanksearchError:  # another space: the published count
                params, comp = anchor.params, anchor.compression
            rows.append({"row": label, "ranks": list(anchor.ranks), "params": params,
                         "compression": comp, "val_accuracy": None,
                         "test_error": anchor.error, "samples": PSTRN_SAMPLES,
                         "epoch_equivalents": PSTRN_SAMPLES / 60_000, "seconds": None})
        m = PSTRN_FASHION_M
        verdict = [{"row": r["row"], "dominates_pstrn_m": r["test_error"] is not None
                    and r["test_error"] <= m.error and r["compression"] >= TARGET_COMPRESSION
                    and r["samples"] <= self.budget_samples}
                   for r in rows if r["row"].startswith("ranksearch")]
        out = {"space": self.space_path, "max_params": self.max_params, "budget_samples": self.budget_samples,
               "n_train_full": self.n_full, "rows": rows, "verdict": verdict,
               "wall_seconds": round(self.state.get("wall_seconds", 0.0))}
        (self.work / "report.json").write_text(json.dumps(out, indent=1))
        (self.work / "report.md").write_text(markdown_table(out))
        return out


def _dir_name(key: str, ranks: list[int]) -> str:
    """A final training's checkpoint folder: its key and ranks (a checkpoint never meets other ranks)."""
    import hashlib

    digest = hashlib.sha1(",".join(map(str, ranks)).encode()).hexdigest()[:10]
    return f"{key.replace(':', '_').replace('+', '-')}-{digest}"


def _strategy_options(strategy: str, budget: int) -> dict[str, Any]:
    """Options sized for a budget of tens of trials (the registry defaults suit thousands)."""
    pop = max(6, min(30, budget // 4))
    if strategy in ("pstrn", "nsga2"):
        return {"population": pop, "prescreen": 5}
    if strategy == "bayes":
        return {"n_startup": max(5, budget // 4)}
    return {}


def markdown_table(report: dict[str, Any]) -> str:
    head = ("| configuration | params | compression | test error % | val acc | training samples | "
            "full-epoch equiv. | wall |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in report["rows"]:
        wall = "" if r["seconds"] is None else f"{r['seconds'] / 60:.0f} min"
        val = "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}"
        te = "n/a" if r["test_error"] is None else f"{r['test_error']:.2f}"
        lines.append(f"| {r['row']} | {r['params']:,} | {r['compression']:.2f}x | {te} | {val} | "
                     f"{r['samples']:,} | {r['epoch_equivalents']:,.1f} | {wall} |")
    return head + "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ranksearch bench pstrn", description=__doc__.split("\n\n")[0])
    p.add_argument("space", nargs="?", default=DEFAULT_SPACE)
    p.add_argument("--workdir", default="bench-pstrn", help="state, weights, searches, report (default: %(default)s)")
    p.add_argument("--strategies", default="pstrn,bayes", help="comma-separated (default: %(default)s)")
    p.add_argument("--budget", type=int, default=40, help="trials per search (default: %(default)s)")
    p.add_argument("--subset", type=int, default=10_000, help="training images per trial (default: %(default)s)")
    p.add_argument("--trial-epochs", type=int, default=3, help="passes over the subset (default: %(default)s)")
    p.add_argument("--grace", type=int, default=1, help="MO-ASHA's first rung, in passes (default: %(default)s)")
    p.add_argument("--final-top", type=int, default=2, help="front members trained in full, at most 5 (default: %(default)s)")
    p.add_argument("--max-params", type=int, default=None,
                   help=f"the searches' size cap (default: the dense net's / {TARGET_COMPRESSION:g}, PSTRN-M's compression)")
    p.add_argument("--dense-from", default=None,
                   help="a bench work folder (bench pstrn, front, recipe) whose dense network to reuse; its cost is still counted")
    p.add_argument("--workers", type=int, default=2, help="trials / final trainings at once (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: WORKDIR/mlruns)")
    p.add_argument("--name-prefix", default="bench-pstrn", help="search names (default: %(default)s)")
    a = p.parse_args(argv)
    from ranksearch import strategies

    a.strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    bad = [s for s in a.strategies if s.partition("+")[0] not in strategies.available()
           or s.partition("+")[2] not in ("", "seeds")]
    if bad or not a.strategies:
        raise BenchError(f"--strategies {','.join(bad) or '(none)'}: valid strategies are "
                         f"{', '.join(strategies.available())}, each optionally with '+seeds'")
    if not 1 <= a.final_top <= 5:
        raise BenchError(f"--final-top {a.final_top}: the benchmark trains 1 to 5 configurations per strategy")
    for flag in ("budget", "subset", "trial_epochs", "grace", "workers"):
        if getattr(a, flag) < 1:
            raise BenchError(f"--{flag.replace('_', '-')} must be at least 1 (got {getattr(a, flag)})")
    if a.max_params is not None and a.max_params < 1:
        raise BenchError(f"--max-params must be at least 1 (got {a.max_params})")
    if a.dense_from is not None:
        shared_dense(a.dense_from)
    if a.grace > a.trial_epochs:
        raise BenchError(f"--grace {a.grace} is more than --trial-epochs {a.trial_epochs}")
    if not Path(a.space).is_file():
        raise BenchError(f"space file {a.space!r} not found")
    return a


def shared_dense(src: str) -> dict[str, Any]:
    """The dense stage another bench finished in folder `src` (its bench.json row)."""
    other = Path(src)
    try:
        row = json.loads((other / STATE_FILE).read_text())["dense"]
        if not (other / "dense.pt").is_file():
            raise KeyError("dense.pt")
    except (OSError, KeyError, ValueError, TypeError):
        raise BenchError(f"--dense-from {src}: no finished dense stage there (bench.json with a 'dense' "
                         "entry, and dense.pt); run that bench first or leave --dense-from out") from None
    return row


def run_stages(argv: list[str] | None, parse: Callable[[list[str] | None], argparse.Namespace],
               make: Callable[[argparse.Namespace], PstrnBench]) -> tuple[int, PstrnBench | None, dict[str, Any]]:
    """What every resumable bench's `main` does first: arguments (bad ones: exit code 2, nothing
    made), then the stages (one interrupted: exit code 1, the state so far kept); (code, bench, report)."""
    try:
        args = parse(argv)
    except RanksearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None, {}
    bench = make(args)
    try:
        return 0, bench, bench.run()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, bench, {}


def main(argv: list[str] | None = None) -> int:
    code, bench, report = run_stages(argv, parse_args, PstrnBench)
    if code:
        return code
    print()
    print(markdown_table(report))
    for r in report["rows"]:
        if r.get("hparams"):
            print(f"{r['row']}: trained with the values its search found: {json.dumps(r['hparams'], sort_keys=True)}")
    for v in report["verdict"]:
        print(f"{v['row']}: dominates PSTRN-M within 1/100 of its work: {'YES' if v['dominates_pstrn_m'] else 'no'}")
    print(f"report: {bench.work / 'report.md'} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
