"""Search-service overhead: what Ray Tune and tracking add on top of the trials themselves.

    python -m ranksearch.bench.service                 # 20 trials of ~3 s on 2 workers
    ranksearch bench service --trials 20 --workers 2 --seconds 3 --json out.json

It runs one real search of the quickstart digits space (random strategy, in-process Ray,
MLflow in a temporary SQLite store, local experiment storage), with the per-trial budget
calibrated so one trial trains for about `--seconds` on one CPU, and prints side by side:

- the work: summed trial time / workers (trial time = the trainable's own wall time, from
  entering the function to its last report; training time = the trainer's loop alone);
- the search's wall time beyond start-up: first trial start to last trial end, and the
  overhead it adds to the work (goal <= 25%);
- start-up: tracking store + Ray + Tune until the first trial runs (reported, not counted);
- the median driver-side cost per trial: the driver's time from proposing a trial to having
  recorded it (searcher, Tune scheduling, actor reuse, result handling, tracking) minus the
  trial's own time (goal <= 0.3 s); and the part of it spent in ranksearch's own handlers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

GOAL_OVERHEAD = 0.25
GOAL_DRIVER_COST_S = 0.3
_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart_digits.yaml"
#: Smaller batches make epochs long enough that a trial reports a handful of times, as real
#: trials do, instead of dozens of 50-ms epochs.
_BATCH = 16


def calibrate(space_data: dict[str, Any], seconds: float) -> int:
    """Epochs that make a mid-rank trial train for about `seconds` on one thread."""
    import torch

    from ranksearch.space import SearchSpace
    from ranksearch.training import train_config

    space = SearchSpace.from_dict(space_data)
    ranks = space.equal_ranks((space.lower[0] + space.upper[0]) // 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_config(space, ranks, training=space.config.training.model_copy(update={"epochs": 1}),
                     measure_latency=False)  # warm-up: data, first optimizer
        probe = 3
        out = train_config(space, ranks, training=space.config.training.model_copy(update={"epochs": probe}),
                           measure_latency=False)
    finally:
        torch.set_num_threads(threads)
    per_epoch = out.train_seconds / probe
    return max(1, round(seconds / per_epoch))


def run(trials: int = 20, workers: int = 2, seconds: float = 3.0, *, quiet: bool = False) -> dict[str, Any]:
    """Run the benchmark search and return every number it prints."""
    from ranksearch import service

    data = yaml.safe_load(_SPACE.read_text())
    data["training"]["batch_size"] = _BATCH
    epochs = calibrate(data, seconds)
    data["training"]["epochs"] = epochs
    with tempfile.TemporaryDirectory(prefix="ranksearch-bench-") as tmp:
        space_file = Path(tmp) / "space.yaml"
        space_file.write_text(yaml.safe_dump(data, sort_keys=False))
        t0 = time.perf_counter()
        outcome = service.search(space_file, budget=trials, workers=workers, name="bench",
                                 storage=str(Path(tmp) / "store"), tracking_uri=str(Path(tmp) / "mlruns"),
                                 show_progress=not quiet)
        total = time.perf_counter() - t0
    rows = outcome.trials
    trial_s = [r["trial_seconds"] for r in rows if r["trial_seconds"] is not None]
    train_s = [float(r.get("train_seconds") or 0.0) for r in rows if r["trial_seconds"] is not None]
    starts = [r["started_at"] for r in rows if r["started_at"]]
    ends = [r["ended_at"] for r in rows if r["ended_at"]]
    steady = max(ends) - min(starts)
    work = sum(trial_s) / workers
    driver = [r["end_to_end_seconds"] - r["trial_seconds"] for r in rows
              if r["end_to_end_seconds"] is not None and r["trial_seconds"] is not None]
    handlers = [r["driver_handler_seconds"] for r in rows if r["driver_handler_seconds"] is not None]
    return {
        "trials": len(rows), "workers": workers, "epochs_per_trial": epochs, "batch_size": _BATCH,
        "status": outcome.status,
        "trial_seconds_mean": statistics.mean(trial_s), "train_seconds_mean": statistics.mean(train_s),
        "work_seconds": work, "train_work_seconds": sum(train_s) / workers,
        "wall_beyond_startup_seconds": steady,
        "overhead": steady / work - 1.0,
        "overhead_vs_training_only": steady / (sum(train_s) / workers) - 1.0,
        "startup_seconds": outcome.seconds["startup"] + (min(starts) - outcome.stats["fit_started_at"]),
        "search_seconds": total,
        "driver_cost_per_trial_median": statistics.median(driver),
        "driver_cost_per_trial_max": max(driver),
        "handler_seconds_median": statistics.median(handlers) if handlers else None,
        "in_trial_overhead_median": statistics.median([a - b for a, b in zip(trial_s, train_s, strict=False)]),
        "stats": outcome.stats,
    }


def report(r: dict[str, Any]) -> str:
    ok_overhead = r["overhead"] <= GOAL_OVERHEAD
    ok_driver = r["driver_cost_per_trial_median"] <= GOAL_DRIVER_COST_S
    lines = [
        f"search service benchmark: {r['trials']} trials on {r['workers']} workers "
        f"({r['epochs_per_trial']} epochs of digits at batch {r['batch_size']} per trial), status {r['status']}",
        "",
        f"{'':62s}{'measured':>12s}{'goal':>12s}",
        f"{'trial time, mean (s)':62s}{r['trial_seconds_mean']:12.2f}",
        f"{'  of which training loop, mean (s)':62s}{r['train_seconds_mean']:12.2f}",
        f"{'summed trial time / workers (s)':62s}{r['work_seconds']:12.2f}",
        f"{'search wall time beyond start-up (s)':62s}{r['wall_beyond_startup_seconds']:12.2f}",
        f"{'overhead: wall / (summed trial time / workers)':62s}{100 * r['overhead']:11.1f}%"
        f"{'<= 25%':>12s}  {'ok' if ok_overhead else 'MISSED'}",
        f"{'  same, against training loops only':62s}{100 * r['overhead_vs_training_only']:11.1f}%",
        f"{'start-up: MLflow + Ray + Tune + first actors (s)':62s}{r['startup_seconds']:12.2f}",
        f"{'driver-side cost per trial, median (s)':62s}{r['driver_cost_per_trial_median']:12.3f}"
        f"{'<= 0.3':>12s}  {'ok' if ok_driver else 'MISSED'}",
        f"{'  max (s)':62s}{r['driver_cost_per_trial_max']:12.3f}",
        f"{'  in ranksearch handlers (tracking, state), median (s)':62s}"
        f"{(r['handler_seconds_median'] or 0.0):12.3f}",
        f"{'in-trial overhead (reports, checkpoints, latency), median (s)':62s}{r['in_trial_overhead_median']:12.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ranksearch.bench.service", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="target training time per trial")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--quiet", action="store_true", help="no live progress display")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.workers < 1 or args.seconds <= 0:
        parser.error("--trials and --workers must be >= 1 and --seconds > 0")
    result = run(args.trials, args.workers, args.seconds, quiet=args.quiet)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
