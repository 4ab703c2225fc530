"""The types every loader returns, and the one error type for bad data input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ranksearch.errors import RanksearchError


class DataError(RanksearchError, ValueError):
    """A dataset cannot be loaded as asked: unknown name, missing files, bad option or file.

    The message names the dataset, the field and the offending value, and says what to do.
    """

    def __init__(
        self,
        message: str,
        *,
        dataset: str | None = None,
        field: str | None = None,
        value: Any = None,
        hint: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.field = field
        self.value = value
        self.hint = hint
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"dataset '{self.dataset}'" if self.dataset else "data"]
        if self.field:
            parts.append(f"field '{self.field}'")
        text = f"{': '.join(parts)}: {self.reason}"
        if self.field and self.value is not None:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f". {self.hint}"
        return text


@dataclass(frozen=True)
class Split:
    """One part of a dataset: inputs `x` (float32, N x ...) and labels `y` (int64, N).

    `indices` are the rows' positions in the source arrays they were drawn from (see
    `DataSplits.info["index_space"]`), so callers can check that parts are disjoint.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        x, y, idx = self.x, self.y, self.indices
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"Split wants tensors, got {type(x).__name__} and {type(y).__name__}")
        if x.dtype != torch.float32 or y.dtype != torch.int64:
            raise TypeError(f"Split wants float32 x and int64 y, got {x.dtype} and {y.dtype}")
        if y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"Split x has {x.shape[0]} rows but y has shape {tuple(y.shape)}")
        if idx is not None and tuple(idx.shape) != tuple(y.shape):
            raise ValueError(f"Split indices have shape {tuple(idx.shape)}, y {tuple(y.shape)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test parts of one dataset plus what a model needs to know about it.

    `input_shape` is the per-sample shape (e.g. (1, 28, 28)); `info` is JSON-friendly metadata
    (source, sizes, seed, normalisation statistics) suitable for logging with a run.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    info: dict[str, Any] = field(default_factory=dict)
