"""Driver scale: what one search driver costs per trial, and how many trials a second it sustains.

    python -m ranksearch.bench.scale                          # 1,000 instant trials, 50 at once
    python -m ranksearch.bench.scale --tracking-uri http://127.0.0.1:5000 --json scale.json

Trials here do no work: a fake trainable reports `--epochs` epochs and a final result at once
(no checkpoints), so everything measured is the driver's: Ray Tune's controller, the
Searcher adapter with its strategy, tracking, and the search-state file. Two parts:

1. components, no Ray: the calls the driver makes per trial, timed alone over `--trials` trials:
   the adapter (`suggest` + completion, strategy ask/tell included), tracking (queueing the
   child run, epochs and result, then delivering them to the store: calls per trial, trials
   delivered per second by the tracking thread), and saving `search.json` (its cost grows with
   the number of trials it holds, and it is written twice per trial).
2. end to end: a real search (`ranksearch.tune.driver.run_search`) on in-process Ray with
   `--concurrent` logical CPUs, one fake trial per CPU at a time, actors reused: trials per
   second in steady state (after the first 2 x concurrent), driver CPU per trial split by
   thread (Tune's loop with the adapter and ranksearch's handlers; the tracking thread; Ray's
   own threads), and the proposal-to-recorded latency.

The tracking store defaults to a fresh local SQLite file; pass an MLflow server to see the
cost of real HTTP writes (the server's own CPU is not counted: it runs elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart_digits.yaml"


# -- the fake trial (runs in Ray workers: keep this module's imports light) ------------------------------
def instant_trial(config: dict[str, Any], *, space_json: str = "{}", **_: Any) -> None:
    """Stands in for `train_trial`: same reports, no training, no checkpoints."""
    from ray import tune

    from ranksearch.tune.trainable import FINAL_KEY

    started = time.time()
    acc = _fake_accuracy(config["ranks"])
    epochs = int((json.loads(space_json).get("training") or {}).get("epochs") or 0)
    for e in range(1, epochs + 1):
        tune.report({"epoch": e, "train_loss": 1.0 / e, "val_accuracy": acc * e / epochs,
                     "best_val_accuracy": acc * e / epochs, FINAL_KEY: False})
    tune.report({FINAL_KEY: True, "rs_status": "ok", "rs_error": "", "val_accuracy": acc,
                 "final_val_accuracy": acc, "epochs_done": epochs, "best_epoch": epochs, "samples_seen": 0,
                 "train_seconds": 0.0, "rs_trial_seconds": time.time() - started, "rs_started_at": started,
                 "rs_ended_at": time.time(), "latency_ms": math.nan, "params_measured": 0, "rs_resumed_from": ""})


def _fake_accuracy(ranks: Any) -> float:
    """A smooth, deterministic accuracy: more rank, more accuracy (a front forms)."""
    s = sum(int(r) for r in ranks)
    return 1.0 - 0.9 * math.exp(-s / 40.0)


def _space(trials: int, concurrent: int, strategy: str, epochs: int = 2) -> Any:
    import yaml

    from ranksearch.space import SearchSpace

    data = yaml.safe_load(_SPACE.read_text())
    data["training"]["epochs"] = max(1, epochs)  # the fake trial reports this many epochs
    data["strategy"] = {"name": strategy, "budget": trials, "options": {}}
    data["resources"] = {"cpus_per_trial": 1, "max_concurrent": concurrent}
    return SearchSpace.from_dict(data, source=str(_SPACE))


# -- part 1: components ---------------------------------------------------------------------------------
def components(trials: int, epochs: int, strategy: str, tracking_uri: str, workdir: Path,
               which: tuple[str, ...] = ("adapter", "tracking", "state")) -> dict[str, Any]:
    from ranksearch import strategies
    from ranksearch.tune.searcher import StrategySearcher
    from ranksearch.tune.trainable import FINAL_KEY

    space = _space(trials, 50, strategy)
    out: dict[str, Any] = {}

    # The adapter and strategy: suggest, then the final result, as Tune delivers them.
    opts = {"budget": trials} if "budget" in strategies.options(strategy) else {}
    searcher = StrategySearcher(strategies.get(strategy, space, seed=0, **opts), max_concurrent=None)
    results = []
    t0 = time.perf_counter()
    for i in range(trials):
        cfg = searcher.suggest(f"tune{i}")
        if not isinstance(cfg, dict):
            break
        report = {FINAL_KEY: True, "rs_status": "ok", "val_accuracy": _fake_accuracy(cfg["ranks"]),
                  "final_val_accuracy": 0.5, "epochs_done": epochs, "train_seconds": 0.0, "latency_ms": math.nan}
        searcher.on_trial_complete(f"tune{i}", report)
        results.append((cfg["trial_id"], cfg["ranks"], report))
    adapter_s = time.perf_counter() - t0
    out["adapter"] = {"trials": len(results), "seconds_per_trial": adapter_s / max(1, len(results)),
                      "suggest_s": searcher.stats["suggest_s"], "tell_s": searcher.stats["tell_s"]}

    if "tracking" in which:
        out["tracking"] = _tracking(space, results, epochs, strategy, trials, tracking_uri)
    if "state" in which:
        out["state_file"] = _state_saves(space, results, strategy, workdir)
    return out


def _tracking(space: Any, results: list, epochs: int, strategy: str, trials: int, tracking_uri: str) -> dict[str, Any]:
    """Queue what the driver queues per trial, then time the delivery."""
    from ranksearch.tracking import SearchTracker
    from ranksearch.tune.searcher import result_from_report

    tracker = SearchTracker(space, tracking_uri=tracking_uri, run_name="bench-scale-components",
                            params={"strategy": strategy, "budget": trials})
    tracker.start()
    t0 = time.perf_counter()
    for tid, ranks, report in results:
        tracker.trial_started(tid, ranks, {})
        for e in range(1, epochs + 1):
            tracker.trial_epoch(tid, e, {"train_loss": 1.0 / e, "val_accuracy": 0.5})
        tracker.trial_finished(tid, result_from_report(space, tuple(ranks), report))
    enqueue_s = time.perf_counter() - t0
    calls0 = tracker.stats["calls"]
    tracker.flush(timeout=3600)
    drain_s = time.perf_counter() - t0
    tracker.finish("FINISHED", timeout=600)
    n = max(1, len(results))
    return {"uri": tracking_uri, "enqueue_seconds_per_trial": enqueue_s / n,
            "delivery_seconds": drain_s, "trials_per_second_delivered": n / drain_s,
            "calls_per_trial": tracker.stats["calls"] / n, "calls_before_flush": calls0,
            "ops": tracker.stats["ops"]}


def _state_saves(space: Any, results: list, strategy: str, workdir: Path) -> dict[str, Any]:
    """search.json: its size and save cost grow with the trials it holds."""
    from ranksearch.tune.searcher import result_from_report
    from ranksearch.tune.state import SearchState, TrialRecord
    from ranksearch.tune.storage import Storage

    storage = Storage.parse(str(workdir / "state"))
    state = SearchState(name="bench", space=space.to_dict(), settings={"strategy": strategy})
    marks = sorted({m for m in (100, 1000, len(results)) if m <= len(results)})
    saves: dict[str, Any] = {}
    for i, (tid, ranks, report) in enumerate(results, start=1):
        rec = TrialRecord(tid, list(ranks), {}, status="ok", attempts=[{"tune_id": f"tune{i}", "dir": f"{tid}_x"}],
                          result=result_from_report(space, tuple(ranks), report).to_dict(), proposed_at=time.time())
        state.trials[tid] = rec
        state.order.append(tid)
        if i in marks:
            t0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                state.save(storage)
            saves[str(i)] = {"seconds_per_save": (time.perf_counter() - t0) / reps,
                             "bytes": Path(storage.path("bench", "search.json")).stat().st_size}
    return saves


# -- part 2: end to end ---------------------------------------------------------------------------------
class _ThreadCPU:
    """CPU seconds per thread of this process (Linux /proc), to split the driver's cost."""

    @staticmethod
    def snapshot() -> dict[int, float]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for tid in os.listdir(f"/proc/{os.getpid()}/task"):
            try:
                with open(f"/proc/{os.getpid()}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, ValueError, IndexError):
                continue
        return out

    @staticmethod
    def names() -> dict[int, str]:
        return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


class _LoopProfile:
    """Exclusive CPU time (this thread's, `time.thread_time`) of the driver's own parts, so the
    Tune loop's CPU splits into: strategy + adapter, tracking (queueing), the state file, and
    Tune itself (the rest). It wraps the methods for the run and puts them back after."""

    TARGETS = (
        ("ranksearch.tune.searcher", "StrategySearcher", "suggest", "adapter_and_strategy"),
        ("ranksearch.tune.searcher", "StrategySearcher", "on_trial_complete", "adapter_and_strategy"),
        ("ranksearch.tune.searcher", "StrategySearcher", "fail", "adapter_and_strategy"),
        ("ranksearch.tune.state", "SearchState", "save", "state_file"),
        ("ranksearch.tracking", "SearchTracker", "trial_started", "tracking_queue"),
        ("ranksearch.tracking", "SearchTracker", "trial_epoch", "tracking_queue"),
        ("ranksearch.tracking", "SearchTracker", "trial_finished", "tracking_queue"),
    )

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self._local = threading.local()
        self._saved: list[tuple[Any, str, Any]] = []

    def _wrap(self, fn: Any, bucket: str) -> Any:
        prof = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            stack = prof._local.__dict__.setdefault("stack", [])
            stack.append(0.0)  # CPU of wrapped calls nested in this one
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.thread_time() - t0
                nested = stack.pop()
                prof.cpu[bucket] = prof.cpu.get(bucket, 0.0) + total - nested
                if stack:
                    stack[-1] += total

        return wrapper

    def __enter__(self) -> _LoopProfile:
        import importlib

        for module, cls_name, method, bucket in self.TARGETS:
            cls = getattr(importlib.import_module(module), cls_name)
            original = cls.__dict__[method]
            self._saved.append((cls, method, original))
            setattr(cls, method, self._wrap(original, bucket))
        return self

    def __exit__(self, *exc: Any) -> None:
        for cls, method, original in reversed(self._saved):
            setattr(cls, method, original)
        self._saved.clear()


def end_to_end(trials: int, concurrent: int, epochs: int, strategy: str, tracking_uri: str,
               workdir: Path, quiet: bool) -> dict[str, Any]:
    import ray

    import ranksearch.tune.trainable as trainable_module
    from ranksearch.tune.driver import SearchSettings, run_search

    space = _space(trials, concurrent, strategy, epochs)
    settings = SearchSettings(name="bench-scale", strategy=strategy, budget=trials, seed=0, workers=concurrent,
                              storage=str(workdir / "store"), options={}, max_failures=0,
                              tracking_uri=tracking_uri, cpus_per_trial=1.0)
    # One logical CPU per concurrent trial (the trials do nothing). A Ray runtime that is already
    # up (a test session's) is used as it is.
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=concurrent, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    original = trainable_module.train_trial
    trainable_module.train_trial = instant_trial
    names: dict[int, str] = {}
    cpu0 = _ThreadCPU.snapshot()
    last: dict[int, float] = dict(cpu0)
    rus0 = os.times()
    stop = threading.Event()

    def watch() -> None:  # threads come and go (the tracker's ends with the search): sample them
        while not stop.is_set():
            names.update(_ThreadCPU.names())
            last.update(_ThreadCPU.snapshot())
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, name="bench-watch", daemon=True)
    watcher.start()
    profile = _LoopProfile()
    try:
        t0 = time.perf_counter()
        with profile:
            outcome = run_search(space, settings, show_progress=not quiet)
        wall = time.perf_counter() - t0
    finally:
        trainable_module.train_trial = original
        stop.set()
        watcher.join()
        names.update(_ThreadCPU.names())
    rus1 = os.times()
    last.update(_ThreadCPU.snapshot())
    if started_ray:
        ray.shutdown()

    n = outcome.n_trials
    rows = outcome.trials
    ends = sorted(r["ended_at"] for r in rows if r.get("ended_at"))
    warm = min(len(ends) - 1, 2 * concurrent)
    steady = (len(ends) - 1 - warm) / (ends[-1] - ends[warm]) if len(ends) > warm + 1 else float("nan")
    lat = [r["end_to_end_seconds"] - (r["trial_seconds"] or 0.0) for r in rows
           if r.get("end_to_end_seconds") is not None]
    handler = [r["driver_handler_seconds"] for r in rows if r.get("driver_handler_seconds") is not None]
    main_tid = threading.main_thread().native_id
    by_group = {"tune_loop": 0.0, "tracking": 0.0, "ray_and_other": 0.0}
    for tid, cpu in last.items():
        used = cpu - cpu0.get(tid, 0.0)
        name = names.get(tid, "")
        if name == "bench-watch":
            continue
        group = "tune_loop" if tid == main_tid else ("tracking" if name.startswith("ranksearch-tracking")
                                                      else "ray_and_other")
        by_group[group] += used
    process_cpu = (rus1.user - rus0.user) + (rus1.system - rus0.system)
    loop = {k: v / max(1, n) for k, v in profile.cpu.items()}
    loop["tune_itself"] = by_group["tune_loop"] / max(1, n) - sum(loop.values())
    searcher = outcome.stats.get("searcher", {})
    return {
        "status": outcome.status, "trials": n, "concurrent": concurrent, "epochs": epochs,
        "wall_seconds": wall, "fit_seconds": outcome.seconds["fit"], "startup_seconds": outcome.seconds["startup"],
        "trials_per_second_overall": n / outcome.seconds["fit"],
        "trials_per_second_steady": steady,
        "driver_cpu_seconds_per_trial": process_cpu / max(1, n),
        "driver_cpu_by_thread_per_trial": {k: v / max(1, n) for k, v in by_group.items()},
        "tune_loop_cpu_per_trial": loop,
        "ranksearch_handler_seconds_per_trial": (sum(handler) / len(handler)) if handler else None,
        "adapter_seconds_per_trial": (searcher.get("suggest_s", 0.0) + searcher.get("tell_s", 0.0)) / max(1, n),
        "state_saves": outcome.stats.get("state_saves"),
        "state_save_seconds_per_trial": (outcome.stats.get("state_save_seconds") or 0.0) / max(1, n),
        "latency_median_seconds": statistics.median(lat) if lat else None,
        "latency_p95_seconds": sorted(lat)[int(0.95 * (len(lat) - 1))] if lat else None,
        "tracker": outcome.stats.get("tracker"),
    }


# -- report ---------------------------------------------------------------------------------------------
def report(r: dict[str, Any]) -> str:
    c, e = r.get("components"), r.get("end_to_end")
    lines = [f"driver scale benchmark: {r['trials']} instant trials, {r['concurrent']} at once, "
             f"{r['epochs']} epoch reports each, strategy {r['strategy']}, tracking {r['tracking']}", ""]
    if c:
        a = c["adapter"]
        lines += ["components (no Ray)",
                  f"  adapter + strategy, per trial          {1000 * a['seconds_per_trial']:9.3f} ms"
                  f"   (max {1 / max(a['seconds_per_trial'], 1e-9):,.0f} trials/s)"]
        t = c.get("tracking")
        if t:
            lines += [
                f"  tracking: queueing, per trial          {1000 * t['enqueue_seconds_per_trial']:9.3f} ms",
                f"  tracking: store calls per trial        {t['calls_per_trial']:9.2f}",
                f"  tracking: delivered, trials/s          {t['trials_per_second_delivered']:9.1f}"
                f"   ({1000 / t['trials_per_second_delivered']:.2f} ms per trial on the tracking thread)",
            ]
        for k, s in c.get("state_file", {}).items():
            lines.append(f"  search.json at {int(k):>6,} trials: {s['bytes'] / 1e6:6.2f} MB, "
                         f"{1000 * s['seconds_per_save']:7.2f} ms per save (2 saves per trial)")
        lines.append("")
    if e:
        g = e["driver_cpu_by_thread_per_trial"]
        lines += [
            f"end to end (Ray Tune, in-process, {e['concurrent']} logical CPUs): status {e['status']}, "
            f"{e['trials']} trials",
            f"  trials per second, steady state        {e['trials_per_second_steady']:9.1f}",
            f"  trials per second, whole fit           {e['trials_per_second_overall']:9.1f}"
            f"   (start-up {e['startup_seconds']:.1f} s before it)",
            f"  driver CPU per trial                   {1000 * e['driver_cpu_seconds_per_trial']:9.2f} ms",
            f"    Tune loop thread                     {1000 * g['tune_loop']:9.2f} ms",
            f"      Tune itself                        {1000 * e['tune_loop_cpu_per_trial'].get('tune_itself', 0):9.2f} ms",
            f"      search.json saves                  {1000 * e['tune_loop_cpu_per_trial'].get('state_file', 0):9.2f} ms",
            f"      adapter + strategy                 {1000 * e['tune_loop_cpu_per_trial'].get('adapter_and_strategy', 0):9.2f} ms",
            f"      tracking (queueing, front)         {1000 * e['tune_loop_cpu_per_trial'].get('tracking_queue', 0):9.2f} ms",
            f"    tracking thread (MLflow client)      {1000 * g['tracking']:9.2f} ms",
            f"    Ray core and other threads           {1000 * g['ray_and_other']:9.2f} ms",
            f"  proposal to recorded, median / p95     {e['latency_median_seconds']:9.3f} s / "
            f"{e['latency_p95_seconds']:.3f} s",
        ]
    return "\n".join(lines)


def run(trials: int = 1000, concurrent: int = 50, epochs: int = 2, strategy: str = "random",
        tracking_uri: str | None = None, *, parts: tuple[str, ...] = ("components", "end_to_end"),
        quiet: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ranksearch-scale-") as tmp:
        work = Path(tmp)
        uri = tracking_uri or str(work / "mlruns")
        out: dict[str, Any] = {"trials": trials, "concurrent": concurrent, "epochs": epochs, "strategy": strategy,
                               "tracking": "local SQLite" if tracking_uri is None else tracking_uri,
                               "cpus": os.cpu_count()}
        if "components" in parts or "adapter" in parts:
            which = ("adapter", "tracking", "state") if "components" in parts else ("adapter",)
            out["components"] = components(trials, epochs, strategy, uri if tracking_uri else str(work / "mlruns-c"),
                                           work, which)
        if "end_to_end" in parts:
            out["end_to_end"] = end_to_end(trials, concurrent, epochs, strategy, uri, work, quiet)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ranksearch.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2, help="epoch reports per trial")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: a temporary SQLite file)")
    parser.add_argument("--part", choices=("all", "components", "adapter", "end_to_end"), default="all",
                        help="adapter: the strategy and adapter alone (compare strategies)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--progress", action="store_true", help="show the search's progress display")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.concurrent < 1 or args.epochs < 0:
        parser.error("--trials and --concurrent must be >= 1, --epochs >= 0")
    parts = ("components", "end_to_end") if args.part == "all" else (args.part,)
    result = run(args.trials, args.concurrent, args.epochs, args.strategy, args.tracking_uri, parts=parts,
                 quiet=not args.progress)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
