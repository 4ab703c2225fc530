"""`training.init: learned`: trials start from the learned cores cut to their ranks (no training)."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from ranksearch import SearchSpace, count_params
from ranksearch.errors import SpaceError
from ranksearch.learned.apply import GatedNet
from ranksearch.learned.geometry import rank_occurrences, slot_axes
from ranksearch.learned.layout import RankLayout
from ranksearch.learned.prune import choose_ranks, prune, slice_order
from ranksearch.learned.warm import cut, learned_cores, load_cores
from ranksearch.models import build_model
from ranksearch.tensorized import FORMATS, KINDS, make_layer

CASES = list(itertools.product(FORMATS, KINDS))
# log-alphas of a 4-slice element: slice 1 best, then 3, then 0; slice 2 closed (gate 0)
LOG_ALPHAS = [4.0, 10.0, -10.0, 7.0]
ORDER = [1, 3, 0, 2]


def _layer(fmt: str, kind: str, rank: int) -> nn.Module:
    geometry = {"kernel_size": 3, "padding": 1} if kind == "conv" else {}
    return make_layer(fmt, kind, (2, 3), (3, 2), rank, **geometry)


def _input(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 6, 5, 5, generator=gen) if kind == "conv" else torch.randn(4, 6, generator=gen)


def _gated(fmt: str, kind: str, rescale: bool = False) -> GatedNet:
    """A single-layer net at rank 4, gated per position, gates set to LOG_ALPHAS (weights random)."""
    torch.manual_seed(0)
    net = nn.Sequential(_layer(fmt, kind, 4))
    gated = GatedNet(net, RankLayout.per_position(net), seed=0, rescale=rescale)
    for gate in gated.gates:
        gate.set_log_alpha(torch.tensor(LOG_ALPHAS))
    return gated.eval()


def _target(fmt: str, kind: str, rank: int, seed: int = 5) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(_layer(fmt, kind, rank))


@pytest.mark.parametrize("fmt,kind", CASES)
def test_cut_at_the_learned_ranks_reproduces_the_pruned_net(fmt: str, kind: str) -> None:
    gated = _gated(fmt, kind)
    ranks, keep = choose_ranks(gated)
    assert set(ranks) == {3}  # three slices open per position
    assert [list(o) for o in slice_order(gated)] == [ORDER] * len(ranks)
    pruned = prune(gated, keep, fold="open").eval()
    cores = learned_cores(gated)
    assert cores.ranks == ranks
    net = load_cores(_target(fmt, kind, 3), gated.layout, cores).eval()
    x = _input(kind)
    with torch.no_grad():
        torch.testing.assert_close(net(x), pruned(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(net(x), gated(x), rtol=1e-5, atol=1e-6)  # eval: slice 2 closed


@pytest.mark.parametrize("fmt,kind", CASES)
@pytest.mark.parametrize("rescale", [False, True])
def test_a_cut_to_smaller_ranks_keeps_the_highest_gated_slices(fmt: str, kind: str, rescale: bool) -> None:
    gated = _gated(fmt, kind, rescale)
    cores = learned_cores(gated)
    top = [torch.tensor(ORDER[:2])] * len(gated.gates)  # the two best slices of every position
    best = prune(gated, top, fold="open").eval()
    net = load_cores(_target(fmt, kind, 2), gated.layout, cores).eval()
    for a, b in zip(net.state_dict().values(), best.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)  # the same tensors, slice for slice
    worst = prune(gated, [torch.tensor([0, 2])] * len(gated.gates), fold="open").eval()
    x = _input(kind)
    with torch.no_grad():
        assert not torch.allclose(net(x), worst(x))


@pytest.mark.parametrize("fmt,kind", CASES)
def test_a_cut_to_larger_ranks_pads_with_fresh_slices_and_keeps_the_function(fmt: str, kind: str) -> None:
    gated = _gated(fmt, kind)
    cores = learned_cores(gated)  # learned ranks 3
    x = _input(kind)
    with torch.no_grad():
        expected = gated(x)
    for rank in (4, 6):  # up to the learned size, and beyond it
        fresh = _target(fmt, kind, rank)
        net = load_cores(copy.deepcopy(fresh), gated.layout, cores).eval()
        assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in fresh.parameters())
        with torch.no_grad():
            torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
        layer, init = net[0], fresh[0]
        sites = {(occs[0].slot, occs[0].axis) for occs in rank_occurrences(layer)}
        for slot, axes in slot_axes(layer).items():
            w, w0 = slot.get(layer), slot.get(init)
            for ax in axes:
                new = w.narrow(ax, 3, rank - 3)
                if (slot, ax) in sites:
                    assert bool((new == 0).all())  # zero at the gate site: the function is kept
                else:  # fresh elsewhere (outside the gate sites' zeros): the layer's own init
                    mask = new != 0
                    assert bool(mask.any())
                    assert torch.equal(new[mask], w0.narrow(ax, 3, rank - 3)[mask])
        # without the zeros at the gate sites, the new slices change the function
        loose = load_cores(copy.deepcopy(fresh), gated.layout, cores, zero_new=False).eval()
        with torch.no_grad():
            assert not torch.allclose(loose(x), expected, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cuts_of_a_space_model_have_the_closed_form_count(digits_space: SearchSpace, fmt: str) -> None:
    doc = digits_space.to_dict()
    doc["model"]["format"] = fmt
    space = SearchSpace.from_dict(doc)
    torch.manual_seed(0)
    gated = GatedNet(build_model(space, space.upper), RankLayout.from_space(space), seed=0).eval()
    gen = torch.Generator().manual_seed(2)
    for gate in gated.gates:  # a random order and a few closed slices per element
        values = torch.randn(gate.raw.numel(), generator=gen) * 6
        values[0] = 8.0
        gate.set_log_alpha(values)
    cores = learned_cores(gated)
    x = torch.randn(8, *space.input_shape, generator=gen)
    _, keep = choose_ranks(gated)
    with torch.no_grad():
        expected = prune(gated, keep, fold="open").eval()(x)
    lowest = tuple(e.values[0] for e in space.elements)
    mixed = tuple(space.elements[i].values[(3 * i) % len(space.elements[i].values)] for i in range(space.n_ranks))
    for ranks in (cores.ranks, lowest, space.upper, mixed):
        net = cut(space, ranks, cores).eval()
        assert sum(p.numel() for p in net.parameters()) == count_params(space, ranks)
        if all(r >= c for r, c in zip(ranks, cores.ranks, strict=True)):
            with torch.no_grad():
                torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)
    # non-tensorized parameters (biases, the plain output layer) come from the learned net
    net = cut(space, lowest, cores)
    tensorized = {f"{name}." for name in RankLayout.from_space(space).layers}
    plain = [k for k in net.state_dict() if not any(k.startswith(t) for t in tensorized)]
    assert plain
    for key in plain:
        assert torch.equal(net.state_dict()[key], cores.state[key])
    assert torch.equal(cut(space, mixed, cores).state_dict()[plain[0]], cores.state[plain[0]])
    for a, b in zip(cut(space, mixed, cores).parameters(), cut(space, mixed, cores).parameters(), strict=True):
        assert torch.equal(a, b)  # a (ranks, seed) pair always starts alike


def test_init_learned_needs_learned_seeds(digits_space: SearchSpace) -> None:
    from ranksearch.strategies.seeding import check_seeds

    doc = digits_space.to_dict()
    doc["training"]["init"] = "learned"
    doc["strategy"] = {**doc["strategy"], "name": "nsga2", "seeds": ["equal"], "seed_count": 2}
    space = SearchSpace.from_dict(doc, source="space.yaml")
    with pytest.raises(SpaceError) as err:
        check_seeds(space)
    text = str(err.value)
    assert "space.yaml" in text and "training.init" in text and "learned" in text
    doc["strategy"]["seeds"] = ["equal", "learned"]
    check_seeds(SearchSpace.from_dict(doc))  # fine with learned seeds


def test_production_training_refuses_init_learned_and_says_what_to_set(digits_space: SearchSpace) -> None:
    from ranksearch.production import train_space
    from ranksearch.training import train_config

    doc = digits_space.to_dict()
    doc["training"]["init"] = "learned"
    doc["strategy"] = {**doc["strategy"], "name": "nsga2", "seeds": ["learned"], "seed_count": 2}
    space = SearchSpace.from_dict(doc, source="space.yaml")
    with pytest.raises(SpaceError) as err:  # before any training: the learned cores are the search's
        train_space(space, "same", epochs=1)
    text = str(err.value)
    assert "space.yaml" in text and "training.init" in text and "final_training" in text
    with pytest.raises(ValueError, match="'learned'"):
        train_config(space, space.resolve_ranks("same"))
    doc["final_training"] = {**doc["training"], "init": "scratch", "epochs": 1}
    ok = SearchSpace.from_dict(doc, source="space.yaml")
    assert train_space(ok, "same", epochs=1).metrics["epochs_done"] == 1  # a scratch recipe trains
