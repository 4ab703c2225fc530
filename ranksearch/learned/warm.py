"""Warm start from learned cores (`training.init: learned`, with `strategy.seeds: [learned]`).

The short gated run behind `learned` seeds (`ranksearch.learned.seeds`) trains cores as well as
gates. `learned_cores(gated)` keeps them: the net pruned at the ranks its gates kept
(`choose_ranks` without a budget, fold 'open' as `learn_ranks` prunes), every element's slices
stored in gate order, best first (`prune.slice_order`, the order `choose_ranks` trims and fills
in). Permuting a bond's slices the same way in every tensor it touches leaves the function
unchanged, so the stored net computes exactly what the pruned net computes.

`cut(space, ranks, cores)` builds a trial's model at `ranks` from them: on every rank axis of
every factor tensor, position p keeps its first min(r_p, R_p) slices (R: the learned ranks), i.e.
the slices the gates ranked highest; where r_p > R_p the extra slices are freshly initialised
(the layer's own initialisation at `ranks`, seeded), except at the position's gate site (one
tensor per position, `geometry.rank_occurrences`), where they start at zero: every term of the
merged weight that uses a new slice then vanishes, so the model computes what the learned net
computes at R, and the new slices still get gradients from the first step (the other factors
are non-zero). Parameters outside the rank axes (biases, batch norm, non-tensorized layers) are
copied. The model is the space's model at `ranks`, so its parameter count is the closed form.
Works for every format `geometry` knows (TR, TT, Tucker-2, CP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ranksearch.learned.geometry import rank_occurrences, slot_axes
from ranksearch.learned.layout import RankLayout

if TYPE_CHECKING:
    from ranksearch.learned.apply import GatedNet
    from ranksearch.space import SearchSpace


@dataclass(frozen=True)
class LearnedCores:
    """The learned ranks (one value per rank element) and the pruned net's state at them, each
    element's slices in gate order (best first)."""

    ranks: tuple[int, ...]
    state: dict[str, Tensor]
    #: the gated net rescaled each bond by sqrt(size / open slices) (`GatedNet.multiplier`): a cut
    #: to r < R slices then scales the kept ones by sqrt(R / r), as pruning at those slices would
    rescale: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"ranks": list(self.ranks), "state": self.state, "rescale": self.rescale}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LearnedCores:
        return cls(tuple(int(r) for r in data["ranks"]), dict(data["state"]),  # type: ignore[arg-type, call-overload]
                   bool(data.get("rescale", False)))


def learned_cores(gated: GatedNet, *, fold: str = "open") -> LearnedCores:
    """The cores of a trained gated net at the ranks its gates kept, slices in gate order."""
    from ranksearch.learned.prune import choose_ranks, prune, slice_order

    ranks, _ = choose_ranks(gated)
    order = slice_order(gated)
    keep = [o[:r] for o, r in zip(order, ranks, strict=True)]
    model = prune(gated, keep, fold=fold)
    return LearnedCores(tuple(int(r) for r in ranks),
                        {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                        rescale=gated.rescale and fold == "open")


def _key(layer: str, owner: str, name: str) -> str:
    return ".".join(p for p in (layer, owner, name) if p)


def load_cores(net: nn.Module, layout: RankLayout, cores: LearnedCores, *, zero_new: bool = True) -> nn.Module:
    """Fill `net` (the space's model at some ranks, freshly initialised) from `cores`, in place.

    See the module docstring; `zero_new=False` leaves new slices at their fresh values at the
    gate sites too (the function then changes).
    """
    learned = layout.layer_ranks(cores.ranks)
    rank_axes: dict[str, dict[int, int]] = {}  # state key -> {axis: position}
    sites: dict[str, dict[int, int]] = {}  # state key -> {gate-site axis: learned rank there}
    for name in layout.layers:
        layer = net.get_submodule(name)
        for slot, axes in slot_axes(layer).items():
            rank_axes[_key(name, slot.owner, slot.name)] = axes
        for pos, occs in enumerate(rank_occurrences(layer)):
            site = occs[0]
            sites.setdefault(_key(name, site.slot.owner, site.slot.name), {})[site.axis] = learned[name][pos]
    target = net.state_dict(keep_vars=True)
    if set(target) != set(cores.state):
        extra, missing = sorted(set(cores.state) - set(target)), sorted(set(target) - set(cores.state))
        raise ValueError(f"load_cores: the learned cores do not fit this model (missing {missing[:5]}, "
                         f"unexpected {extra[:5]})")
    with torch.no_grad():
        for key, dst in target.items():
            src = cores.state[key].to(device=dst.device, dtype=dst.dtype)
            axes = rank_axes.get(key, {})
            if src.dim() != dst.dim() or any(a not in axes and s != d
                                             for a, (s, d) in enumerate(zip(src.shape, dst.shape, strict=True))):
                raise ValueError(f"load_cores: {key} has shape {tuple(src.shape)} in the learned cores and "
                                 f"{tuple(dst.shape)} in the model, beyond its rank axes {sorted(axes)}")
            region = tuple(slice(0, min(s, d)) for s, d in zip(src.shape, dst.shape, strict=True))
            dst[region] = src[region]
            for ax, r_learned in sites.get(key, {}).items():
                if zero_new and dst.shape[ax] > r_learned:
                    dst.narrow(ax, r_learned, dst.shape[ax] - r_learned).zero_()
                if cores.rescale and dst.shape[ax] < r_learned:
                    dst.mul_((r_learned / dst.shape[ax]) ** 0.5)
    return net


def cut(space: SearchSpace, ranks: Sequence[int], cores: LearnedCores, *, seed: int | None = None,
        zero_new: bool = True) -> nn.Module:
    """The space's model at `ranks` started from the learned cores (see the module docstring).

    Fresh slices are drawn after `torch.manual_seed(seed)` (default the space's) inside
    `fork_rng`, so the caller's RNG is untouched and a (ranks, seed) pair always starts alike.
    """
    from ranksearch.models import build_model

    ranks = space.check_ranks(tuple(int(r) for r in ranks))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(space.seed if seed is None else int(seed))
        net = build_model(space, ranks)
    return load_cores(net, RankLayout.from_space(space), cores, zero_new=zero_new)
