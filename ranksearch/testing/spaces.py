"""Stand-in search spaces with closed-form tensor-ring counts and no torch, and an objective.

Strategy tests (ours, and a strategy author's through `ranksearch.testing.check_strategy`) run
against them so they stay fast and independent of the model zoo: a `FakeSpace` has the
attributes strategies read (`elements`, `config`, `dense_params`, `layers`, `layer_ranks`, ...)
and `ranksearch.space.count_params` works on it unchanged. A `hyperparameters:` block in its
config becomes `space.hyper`, validated like a real space's (`mixed` is the stock one: ranks
plus a log-range learning rate, an optimizer choice, a momentum that exists only with SGD, and
an int batch size); `objective` then depends on the values too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from ranksearch.space import RankBounds, RankElement, SpaceConfig, count_params
from ranksearch.space.hyper import build_hyper
from ranksearch.space.layout import fix_elements
from ranksearch.trial import TrialResult

__all__ = ["LR_OPTIMUM", "FakeLayer", "FakeSpace", "hparam_quality", "lenet5", "mixed", "objective",
           "small", "tiny"]

#: The learning rate `objective` rewards most: the middle of `mixed`'s log range, far from the
#: recipe's default 2e-3 (which `mixed` keeps as its default).
LR_OPTIMUM = 10 ** -1.5


@dataclass(frozen=True)
class FakeLayer:
    """A tensor-ring layer: linear (shape = in + out factors) or conv (adds a k x k core)."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int | None = None

    @property
    def n_ranks(self) -> int:
        return len(self.in_shape) + len(self.out_shape) + (1 if self.kernel else 0)

    @property
    def dense_params(self) -> int:
        k = (self.kernel or 1) ** 2
        return math.prod(self.in_shape) * math.prod(self.out_shape) * k + math.prod(self.out_shape)

    def params(self, ranks: tuple[int, ...]) -> int:
        """Ring of cores r_k * s_k * r_{k+1}; a conv's k x k core sits between in and out cores."""
        kernel = [self.kernel * self.kernel] if self.kernel else []
        sizes = list(self.in_shape) + kernel + list(self.out_shape)
        d = len(sizes)
        cores = sum(ranks[i] * sizes[i] * ranks[(i + 1) % d] for i in range(d))
        return cores + math.prod(self.out_shape)


class FakeSpace:
    """Just enough of `SearchSpace` for strategies, built from layers and rank bounds."""

    def __init__(self, layers: list[FakeLayer], *, low: int = 2, high: int = 30,
                 choices: tuple[int, ...] | None = None, fixed_params: int = 0,
                 **config: Any) -> None:
        data = {
            "name": config.pop("name", "fake"),
            "model": {"name": "fake", "layers": {lay.name: None for lay in layers}},
            "data": {"dataset": "digits"},
            "training": {"epochs": 4},
            "ranks": {"min": low, "max": high},
        }
        data.update(config)
        self.config = SpaceConfig.model_validate(data)
        bounds = RankBounds(min=low, max=high, choices=choices)
        self.layers = tuple(layers)
        self.elements = tuple(
            RankElement(f"{lay.name}.r{p}", bounds, ((lay.name, p),))
            for lay in layers for p in range(lay.n_ranks)
        )
        self.fixed_params = fixed_params
        self.dense_params = fixed_params + sum(lay.dense_params for lay in layers)
        self.source = None
        self.hyper = build_hyper(self.config)
        self.user_function = None  # a model space: counts are closed-form
        self.has_closed_form = True
        self.fixed_ranks: tuple[int, ...] | None = None

    def with_fixed_ranks(self, ranks: Any) -> FakeSpace:
        """A copy whose rank elements each allow exactly their value of `ranks` (as
        `SearchSpace.with_fixed_ranks`, without the defaults)."""
        fixed = copy.copy(self)
        fixed.elements = fix_elements(self.elements, self.check_ranks(ranks))
        fixed.fixed_ranks = tuple(e.low for e in fixed.elements)
        return fixed

    name = property(lambda self: self.config.name)
    seed = property(lambda self: self.config.seed)
    n_ranks = property(lambda self: len(self.elements))
    lower = property(lambda self: tuple(e.low for e in self.elements))
    upper = property(lambda self: tuple(e.high for e in self.elements))

    @property
    def search_size(self) -> int:
        return math.prod(len(e.values) for e in self.elements)

    def check_ranks(self, ranks: Any, *, field: str = "ranks") -> tuple[int, ...]:
        values = tuple(int(r) for r in ranks)
        if len(values) != self.n_ranks or any(v not in e.values for v, e in zip(values, self.elements, strict=False)):
            raise ValueError(f"bad ranks {values}")
        return values

    def equal_ranks(self, r: int) -> tuple[int, ...]:
        return tuple(min(e.values, key=lambda v: (abs(v - r), v)) for e in self.elements)

    def layer_ranks(self, ranks: Any) -> dict[str, tuple[int, ...]]:
        ranks = self.check_ranks(ranks)
        out: dict[str, list[int]] = {lay.name: [0] * lay.n_ranks for lay in self.layers}
        for e, v in zip(self.elements, ranks, strict=True):
            for name, pos in e.members:
                out[name][pos] = v
        return {k: tuple(v) for k, v in out.items()}


def lenet5(**config: Any) -> FakeSpace:
    """PSTRN's TR-LeNet-5 (20 rank elements, 429,100 dense params)."""
    layers = [
        FakeLayer("conv1", (1,), (4, 5), kernel=5),
        FakeLayer("conv2", (4, 5), (5, 10), kernel=5),
        FakeLayer("fc1", (5, 5, 5, 10), (5, 8, 8)),
        FakeLayer("fc2", (5, 8, 8), (10,)),
    ]
    return FakeSpace(layers, **config)


def small(**config: Any) -> FakeSpace:
    """A 7-element space (ranks 1..8): fast, and big enough for searches to differ."""
    config.setdefault("low", 1)
    config.setdefault("high", 8)
    return FakeSpace([FakeLayer("fc1", (4, 4), (4, 4)), FakeLayer("fc2", (4, 4), (2,))],
                     fixed_params=100, **config)


def tiny(**config: Any) -> FakeSpace:
    """Two elements with two values each: four configurations in all."""
    return FakeSpace([FakeLayer("fc", (3,), (2,))], choices=(1, 2), low=1, high=2, **config)


#: The hyperparameters of `mixed`: the recipe paths of ranksearch's own trainer.
MIXED_HYPERPARAMETERS: dict[str, Any] = {
    "training.optimizer.lr": {"low": 1e-3, "high": 1.0, "log": True},
    "training.optimizer.name": {"choices": ["adam", "sgd"]},
    "training.optimizer.momentum": {"low": 0.5, "high": 0.98, "when": {"training.optimizer.name": "sgd"}},
    "training.batch_size": {"low": 16, "high": 256, "log": True},
}


def mixed(**config: Any) -> FakeSpace:
    """`small`'s ranks plus hyperparameters with a condition (momentum only with SGD)."""
    config.setdefault("hyperparameters", MIXED_HYPERPARAMETERS)
    return small(**config)


def hparam_quality(values: dict[str, Any] | None) -> float:
    """How good a setting of `mixed`'s hyperparameters is, in (0, 1]: best at lr =
    `LR_OPTIMUM` (quadratic in log10 lr), SGD with momentum near 0.9 a little better than Adam,
    smaller batches slightly better. `mixed`'s defaults (lr at the recipe's 2e-3, Adam, 128)
    score about 0.82, the best setting about 1.02."""
    if not values:
        return 1.0
    q = 1.0
    lr = values.get("training.optimizer.lr")
    if lr is not None:
        q -= 0.12 * (math.log10(lr) - math.log10(LR_OPTIMUM)) ** 2
    if values.get("training.optimizer.name") == "sgd":
        q += 0.02 - 0.3 * (values.get("training.optimizer.momentum", 0.9) - 0.9) ** 2
    bs = values.get("training.batch_size")
    if bs is not None:
        q -= 0.01 * math.log2(bs / 16) / 4
    return max(q, 0.05)


def objective(space, ranks, *, noise_seed: int = 0, hparams: dict[str, Any] | None = None) -> TrialResult:
    """A cheap accuracy landscape: diminishing returns per element, different weights; on a
    space with hyperparameters, scaled by `hparam_quality` of `hparams` (the defaults when None)."""
    n = len(ranks)
    deficit = sum((1.0 + (i * 7919 + noise_seed) % 5) / n * r ** -1.5 for i, r in enumerate(ranks))
    acc = 0.1 + 0.82 * math.exp(-0.8 * deficit)
    params = count_params(space, ranks)
    hyper = getattr(space, "hyper", None)
    values: dict[str, Any] = {}
    if hyper:
        values = hyper.canonical(hparams or {})
        acc *= hparam_quality(values)
    return TrialResult(ranks=tuple(ranks), metrics={
        "val_accuracy": acc, "params": float(params),
        "compression_ratio": space.dense_params / params}, fidelity=4, hparams=values)

