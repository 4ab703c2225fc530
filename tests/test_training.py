"""Tests of the trainer on tiny synthetic tasks (fast), plus one real space once layers exist."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ranksearch.data import DataSplits, Split
from ranksearch.space import ScheduleSpec, TrainingSpec
from ranksearch.training import (
    CHECKPOINT_NAME,
    TrainOutcome,
    _augment,
    evaluate,
    lr_factor,
    measure_latency,
    resolve_device,
    train_config,
    train_model,
)

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def _blobs(n: int, *, classes: int = 4, dim: int = 16, seed: int = 0) -> Split:
    """Well separated Gaussian blobs: an easy task any MLP learns in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.randint(0, classes, (n,), generator=gen)
    x = centres[y] + torch.randn(n, dim, generator=gen)
    return Split(x=x.float(), y=y)


@pytest.fixture(scope="module")
def blobs() -> DataSplits:
    return DataSplits(train=_blobs(512, seed=1), val=_blobs(128, seed=2), test=_blobs(128, seed=3),
                      num_classes=4, input_shape=(16,), name="blobs")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))


def _spec(**kw) -> TrainingSpec:
    base = {"epochs": 3, "batch_size": 64, "device": "cpu", "optimizer": {"name": "adam", "lr": 0.01}}
    base.update(kw)
    return TrainingSpec(**base)


def _train(splits, spec=None, *, seed=0, **kw) -> tuple[TrainOutcome, nn.Module]:
    model = _mlp()
    kw.setdefault("num_threads", 1)  # tiny models: extra threads only spin when the machine is busy
    out = train_model(model, splits, spec or _spec(), seed=seed, measure_latency=False, **kw)
    return out, model


def _strip_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- learning and budgets -------------------------------------------------------------------------
def test_learns_easy_task(blobs):
    out, _ = _train(blobs)
    assert out.status == "ok" and out.error is None
    assert out.val_accuracy > 0.9  # chance is 0.25
    assert out.epochs_done == 3 and len(out.history) == 3
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    keys = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples"}
    assert all(keys <= set(h) for h in out.history)
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    assert out.params == sum(p.numel() for p in _mlp().parameters())
    d = out.to_dict()
    assert d["status"] == "ok" and d["history"] == out.history


@pytest.mark.parametrize("opt", [{"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
                                 {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}])
def test_other_optimizers_and_clip(blobs, opt):
    out, _ = _train(blobs, _spec(optimizer=opt, grad_clip=1.0,
                                 schedule={"name": "cosine"}))
    assert out.status == "ok" and out.val_accuracy > 0.8


def test_samples_seen_counts_every_training_sample(blobs):
    out, _ = _train(blobs)
    assert out.samples_seen == 3 * 512
    assert out.steps_done == 3 * 8
    assert [h["samples"] for h in out.history] == [512] * 3


def test_trailing_single_sample_batch_is_dropped():
    splits = DataSplits(train=_blobs(129), val=_blobs(32, seed=2), test=_blobs(32, seed=3),
                        num_classes=4, input_shape=(16,), name="odd")
    model = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))
    out = train_model(model, splits, _spec(epochs=2), measure_latency=False, num_threads=1)
    assert out.status == "ok"
    assert out.samples_seen == 2 * 128 and out.steps_done == 2 * 2


def test_steps_budget_stops_exactly(blobs):
    out, _ = _train(blobs, _spec(epochs=None, steps=13))
    assert out.status == "ok"
    assert out.steps_done == 13
    assert out.epochs_done == 2 and len(out.history) == 2  # 8 steps + a partial epoch of 5
    assert [h["samples"] for h in out.history] == [512, 5 * 64]
    assert out.samples_seen == 512 + 5 * 64


def test_steps_budget_within_one_epoch(blobs):
    out, _ = _train(blobs, _spec(epochs=None, steps=3))
    assert out.steps_done == 3 and out.epochs_done == 1 and out.samples_seen == 3 * 64


def test_max_epochs_caps_the_run(blobs):
    out, _ = _train(blobs, _spec(epochs=5), max_epochs=2)
    assert out.status == "ok" and out.epochs_done == 2


# -- callback -------------------------------------------------------------------------------------
def test_callback_gets_one_dict_per_epoch(blobs):
    seen: list[dict] = []
    out, _ = _train(blobs, callback=seen.append)
    assert len(seen) == 3
    assert [r["epochs_done"] for r in seen] == [1, 2, 3]
    assert [r["samples_seen"] for r in seen] == [512, 1024, 1536]
    assert all(r["val_accuracy"] == h["val_accuracy"] for r, h in zip(seen, out.history, strict=True))


def test_callback_can_stop_early(blobs):
    out, _ = _train(blobs, _spec(epochs=6), callback=lambda r: r["epochs_done"] >= 2)
    assert out.status == "stopped"
    assert out.epochs_done == 2 and len(out.history) == 2
    assert out.samples_seen == 2 * 512
    assert not math.isnan(out.val_accuracy)


# -- determinism and resume -----------------------------------------------------------------------
def test_same_seed_is_bit_for_bit_identical(blobs):
    a, ma = _train(blobs, seed=7)
    b, mb = _train(blobs, seed=7)
    assert _same_weights(ma, mb)
    assert _strip_seconds(a.history) == _strip_seconds(b.history)
    c, mc = _train(blobs, seed=8)
    assert not _same_weights(ma, mc)


def test_global_state_left_untouched(blobs):
    before, threads = torch.get_rng_state(), torch.get_num_threads()
    _train(blobs, num_threads=max(1, threads - 1) if threads > 1 else 2)
    assert torch.equal(before, torch.get_rng_state())
    assert torch.get_num_threads() == threads


def test_resume_after_crash_equals_uninterrupted_run(blobs, tmp_path):
    spec = _spec(epochs=4, schedule={"name": "multistep", "milestones": [2, 3], "gamma": 0.5})
    straight, m_straight = _train(blobs, spec, seed=3)

    def crash(report: dict) -> None:
        if report["epochs_done"] == 2:
            raise KeyboardInterrupt  # the process dies after the epoch-2 checkpoint was written

    with pytest.raises(KeyboardInterrupt):
        _train(blobs, spec, seed=3, checkpoint_dir=tmp_path, callback=crash)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    assert not list(tmp_path.glob("*.tmp"))

    resumed, m_resumed = _train(blobs, spec, seed=3, checkpoint_dir=tmp_path)
    assert resumed.status == "ok"
    assert resumed.checkpoint == str(tmp_path / CHECKPOINT_NAME)
    assert _same_weights(m_straight, m_resumed)
    assert _strip_seconds(resumed.history) == _strip_seconds(straight.history)
    assert (resumed.epochs_done, resumed.steps_done, resumed.samples_seen) == (
        straight.epochs_done, straight.steps_done, straight.samples_seen)
    assert resumed.val_accuracy == straight.val_accuracy

    # Resuming a finished run trains nothing more and reports the same result.
    again, m_again = _train(blobs, spec, seed=3, checkpoint_dir=tmp_path)
    assert again.epochs_done == 4 and _same_weights(m_again, m_straight)


def test_resume_via_max_epochs(blobs, tmp_path):
    spec = _spec(epochs=4, schedule={"name": "cosine"})
    _, m_straight = _train(blobs, spec)
    first, _ = _train(blobs, spec, checkpoint_dir=tmp_path, max_epochs=2)
    assert first.epochs_done == 2
    _, m_resumed = _train(blobs, spec, checkpoint_dir=tmp_path)
    assert _same_weights(m_straight, m_resumed)


def test_checkpoint_from_another_run_is_refused(blobs, tmp_path):
    _train(blobs, _spec(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run"):
        _train(blobs, _spec(epochs=1), seed=99, checkpoint_dir=tmp_path)


# -- failures -------------------------------------------------------------------------------------
def test_exploding_lr_fails_with_reason(blobs):
    out, _ = _train(blobs, _spec(optimizer={"name": "sgd", "lr": 1e30}))
    assert out.status == "failed"
    assert "non-finite" in out.error and "epoch 1" in out.error
    assert out.latency_ms is None


class _NanAfter(nn.Module):
    """Outputs NaN from the `after`-th forward pass in training mode on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 4)
        self.calls = 0
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                out = out * float("nan")
        return out


def test_nan_output_fails_at_the_right_step_and_keeps_history(blobs):
    out = train_model(_NanAfter(after=8 + 5), blobs, _spec(), measure_latency=False, num_threads=1)
    assert out.status == "failed"
    assert out.error.startswith("non-finite loss (nan) at epoch 2, step 13")
    assert out.epochs_done == 1 and len(out.history) == 1
    assert out.steps_done == 13 and out.samples_seen == 13 * 64
    assert out.val_accuracy == out.history[0]["val_accuracy"]


class _OutOfMemory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_is_a_failed_trial_not_a_crash(blobs):
    out = train_model(_OutOfMemory(), blobs, _spec(), measure_latency=False, num_threads=1)
    assert out.status == "failed" and "out of memory" in out.error and out.epochs_done == 0


def test_bad_arguments_raise(blobs):
    with pytest.raises(ValueError, match="max_epochs"):
        _train(blobs, max_epochs=0)
    with pytest.raises(TypeError):
        train_model("not a model", blobs, _spec())  # type: ignore[arg-type]


# -- selection semantics --------------------------------------------------------------------------
def test_best_vs_final_val_accuracy(blobs):
    # A huge SGD step in the last epoch wrecks a good model: best must stay at the good epoch.
    class Wreck:
        def __init__(self, model: nn.Module) -> None:
            self.model = model

        def __call__(self, report: dict) -> None:
            if report["epochs_done"] == 2:
                with torch.no_grad():
                    for p in self.model.parameters():
                        p.mul_(-1.0)

    model = _mlp()
    out = train_model(model, blobs, _spec(epochs=3, optimizer={"name": "sgd", "lr": 1e-6}),
                      callback=Wreck(model), measure_latency=False, num_threads=1)
    accs = [h["val_accuracy"] for h in out.history]
    assert out.val_accuracy == max(accs)
    assert out.final_val_accuracy == accs[-1]
    assert out.best_epoch == accs.index(max(accs)) + 1
    assert out.final_val_accuracy < out.val_accuracy


def test_test_split_only_when_asked(blobs):
    out, _ = _train(blobs)
    assert out.test_accuracy is None
    model = _mlp()
    final = train_model(model, blobs, _spec(), evaluate_test=True, measure_latency=False, num_threads=1)
    assert final.test_accuracy is not None and final.test_accuracy > 0.9
    # The model keeps the weights of the best validation epoch, which the test score used.
    assert evaluate(model, blobs.val)[1] == final.val_accuracy
    assert evaluate(model, blobs.test)[1] == final.test_accuracy


# -- schedule, augmentation, latency, devices -----------------------------------------------------
def test_lr_factor_matches_torch_schedulers():
    def torch_lrs(make, epochs: int) -> list[float]:
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt)
        lrs = []
        for _ in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs

    ms = ScheduleSpec(name="multistep", milestones=(5, 10, 15), gamma=0.1)
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 10, 15], 0.1), 20)
    assert [lr_factor(ms, e, 20) for e in range(20)] == pytest.approx(ref)
    cos = ScheduleSpec(name="cosine")
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12), 12)
    assert [lr_factor(cos, e, 12) for e in range(12)] == pytest.approx(ref)
    step = ScheduleSpec(name="step", step_size=3, gamma=0.5)
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), 10)
    assert [lr_factor(step, e, 10) for e in range(10)] == pytest.approx(ref)
    assert lr_factor(ScheduleSpec(), 7, 10) == 1.0


@pytest.mark.parametrize("shape,pad", [((3, 32, 32), 4), ((1, 28, 28), 2)])
def test_augment_is_a_padded_crop_or_its_mirror(shape, pad):
    x = torch.randn(6, *shape)
    side = shape[-1]
    out = _augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = range(2 * pad + 1)
    for i in range(len(x)):
        crops = [padded[i, :, dy:dy + side, dx:dx + side] for dy in offsets for dx in offsets]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    again = _augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, x)


def test_augmented_training_runs_and_is_deterministic():
    def split(n: int, seed: int) -> Split:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 3, 32, 32, generator=g) * 0.1 + y[:, None, None, None].float()
        return Split(x=x, y=y)

    splits = DataSplits(train=split(64, 0), val=split(16, 1), test=split(16, 2), num_classes=2,
                        input_shape=(3, 32, 32), name="tiny_images")

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 2))

    spec = _spec(epochs=2, batch_size=16, augment=True)
    a, b = net(), net()
    oa = train_model(a, splits, spec, measure_latency=False, num_threads=1)
    train_model(b, splits, spec, measure_latency=False, num_threads=1)
    assert oa.status == "ok" and _same_weights(a, b)


def test_latency_is_measured(blobs):
    out = train_model(_mlp(), blobs, _spec(epochs=1), num_threads=1)
    assert out.latency_ms is not None and out.latency_ms > 0
    model = _mlp().train()
    ms = measure_latency(model, (16,), repeats=5, warmup=1)
    assert ms > 0 and model.training


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device|unsupported device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# -- a real search space --------------------------------------------------------------------------
def _tensorized_ready() -> bool:
    try:
        from ranksearch.tensorized import make_layer  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _tensorized_ready(), reason="ranksearch.tensorized is not available yet")
def test_train_config_quickstart_digits(digits_space):
    from ranksearch.training import get_splits

    splits = get_splits(digits_space)
    assert get_splits(digits_space) is splits  # cached per process
    training = digits_space.config.training.model_copy(update={"epochs": 2})
    ranks = (6,) * digits_space.n_ranks
    out = train_config(digits_space, ranks, training=training, measure_latency=False, num_threads=1)
    assert out.status == "ok", out.error
    assert out.val_accuracy > 0.5  # 10 classes: chance is 0.1
    again = train_config(digits_space, ranks, training=training, measure_latency=False, num_threads=1)
    assert _strip_seconds(again.history) == _strip_seconds(out.history)


# -- training-subset fidelity, label smoothing, distillation --------------------------------------
def test_subset_trains_on_a_fixed_stratified_part(blobs):
    from ranksearch.training import training_subset

    part = training_subset(blobs, 100, seed=0)
    assert len(part.train) == 100 and part.val is blobs.val and part.test is blobs.test
    full = torch.bincount(blobs.train.y, minlength=4).float() / len(blobs.train)
    sub = torch.bincount(part.train.y, minlength=4).float() / 100
    assert torch.allclose(full, sub, atol=0.02)  # class proportions kept
    again = training_subset(blobs, 0.1953125, seed=0)  # a fraction: 100 of 512
    assert torch.equal(again.train.y, part.train.y) and torch.equal(again.train.x, part.train.x)
    other = training_subset(blobs, 100, seed=1)
    assert not torch.equal(other.train.x, part.train.x)
    assert training_subset(blobs, None, seed=0) is blobs and training_subset(blobs, 10_000, seed=0) is blobs
    with pytest.raises(ValueError, match="training.subset"):
        training_subset(blobs, 2, seed=0)
    out, _ = _train(blobs, _spec(subset=100, epochs=2))
    assert out.samples_seen == 200 and all(h["samples"] == 100 for h in out.history)


def test_label_smoothing_changes_the_loss(blobs):
    plain, _ = _train(blobs, _spec(epochs=1))
    smooth, _ = _train(blobs, _spec(epochs=1, label_smoothing=0.2))
    assert smooth.history[0]["train_loss"] > plain.history[0]["train_loss"]


def test_distillation_needs_a_teacher_and_follows_it(blobs):
    with pytest.raises(ValueError, match="teacher"):
        _train(blobs, _spec(distill=0.5))
    t_model = _mlp(seed=5)
    train_model(t_model, blobs, _spec(epochs=4), seed=5, measure_latency=False, num_threads=1)
    before = {k: v.clone() for k, v in t_model.state_dict().items()}
    pure, student = _train(blobs, _spec(epochs=3, distill=1.0), teacher=t_model)
    assert pure.ok
    assert all(torch.equal(before[k], v) for k, v in t_model.state_dict().items())  # teacher untouched
    # With distill=1 the student learns only from the teacher's soft labels: it agrees with them.
    with torch.no_grad():
        t_model.eval(), student.eval()
        agree = (t_model(blobs.val.x).argmax(1) == student(blobs.val.x).argmax(1)).float().mean()
    assert agree > 0.9
    mixed, _ = _train(blobs, _spec(epochs=1, distill=0.5), teacher=t_model)
    plain, _ = _train(blobs, _spec(epochs=1))
    assert mixed.history[0]["train_loss"] != plain.history[0]["train_loss"]
