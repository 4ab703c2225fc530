"""Gates on every rank slice of every tensorized layer, without touching the layer classes.

`GatedNet` wraps a model whose tensorized layers are built at the layout's upper ranks. Each
rank position's gate site (one factor tensor, see `geometry`) gets a `torch.nn.utils.parametrize`
parametrization that multiplies the tensor along that axis by its element's gate vector. The
gate values are drawn once per forward pass of the wrapper (training: one hard-concrete sample
per slice, shared by every position of the element; eval or outside a forward pass: the
deterministic test-time gate), so every position an element sets sees the same gate.

The expected parameter count is exact in closed form: each factor tensor has
prod(non-rank dims) * prod over its rank axes of R_e entries, where R_e is the number of kept
slices of element e (each kept with its gate's keep probability); axes of different elements are independent, so E[numel] = prod(non-rank dims) * prod_e E[R_e^k_e] with
k_e the number of the tensor's axes element e sets (2 for a uniform-rank TR core).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ranksearch.learned.gates import ARDPrior, HardConcreteGate, make_gate
from ranksearch.learned.geometry import Occurrence, Slot, rank_occurrences, slot_axes
from ranksearch.learned.layout import RankLayout
from ranksearch.tensorized import TensorizedLayer

Gate = HardConcreteGate | ARDPrior


class _SliceGate(nn.Module):
    """Parametrization: the tensor times a gate vector along one axis."""

    def __init__(self, source: Callable[[], Tensor], axis: int, ndim: int) -> None:
        super().__init__()
        self._source = source  # a plain callable, not a submodule: the gate lives in GatedNet
        self.axis, self.ndim = axis, ndim

    def forward(self, w: Tensor) -> Tensor:
        shape = [1] * self.ndim
        shape[self.axis] = -1
        return w * self._source().view(shape)


class _SlicesAsLists:
    """Mixed into a parametrized ParameterList: a slice is a plain list of the (gated) tensors.

    ParameterList builds a slice as a new ParameterList and wraps every entry in a new
    Parameter, a leaf: the layers that slice their cores (TR halves, chain plans) would then see
    the gated values but pass no gradient to the cores or the gates.
    """

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]  # type: ignore[index, arg-type]
        return super().__getitem__(idx)  # type: ignore[misc]


class GatedNet(nn.Module):
    """`net` with one gate per (rank element, slice); forward = net's forward under the gates.

    `parameters()` are the net's; the gates' are `gate_parameters()`.

    `kind` is 'l0' (hard-concrete gate) or 'ard' (automatic-rank-determination prior);
    `gate_options` go to the gate's constructor; `seed` fixes the training-time gate samples;
    `rescale` keeps each bond's scale as its slices close (see `multiplier`).
    """

    def __init__(self, net: nn.Module, layout: RankLayout, *, kind: str = "l0", seed: int = 0,
                 gate_options: dict[str, Any] | None = None, rescale: bool = False) -> None:
        super().__init__()
        self.rescale = bool(rescale)
        self.net = net
        self.layout = layout
        self.kind = kind
        # A plain list, not a ModuleList: the gates are trained by their own optimizer (see
        # `gate_parameters`), so the net's optimizer, built from `parameters()`, leaves them out.
        self.gates: list[Gate] = [make_gate(kind, g.size, **(gate_options or {})) for g in layout.groups]
        self._generator = torch.Generator().manual_seed(int(seed))
        self._current: list[Tensor | None] | None = None
        self._layers: dict[str, TensorizedLayer] = {}
        self._sites: list[tuple[str, Occurrence, int]] = []  # (layer, gate site, group)
        # (layer, slot, shape at the upper ranks, {axis: group})
        self._tensors: list[tuple[str, Slot, tuple[int, ...], dict[int, int]]] = []
        self._attach()

    # -- construction ---------------------------------------------------------------------------
    def _attach(self) -> None:
        table = self.layout.position_groups()
        for name, positions in table.items():
            try:
                layer = self.net.get_submodule(name)
            except AttributeError:
                raise ValueError(f"GatedNet: the model has no module {name!r} (named by the rank layout)") from None
            if not isinstance(layer, TensorizedLayer):
                raise ValueError(f"GatedNet: module {name!r} is a {type(layer).__name__}, not a tensorized layer")
            expected = tuple(self.layout.groups[positions[p]].size if p in positions else -1
                             for p in range(len(layer.ranks)))
            if tuple(layer.ranks) != expected:
                raise ValueError(f"GatedNet: layer {name!r} has ranks {tuple(layer.ranks)}; gates need it built "
                                 f"at its elements' upper bounds {expected}")
            self._layers[name] = layer
            for slot, axes in slot_axes(layer).items():
                shape = tuple(slot.get(layer).shape)
                self._tensors.append((name, slot, shape, {ax: positions[p] for ax, p in axes.items()}))
            if self.kind == "ard":
                continue
            for pos, occs in enumerate(rank_occurrences(layer)):
                site, group = occs[0], positions[pos]
                module = site.slot.module(layer)
                ndim = getattr(module, site.slot.name).dim()
                parametrize.register_parametrization(
                    module, site.slot.name, _SliceGate(self._gate_source(group), site.axis, ndim))
                self._sites.append((name, site, group))
                if isinstance(module, nn.ParameterList) and not isinstance(module, _SlicesAsLists):
                    module.__class__ = type(f"Gated{type(module).__name__}", (_SlicesAsLists, type(module)), {})
        self._fixed = sum(p.numel() for p in self.net.parameters()) - sum(
            math.prod(shape) for _, _, shape, _ in self._tensors)
        if self.kind == "ard":
            self._observe()

    def _gate_source(self, group: int) -> Callable[[], Tensor]:
        def source() -> Tensor:
            if self._current is not None:
                value = self._current[group]
                if value is not None:
                    return value
            return self.multiplier(group, self.gates[group].deterministic())
        return source

    def multiplier(self, group: int, z: Tensor) -> Tensor:
        """What multiplies the slices of `group` given gate values z: z itself, or with `rescale`
        z * sqrt(size / sum z^2), which keeps the merged weight's scale as slices close (the
        variance of a bond sum grows with the number of open slices), like inverted dropout."""
        if not self.rescale:
            return z
        size = self.layout.groups[group].size
        return z * torch.sqrt(size / (z * z).sum().clamp(min=1.0))

    def gate_parameters(self) -> list[nn.Parameter]:
        """Trainable gate parameters (none for ARD, whose variances follow the weights)."""
        return [p for g in self.gates for p in g.parameters()]

    def _apply(self, fn: Any, recurse: bool = True) -> GatedNet:  # .to(device) etc. reach the gates too
        super()._apply(fn, recurse)
        for g in self.gates:
            g._apply(fn, recurse)
        return self

    # -- forward --------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "ard":
            return self.net(*args, **kwargs)
        self._current = [self.multiplier(i, g.value(training=self.training, generator=self._generator))
                         for i, g in enumerate(self.gates)]
        try:
            return self.net(*args, **kwargs)
        finally:
            self._current = None

    @contextlib.contextmanager
    def fixed_gates(self, values: list[Tensor | None]) -> Iterator[None]:
        """Inside the block, the factor tensors read with these multipliers (None: the default)."""
        previous, self._current = self._current, list(values)
        try:
            yield
        finally:
            self._current = previous

    # -- what the gates say ---------------------------------------------------------------------
    def _observe(self) -> None:
        """ARD: recompute the slice variances from the current weights."""
        for gi, gate in enumerate(self.gates):
            gate.observe(*self._slice_squares(gi))

    def keep_probs(self) -> list[Tensor]:
        if self.kind == "ard":
            self._observe()
        return [g.keep_prob() for g in self.gates]

    def kept(self) -> list[Tensor]:
        """Boolean mask of kept slices per element."""
        if self.kind == "ard":
            with torch.no_grad():
                self._observe()
        return [g.kept() for g in self.gates]

    def kept_counts(self) -> list[int]:
        """How many slices each element keeps: the rounded expected count for hard-concrete
        gates (what the parameter penalty was computed from), the thresholded count for ARD."""
        if self.kind == "l0":
            return [int(round(float(p.detach().sum()))) for p in self.keep_probs()]
        return [int(k.sum()) for k in self.kept()]

    def slice_energy(self, group: int) -> Tensor:
        """Sum of squares of every (gated) entry each slice of `group` touches."""
        with torch.no_grad():
            return self._slice_squares(group)[0]

    def scores(self) -> list[Tensor]:
        if self.kind == "ard":
            with torch.no_grad():
                self._observe()
        return [g.score() for g in self.gates]

    @property
    def fixed_params(self) -> int:
        """Parameters whose count does not depend on the ranks (biases, untouched layers)."""
        return self._fixed

    def expected_params(self, probs: list[Tensor] | None = None) -> Tensor:
        """E[parameter count of the pruned net] under the gates' keep probabilities (exact).

        `probs` replaces the keep probabilities (0/1 entries give the count of that pattern).
        """
        probs = self.keep_probs() if probs is None else probs
        dists = [g.count_law(p) for g, p in zip(self.gates, probs, strict=True)]
        cache: dict[tuple[int, int], Tensor] = {}

        def moment(group: int, k: int) -> Tensor:
            if (group, k) not in cache:
                dist = dists[group]
                counts = torch.arange(dist.numel(), dtype=dist.dtype, device=dist.device)
                cache[(group, k)] = (dist * counts ** k).sum()
            return cache[(group, k)]

        total = torch.tensor(float(self._fixed), dtype=probs[0].dtype, device=probs[0].device)
        for _, _, shape, axes in self._tensors:
            const = math.prod(s for ax, s in enumerate(shape) if ax not in axes)
            mult: dict[int, int] = {}
            for group in axes.values():
                mult[group] = mult.get(group, 0) + 1
            term = torch.ones((), dtype=total.dtype, device=total.device) * const
            for group, k in mult.items():
                term = term * moment(group, k)
            total = total + term
        return total

    # -- ARD prior ------------------------------------------------------------------------------
    def _slice_squares(self, group: int) -> tuple[Tensor, int]:
        """Sum of squares of the entries each slice of `group` touches, and entries per slice."""
        size = self.layout.groups[group].size
        sq = torch.zeros(size)
        count = 0
        for name, slot, shape, axes in self._tensors:
            for ax, g in axes.items():
                if g != group:
                    continue
                w = slot.get(self._layers[name])
                dims = [d for d in range(w.dim()) if d != ax]
                sq = sq.to(w.dtype).to(w.device) + (w * w).sum(dim=dims)
                count += math.prod(shape) // shape[ax]
        return sq, count

    def prior_penalty(self) -> Tensor:
        """Negative log prior of the ARD variances and the weights they govern (0 for 'l0')."""
        if self.kind != "ard":
            return torch.zeros(())
        self._observe()
        return torch.stack([gate.penalty() for gate in self.gates]).sum()
