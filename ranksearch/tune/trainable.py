"""The Ray Tune function trainable: one trial = build, train and score one configuration
(ranks plus hyperparameter values, trained under `space.trial_config(hparams)`).

It runs inside a Ray worker and never talks to MLflow: it reports every epoch to Tune (with
the trainer's checkpoint, so a retried trial resumes where it stopped) and ends with one final
report that carries the outcome and a small checkpoint holding the best epoch's weights
(`model.pt`), which the driver logs. Keys it adds to Tune results start with `rs_` so they
never collide with Tune's own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace
    from ranksearch.training import TrainOutcome
    from ranksearch.tune.storage import Storage

FINAL_KEY = "rs_final"
MODEL_FILE = "model.pt"
OUTCOME_FILE = "outcome.json"
#: Per-epoch values forwarded to Tune (and from there to the trial's MLflow run).
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
              "best_val_accuracy", "samples_seen")

_SPACES: dict[str, SearchSpace] = {}
_TRIAL_SPACES: dict[tuple[str, str], SearchSpace] = {}


def space_from_json(text: str) -> SearchSpace:
    """The search space, rebuilt once per worker process (actors are reused across trials)."""
    space = _SPACES.get(text)
    if space is None:
        from ranksearch.space import SearchSpace

        space = _SPACES[text] = SearchSpace.from_dict(json.loads(text))
    return space


def trial_space(space: SearchSpace, hparams: dict[str, Any] | None, *, key: str = "") -> SearchSpace:
    """The space a trial with these hyperparameter values trains under: its recipe (and model
    options) with the values applied and validated (`space.trial_config`); the space itself
    when there are none. Cached per worker by (`key`, values)."""
    if not hparams or not space.hyper:
        return space
    from ranksearch.space import SearchSpace

    cache_key = (key or str(id(space)), json.dumps(hparams, sort_keys=True))
    out = _TRIAL_SPACES.get(cache_key)
    if out is None:
        out = SearchSpace(space.trial_config(hparams), source=space.source)
        if out.n_ranks != space.n_ranks:
            raise ValueError(f"hyperparameters {hparams} change the model's rank layout "
                             f"({space.n_ranks} -> {out.n_ranks} rank elements); only settings that "
                             "keep the tensorized layers' shapes can be searched")
        if len(_TRIAL_SPACES) > 256:  # a long search on one worker: keep memory bounded
            _TRIAL_SPACES.clear()
        _TRIAL_SPACES[cache_key] = out
    return out


def train_trial(config: dict[str, Any], *, space_json: str, storage: Storage | None = None,
                cpus_per_trial: float = 1.0, dense_path: str | None = None,
                learned_path: str | None = None) -> None:
    """Tune entry point. `config` holds trial_id, ranks, hparams (the trial's hyperparameter
    values, canonical) and resume_from (a checkpoint path under `storage` left by an earlier
    driver, or None). `dense_path`: the search's trained dense weights (`training.init:
    dense`), which the trial's cores are decomposed from. `learned_path`: the cores of the
    search's learned-seed run (`training.init: learned`), which the trial's cores are cut from."""
    from ray import tune

    from ranksearch.training import CHECKPOINT_NAME, train_config

    started = time.time()
    t0 = time.perf_counter()
    _set_threads(cpus_per_trial)
    base = space_from_json(space_json)
    if base.user_function is not None:  # the user's own training function (ranksearch.userfn)
        from ranksearch.tune.userfn_trial import train_user_trial

        return train_user_trial(config, base)
    space = trial_space(base, config.get("hparams"), key=space_json)
    if config.get("learn"):  # the `learned` strategy's trial: ranks learned in training
        from ranksearch.learned.trial import train_learned_trial

        train_learned_trial(config, space=space, storage=storage, cpus_per_trial=cpus_per_trial,
                            dense_path=dense_path)
        return
    ranks = tuple(int(r) for r in config["ranks"])
    workdir = Path(tempfile.mkdtemp(prefix=f"ranksearch-{config.get('trial_id', 'trial')}-"))
    state_dir = workdir / "state"
    state_dir.mkdir()
    try:
        resumed_from = _restore(tune.get_checkpoint(), config.get("resume_from"), storage,
                                state_dir / CHECKPOINT_NAME)

        def on_epoch(report: dict[str, Any]) -> None:
            metrics = {k: report[k] for k in EPOCH_KEYS if k in report}
            metrics[FINAL_KEY] = False
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(state_dir)))

        model = teacher = None
        if dense_path and storage is not None:
            from ranksearch.tune.warmstart import dense_net, warm_model

            if space.config.training.init == "dense":
                model = warm_model(space, ranks, dense_path, storage)
            if space.config.training.distill > 0:
                teacher = dense_net(space, dense_path, storage)
        if space.config.training.init == "learned":
            if not learned_path or storage is None:
                raise RuntimeError("training.init is 'learned' but the search kept no learned cores "
                                   "(they come from the gated run behind strategy.seeds: [learned])")
            from ranksearch.tune.warmstart import learned_model

            model = learned_model(space, ranks, learned_path, storage)
        outcome = train_config(space, ranks, callback=on_epoch, checkpoint_dir=state_dir, model=model,
                               teacher=teacher)
        trial_seconds = time.perf_counter() - t0
        final_dir = workdir / "final"
        _write_final(final_dir, state_dir / CHECKPOINT_NAME, outcome)
        from ranksearch.tune.searcher import reported_costs

        tune.report({**final_metrics(outcome, trial_seconds=trial_seconds, started=started,
                                     resumed_from=resumed_from), **reported_costs(space, ranks),
                     "rs_init": space.config.training.init if model is not None else "scratch"},
                    checkpoint=tune.Checkpoint.from_directory(str(final_dir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def final_metrics(outcome: TrainOutcome, *, trial_seconds: float, started: float,
                  resumed_from: str | None = None) -> dict[str, Any]:
    """The last report of a trial: its outcome in Tune-friendly scalars."""
    return {
        FINAL_KEY: True,
        "rs_status": outcome.status,
        "rs_error": outcome.error or "",
        "val_accuracy": _finite(outcome.val_accuracy),
        "final_val_accuracy": _finite(outcome.final_val_accuracy),
        "epochs_done": outcome.epochs_done,
        "best_epoch": outcome.best_epoch,
        "samples_seen": outcome.samples_seen,
        "train_seconds": outcome.train_seconds,
        "rs_trial_seconds": trial_seconds,
        "rs_started_at": started,
        "rs_ended_at": time.time(),
        "latency_ms": outcome.latency_ms if outcome.latency_ms is not None else math.nan,
        "params_measured": outcome.params,
        "rs_resumed_from": resumed_from or "",
        "rs_node_id": _node_id(),
    }


def _node_id() -> str:
    """The Ray node this trial ran on ('' outside Ray): which machine, on a cluster."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - bookkeeping only; never fail a trial over it
        return ""


def _finite(v: float) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan


def _set_threads(cpus: float) -> None:
    """One intra-op thread per CPU the trial holds: more only fight the other trials."""
    import torch

    n = max(1, int(cpus))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _restore(checkpoint: Any, resume_from: str | None, storage: Storage | None, target: Path) -> str | None:
    """Put the newest usable trainer checkpoint at `target`; returns where it came from.

    Tune's own checkpoint (a retry within this driver) wins over `resume_from` (a checkpoint
    found by `ranksearch resume`). A checkpoint that cannot be read is skipped: the trial then
    starts over instead of failing for good.
    """
    from ranksearch.training import CHECKPOINT_NAME

    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            src = Path(d) / CHECKPOINT_NAME
            if src.is_file() and _readable(src):
                shutil.copyfile(src, target)
                return "tune"
    if resume_from and storage is not None:
        tmp = target.parent.parent / "resume"
        try:
            storage.download(resume_from, tmp)
        except OSError:
            return None
        src = tmp / CHECKPOINT_NAME
        if src.is_file() and _readable(src):
            shutil.copyfile(src, target)
            return resume_from
    return None


def _readable(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file: start over rather than fail
        return False
    return True


def _write_final(final_dir: Path, trainer_ckpt: Path, outcome: TrainOutcome) -> None:
    """The final checkpoint: the trainer state (a retry resumes it and finds nothing left to
    do), the best epoch's weights alone (`model.pt`, what gets logged) and the outcome."""
    import torch

    final_dir.mkdir(parents=True, exist_ok=True)
    if trainer_ckpt.is_file():
        shutil.copyfile(trainer_ckpt, final_dir / trainer_ckpt.name)
        state = torch.load(trainer_ckpt, map_location="cpu", weights_only=True)
        weights = state.get("best_state") or state.get("model")
        if weights is not None:
            tmp = final_dir / f".{MODEL_FILE}.tmp"
            torch.save(weights, tmp)
            os.replace(tmp, final_dir / MODEL_FILE)
    doc = outcome.to_dict()
    doc.pop("history", None)
    (final_dir / OUTCOME_FILE).write_text(json.dumps(doc, default=str))
