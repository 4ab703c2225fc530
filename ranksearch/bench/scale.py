"""Driver scale: what one search driver costs per trial, and how many trials a second it sustains.

    python -m ranksearch.bench.scale                          # 1,000 instant trials, 50 at once
    python -m ranksearch.bench.scale --trials 10000 --concurrent 8 --part end_to_end,bare
    python -m ranksearch.bench.scale --tracking-uri http://127.0.0.1:5000 --json scale.json

Trials here do no work: a fake trainable reports `--epochs` epochs and a final result at once
(no checkpoints), so everything measured is the driver's: Ray Tune's controller, the
Searcher adapter with its strategy, tracking, and the search's record. Three parts:

1. components, no Ray: the calls the driver makes per trial, timed alone over `--trials` trials:
   the adapter (`suggest` + completion, strategy ask/tell included), tracking (queueing the
   child run, epochs and result, then delivering them to the store: calls per trial, trials
   delivered per second by the tracking thread), and appending to the search's record (one
   append per proposal and per result: it must cost the same at trial 10,000 as at trial 1).
2. end to end: a real search (`ranksearch.tune.driver.run_search`) on in-process Ray with
   `--concurrent` logical CPUs, one fake trial per CPU at a time, actors reused: trials per
   second in steady state (after the first 2 x concurrent), driver CPU per trial split by
   thread (Tune's loop with the adapter and ranksearch's handlers; the tracking thread; Ray's
   own threads), the driver's CPU per trial over the first and the last 1,000 trials (flat,
   not growing with the search), and the proposal-to-recorded latency.
3. bare Ray Tune: the same instant trials, concurrency and actor reuse, with a trivial searcher
   (random ranks), no tracking, no record, no scheduler: the ceiling ranksearch's driver is
   compared with, in the same run on the same machine.

The tracking store defaults to a fresh local SQLite file; pass an MLflow server to see the
cost of real HTTP writes (the server's own CPU is not counted: it runs elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
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
    """Stands in for `train_trial`: same reports (closed-form costs counted in the worker, as
    there), no training, no checkpoints."""
    from ray import tune

    from ranksearch.tune.searcher import reported_costs
    from ranksearch.tune.trainable import FINAL_KEY, space_from_json

    started = time.time()
    acc = _fake_accuracy(config["ranks"])
    costs = reported_costs(space_from_json(space_json), tuple(int(r) for r in config["ranks"]))
    epochs = int((json.loads(space_json).get("training") or {}).get("epochs") or 0)
    for e in range(1, epochs + 1):
        tune.report({"epoch": e, "train_loss": 1.0 / e, "val_accuracy": acc * e / epochs,
                     "best_val_accuracy": acc * e / epochs, FINAL_KEY: False})
    tune.report({FINAL_KEY: True, "rs_status": "ok", "rs_error": "", "val_accuracy": acc,
                 "final_val_accuracy": acc, "epochs_done": epochs, "best_epoch": epochs, "samples_seen": 0,
                 "train_seconds": 0.0, "rs_trial_seconds": time.time() - started, "rs_started_at": started,
                 "rs_ended_at": time.time(), "latency_ms": math.nan, "params_measured": 0, "rs_resumed_from": "",
                 **costs})


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
    from ranksearch.tune.searcher import StrategySearcher, reported_costs
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
                  "final_val_accuracy": 0.5, "epochs_done": epochs, "train_seconds": 0.0, "latency_ms": math.nan,
                  **reported_costs(space, tuple(cfg["ranks"]))}  # counted by the trial, as train_trial does
        searcher.on_trial_complete(f"tune{i}", report)
        results.append((cfg["trial_id"], cfg["ranks"], report))
    adapter_s = time.perf_counter() - t0
    out["adapter"] = {"trials": len(results), "seconds_per_trial": adapter_s / max(1, len(results)),
                      "suggest_s": searcher.stats["suggest_s"], "tell_s": searcher.stats["tell_s"]}

    if "tracking" in which:
        out["tracking"] = _tracking(space, results, epochs, strategy, trials, tracking_uri)
    if "state" in which:
        out["record"] = _record_appends(space, results, strategy, workdir)
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


def _record_appends(space: Any, results: list, strategy: str, workdir: Path) -> dict[str, Any]:
    """The search's record: what the driver appends per trial (a proposal, an attempt and a
    result), timed over the first and the last 100 trials (equal: O(1) per trial)."""
    from ranksearch.tune.searcher import result_from_report
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

    storage = Storage.parse(str(workdir / "record"))
    state = SearchState(name="bench", space=space.to_dict(), settings={"strategy": strategy})
    state.open_log(storage)
    state.save(storage)
    per_trial: list[float] = []
    for i, (tid, ranks, report) in enumerate(results, start=1):
        t0 = time.perf_counter()
        state.record({"e": "proposed", "id": tid, "ranks": list(ranks), "info": {}, "at": time.time(),
                      "next_index": i + 1},
                     {"e": "attempt", "id": tid, "tune_id": f"tune{i}", "dir": f"{tid}_tune{i}"})
        state.record({"e": "finished", "id": tid, "at": time.time(),
                      "result": result_from_report(space, tuple(ranks), report).to_dict()})
        per_trial.append(time.perf_counter() - t0)
    state.close_log()
    k = min(100, len(per_trial))
    size = Path(storage.path("bench", "record.jsonl")).stat().st_size
    return {"trials": len(per_trial), "bytes": size,
            "first_seconds_per_trial": statistics.mean(per_trial[:k]) if k else 0.0,
            "last_seconds_per_trial": statistics.mean(per_trial[-k:]) if k else 0.0}


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
        ("ranksearch.tune.state", "SearchState", "record", "state_file"),
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
    marks: list[tuple[float, float]] = []  # (wall, process CPU) as each trial is recorded
    import ranksearch.tune.driver as driver_module

    on_told = driver_module._Session.on_told

    def marked(self: Any, *args: Any, **kwargs: Any) -> None:
        on_told(self, *args, **kwargs)
        # wall, process CPU, and the CPU of ranksearch's own parts in Tune's loop so far
        marks.append((time.perf_counter(), time.process_time(), sum(profile.cpu.values())))

    driver_module._Session.on_told = marked
    try:
        t0 = time.perf_counter()
        with profile:
            outcome = run_search(space, settings, show_progress=not quiet)
        wall = time.perf_counter() - t0
    finally:
        driver_module._Session.on_told = on_told
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
        # after the last trial: the MLflow copy catching up (its writer yields the CPU to the search)
        "tracking_catch_up_seconds": outcome.seconds["total"] - outcome.seconds["startup"] - outcome.seconds["fit"],
        "trials_per_second_steady": steady,
        "driver_cpu_seconds_per_trial": process_cpu / max(1, n),
        "driver_cpu_by_thread_per_trial": {k: v / max(1, n) for k, v in by_group.items()},
        "tune_loop_cpu_per_trial": loop,
        "ranksearch_handler_seconds_per_trial": (sum(handler) / len(handler)) if handler else None,
        "adapter_seconds_per_trial": (searcher.get("suggest_s", 0.0) + searcher.get("tell_s", 0.0)) / max(1, n),
        "record_appends": outcome.stats.get("record_appends"),
        "record_seconds_per_trial": (outcome.stats.get("record_seconds") or 0.0) / max(1, n),
        "windows": windows(marks),
        "latency_median_seconds": statistics.median(lat) if lat else None,
        "latency_p95_seconds": sorted(lat)[int(0.95 * (len(lat) - 1))] if lat else None,
        "tracker": outcome.stats.get("tracker"),
    }


def windows(marks: list[tuple[float, float]], size: int = 1000) -> dict[str, Any]:
    """Process CPU and trials per second over the first and the last `size` recorded trials
    (the first window starts at the first trial, so start-up is left out of both)."""
    n = len(marks)
    if n < 3:
        return {}
    w = max(1, min(size, (n - 1) // 2))

    def window(a: int, b: int) -> dict[str, float]:
        k = b - a
        out = {"trials": k, "cpu_seconds_per_trial": (marks[b][1] - marks[a][1]) / k,
               "trials_per_second": k / (marks[b][0] - marks[a][0]) if marks[b][0] > marks[a][0] else math.nan}
        if len(marks[a]) > 2:  # ranksearch's own parts: record, adapter and strategy, tracking queue
            out["own_cpu_seconds_per_trial"] = (marks[b][2] - marks[a][2]) / k
        return out

    first, last = window(0, w), window(n - 1 - w, n - 1)
    out = {"size": w, "first": first, "last": last,
           "cpu_ratio_last_to_first": last["cpu_seconds_per_trial"] / first["cpu_seconds_per_trial"]
           if first["cpu_seconds_per_trial"] > 0 else math.nan}
    if first.get("own_cpu_seconds_per_trial"):
        out["own_cpu_ratio_last_to_first"] = last["own_cpu_seconds_per_trial"] / first["own_cpu_seconds_per_trial"]
    return out


def bare_tune(trials: int, concurrent: int, epochs: int, workdir: Path) -> dict[str, Any]:
    """The same instant trials through Ray Tune alone: a trivial searcher (random ranks), no
    tracking, no record, no scheduler, the same Tune settings (actor reuse, no per-trial logger
    files, one CPU per trial). The ceiling the ranksearch driver is measured against."""
    import ray
    from ray import tune
    from ray.tune.search import Searcher

    from ranksearch.tune.driver import _TUNE_ENV, _env, _quiet_loggers

    space = _space(trials, concurrent, "random", epochs)
    values = [list(e.values) for e in space.elements]

    class RandomRanks(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="val_accuracy", mode="max")
            self.rng = random.Random(0)
            self.count = 0

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if self.count >= trials:
                return Searcher.FINISHED
            self.count += 1
            return {"trial_id": f"t{self.count:05d}", "ranks": [self.rng.choice(v) for v in values],
                    "resume_from": None}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            pass

    marks: list[tuple[float, float]] = []

    class Marks(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            marks.append((time.perf_counter(), time.process_time()))

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=concurrent, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        with _env({**_TUNE_ENV, "TUNE_MAX_PENDING_TRIALS_PG": str(concurrent)}), _quiet_loggers():
            trainable = tune.with_resources(
                tune.with_parameters(instant_trial, space_json=json.dumps(space.to_dict())), {"cpu": 1.0})
            tuner = tune.Tuner(
                trainable, param_space={},
                tune_config=tune.TuneConfig(search_alg=RandomRanks(), num_samples=-1,
                                            max_concurrent_trials=concurrent, reuse_actors=True),
                run_config=tune.RunConfig(name="bench-bare", storage_path=str(workdir / "bare"), verbose=0,
                                          callbacks=[Marks()],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
            )
            cpu0, t0 = time.process_time(), time.perf_counter()
            tuner.fit()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        if started_ray:
            ray.shutdown()
    n = len(marks)
    return {"trials": n, "fit_seconds": wall, "trials_per_second_overall": n / wall if wall else math.nan,
            "driver_cpu_seconds_per_trial": cpu / max(1, n), "windows": windows(marks)}


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
        rec = c.get("record")
        if rec:
            lines.append(f"  record appends, per trial              {1000 * rec['first_seconds_per_trial']:9.3f} ms"
                         f" over the first 100, {1000 * rec['last_seconds_per_trial']:.3f} ms over the last 100"
                         f" ({rec['trials']:,} trials, {rec['bytes'] / 1e6:.2f} MB)")
        lines.append("")
    if e:
        g = e["driver_cpu_by_thread_per_trial"]
        lines += [
            f"end to end (Ray Tune, in-process, {e['concurrent']} logical CPUs): status {e['status']}, "
            f"{e['trials']} trials",
            f"  trials per second, steady state        {e['trials_per_second_steady']:9.1f}",
            f"  trials per second, whole fit           {e['trials_per_second_overall']:9.1f}"
            f"   (start-up {e['startup_seconds']:.1f} s before it, MLflow complete "
            f"{e.get('tracking_catch_up_seconds', 0):.1f} s after it)",
            f"  driver CPU per trial                   {1000 * e['driver_cpu_seconds_per_trial']:9.2f} ms",
            f"    Tune loop thread                     {1000 * g['tune_loop']:9.2f} ms",
            f"      Tune itself                        {1000 * e['tune_loop_cpu_per_trial'].get('tune_itself', 0):9.2f} ms",
            f"      record appends                     {1000 * e['tune_loop_cpu_per_trial'].get('state_file', 0):9.2f} ms",
            f"      adapter + strategy                 {1000 * e['tune_loop_cpu_per_trial'].get('adapter_and_strategy', 0):9.2f} ms",
            f"      tracking (queueing, front)         {1000 * e['tune_loop_cpu_per_trial'].get('tracking_queue', 0):9.2f} ms",
            f"    tracking thread (MLflow client)      {1000 * g['tracking']:9.2f} ms",
            f"    Ray core and other threads           {1000 * g['ray_and_other']:9.2f} ms",
            f"  proposal to recorded, median / p95     {e['latency_median_seconds']:9.3f} s / "
            f"{e['latency_p95_seconds']:.3f} s",
        ]
        lines += _window_lines(e.get("windows") or {})
    b = r.get("bare")
    if b:
        lines += ["", f"bare Ray Tune (trivial searcher, no tracking, no record): {b['trials']} trials",
                  f"  trials per second, whole fit           {b['trials_per_second_overall']:9.1f}",
                  f"  driver CPU per trial                   {1000 * b['driver_cpu_seconds_per_trial']:9.2f} ms"]
        lines += _window_lines(b.get("windows") or {})
    if e and b:
        lines += ["", "side by side (ranksearch / bare Ray Tune)",
                  f"  throughput, whole fit                  {e['trials_per_second_overall'] / b['trials_per_second_overall']:9.2f}"]
        we, wb = e.get("windows") or {}, b.get("windows") or {}
        if we and wb:
            lines.append(f"  throughput, last {we['size']:,} trials            "
                         f"{we['last']['trials_per_second'] / wb['last']['trials_per_second']:9.2f}")
    return "\n".join(lines)


def _window_lines(w: dict[str, Any]) -> list[str]:
    if not w:
        return []
    f, last = w["first"], w["last"]
    return [f"  first {w['size']:,} trials: {1000 * f['cpu_seconds_per_trial']:7.2f} ms CPU/trial, "
            f"{f['trials_per_second']:.1f} trials/s; last {w['size']:,}: "
            f"{1000 * last['cpu_seconds_per_trial']:7.2f} ms, {last['trials_per_second']:.1f} trials/s "
            f"(CPU last/first {w['cpu_ratio_last_to_first']:.2f})"] + (
        [f"    ranksearch's own parts of Tune's loop: {1000 * f['own_cpu_seconds_per_trial']:.3f} ms/trial "
         f"first, {1000 * last['own_cpu_seconds_per_trial']:.3f} ms last (last/first "
         f"{w['own_cpu_ratio_last_to_first']:.2f})"] if "own_cpu_ratio_last_to_first" in w else [])


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
        if "bare" in parts:
            out["bare"] = bare_tune(trials, concurrent, epochs, work)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ranksearch.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2, help="epoch reports per trial")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: a temporary SQLite file)")
    parser.add_argument("--part", default="all",
                        help="comma-separated: components, adapter (the strategy and adapter alone, to "
                             "compare strategies), end_to_end, bare (Ray Tune alone); all = all but adapter")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--progress", action="store_true", help="show the search's progress display")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.concurrent < 1 or args.epochs < 0:
        parser.error("--trials and --concurrent must be >= 1, --epochs >= 0")
    parts = ("components", "end_to_end", "bare") if args.part == "all" else tuple(args.part.split(","))
    unknown = set(parts) - {"components", "adapter", "end_to_end", "bare"}
    if unknown:
        parser.error(f"--part {args.part!r}: unknown part(s) {', '.join(sorted(unknown))}; "
                     "use components, adapter, end_to_end, bare or all")
    result = run(args.trials, args.concurrent, args.epochs, args.strategy, args.tracking_uri, parts=parts,
                 quiet=not args.progress)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
