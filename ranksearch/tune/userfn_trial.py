"""A user training function as a Ray Tune trial (`ranksearch.userfn` inside a Tune worker).

Every epoch the function reports goes to Tune (with the function's checkpoint folder when it
saved something there, so a retried trial restores it); the last report carries the outcome:
`rs_status`, `rs_error` and `rs_metrics` (every final metric, as JSON), which
`result_from_user_report` turns back into the `TrialResult` the strategy is told.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.trial import TrialResult

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

METRICS_KEY = "rs_metrics"
HPARAMS_KEY = "rs_hparams"


def train_user_trial(config: dict[str, Any], space: SearchSpace) -> None:
    """Run the space's user function for one Tune trial and report its outcome."""
    from ray import tune

    from ranksearch.tune.trainable import FINAL_KEY
    from ranksearch.userfn import run_user_function

    started = time.time()
    ranks = tuple(int(r) for r in config.get("ranks", ()))
    hparams = dict(config.get("hparams") or {})
    workdir = Path(tempfile.mkdtemp(prefix=f"ranksearch-{config.get('trial_id', 'trial')}-"))
    state = workdir / "state"
    state.mkdir()
    try:
        resumed = _restore(tune.get_checkpoint(), state)

        def checkpoint() -> Any:
            return tune.Checkpoint.from_directory(str(state)) if any(state.iterdir()) else None

        def on_epoch(metrics: dict[str, float]) -> None:
            tune.report({**metrics, FINAL_KEY: False}, checkpoint=checkpoint())

        outcome = run_user_function(space, ranks, hparams, trial_id=str(config.get("trial_id", "")),
                                    on_epoch=on_epoch, checkpoint_dir=state, resumed=resumed)
        final = {
            "val_accuracy": math.nan,  # the metric Tune's searcher checks for; overwritten when reported
            **{k: v for k, v in outcome.metrics.items() if not k.startswith("rs_")},
            FINAL_KEY: True,
            "rs_status": outcome.status,
            "rs_error": outcome.error or "",
            METRICS_KEY: json.dumps(outcome.metrics),
            HPARAMS_KEY: json.dumps(space.hyper.canonical(hparams) if space.hyper else {}),
            "epochs_done": outcome.epochs_done,
            "train_seconds": outcome.seconds,
            "rs_trial_seconds": time.time() - started,
            "rs_started_at": started,
            "rs_ended_at": time.time(),
            "rs_resumed_from": "tune" if resumed else "",
        }
        tune.report(final, checkpoint=checkpoint())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def result_from_user_report(space: SearchSpace, ranks: tuple[int, ...], report: dict[str, Any],
                            info: dict[str, Any]) -> TrialResult:
    """The strategy's `TrialResult` from a user-function trial's final Tune report."""
    from ranksearch.userfn import UserOutcome, to_result

    try:
        metrics = {k: float(v) for k, v in json.loads(report.get(METRICS_KEY) or "{}").items()}
    except (TypeError, ValueError):
        metrics = {}
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    status = "ok" if report.get("rs_status") == "ok" else "failed"
    outcome = UserOutcome(status, metrics, epochs_done=int(report.get("epochs_done") or 0),
                          seconds=float(report.get("train_seconds") or 0.0),
                          error=str(report.get("rs_error") or "") or None)
    try:
        hparams = json.loads(report.get(HPARAMS_KEY) or "{}")
    except ValueError:
        hparams = {}
    result = to_result(space, ranks, hparams, outcome)
    for key in ("rs_trial_seconds", "rs_started_at", "rs_ended_at"):
        if key in report:
            info[key.removeprefix("rs_")] = report[key]
    if report.get("rs_resumed_from"):
        info["resumed_from"] = report["rs_resumed_from"]
    return TrialResult(ranks=result.ranks, status=result.status, metrics=result.metrics,
                       fidelity=result.fidelity, error=result.error, info={**result.info, **info},
                       hparams=result.hparams)


def _restore(checkpoint: Any, target: Path) -> bool:
    """Copy Tune's checkpoint of this trial (a retry) into the function's folder."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as d:
        src = Path(d)
        files = list(src.iterdir())
        for p in files:
            if p.is_dir():
                shutil.copytree(p, target / p.name, dirs_exist_ok=True)
            else:
                shutil.copyfile(p, target / p.name)
    return bool(files)
