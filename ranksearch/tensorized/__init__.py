"""Tensorized Linear and Conv2d layers: tensor ring, tensor train, Tucker-2 and CP.

Every layer is built from mode shapes and ranks (or from a dense layer with `from_dense`), has
closed-form `n_params` and `flops`, and picks per batch whether to contract the input with the
cores directly or to rebuild the dense weight first, whichever costs fewer FLOPs.
"""

from __future__ import annotations

from ranksearch.tensorized._base import MODES, LayerSpec, TensorizedLayer
from ranksearch.tensorized.api import (
    FORMATS,
    KINDS,
    from_dense,
    layer_class,
    layer_flops,
    layer_params,
    make_layer,
    num_ranks,
)
from ranksearch.tensorized.cp import CPConv2d, CPLinear
from ranksearch.tensorized.factors import balanced_factors
from ranksearch.tensorized.tr import TRConv2d, TRLinear
from ranksearch.tensorized.tt import TTConv2d, TTLinear
from ranksearch.tensorized.tucker import TuckerConv2d, TuckerLinear

__all__ = [
    "FORMATS",
    "KINDS",
    "MODES",
    "CPConv2d",
    "CPLinear",
    "LayerSpec",
    "TRConv2d",
    "TRLinear",
    "TTConv2d",
    "TTLinear",
    "TensorizedLayer",
    "TuckerConv2d",
    "TuckerLinear",
    "balanced_factors",
    "from_dense",
    "layer_class",
    "layer_flops",
    "layer_params",
    "make_layer",
    "num_ranks",
]
