"""learn_ranks end to end on the bundled digits (seconds): validity, exact counts, determinism,
monotonicity in the budget, every format and kind through a space, argument errors."""

from __future__ import annotations

import pytest
import torch

from ranksearch import SearchSpace, count_params
from ranksearch.learned import LearnedOutcome, learn_ranks


def _space(model: dict, ranks: dict, **training: object) -> SearchSpace:
    return SearchSpace.from_dict({
        "name": "learned_test", "seed": 0, "model": model, "ranks": ranks,
        "data": {"dataset": "digits", "val_fraction": 0.2},
        "training": {"epochs": 2, "batch_size": 64, "optimizer": {"name": "adam", "lr": 0.005}, **training},
    })


@pytest.fixture(scope="module")
def mixed_space() -> SearchSpace:
    """A ResNet on 8x8 digits with a TT, a Tucker and a CP conv, a uniform-rank TR conv, two
    convs tied into one element, a TR linear classifier and an element restricted to choices."""
    return _space(
        {"name": "resnet20", "options": {"width": 4}, "format": "tr",
         "layers": {"conv1": {"in_shape": [1], "out_shape": [2, 2], "uniform": True},
                    "layer1.0.conv1": {"format": "tt", "in_shape": [2, 2], "out_shape": [2, 2]},
                    "layer1.0.conv2": {"format": "tucker"},
                    "layer1.1.conv1": {"format": "cp", "ranks": {"choices": [2, 4, 6]}},
                    "layer2.0.conv*": {"format": "tucker"},
                    "fc": {"in_shape": [4, 4], "out_shape": [10]}}},
        {"min": 1, "max": 6, "groups": [{"name": "stage2_entry", "layers": ["layer2.0.conv*"]}]})


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_learned_ranks_are_valid_and_the_count_is_the_closed_form(digits_space: SearchSpace) -> None:
    out = learn_ranks(digits_space, target_compression=12, seed=0, epochs=2, finetune_epochs=1,
                      num_threads=1)
    assert isinstance(out, LearnedOutcome) and out.ok
    assert digits_space.check_ranks(out.ranks) == out.ranks
    params = sum(p.numel() for p in out.model.parameters())
    assert params == count_params(digits_space, out.ranks) == out.metrics["params"]
    assert params <= digits_space.dense_params / 12 < count_params(digits_space, digits_space.upper)
    assert out.metrics["compression_ratio"] == pytest.approx(digits_space.dense_params / params)
    assert 0 <= out.metrics["val_accuracy"] <= 1 and out.metrics["samples_seen"] > 0


def test_learning_is_deterministic_for_a_seed(digits_space: SearchSpace) -> None:
    runs = [learn_ranks(digits_space, target_compression=8, seed=3, epochs=2, finetune_epochs=1,
                        num_threads=1)
            for _ in range(2)]
    assert runs[0].ranks == runs[1].ranks
    a, b = _state(runs[0].model), _state(runs[1].model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].metrics["val_accuracy"] == runs[1].metrics["val_accuracy"]


def test_a_smaller_budget_gives_fewer_params(digits_space: SearchSpace) -> None:
    params = [learn_ranks(digits_space, target_compression=c, seed=0, epochs=2, finetune_epochs=0,
                          num_threads=1)
              .metrics["params"] for c in (5, 10, 20)]
    assert params[0] > params[1] > params[2]


def test_a_stronger_penalty_gives_fewer_params(digits_space: SearchSpace) -> None:
    params = [learn_ranks(digits_space, strength=s, seed=0, epochs=2, finetune_epochs=0,
                          num_threads=1).metrics["params"]
              for s in (0.0, 100.0, 1000.0)]
    assert params[0] > params[1] > params[2]


@pytest.mark.parametrize("kind", ["l0", "ard"])
def test_every_format_and_kind_through_a_space(mixed_space: SearchSpace, kind: str) -> None:
    out = learn_ranks(mixed_space, target_compression=1.5, kind=kind, seed=0, epochs=1, finetune_epochs=1,
                      num_threads=1)
    assert mixed_space.check_ranks(out.ranks) == out.ranks
    assert sum(p.numel() for p in out.model.parameters()) == count_params(mixed_space, out.ranks)
    assert out.ranks[[e.name for e in mixed_space.elements].index("layer1.1.conv1.r0")] in (2, 4, 6)
    x = torch.zeros(2, 1, 8, 8)
    assert out.model.eval()(x).shape == (2, 10)


def test_argument_errors_name_the_values(digits_space: SearchSpace) -> None:
    with pytest.raises(ValueError, match="exactly one of target_compression or strength; got "
                                         "target_compression=None, strength=None"):
        learn_ranks(digits_space, seed=0)
    with pytest.raises(ValueError, match="target_compression must be > 1.*got 0.5"):
        learn_ranks(digits_space, target_compression=0.5, seed=0)
    with pytest.raises(ValueError, match="unknown gate kind 'l1'"):
        learn_ranks(digits_space, strength=1.0, kind="l1", seed=0)
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        learn_ranks(digits_space, strength=1.0, epochs=0, seed=0)


def test_dense_warm_start(digits_space: SearchSpace) -> None:
    """With dense weights the gated net starts from their decomposition at the upper ranks."""
    from ranksearch.models import build_dense

    torch.manual_seed(0)
    dense = build_dense(digits_space.config.model, digits_space.input_shape, digits_space.num_classes)
    out = learn_ranks(digits_space, target_compression=10, seed=0, epochs=1, finetune_epochs=0,
                      dense_state=dense.state_dict(), num_threads=1)
    assert sum(p.numel() for p in out.model.parameters()) == count_params(digits_space, out.ranks)
    assert "finetune" not in out.phases


def test_gate_optimizer_keeps_relative_gradients() -> None:
    """One normalised step: every gate moves lr * g / rms(g), so gradient ratios survive (Adam's
    first step would move every coordinate by lr alike)."""
    from ranksearch.learned.train import GateOptimizer

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = GateOptimizer([a, b], lr=0.1, momentum=0.0)
    a.grad, b.grad = torch.tensor([1.0, 2.0]), torch.tensor([-4.0])
    opt.step()
    rms = (torch.tensor([1.0, 4.0, 16.0]).mean()).sqrt()
    assert torch.allclose(torch.cat([a.detach(), b.detach()]), -0.1 * torch.tensor([1.0, 2.0, -4.0]) / rms)
    with pytest.raises(ValueError, match="lr=0"):
        GateOptimizer([a], lr=0)


def test_a_bounded_start_gates_from_a_few_times_the_target(digits_space: SearchSpace) -> None:
    """`start_factor`: the gated run starts at the largest equal rank within start_factor x the
    target's count (not the upper ranks); the learned ranks stay valid in the whole space and
    their count is still the closed form within the target."""
    from ranksearch.learned.train import start_space

    target = digits_space.dense_params / 20
    bounded = start_space(digits_space, 4 * target)
    r = bounded.config.ranks.max
    assert r < digits_space.config.ranks.max
    assert count_params(digits_space, digits_space.equal_ranks(r)) <= 4 * target
    assert count_params(digits_space, digits_space.equal_ranks(r + 1)) > 4 * target
    assert start_space(digits_space, 10 * digits_space.dense_params) is digits_space  # nothing to bound
    out = learn_ranks(digits_space, target_compression=20, seed=0, epochs=2, finetune_epochs=1,
                      num_threads=1, start_factor=4.0, rescale=False)
    assert out.metrics["upper_params"] == count_params(digits_space, bounded.upper) <= 4 * target
    assert max(out.ranks) <= r and digits_space.check_ranks(out.ranks) == out.ranks
    params = sum(p.numel() for p in out.model.parameters())
    assert params == count_params(digits_space, out.ranks) <= target
