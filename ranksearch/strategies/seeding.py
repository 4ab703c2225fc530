"""Seed configurations: what a search proposes before its strategy's own choices.

A space's `strategy.seeds` lists explicit rank vectors and the generators below; the strategy
proposes them first (`Strategy.add_seeds`), so even a short search starts from sensible points:

- `equal_rank_seeds`: equal ranks everywhere (TRN's choice), spread over the feasible range;
- `effective_rank_seeds`: per-element ranks shaped like the trained dense model's spectra,
  scaled so the configurations spread over the feasible range;
- `learned` (`ranksearch.learned.seeds.learned_rank_seeds`): rank vectors read off the gates of
  one short learned-rank training run, at budgets spread over the feasible range (the only
  seeds that cost training: a quarter of the recipe's epochs, once, where the seeds are made).

Both are deterministic, and give configurations whose log parameter counts are evenly spaced
from the smallest to the largest feasible one (largest first).

How ranks are read from a dense weight. The effective rank of a matrix is exp(H(p)),
p = sigma / sum(sigma) (Roy and Vetterli, 2007): the number of directions that carry its
energy, a smooth stand-in for the numerical rank. The weight is reshaped into the layer's tensor
modes exactly as `from_dense` decomposes it, and each rank position reads the unfolding at the
bond it sits on (the layer classes own this geometry: `weight_tensor` and `bond_ranks`):

- TR (modes I_1..I_m, [kh*kw,] O_1..O_n; r_k is the bond before mode k, r_0 closes the ring):
  cutting a ring at two bonds a and b splits the modes into two arcs whose unfolding has rank
  <= r_a * r_b. Rank r_k reads the two half-ring arcs (d // 2 of the d modes) that start and end
  at bond k and takes the square root of the geometric mean of their effective ranks: each cut
  is assumed to share its rank evenly between its two bonds. (For even d both arcs are the
  same unfolding.)
- TT (TT-matrix modes I_j*O_j, a conv's kernel mode first): the unfolding at bond k (modes
  before it against modes after it) has rank <= r_k, so r_k is its effective rank.
- Tucker-2: r_in and r_out are the effective ranks of W's C_in and C_out unfoldings.
- CP: the CP rank bounds every unfolding's rank; R is the largest effective rank over the
  single-mode unfoldings.

A tied or per-layer uniform element takes the geometric mean over the positions it sets. These
real numbers give the *shape* of a configuration; `effective_rank_seeds` scales them by common
factors c (ranks round(c * shape), snapped to allowed values), which walks one path from the
lowest to the highest configuration, and picks seeds spread along the feasible part of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ranksearch.errors import SpaceError
from ranksearch.trial import RankConfig

if TYPE_CHECKING:
    from torch import nn

    from ranksearch.space import SearchSpace, TensorizedLayer
    from ranksearch.strategies.base import Strategy

SEED_KINDS = ("equal", "effective", "learned")

__all__ = [
    "check_seeds",
    "effective_rank",
    "effective_rank_seeds",
    "effective_rank_shape",
    "equal_rank_seeds",
    "layer_effective_ranks",
    "needs_dense",
    "scaled_path",
    "seed_strategy",
    "space_seeds",
]


# -- the generators -------------------------------------------------------------------------------
def equal_rank_seeds(space: SearchSpace, n: int, *, max_params: int | None = None,
                     min_compression: float | None = None) -> list[RankConfig]:
    """Up to `n` distinct feasible equal-rank configurations, spread over the feasible range.

    Candidates are `space.equal_ranks(r)` for every allowed value r; the smallest and the largest
    feasible one are always among the picks (when n >= 2). Constraints default to the space's.
    """
    _check_n(n)
    feasible = _feasible_fn(space, max_params, min_compression)
    levels = sorted({int(v) for e in space.elements for v in e.values})
    path = [c for c in dict.fromkeys(space.equal_ranks(r) for r in levels) if feasible(c)]
    return _spread(space, path, n)


def effective_rank_seeds(space: SearchSpace, dense_net: nn.Module, n: int, *,
                         max_params: int | None = None,
                         min_compression: float | None = None) -> list[RankConfig]:
    """Up to `n` distinct feasible configurations shaped by the dense model's effective ranks.

    See the module docstring for how each rank element is read from the weights. Constraints
    default to the space's.
    """
    _check_n(n)
    shape = effective_rank_shape(space, dense_net)
    feasible = _feasible_fn(space, max_params, min_compression)
    path = [c for c in scaled_path(space, shape) if feasible(c)]
    return _spread(space, path, n)


def scaled_path(space: SearchSpace, shape: Sequence[float]) -> list[RankConfig]:
    """Every distinct configuration `snap(c * shape)` for c from 0 to infinity, in order.

    Each element snaps to its allowed value nearest c * shape (the lower one on ties), so as c
    grows elements only move up: the path has at most sum(len(values)) configurations, listed
    exactly by walking the breakpoints c = midpoint / shape.
    """
    values = [tuple(int(v) for v in e.values) for e in space.elements]
    s = [max(float(x), 1e-9) for x in shape]
    if len(s) != len(values):
        raise ValueError(f"shape has {len(s)} values, the space has {len(values)} rank elements")
    steps = sorted(
        ((vals[j] + vals[j + 1]) / 2.0 / s_e, i)
        for i, (vals, s_e) in enumerate(zip(values, s, strict=True)) for j in range(len(vals) - 1)
    )
    pos = [0] * len(values)
    path = [tuple(v[0] for v in values)]
    for k, (c, i) in enumerate(steps):
        pos[i] += 1
        # breakpoints at the same c move together: one configuration for them all
        if k + 1 < len(steps) and steps[k + 1][0] == c:
            continue
        path.append(tuple(v[p] for v, p in zip(values, pos, strict=True)))
    return path


def effective_rank_shape(space: SearchSpace, dense_net: nn.Module) -> tuple[float, ...]:
    """Per rank element, the effective rank its positions read from the dense weights."""
    per_layer: dict[str, tuple[float, ...]] = {}
    for layer in space.layers:
        try:
            module = dense_net.get_submodule(layer.name)
        except AttributeError:
            raise SpaceError(f"the dense network has no module '{layer.name}'",
                             field="strategy.seeds", value="effective",
                             hint="pass the dense network this space's model builds") from None
        weight = module.weight.detach().to("cpu").double().numpy()
        per_layer[layer.name] = layer_effective_ranks(layer, weight)
    out = []
    for element in space.elements:
        vals = [per_layer[name][pos] for name, pos in element.members]
        out.append(float(math.exp(np.mean(np.log(np.maximum(vals, 1.0))))) if vals else 1.0)
    return tuple(out)


def layer_effective_ranks(layer: TensorizedLayer, weight: Any) -> tuple[float, ...]:
    """The effective rank at each of `layer`'s rank positions, read from its dense `weight`.

    `weight` is the dense layer's (C_out, C_in) or (C_out, C_in, kh, kw) array; which
    unfoldings bound which rank is the layer class's knowledge (`bond_ranks`).
    """
    from ranksearch.tensorized import layer_class

    cls = layer_class(layer.format, layer.kind)
    spec = cls.make_spec(layer.in_shape, layer.out_shape, 1, kernel_size=layer.kernel_size)
    return cls.bond_ranks(spec, np.asarray(weight, dtype=np.float64), effective_rank)


def effective_rank(matrix: Any) -> float:
    """exp(entropy of the normalised singular values): 1 for rank one, k for k equal ones.

    The singular values come from the eigenvalues of the smaller Gram matrix (several times
    faster than an SVD; eigenvalues within rounding of zero count as zero).
    """
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or not a.size:
        raise ValueError(f"effective_rank needs a non-empty matrix, got shape {a.shape}")
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    ev = np.linalg.eigvalsh(gram)
    top = float(ev.max(initial=0.0))
    ev = np.where(ev > top * gram.shape[0] * np.finfo(np.float64).eps, ev, 0.0)
    s = np.sqrt(ev)
    total = float(s.sum())
    if not math.isfinite(total) or total <= 0.0:
        return 1.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


# -- the space's seeds ------------------------------------------------------------------------------
def needs_dense(space: SearchSpace) -> bool:
    """True when the space asks for seeds read from the trained dense network ('effective', or
    'learned' when the recipe's cores start from the dense weights)."""
    seeds = space.config.strategy.seeds
    return "effective" in seeds or ("learned" in seeds and space.config.training.init == "dense")


def check_seeds(space: SearchSpace) -> None:
    """Validate `strategy.seeds` against the space: rank vectors fit it, and 'effective' has a
    dense network to read (`training.init: dense`, or distillation, makes the driver train one).
    """
    spec = space.config.strategy
    for i, item in enumerate(spec.seeds):
        if not isinstance(item, str):
            space.check_ranks(item, field=f"strategy.seeds.{i}")
    training = space.config.training
    if needs_dense(space) and training.init != "dense" and not training.distill:
        raise SpaceError(
            "'effective' seeds read ranks from the trained dense network, but training.init is "
            f"'{training.init}' so the search trains none", file=space.source,
            field="strategy.seeds", value=[s if isinstance(s, str) else list(s) for s in spec.seeds],
            hint="set training.init: dense, or use 'equal' or explicit rank vectors instead of "
                 "'effective'")
    if training.init == "learned" and "learned" not in spec.seeds:
        raise SpaceError(
            "training.init 'learned' starts every trial from the cores of the gated run behind "
            "'learned' seeds, but strategy.seeds has no 'learned' entry", file=space.source,
            field="training.init", value="learned",
            hint="add 'learned' to strategy.seeds, or set training.init: scratch or dense")


def space_seeds(space: SearchSpace, dense_net: nn.Module | None = None, *,
                kinds: Iterable[str] = ("explicit", *SEED_KINDS),
                on_cost: Callable[[int], object] | None = None,
                on_gated: Callable[[Any], object] | None = None) -> list[tuple[RankConfig, str]]:
    """The space's seeds in the order `strategy.seeds` lists them, each with its kind
    ('explicit', 'equal' or 'effective'); only the kinds in `kinds` are made."""
    check_seeds(space)
    spec = space.config.strategy
    wanted = set(kinds)
    out: list[tuple[RankConfig, str]] = []
    for item in spec.seeds:
        if not isinstance(item, str):
            if "explicit" in wanted:
                out.append((space.check_ranks(item), "explicit"))
        elif item == "equal" and item in wanted:
            out += [(c, "equal") for c in equal_rank_seeds(space, spec.seed_count)]
        elif item == "learned" and item in wanted:
            from ranksearch.learned.seeds import learned_rank_seeds

            if dense_net is None and space.config.training.init == "dense":
                raise SpaceError("'learned' seeds with training.init 'dense' need the trained dense network",
                                 file=space.source, field="strategy.seeds", value="learned",
                                 hint="pass dense_net (the driver does after the dense warm start)")
            out += [(c, "learned") for c in learned_rank_seeds(space, spec.seed_count, dense_net=dense_net,
                                                               on_cost=on_cost, on_gated=on_gated)]
        elif item == "effective" and item in wanted:
            if dense_net is None:
                raise SpaceError("'effective' seeds need the trained dense network",
                                 file=space.source, field="strategy.seeds", value="effective",
                                 hint="pass dense_net (the driver does after the dense warm start)")
            out += [(c, "effective") for c in effective_rank_seeds(space, dense_net, spec.seed_count)]
    return out


def seed_strategy(strategy: Strategy, space: SearchSpace | None = None,
                  dense_net: nn.Module | None = None, *,
                  on_cost: Callable[[int], object] | None = None,
                  on_gated: Callable[[Any], object] | None = None) -> list[RankConfig]:
    """Give `strategy` (not asked yet) the seeds its space lists; returns those it accepted.

    'learned' entries train once, here (see `ranksearch.learned.seeds`; `on_cost(samples)` is
    told what that training consumed, `on_gated(gated)` is handed its trained gated net).
    Without `dense_net`, 'effective' entries are left out (add them later, before the first
    ask, by calling this again with the network: seeds already added are skipped).
    """
    space = strategy.space if space is None else space
    if dense_net is not None:
        kinds: tuple[str, ...] = ("explicit", *SEED_KINDS)
    else:
        kinds = ("explicit", "equal") + (() if needs_dense(space) else ("learned",))
    accepted: list[RankConfig] = []
    for ranks, kind in space_seeds(space, dense_net, kinds=kinds, on_cost=on_cost, on_gated=on_gated):
        accepted += strategy.add_seeds([ranks], kind=kind)
    return accepted


# -- helpers ----------------------------------------------------------------------------------------
def _check_n(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"the number of seeds must be a non-negative integer, got {n!r}")


def _feasible_fn(space: SearchSpace, max_params: int | None,
                 min_compression: float | None) -> Callable[[RankConfig], bool]:
    """The hard-constraint test `Strategy.feasible` applies (`Objectives.feasible`), with the
    given (or the space's) limits."""
    from ranksearch.objectives import Objectives
    from ranksearch.space import count_params

    goals = Objectives.from_space(space)
    goals = dataclasses.replace(
        goals, max_params=goals.max_params if max_params is None else max_params,
        min_compression=goals.min_compression if min_compression is None else min_compression)

    def feasible(ranks: RankConfig) -> bool:
        if goals.max_params is None and goals.min_compression is None:
            return True
        return goals.feasible(count_params(space, ranks))

    return feasible


def _spread(space: SearchSpace, path: list[RankConfig], n: int) -> list[RankConfig]:
    """Up to `n` of `path` (ascending parameter counts) with log parameter counts evenly spaced
    from its smallest to its largest, largest first."""
    from ranksearch.space import count_params

    if n == 0 or not path:
        return []
    if len(path) <= n:
        return path[::-1]
    logp = np.log(np.array([count_params(space, c) for c in path], dtype=float))
    chosen: list[int] = []
    for target in np.linspace(logp.max(), logp.min(), n):
        for i in np.argsort(np.abs(logp - target), kind="stable"):
            if int(i) not in chosen:
                chosen.append(int(i))
                break
    return [path[i] for i in sorted(chosen, key=lambda i: (-logp[i], -i))]
