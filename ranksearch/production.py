"""Production training: one rank configuration trained to its full budget (`ranksearch train`).

    from ranksearch import production
    result = production.train_rank_config("best.yaml", out_dir="runs/train/best")
    print(result.outcome.test_accuracy, result.run_id)

From a search space and a rank vector, or from a rank config (`ranksearch best`'s file,
`s3://...`, `runs:/...`, `models:/NAME@champion`). A rank config trains on its production
recipe (`final_training`, else `training`) with its hyperparameter values applied, and is logged to MLflow as a run linked to the
search and trial it came from. Input is checked first (`checks.check_space`, ranks, the dense
weights) so nothing is written for a run that cannot start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.errors import SettingError, SpaceError
from ranksearch.rankconfig import MODEL_ARTIFACT_DIR, MODEL_FILE, RANK_CONFIG_FILE, RankConfigFile, finite

if TYPE_CHECKING:
    from rich.console import Console

    from ranksearch.space import SearchSpace, TrainingSpec

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ProductionResult:
    """What a production training produced: the trainer's outcome, metrics.json's content,
    the output folder and (for a rank config) the MLflow run id."""

    outcome: Any
    metrics: dict[str, Any]
    out_dir: Path
    run_id: str | None = None
    config: RankConfigFile | None = None


def training_for(config: RankConfigFile, *, epochs: int | None = None, device: str | None = None) -> TrainingSpec:
    """The production recipe of a rank config, with the caller's overrides."""
    return recipe(config.training, epochs=epochs, device=device)


class ProductionRun:
    """The MLflow run of a production training (`ranksearch train CONFIG`), linked to its search."""

    def __init__(self, config: RankConfigFile, *, tracking_uri: str | None = None,
                 run_name: str | None = None, source: str | None = None) -> None:
        from ranksearch.service import default_tracking_uri
        from ranksearch.tracking import TrainingRun

        self.config = config
        prov = config.provenance
        self.tracking_uri = default_tracking_uri(tracking_uri or prov.get("tracking_uri"))
        self.run_name = run_name or f"train-{prov.get('trial_id') or config.space.name}"
        self.source = source or config.source
        self._run = TrainingRun(self.tracking_uri)

    @property
    def client(self) -> Any:
        """The MLflow client, once `start()` made it."""
        return self._run.client

    @property
    def run_id(self) -> str | None:
        return self._run.run_id

    def start(self) -> str:
        experiment = str(self.config.provenance.get("experiment") or self.config.space.name)
        prov = self.config.provenance
        tags = {"ranksearch.kind": "train", "ranksearch.space": self.config.space.name,
                "ranksearch.source": str(self.source or "")}
        for key in ("search", "search_run_id", "trial_id", "trial_run_id", "pick"):
            if prov.get(key):
                tags[f"ranksearch.{key}"] = str(prov[key])
        names = [e.name for e in self.config.space.elements]
        params = {n.replace("/", "_"): str(r) for n, r in zip(names, self.config.ranks, strict=True)}
        params["ranks"] = json.dumps(list(self.config.ranks))
        params["epochs"] = str(self.config.training.epochs)
        from ranksearch.tracking.schema import hparam_params

        params.update(hparam_params(self.config.hparams))
        return self._run.start(experiment, run_name=self.run_name, tags=tags, params=params)

    def finish(self, outcome: Any, *, metrics: Mapping[str, Any], out_dir: Path) -> None:
        """Per-epoch history, final metrics, and the weights + config + metrics.json as artifacts."""
        assert self.client is not None and self.run_id is not None
        rows = []
        for h in outcome.history:
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                if finite(h.get(k)):
                    rows.append((k, float(h[k]), int(h["epoch"])))
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and finite(v):
                rows.append((f"final_{k}" if k in ("val_accuracy",) else k, float(v), 0))
        self._run.log_metrics(rows)
        files = {RANK_CONFIG_FILE: self.config.to_yaml().encode()}
        weights = _best_weights(out_dir)
        if weights is not None:
            files[MODEL_FILE] = weights
        if (out_dir / "metrics.json").is_file():
            files["metrics.json"] = (out_dir / "metrics.json").read_bytes()
        self._run.log_files(files, MODEL_ARTIFACT_DIR)
        self._run.terminate("FINISHED" if outcome.status == "ok" else "FAILED")

    def fail(self) -> None:
        if self.client is not None and self.run_id is not None:
            try:
                self._run.terminate("FAILED")
            except Exception:  # noqa: BLE001 - already failing; keep the original error
                log.warning("could not mark MLflow run %s failed", self.run_id)


def _best_weights(out_dir: Path) -> bytes | None:
    """The best epoch's weights from the trainer checkpoint in `out_dir/checkpoint`."""
    import io

    import torch

    from ranksearch.training import CHECKPOINT_NAME

    ckpt = out_dir / "checkpoint" / CHECKPOINT_NAME
    if not ckpt.is_file():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    weights = state.get("best_state") or state.get("model")
    buf = io.BytesIO()
    torch.save(weights, buf)
    return buf.getvalue()



def recipe(training: TrainingSpec, *, epochs: int | None = None, device: str | None = None) -> TrainingSpec:
    """`training` with the caller's epoch budget and device (checked here)."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise SettingError("epochs", "must be a whole number, at least 1", value=epochs)
    if device is not None and device not in DEVICES:
        raise SettingError("device", f"must be one of {', '.join(DEVICES)}", value=device)
    if epochs is not None:
        training = training.model_copy(update={"epochs": epochs, "steps": None})
    if device is not None:
        training = training.model_copy(update={"device": device})
    return training


def dense_start(space: SearchSpace, ranks: tuple[int, ...], training: TrainingSpec,
                dense: str | os.PathLike[str] | None, seed: int | None) -> dict[str, Any]:
    """The model (cores decomposed from the `dense` weights) and distillation teacher a run
    starts from; empty when the recipe trains from scratch."""
    if training.init == "learned":
        # the cores a search's trials start from live in that search's experiment folder and are
        # cut to each trial's ranks there; a production run names its own start
        field = "final_training.init" if space.config.final_training is not None else "training.init"
        raise SpaceError(
            "is 'learned', which only a search's trials start from (the search's learned/cores.pt, "
            "cut to each trial's ranks)", file=space.source, field=field, value="learned",
            hint="give the space a final_training recipe with init: scratch, or init: dense and --dense")
    if dense is None:
        if training.init == "dense" or training.distill > 0:
            raise SettingError(
                "dense", f"is required: the training recipe has init: {training.init}, distill: "
                f"{training.distill}", show_value=False,
                hint="pass the trained dense weights (a search keeps them in its experiment folder, "
                     "dense/dense.pt), or set init: scratch and distill: 0")
        return {}
    dense = Path(dense)
    if not dense.is_file():
        raise SettingError("dense", "is not a file", value=str(dense),
                           hint="give the dense weights a search saved (EXPERIMENT/dense/dense.pt)")
    import pickle

    import torch

    from ranksearch.models import build_warm

    try:
        state = torch.load(dense, map_location="cpu", weights_only=True)
        model, net = build_warm(space, ranks, state, seed=space.seed if seed is None else seed)
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as exc:  # unreadable or mismatched
        raise SettingError("dense", f"holds no dense weights of this space's model ({space.config.model.name}): "
                           f"{str(exc).splitlines()[0]}", value=str(dense)) from None
    return {"model": model, "teacher": net if training.distill > 0 else None}


def train(space: SearchSpace, ranks: tuple[int, ...], training: TrainingSpec, *, seed: int | None,
          out_dir: str | os.PathLike[str], extra: Mapping[str, Any] | None = None,
          start: Mapping[str, Any] | None = None, console: Console | None = None) -> ProductionResult:
    """Train with a progress bar on `console`, write metrics.json, print the result line."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ranksearch.space import compression_ratio, count_params
    from ranksearch.training import train_config

    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = training.epochs or 1
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"training {space.name}", total=total)

        def on_epoch(m: dict) -> None:
            progress.update(task, completed=m["epoch"], description=(
                f"epoch {m['epoch']}: loss {m['train_loss']:.4f} val_acc {m['val_accuracy']:.4f}"))

        outcome = train_config(space, ranks, training=training, seed=seed, callback=on_epoch,
                               checkpoint_dir=out_dir / "checkpoint", evaluate_test=True, **dict(start or {}))
    metrics = {
        "space": space.name, "source": space.source, "ranks": list(ranks),
        "params": count_params(space, ranks), "dense_params": space.dense_params,
        "compression_ratio": compression_ratio(space, ranks), **outcome.to_dict(), **dict(extra or {}),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    test = outcome.test_accuracy
    console.print(
        f"{outcome.status}: val_accuracy {outcome.val_accuracy:.4f}"
        + (f", test_accuracy {test:.4f} (error {100 * (1 - test):.2f}%)" if test is not None else "")
        + f", params {metrics['params']:,} ({metrics['compression_ratio']:.2f}x), "
        f"{outcome.train_seconds:.1f} s; wrote {out_dir / 'metrics.json'}", highlight=False,
    )
    if outcome.error:
        console.print(f"[red]{outcome.error}[/red]")
    return ProductionResult(outcome, metrics, out_dir)


def train_space(space: str | os.PathLike[str] | SearchSpace, ranks: Any, *, epochs: int | None = None,
                seed: int | None = None, out_dir: str | os.PathLike[str] | None = None,
                device: str | None = None, dense: str | os.PathLike[str] | None = None,
                console: Console | None = None) -> ProductionResult:
    """Train one rank vector of a search space on its production recipe (no MLflow run)."""
    from ranksearch.checks import check_space
    from ranksearch.training import get_splits

    space = check_space(space)
    if ranks is None:
        raise SettingError("ranks", f"is required: give one integer per rank element ({space.n_ranks}: "
                           f"{', '.join(e.name for e in space.elements)})", show_value=False)
    vec = space.resolve_ranks(ranks)
    training = recipe(space.config.final_training or space.config.training, epochs=epochs, device=device)
    get_splits(space, seed=seed)  # a bad data file fails here, before anything is written
    start = dense_start(space, vec, training, dense, seed)
    out_dir = out_dir or Path("runs") / "train" / f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return train(space, vec, training, seed=seed, out_dir=out_dir, start=start, console=console)


def train_rank_config(ref: str | os.PathLike[str] | RankConfigFile, *, epochs: int | None = None,
                      seed: int | None = None, out_dir: str | os.PathLike[str] | None = None,
                      device: str | None = None, tracking_uri: str | None = None,
                      dense: str | os.PathLike[str] | None = None,
                      console: Console | None = None) -> ProductionResult:
    """Production training of a rank config, logged to MLflow and linked to its search and trial."""
    from rich.console import Console

    from ranksearch.checks import check_space
    from ranksearch.rankconfig import load_rank_config

    console = console or Console(stderr=True)
    config = ref if isinstance(ref, RankConfigFile) else load_rank_config(ref, tracking_uri=tracking_uri)
    check_space(config.space, check_data=True)
    training = recipe(config.training, epochs=epochs, device=device)
    space = config.trial_space  # the model options among the hyperparameters apply to the model
    start = dense_start(space, config.ranks, training, dense, seed)
    prov = config.provenance
    label = prov.get("trial_id") or "config"
    out_dir = Path(out_dir or Path("runs") / "train" / f"{config.space.name}-{label}-{time.strftime('%Y%m%d-%H%M%S')}")
    source = str(ref) if not isinstance(ref, RankConfigFile) else config.source
    mlrun = ProductionRun(config, tracking_uri=tracking_uri, source=source)
    run_id = mlrun.start()
    extra = {"rank_config": source, "provenance": prov, "mlflow_run_id": run_id,
             **({"hyperparameters": dict(config.hparams)} if config.hparams else {})}
    try:
        result = train(space, config.ranks, training, seed=seed, out_dir=out_dir, extra=extra,
                       start=start, console=console)
        mlrun.finish(result.outcome, metrics=result.metrics, out_dir=out_dir)
    except BaseException:
        mlrun.fail()
        raise
    return ProductionResult(result.outcome, result.metrics, out_dir, run_id, config)
