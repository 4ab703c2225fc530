"""ranksearch: search the per-layer ranks of tensorized neural networks.

Public entry points are imported lazily so `import ranksearch` stays cheap (no torch, Ray or
MLflow at import time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_space": "ranksearch.space",
    "SearchSpace": "ranksearch.space",
    "count_params": "ranksearch.space",
    "count_flops": "ranksearch.space",
    "compression_ratio": "ranksearch.space",
    "build_model": "ranksearch.models",
    "tensorize": "ranksearch.models",
    "SpaceError": "ranksearch.errors",
    "load_rank_config": "ranksearch.rankconfig",
    "RankConfigFile": "ranksearch.rankconfig",
}

__all__ = [
    "RankConfigFile",
    "SearchSpace",
    "SpaceError",
    "build_model",
    "compression_ratio",
    "count_flops",
    "count_params",
    "load_rank_config",
    "load_space",
    "tensorize",
]

if TYPE_CHECKING:
    from ranksearch.errors import SpaceError
    from ranksearch.models import build_model, tensorize
    from ranksearch.rankconfig import RankConfigFile, load_rank_config
    from ranksearch.space import SearchSpace, compression_ratio, count_flops, count_params, load_space


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ranksearch' has no attribute {name!r}")
