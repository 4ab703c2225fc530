"""Which rank positions share a gate: the rank elements of a space, or one per position.

A space's rank element sets one or more (layer, position) slots to the same value (ties,
per-layer uniform ranks). Its slices are gated together: slice i of the element is one gate
acting on slice i of every position it sets, so whatever survives is still one value per
element, a valid configuration of the space, and the closed-form parameter count applies as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ranksearch.tensorized import TensorizedLayer

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace


@dataclass(frozen=True)
class GateGroup:
    """One rank element: `size` slices (its upper bound), the values it may take, its slots."""

    name: str
    size: int
    values: tuple[int, ...]
    members: tuple[tuple[str, int], ...]  # (layer module name, rank position)

    def snap(self, count: int) -> int:
        """The smallest allowed value >= count (the largest when none is), so a rank is valid."""
        for v in self.values:
            if v >= count:
                return v
        return self.values[-1]


@dataclass(frozen=True)
class RankLayout:
    """The gate groups of a model, in rank-vector order."""

    groups: tuple[GateGroup, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for g in self.groups:
            for layer, _ in g.members:
                seen.setdefault(layer, None)
        return tuple(seen)

    @property
    def upper(self) -> tuple[int, ...]:
        return tuple(g.size for g in self.groups)

    def position_groups(self) -> dict[str, dict[int, int]]:
        """layer -> rank position -> index of the group that gates it."""
        table: dict[str, dict[int, int]] = {}
        for gi, g in enumerate(self.groups):
            for layer, pos in g.members:
                table.setdefault(layer, {})[pos] = gi
        return table

    def layer_ranks(self, ranks: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Each layer's own rank tuple for a vector of one value per group."""
        if len(ranks) != len(self.groups):
            raise ValueError(f"RankLayout.layer_ranks: got {len(ranks)} values for {len(self.groups)} groups")
        table = self.position_groups()
        return {layer: tuple(int(ranks[table[layer][p]]) for p in range(len(pos)))
                for layer, pos in table.items()}

    @classmethod
    def from_space(cls, space: SearchSpace) -> RankLayout:
        """One group per rank element of `space`, sized at the element's upper bound."""
        return cls(tuple(GateGroup(e.name, e.high, tuple(e.values), tuple(e.members)) for e in space.elements))

    @classmethod
    def per_position(cls, model: nn.Module) -> RankLayout:
        """One group per rank position of every tensorized layer of `model` (values 1..rank)."""
        groups = []
        for name, mod in model.named_modules():
            if isinstance(mod, TensorizedLayer):
                for pos, r in enumerate(mod.ranks):
                    groups.append(GateGroup(f"{name}.r{pos}", int(r), tuple(range(1, int(r) + 1)),
                                            ((name, pos),)))
        if not groups:
            raise ValueError("RankLayout.per_position: the model has no tensorized layer")
        return cls(tuple(groups))
