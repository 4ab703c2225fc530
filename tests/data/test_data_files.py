"""Datasets read from files: the IDX parser, Fashion-MNIST and CIFAR-10 (tiny copies)."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ranksearch.data import DataError, clear_cache, load_splits
from ranksearch.data.idx import read_idx
from ranksearch.data.sources import (
    CIFAR10_ENV,
    FASHION_FILES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    load_raw,
)

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` in IDX format (gzipped when the name ends in .gz)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(dtype).tobytes()
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)


def write_fashion(folder: Path, n_train: int = 100, n_test: int = 20, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / (FASHION_FILES[f"x_{split}"] + ext),
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / (FASHION_FILES[f"y_{split}"] + ext), labels)


def write_cifar(folder: Path, per_batch: int = 50, meta: bool = True) -> np.ndarray:
    """A CIFAR-10 python-version folder with `per_batch` images per batch; returns train data."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f)
        if name != "test_batch":
            train.append(data)
    if meta:
        names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                 b"truck"]
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return np.concatenate(train)


# --- IDX --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f4"])
def test_idx_round_trip(tmp_path: Path, name: str, dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != "u1" else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.shape == (2, 3, 4) and np.array_equal(back, array) and back.dtype.isnative


@pytest.mark.parametrize(("payload", "match"), [
    (b"\x08\x03\x00\x00" + b"\x00" * 20, "bad magic number"),
    (b"", "bad magic number"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01\x02\x03", r"declares shape \(5,\)"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02" + b"\x01\x02\x03", "holds 3"),
])
def test_idx_rejects_corrupt_files(tmp_path: Path, payload: bytes, match: str) -> None:
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(DataError, match=match) as err:
        read_idx(path, dataset="fashion_mnist")
    assert str(path) in str(err.value) and "intact copy" in str(err.value)


def test_idx_rejects_a_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd")[:-6])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)


# --- Fashion-MNIST ------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_full() -> None:
    data = load_splits("fashion_mnist", seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (54_000, 6_000, 10_000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert tuple(data.train.x.shape) == (54_000, 1, 28, 28) and data.train.y.dtype == torch.int64
    assert data.info["source"] == FASHION_MNIST_DIR and data.info["class_names"][9] == "Ankle boot"
    assert abs(data.train.x.mean().item()) < 1e-4 and abs(data.train.x.std().item() - 1) < 1e-3
    assert 0.2 < data.info["mean"][0] < 0.4  # statistics of [0, 1]-scaled pixels
    assert not set(data.train.indices.tolist()) & set(data.val.indices.tolist())
    share = [np.bincount(p.y.numpy(), minlength=10) / len(p) for p in (data.train, data.val)]
    assert np.abs(share[0] - share[1]).max() < 0.01
    assert load_raw("fashion_mnist") is load_raw("fashion_mnist")  # parsed once per process
    small = load_splits("fashion_mnist", seed=0, train_subset=0.1)
    assert len(small.train) == 5_400 and torch.equal(small.val.indices, data.val.indices)


def test_fashion_missing_folder_says_how_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_splits("fashion_mnist", path=str(missing))
    message = str(err.value)
    assert str(missing) in message and "fashion_mnist" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message and "data.path" in message


def test_fashion_missing_files_are_named(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    (tmp_path / (FASHION_FILES["y_test"] + ".gz")).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz") as err:
        load_splits("fashion_mnist", path=tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_from_a_small_folder(tmp_path: Path, gz: bool) -> None:
    write_fashion(tmp_path, gz=gz)
    data = load_splits("fashion_mnist", path=tmp_path, normalize=False)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert tuple(data.test.x.shape) == (20, 1, 28, 28)
    assert data.train.x.min() >= 0 and data.train.x.max() <= 1
    assert data.info["source"] == str(tmp_path)


def test_fashion_env_var_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion(tmp_path, n_train=60)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert len(load_splits("fashion_mnist", val_fraction=0.0).train) == 60


def test_fashion_label_count_mismatch(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    write_idx(tmp_path / (FASHION_FILES["y_train"] + ".gz"), np.zeros(99, dtype=np.uint8))
    with pytest.raises(DataError, match="expected 100 labels"):
        load_splits("fashion_mnist", path=tmp_path)


def test_changed_files_are_reread(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    first = load_splits("fashion_mnist", path=tmp_path, val_fraction=0.0)
    labels = tmp_path / (FASHION_FILES["y_test"] + ".gz")
    write_idx(labels, np.full(20, 3, dtype=np.uint8))
    os.utime(labels, ns=(1, 1))  # a different mtime even on coarse clocks
    second = load_splits("fashion_mnist", path=tmp_path, val_fraction=0.0)
    assert first.test.y.tolist() != second.test.y.tolist() and set(second.test.y.tolist()) == {3}


# --- CIFAR-10 -----------------------------------------------------------------------------------

def test_cifar10_tiny_folder(tmp_path: Path) -> None:
    train = write_cifar(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path / "cifar-10-batches-py", tmp_path):  # the folder or its parent
        data = load_splits("cifar10", path=str(path), normalize=False, seed=1)
        assert (len(data.train), len(data.val), len(data.test)) == (225, 25, 50)
        assert data.input_shape == (3, 32, 32) and tuple(data.train.x.shape) == (225, 3, 32, 32)
        assert data.info["class_names"][0] == "plane"
        idx = data.train.indices.numpy()
        expected = train[idx].reshape(-1, 3, 32, 32).astype(np.float32) / 255
        assert np.array_equal(data.train.x.numpy(), expected)
    normed = load_splits("cifar10", path=tmp_path, seed=1)
    per_channel = normed.train.x.mean(dim=(0, 2, 3))
    assert len(normed.info["mean"]) == 3 and torch.allclose(per_channel, torch.zeros(3), atol=1e-4)


def test_cifar10_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path, per_batch=20, meta=False)
    monkeypatch.setenv(CIFAR10_ENV, str(tmp_path))
    data = load_splits("cifar10", val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.info["class_names"][0] == "airplane"


def test_cifar10_without_path_explains_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CIFAR10_ENV, raising=False)
    with pytest.raises(DataError) as err:
        load_splits("cifar10")
    message = str(err.value)
    assert "data.path" in message and CIFAR10_ENV in message and "data_batch_1" in message


def test_cifar10_missing_folder_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "cifar"
    with pytest.raises(DataError, match="folder not found") as err:
        load_splits("cifar10", path=missing)
    assert str(missing) in str(err.value) and "test_batch" in str(err.value)
    write_cifar(missing, per_batch=10)
    (missing / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_splits("cifar10", path=missing)


def test_cifar10_corrupt_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=10)
    (tmp_path / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot unpickle") as err:
        load_splits("cifar10", path=tmp_path)
    assert "data_batch_2" in str(err.value)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 1024), dtype=np.uint8), b"labels": [0] * 10}, f)
    with pytest.raises(DataError, match="uint8 N x 3072"):
        load_splits("cifar10", path=tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": [12] * 10}, f)
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.9"):
        load_splits("cifar10", path=tmp_path)


def teardown_module() -> None:
    clear_cache()  # drop the tiny datasets parsed here
