"""Gates and pruning on single tensorized layers of every format and kind (no training)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from ranksearch.learned.apply import GatedNet
from ranksearch.learned.gates import ARDPrior, HardConcreteGate
from ranksearch.learned.geometry import rank_occurrences
from ranksearch.learned.layout import RankLayout
from ranksearch.learned.prune import choose_ranks, params_at, prune
from ranksearch.tensorized import FORMATS, KINDS, layer_params, make_layer

CASES = list(itertools.product(FORMATS, KINDS))


def _layer(fmt: str, kind: str, rank: int = 3) -> nn.Module:
    torch.manual_seed(0)
    geometry = {"kernel_size": 3, "padding": 1} if kind == "conv" else {}
    return make_layer(fmt, kind, (2, 3), (3, 2), rank, **geometry)


def _input(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 6, 5, 5, generator=gen) if kind == "conv" else torch.randn(4, 6, generator=gen)


def _gated(layer: nn.Module, kind: str = "l0", **options: bool) -> GatedNet:
    net = nn.Sequential(copy.deepcopy(layer))
    return GatedNet(net, RankLayout.per_position(net), kind=kind, seed=0, gate_options=options or None)


def _set_gates(gated: GatedNet, closed: list[list[int]]) -> None:
    """Open every slice (log-alpha 10, test-time gate 1) except `closed[e]` (log-alpha -10, gate 0)."""
    for gate, shut in zip(gated.gates, closed, strict=True):
        values = torch.full((gate.raw.numel(),), 10.0)
        values[shut] = -10.0
        gate.set_log_alpha(values)


@pytest.mark.parametrize("fmt,kind", CASES)
@pytest.mark.parametrize("gate", ["l0", "ard"])
def test_open_gates_reproduce_the_ungated_layer(fmt: str, kind: str, gate: str) -> None:
    layer = _layer(fmt, kind)
    x = _input(kind)
    gated = _gated(layer, gate).eval()
    if gate == "l0":
        assert all(bool((g.deterministic() == 1).all()) for g in gated.gates)  # init log-alpha 3 > log 11
    with torch.no_grad():
        assert torch.equal(gated(x), layer(x))


@pytest.mark.parametrize("fmt,kind", CASES)
def test_pruning_removes_exactly_the_closed_slices(fmt: str, kind: str) -> None:
    layer = _layer(fmt, kind)
    x = _input(kind)
    gated = _gated(layer).eval()
    closed = [[0] if g.size > 1 else [] for g in gated.layout.groups]
    if len(closed) > 1:
        closed[-1] = [0, 2]  # a second pattern: two slices of the last position
    _set_gates(gated, closed)
    ranks, keep = choose_ranks(gated)
    assert list(ranks) == [g.size - len(c) for g, c in zip(gated.layout.groups, closed, strict=True)]
    assert [k.tolist() for k in keep] == [[i for i in range(g.size) if i not in c]
                                         for g, c in zip(gated.layout.groups, closed, strict=True)]
    pruned = prune(gated, keep)
    # Oracle independent of the gates: zero the closed slices of the original layer at every gate site.
    zeroed = copy.deepcopy(layer)
    with torch.no_grad():
        for occs, shut in zip(rank_occurrences(zeroed), closed, strict=True):
            w = occs[0].slot.get(zeroed)
            w.index_fill_(occs[0].axis, torch.tensor(shut, dtype=torch.long), 0.0)
    with torch.no_grad():
        assert torch.allclose(pruned(x), gated(x), atol=1e-6, rtol=1e-5)
        assert torch.allclose(pruned(x), zeroed(x), atol=1e-6, rtol=1e-5)
    geometry = {"kernel_size": 3} if kind == "conv" else {}
    closed_form = layer_params(fmt, kind, (2, 3), (3, 2), ranks, **geometry)
    assert sum(p.numel() for p in pruned.parameters()) == closed_form == params_at(gated, ranks)
    assert tuple(pruned[0].ranks) == tuple(ranks)


@pytest.mark.parametrize("fmt,kind", CASES)
def test_fractional_test_time_gates_are_folded_into_the_kept_slices(fmt: str, kind: str) -> None:
    layer = _layer(fmt, kind)
    x = _input(kind)
    gated = _gated(layer).eval()
    gen = torch.Generator().manual_seed(2)
    for gate in gated.gates:
        values = torch.empty(gate.raw.shape).uniform_(-1.0, 3.0, generator=gen)
        values[0] = 5.0  # every position keeps a slice
        if values.numel() > 1:
            values[1] = -5.0  # and closes one
        gate.set_log_alpha(values)
    keep = [torch.nonzero(g.deterministic() > 0).flatten() for g in gated.gates]
    pruned = prune(gated, keep)
    with torch.no_grad():
        assert torch.allclose(pruned(x), gated(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fmt,kind", CASES)
def test_expected_params_is_exact(fmt: str, kind: str) -> None:
    """E[params] in closed form equals the average over every keep pattern, weighted by its odds
    (independent gates; the ordered gates' shared-noise law is checked below)."""
    layer = _layer(fmt, kind, rank=2)
    gated = _gated(layer, ordered=False)
    gen = torch.Generator().manual_seed(3)
    probs = [torch.rand(g.size, generator=gen, dtype=torch.float64) for g in gated.layout.groups]
    sizes = [g.size for g in gated.layout.groups]
    brute = 0.0
    for bits in itertools.product([0, 1], repeat=sum(sizes)):
        weight, ranks, start = 1.0, [], 0
        for p, size in zip(probs, sizes, strict=True):
            pattern = bits[start:start + size]
            start += size
            weight *= math.prod(float(pi) if b else 1 - float(pi) for pi, b in zip(p, pattern, strict=True))
            ranks.append(sum(pattern))
        if min(ranks) == 0:  # a rank-0 bond: the factors of that bond have no entries
            count = sum(_numel_at(layer, gated, ranks))
        else:
            count = layer_params(fmt, kind, (2, 3), (3, 2), ranks,
                                 **({"kernel_size": 3} if kind == "conv" else {}))
        brute += weight * count
    assert float(gated.expected_params(probs)) == pytest.approx(brute, rel=1e-12)


def _numel_at(layer: nn.Module, gated: GatedNet, ranks: list[int]) -> list[int]:
    from ranksearch.learned.geometry import slot_axes

    out = [0 if layer.bias is None else layer.bias.numel()]
    for slot, axes in slot_axes(layer).items():
        shape = list(slot.get(layer).shape)
        for ax, pos in axes.items():
            shape[ax] = ranks[pos]
        out.append(math.prod(shape))
    return out


def test_gates_shared_by_an_element_act_on_every_position_it_sets() -> None:
    """A uniform TR layer: one element, both axes of every core; E[R^2] enters the count."""
    layer = _layer("tr", "linear", rank=3)
    net = nn.Sequential(copy.deepcopy(layer))
    layout = RankLayout.per_position(net)
    members = tuple(m for g in layout.groups for m in g.members)
    shared = RankLayout((type(layout.groups[0])("all", 3, (1, 2, 3), members),))
    gated = GatedNet(net, shared, seed=0, gate_options={"ordered": False}).eval()
    _set_gates(gated, [[1]])
    ranks, keep = choose_ranks(gated)
    assert ranks == (2,) and keep[0].tolist() == [0, 2]
    pruned = prune(gated, keep)
    x = _input("linear")
    with torch.no_grad():
        assert torch.allclose(pruned(x), gated(x), atol=1e-6)
    assert tuple(pruned[0].ranks) == (2, 2, 2, 2)
    p = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)
    brute = sum(math.prod(float(p[i]) if b else 1 - float(p[i]) for i, b in enumerate(bits))
                * layer_params("tr", "linear", (2, 3), (3, 2), max(sum(bits), 1)) for bits in
                itertools.product([0, 1], repeat=3) if sum(bits) > 0)
    brute += math.prod(1 - float(q) for q in p) * 6  # rank 0: only the bias is left
    assert float(gated.expected_params([p])) == pytest.approx(brute, rel=1e-12)


def test_hard_concrete_gate_limits_and_determinism() -> None:
    gate = HardConcreteGate(4)
    gate.set_log_alpha(torch.tensor([math.log(11) + 1e-3, 0.0, -math.log(11) - 1e-3, 8.0]))
    z = gate.deterministic()
    assert z[0] == 1 and z[2] == 0 and 0 < z[1] < 1 and z[3] == 1
    expected = torch.sigmoid(gate.log_alpha - (2 / 3) * math.log(0.1 / 1.1))
    assert torch.allclose(gate.keep_prob(), expected)
    a = gate.sample(torch.Generator().manual_seed(5))
    b = gate.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and bool(((a >= 0) & (a <= 1)).all())
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        HardConcreteGate(0)


@pytest.mark.parametrize("ordered", [True, False])
def test_count_law_matches_sampled_gates(ordered: bool) -> None:
    gate = HardConcreteGate(5, ordered=ordered)
    gate.set_log_alpha(torch.tensor([4.0, 1.0, -0.5, -1.5, -6.0]))
    law = gate.count_law().detach().double()
    gen = torch.Generator().manual_seed(7)
    counts = torch.stack([(gate.sample(gen) > 0).sum() for _ in range(20000)])
    freq = torch.bincount(counts, minlength=6).double() / counts.numel()
    assert float(law.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float((law * torch.arange(6)).sum()) == pytest.approx(float(gate.keep_prob().detach().sum()), abs=1e-5)
    assert torch.allclose(freq, law, atol=0.015)
    if ordered:  # shared noise: the open slices are always the most open ones
        z = gate.sample(gen)
        assert bool((z[:-1] >= z[1:]).all())


def test_ard_prior_keeps_slices_above_the_threshold() -> None:
    prior = ARDPrior(3, threshold=1e-2)
    prior.observe(torch.tensor([1.0, 0.5, 1e-4]), 1)
    assert prior.kept().tolist() == [True, True, False]
    with pytest.raises(ValueError, match="threshold must be in"):
        ARDPrior(3, threshold=2.0)


def test_layout_mismatch_names_the_layer() -> None:
    layer = _layer("tt", "linear")
    net = nn.Sequential(layer)
    layout = RankLayout.per_position(nn.Sequential(_layer("tt", "linear", rank=4)))
    with pytest.raises(ValueError, match=r"layer '0' has ranks \(3,\)"):
        GatedNet(net, layout)


@pytest.mark.parametrize("fmt,kind", CASES)
@pytest.mark.parametrize("batch", [1, 64])
def test_gradients_reach_every_factor_and_gate(fmt: str, kind: str, batch: int) -> None:
    """Both forward paths (small batches contract core by core, large ones merge halves or
    rebuild the weight) must pass gradients to the stored factors and to the gates; a slice of a
    parametrized ParameterList made of fresh leaf Parameters once cut them silently."""
    layer = _layer(fmt, kind)
    gated = _gated(layer).train()
    x = torch.randn(batch, *_input(kind).shape[1:], generator=torch.Generator().manual_seed(4))
    gated(x).square().sum().backward()
    for name, p in gated.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    for gate in gated.gates:  # half open: test-time gate 0.5, where it has a gradient
        gate.set_log_alpha(torch.zeros(gate.raw.numel()))
    gated.eval()(x).square().sum().backward()
    for gate in gated.gates:
        assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in gate.parameters())
