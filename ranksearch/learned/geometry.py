"""Where each rank position of a tensorized layer lives among the layer's parameter tensors.

A rank position (one entry of `layer.ranks`) is a bond between factors: its slice index runs
along one axis of every tensor the bond touches (two cores of a TR/TT chain, a factor and the
core of Tucker-2, every factor of CP). Gating or pruning slice i of a position means acting on
that index along all of those axes; gating needs only one of them (the "gate site"), since
every entry of the merged weight is a sum over the bond index of products that include it.

This adapter reads only the layers' public attributes: `fmt`, `kind`, `ranks`, `in_shape`,
`out_shape`, `spec` (LayerSpec) and the parameter containers `cores` (TR, TT: a ParameterList,
core k of shape (r_k, s_k, r_{k+1}) for TR, (b_k, I_k, O_k, b_{k+1}) for TT channel cores after a
(1, kh*kw, r_1) spatial core in TT conv), `factor_in` / `core` / `factor_out` (Tucker-2) and
`factors` (CP: one (s, R) factor per mode, kernel included). It belongs on the layer classes
(a `rank_axes()` method) once their API allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ranksearch.tensorized import TensorizedLayer


@dataclass(frozen=True)
class Slot:
    """One parameter tensor of a layer: `getattr(owner, name)`, addressed relative to the layer."""

    owner: str  # attribute path from the layer to the module holding the tensor ("" = the layer)
    name: str

    def module(self, layer: nn.Module) -> nn.Module:
        return layer.get_submodule(self.owner) if self.owner else layer

    def get(self, layer: nn.Module) -> Tensor:
        return getattr(self.module(layer), self.name)


@dataclass(frozen=True)
class Occurrence:
    """Rank position `position` runs along `axis` of the tensor in `slot`."""

    slot: Slot
    axis: int


def _core(k: int) -> Slot:
    return Slot("cores", str(k))


def rank_occurrences(layer: nn.Module) -> tuple[tuple[Occurrence, ...], ...]:
    """For each rank position of `layer`, every (tensor, axis) its slice index runs along.

    The first occurrence of each position is its gate site.
    """
    if not isinstance(layer, TensorizedLayer):
        raise TypeError(f"rank_occurrences: expected a ranksearch tensorized layer, got {type(layer).__name__}")
    fmt, kind, n = layer.fmt, layer.kind, len(layer.ranks)
    if fmt == "tr":
        d = n  # one core per rank position, ring closed
        return tuple((Occurrence(_core(k), 0), Occurrence(_core((k - 1) % d), 2)) for k in range(d))
    if fmt == "tt":
        # linear: position j is bond j+1 between channel cores j and j+1 (4-way cores);
        # conv: cores[0] is the (1, kk, r_1) spatial core, position j joins cores[j] and cores[j+1].
        out = []
        for j in range(n):
            left_axis = 2 if (kind == "conv" and j == 0) else 3
            out.append((Occurrence(_core(j + 1), 0), Occurrence(_core(j), left_axis)))
        return tuple(out)
    if fmt == "tucker":
        return ((Occurrence(Slot("", "core"), 1), Occurrence(Slot("", "factor_in"), 1)),
                (Occurrence(Slot("", "core"), 0), Occurrence(Slot("", "factor_out"), 1)))
    if fmt == "cp":
        return (tuple(Occurrence(Slot("factors", str(k)), 1) for k in range(len(layer.factors))),)
    raise ValueError(f"rank_occurrences: no geometry for tensor format {fmt!r} ({type(layer).__name__}); "
                     "known formats: tr, tt, tucker, cp")


def slot_axes(layer: nn.Module) -> dict[Slot, dict[int, int]]:
    """Every factor tensor of `layer` with its rank axes mapped to rank positions."""
    table: dict[Slot, dict[int, int]] = {}
    for pos, occs in enumerate(rank_occurrences(layer)):
        for occ in occs:
            table.setdefault(occ.slot, {})[occ.axis] = pos
    return table
