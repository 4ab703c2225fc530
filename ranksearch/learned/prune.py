"""From gates to ranks, and from a gated net to a plain net at those ranks.

Rule: an element keeps as many slices as its gates expect to keep (hard-concrete: the sum of the
keep probabilities, rounded; ARD: slices with variance above the threshold), rounded up to the
element's next allowed value, taking the best-scored slices. Under a parameter budget, elements
then step down one allowed value at a time, always dropping the lowest-scored slice left among
the elements that can still shrink, until the exact count fits (and, with `fill`, grow back
while it still fits). The pruned layers are new instances of the same classes at those ranks,
holding the kept slices of the trained factors with the gate multipliers folded in (fold='gate':
the pruned net computes what the gated net computes in eval mode with the other slices closed).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ranksearch.learned.apply import GatedNet
from ranksearch.learned.gates import HardConcreteGate
from ranksearch.learned.geometry import slot_axes
from ranksearch.tensorized import TensorizedLayer

TIE = 0.05  # gate scores closer than this count as equal


def params_at(gated: GatedNet, ranks: Sequence[int]) -> int:
    """Exact parameter count of the net pruned to `ranks` (one value per element)."""
    probs = []
    for g, r in zip(gated.layout.groups, ranks, strict=True):
        p = torch.zeros(g.size, dtype=torch.float64)
        p[: int(r)] = 1.0
        probs.append(p)
    return int(round(float(gated.expected_params(probs))))


def slice_order(gated: GatedNet) -> list[Tensor]:
    """Each element's slice indices, best first: the order `choose_ranks` keeps and drops them in.

    Gate score first; gates within TIE of each other (an element's gates often move together)
    are ordered by the energy of their slices, the weights' own measure of use.
    """
    scores = gated.scores()
    energy = [gated.slice_energy(gi) for gi in range(len(gated.layout.groups))]
    return [torch.tensor(sorted(range(len(s)), key=lambda i, s=s, e=e: (-round(float(s[i]) / TIE), -float(e[i]))))
            for s, e in zip(scores, energy, strict=True)]


def choose_ranks(gated: GatedNet, *, max_params: int | None = None,
                 fill: bool = False) -> tuple[tuple[int, ...], list[Tensor]]:
    """(ranks, kept slice indices per element) by the rule in the module docstring.

    With `fill` (and `max_params`), elements then grow one allowed value at a time, best-scored
    next slice first, while the count stays within `max_params`.
    """
    groups = gated.layout.groups
    scores = gated.scores()
    order = slice_order(gated)
    ranks = [g.snap(c) for g, c in zip(groups, gated.kept_counts(), strict=True)]

    def step(gi: int, up: bool) -> tuple[float, int, int] | None:
        g, r = groups[gi], ranks[gi]
        nxt = [v for v in g.values if v > r] if up else [v for v in g.values if v < r]
        if not nxt:
            return None
        value = nxt[0] if up else nxt[-1]
        edge = order[gi][r] if up else order[gi][r - 1]  # the next slice in, or the worst one kept
        return float(scores[gi][edge]), gi, value

    if max_params is not None:
        while params_at(gated, ranks) > max_params:
            options = [o for o in (step(gi, up=False) for gi in range(len(groups))) if o is not None]
            if not options:
                break  # every element at its smallest allowed value: the budget cannot be met
            _, gi, value = min(options)
            ranks[gi] = value
        while fill:
            options = [o for o in (step(gi, up=True) for gi in range(len(groups))) if o is not None]
            fits = []
            for o in options:
                trial = list(ranks)
                trial[o[1]] = o[2]
                if params_at(gated, trial) <= max_params:
                    fits.append(o)
            if not fits:
                break
            _, gi, value = max(fits)
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


def _fold_values(gated: GatedNet, fold: str, keep: Sequence[Tensor]) -> list[Tensor | None]:
    """The multipliers folded into the kept slices (computed over the kept slices only)."""
    values: list[Tensor | None] = []
    for gi, (gate, kept) in enumerate(zip(gated.gates, keep, strict=True)):
        if not isinstance(gate, HardConcreteGate):
            values.append(None)
            continue
        z = gate.deterministic().detach()
        z = torch.ones_like(z) if fold == "open" else torch.where(z > 0, z, torch.ones_like(z))
        mask = torch.zeros_like(z)
        mask[kept.to(z.device)] = 1.0
        values.append(gated.multiplier(gi, z * mask).detach())
    return values


def prune(gated: GatedNet, keep: Sequence[Tensor], *, fold: str = "gate") -> nn.Module:
    """A copy of `gated.net` whose tensorized layers keep only slices `keep[e]` of element e.

    fold='gate' multiplies the kept slices by their test-time gate values (the pruned net then
    computes what the gated net computes in eval mode with the other slices closed); a kept slice
    whose test-time gate is 0 is kept at its weights, else it would be dead. fold='open' keeps
    every kept slice at its weights (gates 1).
    """
    if fold not in ("gate", "open"):
        raise ValueError(f"prune: fold must be 'gate' or 'open', got {fold!r}")
    if len(keep) != len(gated.layout.groups):
        raise ValueError(f"prune: got {len(keep)} index sets for {len(gated.layout.groups)} elements")
    for g, k in zip(gated.layout.groups, keep, strict=True):
        if k.numel() < 1 or int(k.min()) < 0 or int(k.max()) >= g.size or k.unique().numel() != k.numel():
            raise ValueError(f"prune: element {g.name!r} keeps slices {k.tolist()}; give 1..{g.size} distinct "
                             f"indices in [0, {g.size})")
    table = gated.layout.position_groups()
    memo: dict[int, nn.Module] = {}
    with torch.no_grad(), gated.fixed_gates(_fold_values(gated, fold, keep)):
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
