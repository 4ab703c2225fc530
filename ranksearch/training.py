"""Train and evaluate one configuration: per-epoch reporting, checkpoints, exact resume.

A trial is a model, in-memory data splits and a `TrainingSpec` budget. The loop indexes the
tensors directly with seeded permutations instead of using a DataLoader: the datasets are
small, already in memory, and worker processes would only add overhead on small machines.
Per-step work stays on the device; losses and hit counts are gathered into tensors and read
back once per epoch (plus a cheap finiteness check every few dozen steps) so the Python loop
never waits on the accelerator.

Model selection uses the VALIDATION split (best accuracy over epochs, as PSTRN's recipe does
on the test split, which we avoid). The test split is only evaluated when `evaluate_test=True`,
for final reports, on the weights of the best validation epoch.

Determinism: for a given seed on CPU two runs are bit-for-bit identical, and a run resumed
from its checkpoint ends exactly where an uninterrupted run ends. The global torch RNG and the
thread count are left as they were found (`torch.random.fork_rng`; see `train_config` for how
model initialisation is seeded).
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from ranksearch.data import DataSplits, Split
    from ranksearch.space import OptimizerSpec, ScheduleSpec, SearchSpace, TrainingSpec

__all__ = [
    "CHECKPOINT_NAME",
    "TrainOutcome",
    "evaluate",
    "full_train_size",
    "get_splits",
    "lr_factor",
    "measure_latency",
    "resolve_device",
    "train_config",
    "train_model",
    "training_subset",
]

CHECKPOINT_NAME = "checkpoint.pt"
_CHECKPOINT_VERSION = 1
_CHECK_EVERY = 50  # steps between finiteness checks (one host sync each)
_AUGMENT_MIN_SIDE = 16  # augmentation applies to images (C, H, W) at least this large


def _augment_pad(h: int) -> int:
    """Crop padding: CIFAR's customary 4 px at 32x32, 2 px for 28x28 digits/clothing."""
    return 4 if h >= 32 else 2

Callback = Callable[[dict[str, Any]], Any]
Regularizer = Callable[[], torch.Tensor]  # extra loss term, called once per training step
Log = Callable[[str], Any]


@dataclass(frozen=True)
class TrainOutcome:
    """What one training run produced; `to_dict` is JSON-friendly for trackers and Ray."""

    status: str  # "ok" | "failed" | "stopped" (the callback asked to stop)
    val_accuracy: float  # best validation accuracy over the epochs run
    final_val_accuracy: float
    test_accuracy: float | None
    history: list[dict[str, Any]]
    epochs_done: int
    steps_done: int
    samples_seen: int
    train_seconds: float
    latency_ms: float | None
    params: int
    error: str | None = None
    checkpoint: str | None = None
    best_epoch: int = 0  # 1-based epoch of `val_accuracy`; 0 when no epoch finished

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "val_accuracy": self.val_accuracy,
            "final_val_accuracy": self.final_val_accuracy,
            "test_accuracy": self.test_accuracy,
            "history": [dict(h) for h in self.history],
            "epochs_done": self.epochs_done,
            "steps_done": self.steps_done,
            "samples_seen": self.samples_seen,
            "train_seconds": self.train_seconds,
            "latency_ms": self.latency_ms,
            "params": self.params,
            "error": self.error,
            "checkpoint": self.checkpoint,
            "best_epoch": self.best_epoch,
        }


# -- devices and data -----------------------------------------------------------------------------
def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present; an explicit CUDA request without CUDA is a user error."""
    if isinstance(name, torch.device):
        dev = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda' (optionally 'cuda:N')"
            ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(dev)!r} was asked for but CUDA is not available on this machine "
                f"(torch {torch.__version__}); set training.device to 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(dev)!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {str(dev)!r}; use 'auto', 'cpu' or 'cuda'")
    return dev


_SPLITS_CACHE: dict[tuple[str, int], DataSplits] = {}
_SPLITS_LOCK = threading.Lock()


def get_splits(space: SearchSpace, *, seed: int | None = None) -> DataSplits:
    """The space's train/val/test splits, loaded once per process.

    `seed` (default: the space's seed) fixes the validation carve-out; keep it the same for
    every trial of a search so all candidates are compared on the same validation set.
    Callers must not modify the returned tensors: they are shared between trials.
    """
    from ranksearch.data import load_splits

    data = space.config.data
    seed = space.seed if seed is None else int(seed)
    key = (data.model_dump_json(), seed)
    with _SPLITS_LOCK:
        if key not in _SPLITS_CACHE:
            _SPLITS_CACHE[key] = load_splits(
                data.dataset, path=data.path, val_fraction=data.val_fraction,
                train_subset=data.train_subset, seed=seed, normalize=True,
                options=dict(data.options) or None,
            )
        return _SPLITS_CACHE[key]


def full_train_size(space: SearchSpace) -> int:
    """N_train_full: rows of the dataset's full training set, before the validation carve and
    any `train_subset` (60,000 for Fashion-MNIST). Datasets without an official test split
    count what is left after their fixed 20% test hold-out (1,438 of digits' 1,797 rows).

    Search cost is reported as `samples_consumed / full_train_size`: epochs of full-data
    training, the unit a PSTRN-style search (20 full epochs per candidate) is counted in.
    """
    from ranksearch.data.sources import HOLDOUT_FRACTION, load_raw

    data = space.config.data
    raw = load_raw(data.dataset, data.path, dict(data.options) or None)
    n = len(raw.y)
    if raw.x_test is None or raw.y_test is None:
        n -= int(math.floor(HOLDOUT_FRACTION * n + 0.5))
    return n


def trial_samples(space: SearchSpace) -> int:
    """Training samples one trial consumes when it runs to its full budget: epochs x the
    training split (after `training.subset`), or steps x batch size."""
    training = space.config.training
    if training.epochs is None:
        return int(training.steps or 0) * int(training.batch_size)
    splits = training_subset(get_splits(space), training.subset, seed=space.seed)
    return int(training.epochs) * len(splits.train.y)


def planned_trials(space: SearchSpace) -> int:
    """How many trials a strategy plans for: the trial budget, `strategy.max_trials`, or, under a
    cost budget, the budget over one trial's expected cost (lowered by MO-ASHA's rungs)."""
    from ranksearch.budget import trials_for

    spec = space.config.strategy
    if spec.trial_budget is not None:
        return spec.trial_budget
    return trials_for(spec.cost_budget, trial_samples=trial_samples(space), n_train_full=full_train_size(space),
                      expected_fraction=expected_fraction(space))


def expected_fraction(space: SearchSpace) -> float:
    """The share of its full budget one trial is expected to train: 1, or less under MO-ASHA's
    rungs (about 1/eta of a rung's trials go on)."""
    from ranksearch.budget import expected_epochs

    sched, epochs = space.config.scheduler, space.config.training.epochs
    if sched is None or sched.name != "mo_asha" or not epochs:
        return 1.0
    from ranksearch.tune.scheduler import rung_epochs

    milestones = rung_epochs(sched.grace_epochs, sched.reduction_factor, epochs)
    return expected_epochs(epochs, milestones, sched.reduction_factor) / epochs


# -- optimisation recipe --------------------------------------------------------------------------
def _make_optimizer(params: list[nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=False)
    raise ValueError(f"unknown optimizer {spec.name!r}; use adam, adamw or sgd")


def lr_factor(schedule: ScheduleSpec, epoch: int, total_epochs: int) -> float:
    """Multiplier of the base learning rate during 0-based `epoch`.

    A pure function of the epoch (stepping per epoch, like torch's MultiStepLR/StepLR/
    CosineAnnealingLR with T_max = the whole budget), so a resumed run needs no scheduler state.
    """
    if schedule.name == "none":
        return 1.0
    if schedule.name == "multistep":
        return schedule.gamma ** sum(1 for m in schedule.milestones if epoch >= m)
    if schedule.name == "step":
        return schedule.gamma ** (epoch // schedule.step_size)
    if schedule.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(total_epochs, 1)))
    raise ValueError(f"unknown schedule {schedule.name!r}; use none, multistep, step or cosine")


def _stream_seed(seed: int, stream: str, epoch: int = 0) -> int:
    """Independent 63-bit seeds per (seed, purpose, epoch), so epochs can be replayed alone."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _generator(seed: int, stream: str, epoch: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(_stream_seed(seed, stream, epoch))
    return gen


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop of the zero-padded image plus horizontal flip, in one gather."""
    b, _, h, w = x.shape
    pad = _augment_pad(h)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    rows = oy[:, None] + ar_h
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    out = padded[torch.arange(b, device=dev)[:, None, None], :,
                 rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]  # b x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()


# -- evaluation and latency -----------------------------------------------------------------------
def _distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: T^2 * KL(softmax(teacher/T) || softmax(student/T))."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def evaluate(model: nn.Module, split: Split, *, batch_size: int = 1024,
             device: str | torch.device | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on `split`; NaN for an empty split.

    Runs in eval mode under inference_mode and restores the model's previous mode.
    """
    n = len(split)
    if n == 0:
        return math.nan, math.nan
    dev = next((p.device for p in model.parameters()), torch.device("cpu")) if device is None \
        else torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = split.x[start:start + batch_size].to(dev, non_blocking=True)
                yb = split.y[start:start + batch_size].to(dev, non_blocking=True)
                logits = model(xb)
                loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
                correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return float(loss_sum) / n, int(correct) / n


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                    repeats: int = 30, warmup: int = 5, device: str | torch.device = "cpu") -> float:
    """Median wall time in ms of one forward pass on a zero batch, after `warmup` passes.

    The median resists the odd scheduler hiccup better than the mean. The model is moved to
    `device` (and stays there) and put back in its previous train/eval mode.
    """
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"measure_latency needs repeats >= 1, warmup >= 0, batch_size >= 1; got "
                         f"repeats={repeats}, warmup={warmup}, batch_size={batch_size}")
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was_training = model.training
    model.to(dev).eval()
    x = torch.zeros(batch_size, *input_shape, device=dev)
    times: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        model.train(was_training)
    return float(statistics.median(times))


# -- the training loop ----------------------------------------------------------------------------
def _fingerprint(training: TrainingSpec, seed: int, n_train: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (device and eval batch do not matter)."""
    spec = training.model_dump(mode="json", exclude={"device", "eval_batch_size"})
    return {"training": spec, "seed": int(seed), "n_train": int(n_train)}


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Run:
    """Mutable progress of one run; exactly what a checkpoint stores besides weights."""

    epochs_done: int = 0
    steps_done: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.nan
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None


def _frozen_teacher(teacher: nn.Module, device: torch.device) -> nn.Module:
    """A copy of the distillation teacher on `device`, in eval mode, its weights frozen."""
    import copy

    t = copy.deepcopy(teacher).to(device).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


class _Trainer:
    """One call of `train_model`; split out so the loop, checkpointing and failure paths read
    as separate steps."""

    def __init__(self, model: nn.Module, splits: DataSplits, training: TrainingSpec, *,
                 seed: int, device: torch.device, callback: Callback | None,
                 checkpoint_dir: str | os.PathLike[str] | None, evaluate_test: bool,
                 measure_latency: bool, max_epochs: int | None, log: Log | None,
                 teacher: nn.Module | None = None, regularizer: Regularizer | None = None) -> None:
        self.model = model
        self.regularizer = regularizer
        self.teacher = teacher
        self.splits = splits
        self.training = training
        self.seed = seed
        self.device = device
        self.callback = callback
        self.ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.evaluate_test = evaluate_test
        self.want_latency = measure_latency
        self.log = log

        n = len(splits.train)
        bs = training.batch_size
        # A trailing batch of one sample breaks BatchNorm in train mode: drop that sample.
        self.n_used = n - 1 if n > 1 and n % bs == 1 else n
        self.steps_per_epoch = math.ceil(self.n_used / bs)
        if training.steps is not None:
            self.total_steps = training.steps
            self.total_epochs = math.ceil(training.steps / self.steps_per_epoch)
        else:
            assert training.epochs is not None  # TrainingSpec guarantees one budget
            self.total_epochs = training.epochs
            self.total_steps = training.epochs * self.steps_per_epoch
        self.stop_epoch = self.total_epochs if max_epochs is None else min(max_epochs, self.total_epochs)
        shape = tuple(splits.train.x.shape[1:])
        self.augment = training.augment and len(shape) == 3 and min(shape[1:]) >= _AUGMENT_MIN_SIDE
        self.run = _Run()

    # -- checkpoints --------------------------------------------------------------------------------
    def _save(self, optimizer: torch.optim.Optimizer) -> None:
        assert self.ckpt_path is not None
        run = self.run
        state = {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": _fingerprint(self.training, self.seed, len(self.splits.train)),
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            # The LR schedule is a pure function of the epoch (see lr_factor): nothing else to keep.
            "scheduler": {"epoch": run.epochs_done, "total_epochs": self.total_epochs},
            "epoch": run.epochs_done,
            "steps": run.steps_done,
            "samples": run.samples_seen,
            "train_seconds": run.train_seconds,
            "history": run.history,
            "best_val_accuracy": run.best_val,
            "best_epoch": run.best_epoch,
            "best_state": run.best_state,
            # Shuffling/augmentation generators are re-seeded from (seed, epoch) every epoch,
            # so their state is implied by "epoch"; the global RNG (dropout etc.) is not.
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            },
        }
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_path.with_name(f".{CHECKPOINT_NAME}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def _load(self, optimizer: torch.optim.Optimizer) -> None:
        assert self.ckpt_path is not None
        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        if state.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {self.ckpt_path} has version {state.get('version')!r}, "
                             f"expected {_CHECKPOINT_VERSION}; delete it to start over")
        expected = _fingerprint(self.training, self.seed, len(self.splits.train))
        if state["fingerprint"] != expected:
            raise ValueError(f"checkpoint {self.ckpt_path} belongs to a different run "
                             f"(recipe, seed or data differ: {state['fingerprint']} vs {expected}); "
                             "use another checkpoint_dir or delete the file to start over")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {self.ckpt_path} does not fit this model: "
                             f"{str(exc).splitlines()[0]}") from None
        optimizer.load_state_dict(state["optimizer"])
        self.run = _Run(
            epochs_done=int(state["epoch"]), steps_done=int(state["steps"]),
            samples_seen=int(state["samples"]), train_seconds=float(state["train_seconds"]),
            history=list(state["history"]), best_val=float(state["best_val_accuracy"]),
            best_epoch=int(state["best_epoch"]), best_state=state["best_state"],
        )
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if self.log:
            self.log(f"resumed from {self.ckpt_path} after epoch {self.run.epochs_done}")

    # -- one epoch ----------------------------------------------------------------------------------
    def _train_epoch(self, optimizer: torch.optim.Optimizer, epoch: int) -> tuple[dict[str, Any] | None, str | None]:
        """Run one epoch; return (record, None) or (None, error) when the loss went non-finite."""
        model, dev, training = self.model, self.device, self.training
        bs = training.batch_size
        x_all, y_all = self.splits.train.x, self.splits.train.y
        n_steps = min(self.steps_per_epoch, self.total_steps - self.run.steps_done)
        perm = torch.randperm(len(self.splits.train), generator=_generator(self.seed, "shuffle", epoch))
        aug_gen = _generator(self.seed, "augment", epoch) if self.augment else None
        lr = training.optimizer.lr * lr_factor(training.schedule, epoch, self.total_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        params = [p for p in model.parameters() if p.requires_grad]
        losses = torch.zeros(n_steps, dtype=torch.float32, device=dev)
        hits = torch.zeros(n_steps, dtype=torch.int64, device=dev)
        sizes: list[int] = []
        model.train()
        t0 = time.perf_counter()
        for i in range(n_steps):
            idx = perm[i * bs:min((i + 1) * bs, self.n_used)]
            xb = x_all[idx].to(dev, non_blocking=True)
            yb = y_all[idx].to(dev, non_blocking=True)
            if aug_gen is not None:
                xb = _augment(xb, aug_gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=training.label_smoothing)
            if self.teacher is not None and training.distill > 0:
                with torch.no_grad():
                    soft = self.teacher(xb)
                loss = (1 - training.distill) * loss + training.distill * _distill_loss(
                    logits, soft, training.distill_temperature)
            total = loss if self.regularizer is None else loss + self.regularizer()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if training.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, training.grad_clip)
            optimizer.step()
            losses[i] = loss.detach()
            hits[i] = (logits.detach().argmax(1) == yb).sum()
            sizes.append(len(idx))
            if (i + 1) % _CHECK_EVERY == 0 or i + 1 == n_steps:
                if not bool(torch.isfinite(losses[: i + 1]).all()):
                    bad = int((~torch.isfinite(losses[: i + 1])).nonzero()[0, 0])
                    self.run.steps_done += bad + 1
                    self.run.samples_seen += sum(sizes[: bad + 1])
                    value = float(losses[bad])
                    return None, (f"non-finite loss ({value}) at epoch {epoch + 1}, step "
                                  f"{self.run.steps_done}; try a lower learning rate or grad_clip")
        loss_list, hit_list = losses.tolist(), hits.tolist()
        samples = sum(sizes)
        train_loss = sum(v * s for v, s in zip(loss_list, sizes, strict=True)) / samples
        train_acc = sum(hit_list) / samples
        val_loss, val_acc = evaluate(model, self.splits.val, batch_size=training.eval_batch_size,
                                     device=dev)
        seconds = time.perf_counter() - t0
        self.run.steps_done += n_steps
        self.run.samples_seen += samples
        self.run.train_seconds += seconds
        record = {
            "epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "seconds": seconds,
            "samples": samples,
        }
        if len(self.splits.val) and not math.isfinite(val_loss):
            return record, f"non-finite validation loss ({val_loss}) at epoch {epoch + 1}"
        return record, None

    # -- the run ------------------------------------------------------------------------------------
    def _outcome(self, status: str, error: str | None) -> TrainOutcome:
        run = self.run
        final_val = run.history[-1]["val_accuracy"] if run.history else math.nan
        test_acc = None
        if self.evaluate_test and status != "failed":
            if run.best_state is not None:
                self.model.load_state_dict(run.best_state)
            _, test_acc = evaluate(self.model, self.splits.test,
                                   batch_size=self.training.eval_batch_size, device=self.device)
        latency = None
        if self.want_latency and status != "failed":
            latency = measure_latency(self.model, tuple(self.splits.train.x.shape[1:]),
                                      device=self.device)
        return TrainOutcome(
            status=status, val_accuracy=run.best_val, final_val_accuracy=final_val,
            test_accuracy=test_acc, history=[dict(h) for h in run.history],
            epochs_done=run.epochs_done, steps_done=run.steps_done, samples_seen=run.samples_seen,
            train_seconds=run.train_seconds, latency_ms=latency,
            params=sum(p.numel() for p in self.model.parameters()), error=error,
            checkpoint=str(self.ckpt_path) if self.ckpt_path and self.ckpt_path.exists() else None,
            best_epoch=run.best_epoch,
        )

    def fit(self) -> TrainOutcome:
        model = self.model.to(self.device)
        if self.teacher is not None:
            self.teacher = _frozen_teacher(self.teacher, self.device)
        optimizer = _make_optimizer([p for p in model.parameters() if p.requires_grad],
                                    self.training.optimizer)
        torch.manual_seed(_stream_seed(self.seed, "torch"))
        if self.ckpt_path is not None and self.ckpt_path.exists():
            self._load(optimizer)
        run = self.run
        for epoch in range(run.epochs_done, self.stop_epoch):
            if run.steps_done >= self.total_steps:
                break
            try:
                record, error = self._train_epoch(optimizer, epoch)
            except torch.cuda.OutOfMemoryError as exc:  # also what torch.OutOfMemoryError names
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                msg = str(exc).splitlines()[0] if str(exc) else "out of memory"
                return self._outcome("failed", f"out of memory at epoch {epoch + 1}: {msg}")
            if record is None or error is not None:
                if record is not None:
                    run.history.append(record)
                    run.epochs_done = epoch + 1
                return self._outcome("failed", error)
            run.history.append(record)
            run.epochs_done = epoch + 1
            val = record["val_accuracy"]
            if math.isnan(run.best_val) or val > run.best_val:
                run.best_val, run.best_epoch = val, epoch + 1
                run.best_state = _clone_state(model)
            if self.ckpt_path is not None:
                self._save(optimizer)
            if self.log:
                self.log(f"epoch {epoch + 1}/{self.total_epochs} loss {record['train_loss']:.4f} "
                         f"train {record['train_accuracy']:.4f} val {val:.4f} "
                         f"lr {record['lr']:.3g} {record['seconds']:.1f}s")
            if self.callback is not None:
                report = dict(record, epochs_done=run.epochs_done, samples_seen=run.samples_seen,
                              steps_done=run.steps_done, best_val_accuracy=run.best_val)
                if self.ckpt_path is not None:
                    report["checkpoint"] = str(self.ckpt_path)
                if self.callback(report) is True:
                    return self._outcome("stopped", None)
        return self._outcome("ok", None)


def training_subset(splits: DataSplits, subset: float | None, *, seed: int) -> DataSplits:
    """`splits` with the training part cut to `subset` images (a fraction when < 1), stratified
    by class and fixed by `seed`; validation and test are untouched. None keeps everything."""
    if subset is None:
        return splits
    import dataclasses

    import numpy as np

    from ranksearch.data import Split
    from ranksearch.data.splits import stratified_take

    n = len(splits.train)
    count = int(round(subset * n)) if subset < 1 else int(subset)
    if count >= n:
        return splits
    if count < splits.num_classes:
        raise ValueError(f"training.subset {subset} leaves {count} training images, fewer than "
                         f"the {splits.num_classes} classes; use a larger subset")
    taken, _ = stratified_take(splits.train.y.numpy(), count, np.random.default_rng([seed, 2]))
    idx = torch.from_numpy(taken)
    part = Split(splits.train.x[idx], splits.train.y[idx],
                 None if splits.train.indices is None else splits.train.indices[idx])
    return dataclasses.replace(splits, train=part)


def train_model(model: nn.Module, splits: DataSplits, training: TrainingSpec, *, seed: int = 0,
                device: str | torch.device | None = None, callback: Callback | None = None,
                checkpoint_dir: str | os.PathLike[str] | None = None, evaluate_test: bool = False,
                measure_latency: bool = True, max_epochs: int | None = None,
                log: Log | None = None, num_threads: int | None = None,
                teacher: nn.Module | None = None, regularizer: Regularizer | None = None) -> TrainOutcome:
    """Train `model` in place on `splits.train` for `training`'s budget, selecting on `splits.val`.

    - `device`: overrides `training.device` ('auto' -> CUDA when available).
    - `callback(report)` runs after every epoch with that epoch's history entry plus
      epochs_done, samples_seen, steps_done, best_val_accuracy (and checkpoint, when saving);
      returning True stops the run with status "stopped".
    - `checkpoint_dir`: `checkpoint.pt` there is rewritten atomically after every epoch and,
      when present at the start, the run resumes from it exactly.
    - `evaluate_test`: for final reports only; the test split is scored on the weights of the
      best validation epoch, which the model keeps afterwards.
    - `max_epochs`: stop after this many epochs in total (a fidelity cap); the LR schedule still
      spans the full budget so a later resume continues the same run.
    - `teacher`: the network `training.distill` distils from (left unchanged; required when
      distill > 0).
    - `regularizer()`: an extra loss term added to every step's loss before the backward pass
      (e.g. a rank penalty); the reported losses stay the data loss.
    - `num_threads`: torch intra-op threads for this run (restored afterwards). Set it to the
      trial's CPU share when trials run side by side: oversubscribed OpenMP threads spin and
      can make small models several times slower.

    Bad arguments raise; a run that goes numerically wrong (non-finite loss) or runs out of
    memory returns status "failed" with the reason in `error` and the history so far.
    The global torch RNG is seeded from `seed` for the run and restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"train_model needs a torch.nn.Module, got {type(model).__name__}")
    if len(splits.train) == 0:
        raise ValueError(f"the training split of dataset '{splits.name}' is empty")
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if training.distill > 0 and teacher is None:
        raise ValueError(f"training.distill is {training.distill}: pass the teacher network "
                         "(the trained dense model) or set distill to 0")
    dev = resolve_device(training.device if device is None else device)
    splits = training_subset(splits, training.subset, seed=int(seed))
    trainer = _Trainer(model, splits, training, seed=int(seed), device=dev, callback=callback,
                       checkpoint_dir=checkpoint_dir, evaluate_test=evaluate_test,
                       measure_latency=measure_latency, max_epochs=max_epochs, log=log,
                       teacher=teacher if training.distill > 0 else None, regularizer=regularizer)
    cuda_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] \
        if dev.type == "cuda" else []
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            return trainer.fit()
    finally:
        if num_threads is not None:
            torch.set_num_threads(threads)


def train_config(space: SearchSpace, ranks: Any, *, training: TrainingSpec | None = None,
                 seed: int | None = None, device: str | torch.device | None = None,
                 callback: Callback | None = None,
                 checkpoint_dir: str | os.PathLike[str] | None = None,
                 evaluate_test: bool = False, measure_latency: bool = True,
                 splits: DataSplits | None = None, model: nn.Module | None = None,
                 max_epochs: int | None = None, log: Log | None = None,
                 num_threads: int | None = None, teacher: nn.Module | None = None) -> TrainOutcome:
    """Build the space's model at `ranks` and train it: one trial of a search.

    `training` defaults to the space's training recipe and `seed` to the space's seed. The
    model is initialised right after `torch.manual_seed(seed)` so the same (ranks, seed) always
    starts from the same weights; that seeding happens inside `torch.random.fork_rng`, so the
    caller's global RNG state is unchanged afterwards. The data splits always use the space's
    seed, so every trial of a search shares one validation set. Pass `model` to train a model
    built elsewhere (e.g. a dense warm start) and `splits` to reuse loaded data.
    """
    from ranksearch.models import build_model

    training = space.config.training if training is None else training
    seed = space.seed if seed is None else int(seed)
    if model is None:
        if training.init == "dense":
            raise ValueError("training.init is 'dense': build the model from a trained dense "
                             "network (build_model(..., dense=net, from_dense=True)) and pass it "
                             "as model=, or set training.init to 'scratch'")
        if training.init == "learned":
            raise ValueError("training.init is 'learned': build the model from a search's learned "
                             "cores (ranksearch.learned.warm.cut) and pass it as model=, or set "
                             "training.init to 'scratch'")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(space, ranks)
    if splits is None:
        splits = get_splits(space)
    return train_model(model, splits, training, seed=seed, device=device, callback=callback,
                       checkpoint_dir=checkpoint_dir, evaluate_test=evaluate_test,
                       measure_latency=measure_latency, max_epochs=max_epochs, log=log,
                       num_threads=num_threads, teacher=teacher)
