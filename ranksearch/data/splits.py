"""Turn a dataset's raw arrays into seeded, stratified train / validation / test tensors.

Rules, the same for every dataset:

- test is the official test split; datasets without one (digits, mnist5k, synthetic) hold out
  20% stratified with a fixed seed 0, so the test set never depends on `seed`;
- validation is carved from the training data, stratified by class, seeded by `seed`;
  `val_fraction=0` gives an empty validation split (rows 0, per-sample shape kept);
- `train_subset` then shrinks the remaining training part only (validation never shrinks);
- images are scaled to [0, 1]; with `normalize` every input is standardised per channel with
  the mean and std of the final training part (1-D inputs count as one channel).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ranksearch.data.core import DataError, DataSplits, Split
from ranksearch.data.sources import (
    HOLDOUT_FRACTION,
    RawData,
    get_source,
    load_raw,
    resolve_options,
    resolve_path,
)

# Independent random streams: the test hold-out always uses seed 0.
_HOLDOUT_STREAM, _VAL_STREAM, _SUBSET_STREAM = 0, 1, 2


def load_splits(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    train_subset: int | float | None = None,
    seed: int = 0,
    normalize: bool = True,
    options: Mapping[str, Any] | None = None,
) -> DataSplits:
    """Load dataset `name` and split it into train / val / test tensors.

    `train_subset` is a count (int) or a fraction in (0, 1] (float) of the training part left
    after validation is carved. The same arguments always give identical splits.
    """
    start = time.perf_counter()
    source = get_source(name)
    val_fraction = _check_val_fraction(name, val_fraction)
    seed = _check_seed(name, seed)
    resolved = resolve_options(source, options)
    input_shape, num_classes = source.shape(resolved)
    raw = load_raw(name, path, options)

    if raw.x_test is None or raw.y_test is None:
        rng = np.random.default_rng([0, _HOLDOUT_STREAM])
        test_idx, pool_idx = stratified_take(raw.y, _round(HOLDOUT_FRACTION * len(raw.y)), rng)
        x_test_src, y_test_src = raw.x, raw.y
        test_rule = f"held out {HOLDOUT_FRACTION:.0%} of {len(raw.y)} rows, stratified, seed 0"
        index_space = "rows of the whole dataset (test held out from it)"
    else:
        test_idx, pool_idx = np.arange(len(raw.y_test)), np.arange(len(raw.y))
        x_test_src, y_test_src = raw.x_test, raw.y_test
        test_rule = "official test split"
        index_space = "train/val: rows of the official training set; test: of the test set"

    rng = np.random.default_rng([seed, _VAL_STREAM])
    val_pos, train_pos = stratified_take(raw.y[pool_idx], _round(val_fraction * len(pool_idx)), rng)
    val_idx, train_idx = pool_idx[val_pos], pool_idx[train_pos]
    if train_subset is not None:
        count = _subset_count(name, train_subset, len(train_idx))
        rng = np.random.default_rng([seed, _SUBSET_STREAM])
        keep, _ = stratified_take(raw.y[train_idx], count, rng)
        train_idx = train_idx[keep]
    if len(train_idx) == 0:
        raise DataError("the training part is empty", dataset=name, field="data.train_subset",
                        value=train_subset, hint="Use a larger dataset or train_subset")

    x_train, x_val = _gather(raw, raw.x, train_idx), _gather(raw, raw.x, val_idx)
    x_test = _gather(raw, x_test_src, test_idx)
    mean: list[float] | None = None
    std: list[float] | None = None
    if normalize:
        mean, std = channel_stats(x_train)
        for x in (x_train, x_val, x_test):
            _standardise(x, mean, std)

    splits = DataSplits(
        train=_split(x_train, raw.y, train_idx),
        val=_split(x_val, raw.y, val_idx),
        test=_split(x_test, y_test_src, test_idx),
        num_classes=num_classes,
        input_shape=input_shape,
        name=name,
        info={
            "name": name,
            "source": raw.source,
            "test_split": test_rule,
            "index_space": index_space,
            "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
            "seed": seed,
            "val_fraction": val_fraction,
            "train_subset": train_subset,
            "normalize": normalize,
            "scale": raw.scale,
            "mean": mean,
            "std": std,
            "class_names": list(raw.class_names),
            "options": _jsonable(resolved),
            "load_seconds": round(time.perf_counter() - start, 4),
        },
    )
    if tuple(splits.train.x.shape[1:]) != input_shape:
        raise DataError(f"loaded inputs have shape {tuple(splits.train.x.shape[1:])}, expected "
                        f"{input_shape}", dataset=name, field="data.path", value=raw.source)
    return splits


def dataset_info(name: str, *, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Shape, classes and default path of dataset `name`, without loading any data."""
    source = get_source(name)
    resolved = resolve_options(source, options)
    input_shape, num_classes = source.shape(resolved)
    return {
        "name": name,
        "description": source.description,
        "input_shape": input_shape,
        "num_classes": num_classes,
        "default_path": resolve_path(source, None) if source.takes_path else None,
        "path_env": source.path_env,
        "takes_path": source.takes_path,
        "test_split": "official" if source.official_test else
        f"held out {HOLDOUT_FRACTION:.0%}, stratified, seed 0",
        "options": _jsonable(resolved),
    }


def stratified_take(y: np.ndarray, count: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..len(y)-1 into `count` taken and the rest, keeping class proportions.

    Each class gives its proportional share (largest remainders settle the rounding); which
    members go is drawn from `rng`. Both returned index arrays are sorted.
    """
    if not 0 <= count <= len(y):
        raise ValueError(f"cannot take {count} of {len(y)} rows")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * (count / max(len(y), 1))
    share = np.minimum(np.floor(quota).astype(np.int64), counts)
    short = count - int(share.sum())
    if short > 0:
        order = np.argsort(-(quota - share), kind="stable")
        share[order[:short]] += 1
    taken = [rng.permutation(np.flatnonzero(inverse == c))[:n] for c, n in enumerate(share)]
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[taken_idx] = False
    return taken_idx.astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of N x C x ... inputs (N x L inputs count as one channel)."""
    channels = [x] if x.ndim <= 2 else [x[:, c] for c in range(x.shape[1])]
    mean, std = [], []
    for xc in channels:
        if xc.size == 0:
            mean.append(0.0)
            std.append(1.0)
            continue
        m = float(xc.mean(dtype=np.float64))
        dev = xc - np.float32(m)
        np.square(dev, out=dev)
        s = math.sqrt(float(dev.mean(dtype=np.float64)))
        mean.append(m)
        std.append(s if s > 1e-12 else 1.0)
    return mean, std


def _standardise(x: np.ndarray, mean: list[float], std: list[float]) -> None:
    if x.ndim <= 2:
        x -= np.float32(mean[0])
        x /= np.float32(std[0])
        return
    shape = (1, len(mean)) + (1,) * (x.ndim - 2)
    x -= np.asarray(mean, dtype=np.float32).reshape(shape)
    x /= np.asarray(std, dtype=np.float32).reshape(shape)


def _gather(raw: RawData, source: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` of `source` as a fresh float32 array, scaled into [0, 1] for images."""
    x = source[idx].astype(np.float32, copy=False)  # fancy indexing copies: safe to modify
    if raw.scale is not None:
        x /= np.float32(raw.scale)
    return np.ascontiguousarray(x)


def _split(x: np.ndarray, y_source: np.ndarray, idx: np.ndarray) -> Split:
    return Split(torch.from_numpy(x), torch.from_numpy(y_source[idx].astype(np.int64)),
                 torch.from_numpy(idx.astype(np.int64)))


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def _check_val_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not 0.0 <= float(value) <= 0.5:
        raise DataError("must be a number in [0, 0.5]", dataset=name, field="data.val_fraction",
                        value=value, hint="Use e.g. 0.1; 0 means no validation split")
    return float(value)


def _check_seed(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError("must be a non-negative integer", dataset=name, field="seed", value=value)
    return int(value)


def _subset_count(name: str, value: Any, available: int) -> int:
    hint = (f"Use a count from 1 to {available} (int) or a fraction in (0, 1] (float) of the "
            f"{available} training rows left after validation")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 1 <= value <= available:
            return int(value)
    elif isinstance(value, (float, np.floating)) and 0.0 < value <= 1.0:
        return max(1, _round(float(value) * available))
    raise DataError("out of range or of the wrong type", dataset=name,
                    field="data.train_subset", value=value, hint=hint)


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
