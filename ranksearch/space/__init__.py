"""Search spaces: YAML in, frozen typed objects out.

A search space says which model to build, which of its layers are tensorized and how, the data,
the per-trial training budget, the objectives, constraints, strategy and resources. It is parsed
and validated once at the boundary; everything downstream sees `SearchSpace` and integer rank
vectors.

- `schema`: the file's sections as frozen pydantic models, `parse_config`;
- `loading`: `load_space`, the YAML reader that refuses duplicate keys;
- `layout`: `SearchSpace`, its tensorized layers and rank elements, rank vocabulary;
- `counts`: closed-form parameter and FLOP counts, compression, the per-layer report.

What `run` would reject beyond the file itself (strategy, options, constraints, data folder)
is checked by `ranksearch.checks.check_space`, the one check path every command takes.
"""

from __future__ import annotations

from ranksearch.errors import SpaceError
from ranksearch.space.counts import compression_ratio, count_flops, count_params, layer_report
from ranksearch.space.layout import RankElement, SearchSpace, TensorizedLayer
from ranksearch.space.loading import DuplicateKeyError, UniqueKeyLoader, load_space, read_yaml
from ranksearch.space.schema import (
    DEFAULT_DIRECTIONS,
    OBJECTIVE_NAMES,
    ConstraintsSpec,
    DataSpec,
    FormatName,
    HypervolumeSpec,
    LayerSpec,
    ModelSpec,
    ObjectiveSpec,
    OptimizerSpec,
    RankBounds,
    RanksSpec,
    ResourcesSpec,
    SchedulerSpec,
    ScheduleSpec,
    SpaceConfig,
    StrategySpec,
    TieGroup,
    TrainingSpec,
    parse_config,
)

__all__ = [
    "DEFAULT_DIRECTIONS",
    "OBJECTIVE_NAMES",
    "ConstraintsSpec",
    "DataSpec",
    "DuplicateKeyError",
    "FormatName",
    "HypervolumeSpec",
    "LayerSpec",
    "ModelSpec",
    "ObjectiveSpec",
    "OptimizerSpec",
    "RankBounds",
    "RankElement",
    "RanksSpec",
    "ResourcesSpec",
    "ScheduleSpec",
    "SchedulerSpec",
    "SearchSpace",
    "SpaceConfig",
    "SpaceError",
    "StrategySpec",
    "TensorizedLayer",
    "TieGroup",
    "TrainingSpec",
    "UniqueKeyLoader",
    "compression_ratio",
    "count_flops",
    "count_params",
    "layer_report",
    "load_space",
    "parse_config",
    "read_yaml",
]
