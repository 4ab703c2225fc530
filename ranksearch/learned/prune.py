"""From gates to ranks, and from a gated net to a plain net at those ranks.

Rule: an element keeps the slices its gate keeps (hard-concrete: test-time gate > 0; ARD: slice
variance above the threshold); the count is rounded up to the element's next allowed value (the
extra slices are the best-scored closed ones). Under a parameter budget, elements then step down
one allowed value at a time, always dropping the lowest-scored slice left among the elements
that can still shrink, until the exact count fits. The pruned layers are new instances of the
same classes at those ranks, holding the kept slices of the trained factors with the
deterministic gate values folded in, so the pruned net computes what the gated net computes in
eval mode with the other slices closed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ranksearch.learned.apply import GatedNet
from ranksearch.learned.geometry import slot_axes
from ranksearch.tensorized import TensorizedLayer


def params_at(gated: GatedNet, ranks: Sequence[int]) -> int:
    """Exact parameter count of the net pruned to `ranks` (one value per element)."""
    probs = []
    for g, r in zip(gated.layout.groups, ranks, strict=True):
        p = torch.zeros(g.size, dtype=torch.float64)
        p[: int(r)] = 1.0
        probs.append(p)
    return int(round(float(gated.expected_params(probs))))


def choose_ranks(gated: GatedNet, *, max_params: int | None = None) -> tuple[tuple[int, ...], list[Tensor]]:
    """(ranks, kept slice indices per element) by the rule in the module docstring."""
    groups = gated.layout.groups
    kept = gated.kept()
    ranks = [g.snap(int(k.sum())) for g, k in zip(groups, kept, strict=True)]
    order = [torch.argsort(s, descending=True, stable=True) for s in gated.scores()]
    if max_params is not None:
        while params_at(gated, ranks) > max_params:
            options = []
            for gi, g in enumerate(groups):
                lower = [v for v in g.values if v < ranks[gi]]
                if lower:
                    worst = order[gi][ranks[gi] - 1]
                    options.append((float(gated.scores()[gi][worst]), gi, lower[-1]))
            if not options:
                break  # every element at its smallest allowed value: the budget cannot be met
            _, gi, value = min(options)
            ranks[gi] = value
    keep = [torch.sort(o[:r]).values for o, r in zip(order, ranks, strict=True)]
    return tuple(ranks), keep


def _rebuild(layer: TensorizedLayer, ranks: tuple[int, ...]) -> TensorizedLayer:
    """A fresh layer of the same class, shapes and geometry at `ranks`."""
    spec = layer.spec
    factory = {"device": next(layer.parameters()).device, "dtype": next(layer.parameters()).dtype}
    cls = parametrize.type_before_parametrizations(layer)
    if layer.kind == "linear":
        return cls(spec.in_shape, spec.out_shape, ranks, bias=spec.bias, mode=layer.mode, **factory)
    return cls(spec.in_shape, spec.out_shape, ranks, kernel_size=spec.kernel, stride=spec.stride,
                       padding=spec.padding, dilation=spec.dilation, bias=spec.bias, mode=layer.mode,
                       **factory)


def prune(gated: GatedNet, keep: Sequence[Tensor]) -> nn.Module:
    """A copy of `gated.net` whose tensorized layers keep only slices `keep[e]` of element e."""
    if len(keep) != len(gated.layout.groups):
        raise ValueError(f"prune: got {len(keep)} index sets for {len(gated.layout.groups)} elements")
    for g, k in zip(gated.layout.groups, keep, strict=True):
        if k.numel() < 1 or int(k.min()) < 0 or int(k.max()) >= g.size or k.unique().numel() != k.numel():
            raise ValueError(f"prune: element {g.name!r} keeps slices {k.tolist()}; give 1..{g.size} distinct "
                             f"indices in [0, {g.size})")
    table = gated.layout.position_groups()
    memo: dict[int, nn.Module] = {}
    with torch.no_grad():
        for name, positions in table.items():
            layer = gated.net.get_submodule(name)
            ranks = tuple(len(keep[positions[p]]) for p in range(len(layer.ranks)))
            new = _rebuild(layer, ranks)
            for slot, axes in slot_axes(layer).items():
                w = slot.get(layer).detach()  # parametrized: deterministic gates folded in
                for ax, pos in axes.items():
                    w = w.index_select(ax, keep[positions[pos]].to(w.device))
                slot.get(new).copy_(w)
            if layer.bias is not None:
                new.bias.copy_(layer.bias.detach())
            new.train(layer.training)
            memo[id(layer)] = new
    return copy.deepcopy(gated.net, memo)
