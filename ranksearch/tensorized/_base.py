"""Shared machinery of the tensorized layers: validated specs, path choice and contraction helpers.

Every layer is described by a frozen `LayerSpec` (shapes, ranks, conv geometry). Parameter and
FLOP counts are closed-form functions of the spec alone, so a search can price millions of rank
vectors without building a module; the modules run exactly the matmuls/convs those formulas
count, which the tests check against `torch.utils.flop_counter.FlopCounterMode`.

FLOP convention (the one FlopCounterMode uses): a matrix product (M x K) @ (K x N) costs 2*M*K*N,
a convolution 2 * batch * C_out * (C_in / groups) * kh * kw * H_out * W_out; element-wise work
(bias adds, Khatri-Rao products, copies made by permutes) costs nothing.

Choosing a path (and a contraction plan) by FLOPs alone misjudges plans whose intermediate
tensors are much larger than their inputs: on the 2-core CPUs a 635 MFLOP four-step TR plan ran
slower than the 805 MFLOP two-matmul one. Choices therefore minimise a roofline-style estimate,
FLOPs + MEMORY_WEIGHT * (tensor elements written or read by each step); the FLOPs reported are
still the exact counts of the chosen path.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("auto", "sequential", "reconstruct")
MEMORY_WEIGHT = 40  # FLOP-equivalents per tensor element moved (2-core CPU: ~40 GFLOP/s vs ~1 G elements/s)


class PathCost(NamedTuple):
    """Exact FLOPs of a forward path and the estimate used to choose between paths."""

    flops: int
    cost: float


def path_cost(flops: int, *moved: int) -> PathCost:
    """FLOPs plus the memory term for the given counts of elements written or read."""
    return PathCost(flops, flops + MEMORY_WEIGHT * sum(moved))


# --------------------------------------------------------------------------- validation helpers
def is_int(v: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_shape(owner: str, name: str, shape: Any) -> tuple[int, ...]:
    """A non-empty tuple of positive ints, or a ValueError naming the argument."""
    if is_int(shape):
        shape = (shape,)
    try:
        values = tuple(shape)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be a sequence of positive ints, got {shape!r}") from None
    if not values or not all(is_int(v) and v >= 1 for v in values):
        raise ValueError(f"{owner}: {name} must be a non-empty sequence of positive ints, got {shape!r}")
    return tuple(int(v) for v in values)


def check_ranks(owner: str, ranks: Any, expected: int, what: str) -> tuple[int, ...]:
    """Rank tuple of length `expected`; one int means the same rank at every position."""
    if is_int(ranks):
        ranks = (ranks,) * expected
    try:
        values = tuple(ranks)
    except TypeError:
        raise ValueError(f"{owner}: ranks must be an int or a sequence of ints, got {ranks!r}") from None
    if len(values) != expected:
        raise ValueError(f"{owner}: ranks has {len(values)} values, expected {expected} ({what})")
    bad = [v for v in values if not (is_int(v) and v >= 1)]
    if bad:
        raise ValueError(f"{owner}: ranks must be positive ints, got {bad[0]!r} in {list(values)!r}")
    return tuple(int(v) for v in values)


def check_mode(owner: str, mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"{owner}: mode must be one of {MODES}, got {mode!r}")
    return mode


def check_pair(owner: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (>= minimum) as a pair, like nn.Conv2d's arguments."""
    pair = (value, value) if is_int(value) else value
    try:
        pair = tuple(pair)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or not all(is_int(v) and v >= minimum for v in pair):
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_padding(owner: str, padding: Any, kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int]) -> tuple[int, int]:
    """Integer padding; 'valid' and a symmetric 'same' are translated, other strings refused."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            if stride != (1, 1) or any(t % 2 for t in totals):
                raise ValueError(f"{owner}: padding='same' needs stride 1 and an even dilation*(kernel-1); "
                                 f"got kernel {kernel}, stride {stride}, dilation {dilation}: give integer padding")
            return (totals[0] // 2, totals[1] // 2)
        raise ValueError(f"{owner}: padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    return check_pair(owner, "padding", padding, 0)


def check_batch(owner: str, batch_size: Any) -> int:
    if not (is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"{owner}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


# --------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class LayerSpec:
    """Everything that fixes a layer's parameters and cost; validated once by `make_spec`."""

    owner: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    ranks: tuple[int, ...]
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    bias: bool = True

    @property
    def c_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def c_out(self) -> int:
        return math.prod(self.out_shape)

    @property
    def kk(self) -> int:
        return 1 if self.kernel is None else self.kernel[0] * self.kernel[1]

    @property
    def fan_in(self) -> int:
        return self.c_in * self.kk

    @property
    def bias_params(self) -> int:
        return self.c_out if self.bias else 0

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Output size of the convolution for input size `hw` (nn.Conv2d's formula)."""
        assert self.kernel is not None
        out = []
        for size, k, s, p, d in zip(hw, self.kernel, self.stride, self.padding, self.dilation, strict=True):
            n = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if n < 1:
                raise ValueError(f"{self.owner}: input size {tuple(hw)} is too small for kernel {self.kernel}, "
                                 f"padding {self.padding}, dilation {self.dilation}")
            out.append(n)
        return out[0], out[1]


def pick_path(paths: dict[str, PathCost], mode: str) -> str:
    """The forced path, or in 'auto' the one with the lower estimate (ties: one dense product)."""
    if mode != "auto":
        return mode
    return "sequential" if paths["sequential"].cost < paths["reconstruct"].cost else "reconstruct"


# --------------------------------------------------------------------------- contraction helpers
def chain_merge(cores: Sequence[Tensor]) -> Tensor:
    """Merge 3-way cores (a, s_k, b) left to right into one (a_0, prod s_k, b_last) tensor."""
    out = cores[0]
    for core in cores[1:]:
        a0, s, b = out.shape
        out = (out.reshape(a0 * s, b) @ core.reshape(b, -1)).reshape(a0, -1, core.shape[-1])
    return out


def chain_merge_flops(dims: Sequence[tuple[int, int, int]]) -> int:
    """FLOPs of `chain_merge` for cores of the given (a, s, b) sizes."""
    total, (a0, s, _) = 0, dims[0]
    for a, sk, b in dims[1:]:
        total += 2 * a0 * s * a * sk * b
        s *= sk
    return total


def _prod_labels(labels: Any, sizes: dict[str, int]) -> int:
    return math.prod(sizes[lab] for lab in labels)


def _block_labels(core_labels: tuple[tuple[str, ...], ...], lo: int, hi: int) -> tuple[str, ...]:
    """Labels of cores lo..hi merged: outer bonds and every core's middle labels, in order."""
    mids = [lab for labels in core_labels[lo:hi + 1] for lab in labels[1:-1]]
    return (core_labels[lo][0], *mids, core_labels[hi][-1])


@lru_cache(maxsize=1024)
def chain_plan(in_labels: tuple[str, ...], core_labels: tuple[tuple[str, ...], ...],
               sizes_items: tuple[tuple[str, int], ...], relayout: int = 0) -> tuple[tuple[tuple[int, int], ...], PathCost]:
    """Cheapest way to contract a tensor with a chain (or ring) of cores, short of merging all.

    Returns the blocks (lo, hi) in application order and their PathCost. Each step merges a run
    of adjacent cores (FLOPs: `chain_merge_flops`, independent of the batch) and applies it to
    the state in one (b)mm (2 * product of all labels of state and block); the contracted cores
    form one interval growing at either end (dynamic programming over intervals). Merging every
    core would rebuild the dense weight, the other path, so that is only allowed for one core.
    `relayout` elements are copied (read and written) when the first block leaves part of the
    input uncontracted (see `apply_chain`). The plan minimises the cost estimate.
    """
    sizes = dict(sizes_items)
    d = len(core_labels)

    def state(lo: int, hi: int) -> set[str]:
        count = Counter(in_labels)
        for labels in core_labels[lo:hi + 1]:
            count.update(labels)
        return {lab for lab, n in count.items() if n == 1}

    def step(lo: int, hi: int, before: set[str], after: set[str]) -> PathCost:
        labels = _block_labels(core_labels, lo, hi)
        dims = [(sizes[c[0]], _prod_labels(c[1:-1], sizes), sizes[c[-1]]) for c in core_labels[lo:hi + 1]]
        flops = 2 * _prod_labels(before | set(labels), sizes) + chain_merge_flops(dims)
        return path_cost(flops, _prod_labels(before, sizes), _prod_labels(after, sizes))

    def add(a: PathCost, b: PathCost) -> PathCost:
        return PathCost(a.flops + b.flops, a.cost + b.cost)

    @cache
    def best(lo: int, hi: int) -> tuple[float, int, tuple[tuple[int, int], ...]]:
        options = []
        if d == 1 or (lo, hi) != (0, d - 1):
            first = step(lo, hi, set(in_labels), state(lo, hi))
            if not set(in_labels) - {"n"} <= set(_block_labels(core_labels, lo, hi)):
                first = add(first, path_cost(0, 2 * relayout))
            options.append((first.cost, first.flops, ((lo, hi),)))
        for j in range(lo + 1, hi + 1):  # cores j..hi done, then the block lo..j-1
            cost, flops, steps = best(j, hi)
            extra = step(lo, j - 1, state(j, hi), state(lo, hi))
            options.append((cost + extra.cost, flops + extra.flops, steps + ((lo, j - 1),)))
        for j in range(lo, hi):  # cores lo..j done, then the block j+1..hi
            cost, flops, steps = best(lo, j)
            extra = step(j + 1, hi, state(lo, j), state(lo, hi))
            options.append((cost + extra.cost, flops + extra.flops, steps + ((j + 1, hi),)))
        return min(options)

    cost, flops, steps = best(0, d - 1)
    return steps, PathCost(flops, cost)


def chain_blocks(cores: Sequence[Tensor], core_labels: Sequence[Sequence[str]],
                 steps: Sequence[tuple[int, int]]) -> list[tuple[Tensor, tuple[str, ...]]]:
    """The merged block tensors (and their labels) a `chain_plan` applies, in order."""
    labels = tuple(tuple(c) for c in core_labels)
    out = []
    for lo, hi in steps:
        run = [c.reshape(c.shape[0], -1, c.shape[-1]) for c in cores[lo:hi + 1]]
        shape = [s for c in cores[lo:hi + 1] for s in c.shape[1:-1]]
        merged = chain_merge(run).reshape(cores[lo].shape[0], *shape, cores[hi].shape[-1])
        out.append((merged, _block_labels(labels, lo, hi)))
    return out


def chain_apply(t: Tensor, labels: Sequence[str], blocks: Sequence[tuple[Tensor, Sequence[str]]],
                out_labels: Sequence[str]) -> Tensor:
    """Contract `t` (axes named by `labels`) with each block in turn: one (b)mm per block.

    When the shared axes sit next to each other in the state (always true for a chain contracted
    over a growing interval), the block is applied in place, as a mode product:
    (a, shared, b) -> (a, new, b) with no copy of the state, via mm when a or b is 1, else one
    bmm over the a leading slices. Otherwise the state is permuted first.
    """
    labels = list(labels)
    for core, names in blocks:
        names = list(names)
        shared = [lab for lab in labels if lab in names]  # in the state's order
        remaining = [lab for lab in names if lab not in shared]
        pos = [labels.index(lab) for lab in shared]
        if pos[-1] - pos[0] != len(pos) - 1:  # not adjacent: move them to the end
            others = [lab for lab in labels if lab not in shared]
            t = t.permute([labels.index(lab) for lab in others + shared])
            labels, pos = others + shared, list(range(len(others), len(labels)))
        core = core.permute([names.index(lab) for lab in shared + remaining])  # small: permuting is cheap
        new_shape = core.shape[len(shared):]
        p, q = pos[0], pos[-1] + 1
        lead, trail = t.shape[:p], t.shape[q:]
        a, b = math.prod(lead), math.prod(trail)
        mat = core.reshape(-1, math.prod(new_shape))  # (shared, new)
        if b == 1:
            t = t.reshape(a, -1) @ mat
        elif a == 1:
            t = mat.t() @ t.reshape(-1, b)
        else:
            t = torch.bmm(mat.t().unsqueeze(0).expand(a, -1, -1), t.reshape(a, -1, b))
        t = t.reshape(*lead, *new_shape, *trail)
        labels = labels[:p] + remaining + labels[q:]
    return t.permute([labels.index(lab) for lab in out_labels])


def apply_chain(x: Tensor, in_shape: Sequence[int], in_labels: Sequence[str], out_labels: Sequence[str],
                cores: Sequence[Tensor], core_labels: Sequence[Sequence[str]],
                steps: Sequence[tuple[int, int]]) -> Tensor:
    """Run a `chain_plan` on a batch x (N, prod(in_shape)); returns (N, prod of out_labels).

    Samples stay the leading axis when the first block consumes the whole input (then every
    later step is a plain matmul on trailing axes); otherwise they go last, so each later step
    is one large (b)mm instead of one small product per sample.
    """
    n = x.shape[0]
    first = set(_block_labels(tuple(tuple(c) for c in core_labels), *steps[0]))
    if set(in_labels) <= first:  # the criterion chain_plan charges `relayout` by
        t, labels = x.reshape(n, *in_shape), ("n", *in_labels)
    else:
        t, labels = x.t().contiguous().reshape(*in_shape, n), (*in_labels, "n")
    y = chain_apply(t, labels, chain_blocks(cores, core_labels, steps), ("n", *out_labels))
    return y.reshape(n, -1)


def khatri_rao(factors: Sequence[Tensor]) -> Tensor:
    """Column-wise Kronecker product: rows indexed by (i_1, ..., i_k) in row-major order."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, None, :] * f[None, :, :]).reshape(-1, f.shape[1])
    return out


# --------------------------------------------------------------------------- weight geometry
def modes_tensor(spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
    """The dense weight as (I_1..I_m, [kh*kw,] O_1..O_n): the modes TR and CP decompose."""
    ins, outs = spec.in_shape, spec.out_shape
    m, n = len(ins), len(outs)
    if spec.kernel is None:
        return weight.reshape(*outs, *ins).transpose(*range(n, n + m), *range(n))
    return weight.reshape(*outs, *ins, spec.kk).transpose(*range(n, n + m), n + m, *range(n))


class Unfoldings:
    """`matrix_rank` of a tensor's unfoldings (rows = some of its modes), each computed once:
    a set of modes and its complement give the same matrix, transposed."""

    def __init__(self, tensor: np.ndarray, matrix_rank: Callable[[np.ndarray], float]) -> None:
        self.tensor = tensor
        self.matrix_rank = matrix_rank
        self._cache: dict[tuple[int, ...], float] = {}

    def rank(self, rows: Sequence[int]) -> float:
        t = self.tensor
        rows_set = frozenset(rows)
        cols = [a for a in range(t.ndim) if a not in rows_set]
        key = min(tuple(sorted(rows_set)), tuple(cols))
        if key not in self._cache:
            rest = [a for a in range(t.ndim) if a not in key]
            n_rows = math.prod(t.shape[a] for a in key)
            mat = t.transpose(*key, *rest).reshape(n_rows, -1)
            self._cache[key] = self.matrix_rank(mat) if mat.size else 1.0
        return self._cache[key]


# --------------------------------------------------------------------------- base classes
class TensorizedLayer(nn.Module):
    """Common behaviour: closed-form counts, FLOP-based path choice, `from_dense`."""

    fmt: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, spec: LayerSpec, mode: str) -> None:
        super().__init__()
        self.spec = spec
        self.mode = mode
        self._path_cache: dict[tuple[int, tuple[int, int] | None], str] = {}

    # ---- class-level layout: overridden per format
    @classmethod
    def rank_layout(cls, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
        """(number of rank elements, what they are) for these shapes."""
        raise NotImplementedError

    @classmethod
    def adjust_shapes(cls, in_shape: tuple[int, ...],
                      out_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return in_shape, out_shape

    @classmethod
    def count_params(cls, spec: LayerSpec) -> int:
        raise NotImplementedError

    @classmethod
    def count_paths(cls, spec: LayerSpec, batch_size: int,
                    input_hw: tuple[int, int] | None) -> dict[str, PathCost]:
        """FLOPs and cost estimate of one forward pass along each path ('sequential', 'reconstruct')."""
        raise NotImplementedError

    @classmethod
    def count_flops(cls, spec: LayerSpec, batch_size: int,
                    input_hw: tuple[int, int] | None = None) -> dict[str, int]:
        """FLOPs of one forward pass along each path."""
        return {k: v.flops for k, v in cls.count_paths(spec, batch_size, input_hw).items()}

    @classmethod
    def weight_tensor(cls, spec: LayerSpec, weight: np.ndarray) -> np.ndarray:
        """The dense weight ((C_out, C_in) or (C_out, C_in, kh, kw)) as the tensor of modes this
        format decomposes (what `from_dense` factorises)."""
        raise NotImplementedError

    @classmethod
    def bond_ranks(cls, spec: LayerSpec, weight: np.ndarray,
                   matrix_rank: Callable[[np.ndarray], float]) -> tuple[float, ...]:
        """Per rank position, the rank a dense `weight` shows there: `matrix_rank` (an
        effective or numerical rank) of the unfoldings of `weight_tensor` that bound it."""
        raise NotImplementedError

    @classmethod
    def make_spec(cls, in_shape: Any, out_shape: Any, ranks: Any, *, kernel_size: Any = None,
                  stride: Any = 1, padding: Any = 0, dilation: Any = 1, bias: bool = True) -> LayerSpec:
        """Validate and normalise constructor arguments (no tensors are made)."""
        owner = cls.__name__
        ins = check_shape(owner, "in_shape", in_shape)
        outs = check_shape(owner, "out_shape", out_shape)
        ins, outs = cls.adjust_shapes(ins, outs)
        n, what = cls.rank_layout(ins, outs)
        rks = check_ranks(owner, ranks, n, what)
        if cls.kind == "linear":
            return LayerSpec(owner, ins, outs, rks, bias=bool(bias))
        if kernel_size is None:
            raise ValueError(f"{owner}: kernel_size is required for a convolution")
        kernel = check_pair(owner, "kernel_size", kernel_size, 1)
        st = check_pair(owner, "stride", stride, 1)
        dil = check_pair(owner, "dilation", dilation, 1)
        pad = check_padding(owner, padding, kernel, st, dil)
        return LayerSpec(owner, ins, outs, rks, kernel, st, pad, dil, bool(bias))

    # ---- public surface
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(type(self).__name__, value)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.spec.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.spec.out_shape

    @property
    def ranks(self) -> tuple[int, ...]:
        return self.spec.ranks

    @property
    def n_params(self) -> int:
        """Closed-form parameter count (equals sum of p.numel() over parameters())."""
        return self.count_params(self.spec)

    def path_costs(self, batch_size: int = 1, input_hw: tuple[int, int] | None = None) -> dict[str, PathCost]:
        return self.count_paths(self.spec, check_batch(type(self).__name__, batch_size), input_hw)

    def path_flops(self, batch_size: int = 1, input_hw: tuple[int, int] | None = None) -> dict[str, int]:
        """FLOPs of one forward pass along each path."""
        return {k: v.flops for k, v in self.path_costs(batch_size, input_hw).items()}

    def path_for(self, batch_size: int = 1, input_hw: tuple[int, int] | None = None) -> str:
        """The path `forward` takes for this batch (and input size), given `mode`."""
        if self.mode != "auto":
            return self.mode
        key = (batch_size, input_hw)
        path = self._path_cache.get(key)
        if path is None:
            path = self._path_cache[key] = pick_path(self.path_costs(batch_size, input_hw), "auto")
        return path

    def flops(self, batch_size: int = 1, input_hw: tuple[int, int] | None = None) -> int:
        """FLOPs of one forward pass of `batch_size` samples along the path `mode` selects."""
        paths = self.path_costs(batch_size, input_hw)
        return paths[pick_path(paths, self.mode)].flops

    def full_weight(self) -> Tensor:
        """The dense weight this layer represents, laid out like nn.Linear / nn.Conv2d's."""
        raise NotImplementedError

    @classmethod
    def default_shapes(cls, n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Mode shapes `from_dense` uses when none are given: balanced factorisations."""
        from ranksearch.tensorized.factors import balanced_factors

        return balanced_factors(n_in), balanced_factors(n_out)

    @classmethod
    def from_dense(cls, module: nn.Module, ranks: Any, in_shape: Any = None, out_shape: Any = None,
                   mode: str = "auto") -> TensorizedLayer:
        """A layer of this format initialised by decomposing `module`'s weight (bias copied).

        At ranks large enough for an exact decomposition the result computes what `module` does.
        """
        ins, outs = cls._dense_checks(module, in_shape, out_shape, cls.default_shapes)
        geometry = cls._geometry(module) if cls.kind == "conv" else {}
        weight = module.weight
        layer = cls(ins, outs, ranks, **geometry, bias=module.bias is not None, mode=mode,
                    device=weight.device, dtype=weight.dtype)
        layer._load_dense(weight.detach().to("cpu", torch.float64).numpy())
        layer._copy_bias_from(module)
        return layer

    @classmethod
    def _dense_checks(cls, module: nn.Module, in_shape: Any, out_shape: Any,
                      default_shapes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        raise NotImplementedError

    @staticmethod
    def _geometry(module: nn.Module) -> dict[str, Any]:
        return {}

    def _load_dense(self, weight: Any) -> None:
        """Set the factors from a float64 numpy copy of the dense weight."""
        raise NotImplementedError

    def _init_bias(self) -> None:
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.spec.fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def _he_target(self) -> float:
        """Variance He initialisation wants for each entry of the merged weight."""
        return 2.0 / self.spec.fan_in

    def _copy_(self, param: Tensor, value: Any) -> None:
        with torch.no_grad():
            param.copy_(torch.as_tensor(value, dtype=param.dtype, device=param.device))

    def _copy_bias_from(self, module: nn.Module) -> None:
        if self.bias is not None and module.bias is not None:
            self._copy_(self.bias, module.bias.detach())


class LinearLayer(TensorizedLayer):
    """Base of the tensorized linear layers: input (..., C_in) -> (..., C_out)."""

    kind = "linear"

    def __init__(self, in_shape: Any, out_shape: Any, ranks: Any, bias: bool = True, mode: str = "auto",
                 *, device: Any = None, dtype: Any = None) -> None:
        spec = self.make_spec(in_shape, out_shape, ranks, bias=bias)
        super().__init__(spec, mode)
        self.in_features, self.out_features = spec.c_in, spec.c_out
        factory = {"device": device, "dtype": dtype}
        self._build(factory)
        self.bias = nn.Parameter(torch.empty(spec.c_out, **factory)) if spec.bias else None
        self.reset_parameters()

    def _build(self, factory: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def _sequential(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.path_for(x2.shape[0]) == "sequential":
            y = self._sequential(x2)
        else:
            w = self.full_weight()
            y = torch.addmm(self.bias, x2, w.t()) if self.bias is not None else x2 @ w.t()
        return y.reshape(*lead, self.out_features)

    @staticmethod
    def dense_flops(spec: LayerSpec, n: int) -> int:
        return 2 * n * spec.c_in * spec.c_out

    @classmethod
    def reconstruct_cost(cls, spec: LayerSpec, n: int, build_flops: int, *build_moved: int) -> PathCost:
        """Build W (written once, read once), then one dense matmul over the batch."""
        return path_cost(build_flops + cls.dense_flops(spec, n), *build_moved, 2 * spec.c_in * spec.c_out,
                         n * (spec.c_in + spec.c_out))

    def extra_repr(self) -> str:
        return (f"in_shape={self.in_shape}, out_shape={self.out_shape}, ranks={self.ranks}, "
                f"bias={self.bias is not None}, mode={self.mode!r}")

    @classmethod
    def _dense_checks(cls, module: nn.Module, in_shape: Any, out_shape: Any,
                      default_shapes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        owner = cls.__name__
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{owner}.from_dense: expected an nn.Linear, got {type(module).__name__}")
        return _resolve_shapes(owner, module.in_features, module.out_features, in_shape, out_shape,
                               default_shapes, "features")


class ConvLayer(TensorizedLayer):
    """Base of the tensorized 2-D convolutions: input (N, C_in, H, W) -> (N, C_out, H', W')."""

    kind = "conv"

    def __init__(self, in_shape: Any, out_shape: Any, ranks: Any, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, bias: bool = True, mode: str = "auto",
                 *, device: Any = None, dtype: Any = None) -> None:
        spec = self.make_spec(in_shape, out_shape, ranks, kernel_size=kernel_size, stride=stride,
                              padding=padding, dilation=dilation, bias=bias)
        super().__init__(spec, mode)
        self.in_channels, self.out_channels = spec.c_in, spec.c_out
        self.kernel_size, self.stride = spec.kernel, spec.stride
        self.padding, self.dilation = spec.padding, spec.dilation
        factory = {"device": device, "dtype": dtype}
        self._build(factory)
        self.bias = nn.Parameter(torch.empty(spec.c_out, **factory)) if spec.bias else None
        self.reset_parameters()

    def _build(self, factory: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def _sequential(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1) -> Tensor:
        """The layer's own spatial convolution (its stride, padding, dilation)."""
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def _add_bias(self, y: Tensor) -> Tensor:
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected input (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self.path_for(int(x.shape[0]), hw) == "sequential":
            y = self._sequential(x)
        else:
            y = self._conv(x, self.full_weight(), self.bias)
        return y.squeeze(0) if unbatched else y

    def path_costs(self, batch_size: int = 1, input_hw: tuple[int, int] | None = None) -> dict[str, PathCost]:
        return self.count_paths(self.spec, check_batch(type(self).__name__, batch_size),
                                check_hw(type(self).__name__, input_hw))

    @staticmethod
    def dense_flops(spec: LayerSpec, n: int, out_hw: tuple[int, int]) -> int:
        return 2 * n * spec.c_out * spec.c_in * spec.kk * out_hw[0] * out_hw[1]

    @classmethod
    def reconstruct_cost(cls, spec: LayerSpec, n: int, input_hw: tuple[int, int], build_flops: int,
                         *build_moved: int) -> PathCost:
        """Build W (written once, read once), then one dense convolution over the batch."""
        (h, w), (ho, wo) = input_hw, spec.out_hw(input_hw)
        return path_cost(build_flops + cls.dense_flops(spec, n, (ho, wo)), *build_moved,
                         2 * spec.c_in * spec.c_out * spec.kk, n * (spec.c_in * h * w + spec.c_out * ho * wo))

    def extra_repr(self) -> str:
        return (f"in_shape={self.in_shape}, out_shape={self.out_shape}, ranks={self.ranks}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, bias={self.bias is not None}, mode={self.mode!r}")

    @classmethod
    def _dense_checks(cls, module: nn.Module, in_shape: Any, out_shape: Any,
                      default_shapes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        owner = cls.__name__
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"{owner}.from_dense: expected an nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1:
            raise ValueError(f"{owner}.from_dense: only groups=1 convolutions can be tensorized, "
                             f"got groups={module.groups}")
        if module.padding_mode != "zeros":
            raise ValueError(f"{owner}.from_dense: only padding_mode='zeros' is supported, "
                             f"got {module.padding_mode!r}")
        return _resolve_shapes(owner, module.in_channels, module.out_channels, in_shape, out_shape,
                               default_shapes, "channels")

    @staticmethod
    def _geometry(module: nn.Conv2d) -> dict[str, Any]:
        return {"kernel_size": module.kernel_size, "stride": module.stride, "padding": module.padding,
                "dilation": module.dilation}


def check_hw(owner: str, input_hw: Any) -> tuple[int, int]:
    if input_hw is None:
        raise ValueError(f"{owner}: input_hw=(H, W) of the layer's input is needed to count conv FLOPs")
    return check_pair(owner, "input_hw", input_hw, 1)


def _resolve_shapes(owner: str, n_in: int, n_out: int, in_shape: Any, out_shape: Any,
                    default_shapes: Any, unit: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes given or defaulted, checked against the dense layer's sizes."""
    d_in, d_out = default_shapes(n_in, n_out)
    ins = d_in if in_shape is None else check_shape(owner, "in_shape", in_shape)
    outs = d_out if out_shape is None else check_shape(owner, "out_shape", out_shape)
    for name, shape, n in (("in_shape", ins, n_in), ("out_shape", outs, n_out)):
        if math.prod(shape) != n:
            side = "in" if name == "in_shape" else "out"
            raise ValueError(f"{owner}.from_dense: {name} {list(shape)} has product {math.prod(shape)}, "
                             f"but the dense layer has {n} {side}put {unit}")
    return ins, outs
