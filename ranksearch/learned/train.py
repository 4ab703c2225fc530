"""One trial of learned ranks: train with rank gates, prune, fine-tune.

The space's model is built at every element's upper bound (from scratch, or decomposed from a
trained dense net), gated (`GatedNet`) and trained with the space's recipe plus a rank penalty:

- `strength` s: loss + s * E[params] / dense params (the expected l0 count, weighted by what
  each slice costs, exact in closed form from the gates' keep probabilities);
- `target_compression` c: E[params] held at dense params / c by an augmented Lagrangian on
  g = E[params] / target - 1: loss + lam * g + mu/2 * g^2, lam <- lam + dual_step * g after
  every step, the target annealed down from the upper ranks' count (`BudgetPenalty`). The
  pruning rule then trims and fills to the target in the gates' order (`prune.choose_ranks`).

The gates are trained by their own optimizer (Adam by default, `gate_lr`), outside the net's;
the hard-concrete gates are ordered per element with shared noise (see `HardConcreteGate`), and
with `rescale` each bond keeps its scale as slices close (`GatedNet.multiplier`).

The ARD prior adds prior_weight times its negative log prior divided by the training-set size.
The net is pruned at the learned ranks (closed-form count checked against the built model) and
fine-tuned from the kept slices with the same recipe for `finetune_epochs`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ranksearch.learned.apply import GatedNet
from ranksearch.learned.gates import KINDS
from ranksearch.learned.layout import RankLayout
from ranksearch.learned.prune import choose_ranks, prune

if TYPE_CHECKING:
    from ranksearch.data import DataSplits
    from ranksearch.space import SearchSpace, TrainingSpec
    from ranksearch.training import TrainOutcome

GATE_OPTIMIZERS = ("adam", "normalized")
GATE_TRAVEL = 6.0  # log-alpha units a gate can move over a run (from +3 to below -log 11)


@dataclass(frozen=True)
class LearnedOutcome:
    """Learned rank vector (space layout), the fine-tuned pruned model, and what it cost."""

    ranks: tuple[int, ...]
    model: nn.Module
    metrics: dict[str, float]
    phases: dict[str, TrainOutcome] = field(default_factory=dict)
    #: the trained gated net (its gates order every element's slices: `choose_ranks` reads ranks
    #: at other budgets off it, see `ranksearch.learned.seeds`)
    gated: GatedNet | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.phases.values())


class BudgetPenalty:
    """Augmented Lagrangian holding E[params] at a target that moves from `start` to `target`.

    The target falls geometrically over the first `anneal` fraction of `total_steps` (gradual
    pruning): pushed straight at the final target, the penalty dwarfs the data gradient and the
    gates of the costliest positions all close before the data can say which slices matter. An
    equality, not an inequality: a gate that closed gets no data gradient any more (its samples
    are all 0), so only the penalty can reopen it, by pulling E[params] back up when it falls
    below the target. The pruning rule then makes the count fit under the final target.
    """

    def __init__(self, *, target: float, start: float, total_steps: int, anneal: float = 0.5,
                 mu: float = 1.0, dual_step: float = 0.0) -> None:
        if not (0 < target <= start) or mu <= 0 or dual_step < 0 or total_steps < 1 or not 0 <= anneal <= 1:
            raise ValueError(f"BudgetPenalty: need 0 < target <= start, mu > 0, dual_step >= 0, total_steps >= 1, "
                             f"anneal in [0, 1]; got target={target}, start={start}, mu={mu}, "
                             f"dual_step={dual_step}, total_steps={total_steps}, anneal={anneal}")
        self.target, self.start, self.mu, self.dual_step = float(target), float(start), float(mu), float(dual_step)
        self.anneal_steps = anneal * total_steps
        self.steps = 0
        self.lam = 0.0

    def current(self) -> float:
        """The target at this step."""
        if self.steps >= self.anneal_steps:
            return self.target
        return self.start * (self.target / self.start) ** (self.steps / self.anneal_steps)

    def __call__(self, expected: torch.Tensor) -> torch.Tensor:
        g = expected / self.current() - 1.0
        term = self.lam * g + 0.5 * self.mu * g * g
        self.lam += self.dual_step * float(g.detach())
        self.steps += 1
        return term


class GateOptimizer:
    """Momentum SGD on the gates with the step normalised by the RMS of all gates' momentum.

    Adam normalises every coordinate on its own, so under a shared penalty all gates of an
    element move in lockstep and the data never separates them; here one normalisation for
    all gates keeps their relative gradients (how much the loss needs each slice against what it
    costs), while `lr` still reads as the typical log-alpha change per step. Stepped from the
    regularizer, i.e. with the previous step's gradients.
    """

    def __init__(self, params: list[torch.nn.Parameter], *, lr: float, momentum: float = 0.9) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"GateOptimizer: need lr > 0 and momentum in [0, 1); got lr={lr}, momentum={momentum}")
        self.params, self.lr, self.momentum = params, float(lr), float(momentum)
        self.buffers: list[torch.Tensor] = []  # made at the first step, on the parameters' device

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            return
        if not self.buffers:
            self.buffers = [torch.zeros_like(p) for p in self.params]
        for buf, g in zip(self.buffers, grads, strict=True):
            buf.mul_(self.momentum).add_(g, alpha=1 - self.momentum)
        rms = torch.sqrt(torch.mean(torch.cat([b.flatten() for b in self.buffers]) ** 2)) + 1e-12
        for p, buf in zip(self.params, self.buffers, strict=True):
            p.sub_(buf * (self.lr / rms))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


def _recipe(training: TrainingSpec, epochs: int | None) -> TrainingSpec:
    if epochs is None:
        return training
    return training.model_copy(update={"epochs": int(epochs), "steps": None})


def _total_steps(training: TrainingSpec, n_train: int) -> int:
    return training.steps or (training.epochs or 1) * math.ceil(n_train / training.batch_size)


def _gate_lr(training: TrainingSpec, n_train: int) -> float:
    """Gate step size that lets a gate travel GATE_TRAVEL log-alpha units over the run."""
    from ranksearch.training import lr_factor

    steps_per_epoch = math.ceil(n_train / training.batch_size)
    epochs = training.epochs or math.ceil((training.steps or 1) / steps_per_epoch)
    lr_steps = sum(lr_factor(training.schedule, e, epochs) for e in range(epochs)) * steps_per_epoch
    return GATE_TRAVEL / max(lr_steps, 1.0)


def start_space(space: SearchSpace, cap: float) -> SearchSpace:
    """`space` with its rank maximum lowered to the largest equal rank whose count is at most
    `cap` (at least one above the minimum); `space` itself where that is its maximum already, or
    where its elements have bounds of their own (then the gated run starts at the upper ranks)."""
    from ranksearch.space import SearchSpace, count_params

    bounds = space.config.ranks
    if any(u != bounds.max for u in space.upper) or space.fixed_ranks is not None:
        return space
    r = bounds.min + 1
    while r < bounds.max and count_params(space, space.equal_ranks(r + 1)) <= cap:
        r += 1
    if r >= bounds.max:
        return space
    d = space.to_dict()
    d["ranks"]["max"] = r
    return SearchSpace.from_dict(d, source=space.source)


def learn_ranks(space: SearchSpace, *, target_compression: float | None = None, strength: float | None = None,
                seed: int | None = None, epochs: int | None = None, finetune_epochs: int | None = None,
                dense_state: Mapping[str, torch.Tensor] | None = None, kind: str = "l0",
                gate_options: dict[str, Any] | None = None, gate_lr: float | None = None,
                gate_optimizer: str = "adam", fold: str = "open", rescale: bool = True,
                prior_weight: float = 0.01, anneal: float = 0.5, mu: float = 30.0, dual_step: float = 0.0,
                start_factor: float | None = None,
                training: TrainingSpec | None = None, splits: DataSplits | None = None,
                device: str | torch.device | None = None, num_threads: int | None = None,
                log: Callable[[str], Any] | None = None,
                on_epoch: Callable[[dict[str, Any]], Any] | None = None) -> LearnedOutcome:
    """Learn the ranks of `space`'s model in one gated training run, prune, fine-tune.

    Give exactly one of `target_compression` (dense params / params, whole model) or `strength`
    (penalty strength * E[params] / dense params; with Adam on the gates only its size against the
    data gradient matters: on digits nothing closed below ~100).
    `epochs` / `finetune_epochs` default to the recipe's epochs (`training`, default the space's);
    finetune_epochs=0 skips fine-tuning. `dense_state` (trained dense weights) starts the gated
    net from their decomposition at the upper ranks and serves as the distillation teacher when
    the recipe distils. `seed` (default the space's) fixes initialisation, data order and gate
    samples. Returns the learned ranks (valid for the space), the pruned fine-tuned model, and
    metrics: val_accuracy (best fine-tune epoch), params, compression_ratio, gated_val_accuracy,
    pruned_val_accuracy (before fine-tuning), samples_seen, seconds.

    Tuning knobs: `kind` 'l0' (hard-concrete gates) or 'ard' (prior); `gate_options` for the
    gate's constructor; the gates' own optimizer `gate_optimizer` ('adam' or 'normalized', see
    `GateOptimizer`) with step `gate_lr` (default: GATE_TRAVEL log-alpha units over the run);
    `fold` ('open' or 'gate', see `prune.prune`); `rescale` (see `GatedNet.multiplier`); `prior_weight`, the ARD prior's weight (1 = the
    MAP at the training-set size, which crushed every slice on digits; 0.01 kept 93.8% at 15x);
    the budget's `anneal` fraction, quadratic
    weight `mu` and multiplier step `dual_step` (see `BudgetPenalty`; on digits at 15x, mu=1 left
    the gates open and the pruning rule then cut trained slices blind, mu=30 held E[params] at
    the target and kept 96% validation accuracy).

    `start_factor` (with `target_compression`): the gated run starts at the largest equal rank
    whose count is at most `start_factor` x the target, not at the space's upper ranks (the
    learned ranks stay within it). Measured on Fashion-MNIST TR-LeNet-5 at 52x (2,000-image
    subset, 10 passes): from the upper ranks (145k parameters, 17x the target) the gates could not
    close in time (E[params] 20k at the end, the pruning then cut blind: 0.12 validation accuracy;
    a faster gate step met the count but closed whole bonds: 0.10); from 4x the target (rank 14,
    32k) the count was met with the net alive: 0.78 gated, 0.83 after fine-tuning, non-uniform ranks.

    `on_epoch(record)` sees every epoch of both phases: the trainer's record with `phase`
    ('gated' or 'finetune'), `epoch` counted over the whole trial and `samples_seen` summed over
    both phases (what a trial reports to Tune as it goes).
    """
    from ranksearch.models import build_model, build_warm
    from ranksearch.space import count_params
    from ranksearch.training import evaluate, get_splits, train_model, training_subset

    if (target_compression is None) == (strength is None):
        raise ValueError(f"learn_ranks: give exactly one of target_compression or strength; got "
                         f"target_compression={target_compression!r}, strength={strength!r}")
    if target_compression is not None and not target_compression > 1:
        raise ValueError(f"learn_ranks: target_compression must be > 1 (dense params / params), "
                         f"got {target_compression!r}")
    if strength is not None and not strength >= 0:
        raise ValueError(f"learn_ranks: strength must be >= 0, got {strength!r}")
    if kind not in KINDS:
        raise ValueError(f"learn_ranks: unknown gate kind {kind!r}; use one of {KINDS}")
    if gate_optimizer not in GATE_OPTIMIZERS:
        raise ValueError(f"learn_ranks: unknown gate_optimizer {gate_optimizer!r}; use one of {GATE_OPTIMIZERS}")
    for name, value in (("epochs", epochs), ("finetune_epochs", finetune_epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                  or (name == "epochs" and value < 1)):
            raise ValueError(f"learn_ranks: {name} must be a {'positive' if name == 'epochs' else 'non-negative'} "
                             f"int, got {value!r}")
    recipe = space.config.training if training is None else training
    seed = space.seed if seed is None else int(seed)
    gate_recipe = _recipe(recipe, epochs)
    tune_recipe = _recipe(recipe, finetune_epochs if finetune_epochs is not None else epochs)
    splits = get_splits(space) if splits is None else splits
    n_train = len(training_subset(splits, recipe.subset, seed=seed).train)
    t0 = time.perf_counter()

    dense = float(space.dense_params)
    target = dense / target_compression if target_compression is not None else None
    gate_space = space if target is None or start_factor is None else start_space(space, start_factor * target)
    upper = gate_space.upper
    teacher: nn.Module | None = None
    if dense_state is not None:
        net, teacher = build_warm(space, upper, dense_state, seed=seed)
    else:
        if recipe.init == "dense":
            raise ValueError("learn_ranks: the recipe has init 'dense'; pass dense_state (the trained dense "
                             "weights) or use a recipe with init 'scratch'")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_model(space, upper)
    gated = GatedNet(net, RankLayout.from_space(gate_space), kind=kind, seed=seed, gate_options=gate_options,
                     rescale=rescale)
    step = gate_lr if gate_lr is not None else _gate_lr(gate_recipe, n_train)
    gate_params = gated.gate_parameters()
    gate_opt: Any = None
    if gate_params:
        gate_opt = (torch.optim.Adam(gate_params, lr=step) if gate_optimizer == "adam"
                    else GateOptimizer(gate_params, lr=step))

    budget = None
    if target is not None:
        start = max(target, float(count_params(space, upper)))
        budget = BudgetPenalty(target=target, start=start, total_steps=_total_steps(gate_recipe, n_train),
                               anneal=anneal, mu=mu, dual_step=dual_step)

    def regularizer() -> torch.Tensor:
        if gate_opt is not None and all(p.grad is not None for p in gate_params):
            gate_opt.step()
            gate_opt.zero_grad(set_to_none=True)
        expected = gated.expected_params()
        term = budget(expected) if budget is not None else strength * expected / dense
        if kind == "ard" and prior_weight > 0:
            term = term + prior_weight * gated.prior_penalty().to(term.device) / n_train
        return term

    def report(record: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch({**record, "phase": "gated"})
        if log is not None:
            with torch.no_grad():
                counts = [int(k.sum()) for k in gated.kept()]
                spread = [f"{float(sc.min()):.1f}..{float(sc.max()):.1f}" for sc in gated.scores()]
                log(f"gates after epoch {record['epoch']}: E[params] {float(gated.expected_params()):.0f} "
                    f"kept {counts} scores {spread}" + (f" lambda {budget.lam:.3g}" if budget is not None else ""))

    common = {"seed": seed, "device": device, "measure_latency": False, "num_threads": num_threads,
              "log": log, "teacher": teacher}
    gated_run = train_model(gated, splits, gate_recipe, regularizer=regularizer, callback=report, **common)
    phases = {"gated": gated_run}
    with torch.no_grad():
        expected_end = float(gated.expected_params())
    ranks, keep = choose_ranks(gated, max_params=None if target is None else int(math.floor(target)),
                               fill=target is not None)
    ranks = space.check_ranks(ranks)
    model = prune(gated, keep, fold=fold)
    params = sum(p.numel() for p in model.parameters())
    closed = count_params(space, ranks)
    if params != closed:
        raise RuntimeError(f"learn_ranks: the pruned model has {params} parameters but the closed form at "
                           f"ranks {list(ranks)} gives {closed}")
    _, pruned_acc = evaluate(model, splits.val, batch_size=recipe.eval_batch_size)
    samples = gated_run.samples_seen
    val_acc = pruned_acc
    if gated_run.ok and finetune_epochs != 0:
        offset_epochs, offset_samples = gated_run.epochs_done, gated_run.samples_seen

        def tune_report(record: dict[str, Any]) -> None:
            if on_epoch is not None:
                on_epoch({**record, "phase": "finetune", "epoch": offset_epochs + int(record["epoch"]),
                          "samples_seen": offset_samples + int(record.get("samples_seen", 0))})

        tuned = train_model(model, splits, tune_recipe, evaluate_test=False, callback=tune_report, **common)
        phases["finetune"] = tuned
        samples += tuned.samples_seen
        val_acc = tuned.val_accuracy  # best epoch, like every trial; the model keeps the last epoch
    metrics = {
        "val_accuracy": float(val_acc),
        "params": float(params),
        "compression_ratio": dense / params,
        "gated_val_accuracy": float(gated_run.final_val_accuracy),
        "pruned_val_accuracy": float(pruned_acc),
        "expected_params_end": expected_end,
        "upper_params": float(count_params(space, upper)),
        "lagrange_multiplier": float(budget.lam) if budget is not None else 0.0,
        "samples_seen": float(samples),
        "seconds": time.perf_counter() - t0,
    }
    return LearnedOutcome(ranks=ranks, model=model, metrics=metrics, phases=phases, gated=gated)
