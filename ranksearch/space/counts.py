"""Closed-form counts of a space at a rank vector: parameters, FLOPs, compression, per layer.

They equal the built model's counts exactly (tests check it), so strategies and constraints
reason about cost without building or training anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ranksearch.space.layout import SearchSpace


def count_params(space: SearchSpace, ranks: Any) -> int:
    """Closed-form parameter count of the whole model built with `ranks`."""
    per_layer = space.layer_ranks(ranks)
    return space.fixed_params + sum(lay.params(per_layer[lay.name]) for lay in space.layers)


def count_flops(space: SearchSpace, ranks: Any, *, batch_size: int = 1) -> int:
    """Closed-form FLOPs of one forward pass over `batch_size` samples.

    Counted like torch's FlopCounterMode (2 per multiply-add of matmuls and convolutions). The
    tensorized layers' weight-only work (merging cores) is paid once per forward, so per-sample
    cost falls with the batch size; the objective uses batch 1, the worst case.
    """
    per_layer = space.layer_ranks(ranks)
    return batch_size * space.fixed_flops + sum(
        lay.flops(per_layer[lay.name], batch_size) for lay in space.layers
    )


def compression_ratio(space: SearchSpace, ranks: Any) -> float:
    """Dense whole-model parameter count over tensorized whole-model count."""
    return space.dense_params / count_params(space, ranks)


def layer_report(space: SearchSpace, ranks: Any) -> dict[str, Any]:
    """Per-layer counts at `ranks` and whole-model totals (what `ranksearch inspect` prints)."""
    ranks = space.check_ranks(ranks)
    per_layer = space.layer_ranks(ranks)
    layers = []
    for lay in space.layers:
        r = per_layer[lay.name]
        p = lay.params(r)
        layers.append({
            "layer": lay.name, "kind": lay.kind, "format": lay.format,
            "in_shape": list(lay.in_shape), "out_shape": list(lay.out_shape),
            "kernel_size": list(lay.kernel_size) if lay.kernel_size else None,
            "ranks": list(r), "params": p, "dense_params": lay.dense_params,
            "compression_ratio": lay.dense_params / p, "flops": lay.flops(r),
            "dense_flops": lay.dense_flops,
        })
    total = count_params(space, ranks)
    return {
        "space": space.name, "ranks": list(ranks),
        "total_params": total, "dense_params": space.dense_params,
        "compression_ratio": space.dense_params / total,
        "compression_convention": "whole model: every parameter (cores, biases, BN affine, "
                                  "untouched layers) on both sides",
        "flops": count_flops(space, ranks), "dense_flops": space.dense_flops,
        "flops_convention": "forward FLOPs for one sample (2 per multiply-add, torch FlopCounterMode)",
        "fixed_params": space.fixed_params, "layers": layers,
    }
