"""Splitting, seeding, subsetting and normalisation rules, on the cheap bundled datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranksearch.data import DATASETS, DataError, DataSplits, dataset_info, load_splits
from ranksearch.data.sources import load_raw
from ranksearch.data.splits import stratified_take
from ranksearch.errors import RanksearchError

CHEAP = ("digits", "mnist5k", "mnist1d", "synthetic")
EXPECTED = {
    # name: (input_shape, num_classes, (train, val, test) at val_fraction 0.1)
    "digits": ((1, 8, 8), 10, (1294, 144, 359)),
    "mnist5k": ((1, 28, 28), 10, (3600, 400, 1000)),
    "mnist1d": ((40,), 10, (3600, 400, 1000)),
    "synthetic": ((1, 8, 8), 10, (1440, 160, 400)),
}


def _proportions(y: torch.Tensor, k: int) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=k) / max(len(y), 1)


def _channel_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())] if x.dim() > 2 else [0, 1]


def test_registry_names_and_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANKSEARCH_FASHION_MNIST", raising=False)
    assert DATASETS == ("fashion_mnist", "digits", "mnist5k", "mnist1d", "cifar10", "synthetic")
    for name in DATASETS:
        info = dataset_info(name)
        assert info["num_classes"] == 10
        assert isinstance(info["input_shape"], tuple)
    assert dataset_info("cifar10")["input_shape"] == (3, 32, 32)
    assert dataset_info("fashion_mnist")["default_path"] == "/usr/share/datasets/fashion-mnist"
    custom = dataset_info("synthetic", options={"input_shape": [3, 4, 4], "num_classes": 3})
    assert custom["input_shape"] == (3, 4, 4) and custom["num_classes"] == 3


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DataError) as err:
        load_splits("imagenet")
    message = str(err.value)
    assert "imagenet" in message and all(name in message for name in DATASETS)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RanksearchError)
    with pytest.raises(DataError):
        dataset_info("imagenet")


@pytest.mark.parametrize("name", CHEAP)
def test_shapes_dtypes_and_sizes(name: str) -> None:
    shape, k, sizes = EXPECTED[name]
    data = load_splits(name)
    assert isinstance(data, DataSplits)
    assert data.name == name and data.input_shape == shape and data.num_classes == k
    assert (len(data.train), len(data.val), len(data.test)) == sizes
    assert data.info["sizes"] == dict(zip(("train", "val", "test"), sizes, strict=True))
    for part in (data.train, data.val, data.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert tuple(part.x.shape) == (len(part), *shape)
        assert set(part.y.unique().tolist()) == set(range(k))
        assert torch.isfinite(part.x).all()


@pytest.mark.parametrize("name", CHEAP)
def test_val_is_stratified(name: str) -> None:
    data = load_splits(name, val_fraction=0.2, seed=3)
    gap = np.abs(_proportions(data.val.y, 10) - _proportions(data.train.y, 10)).max()
    assert gap < 0.01


@pytest.mark.parametrize("name", CHEAP)
def test_parts_are_disjoint_and_cover_the_pool(name: str) -> None:
    data = load_splits(name, seed=5)
    train, val, test = (set(p.indices.tolist()) for p in (data.train, data.val, data.test))
    assert not train & val
    raw = load_raw(name)
    if raw.x_test is None:  # test held out from the same rows
        assert not train & test and not val & test
        assert len(train | val | test) == len(raw.y)
    else:
        assert len(train | val) == len(raw.y) and len(test) == len(raw.y_test)


def test_indices_point_at_the_source_rows() -> None:
    data = load_splits("digits", normalize=False, seed=2)
    raw = load_raw("digits")
    for part in (data.train, data.val, data.test):
        idx = part.indices.numpy()
        assert np.array_equal(part.x.numpy(), raw.x[idx] / np.float32(16.0))
        assert np.array_equal(part.y.numpy(), raw.y[idx])


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b = load_splits("digits", seed=7), load_splits("digits", seed=7)
    c = load_splits("digits", seed=8)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).indices, getattr(b, part).indices)
        assert torch.equal(getattr(a, part).x, getattr(b, part).x)
    assert not torch.equal(a.val.indices, c.val.indices)
    assert torch.equal(a.test.indices, c.test.indices)  # the hold-out ignores `seed`


def test_train_subset_counts_and_fractions() -> None:
    full = load_splits("digits", seed=1)
    by_count = load_splits("digits", seed=1, train_subset=300)
    by_fraction = load_splits("digits", seed=1, train_subset=0.5)
    assert len(by_count.train) == 300
    assert len(by_fraction.train) == round(0.5 * len(full.train))
    for sub in (by_count, by_fraction):
        assert torch.equal(sub.val.indices, full.val.indices)  # validation never shrinks
        assert set(sub.train.indices.tolist()) <= set(full.train.indices.tolist())
        gap = np.abs(_proportions(sub.train.y, 10) - _proportions(full.train.y, 10)).max()
        assert gap < 0.02
    assert len(load_splits("digits", train_subset=1.0).train) == len(full.train)


@pytest.mark.parametrize("bad", [0, -5, 10_000, 1.5, 0.0, True, "100"])
def test_bad_train_subset_is_rejected(bad: object) -> None:
    with pytest.raises(DataError, match="train_subset"):
        load_splits("digits", train_subset=bad)  # type: ignore[arg-type]


def test_zero_val_fraction_gives_empty_val_with_shape() -> None:
    data = load_splits("digits", val_fraction=0.0)
    assert len(data.val) == 0 and tuple(data.val.x.shape) == (0, 1, 8, 8)
    assert len(data.train) == 1797 - 359


@pytest.mark.parametrize("bad", [-0.1, 0.6, True, "0.1"])
def test_bad_val_fraction_is_rejected(bad: object) -> None:
    with pytest.raises(DataError, match="val_fraction"):
        load_splits("digits", val_fraction=bad)  # type: ignore[arg-type]


def test_bad_seed_and_path_are_rejected() -> None:
    with pytest.raises(DataError, match="seed"):
        load_splits("digits", seed=-1)
    with pytest.raises(DataError, match="takes no path"):
        load_splits("digits", path="/tmp")


@pytest.mark.parametrize("name", CHEAP)
def test_normalisation_uses_train_statistics_only(name: str) -> None:
    norm = load_splits(name, seed=4)
    plain = load_splits(name, seed=4, normalize=False)
    dims = _channel_dims(norm.train.x)
    assert torch.allclose(norm.train.x.mean(dim=dims), torch.zeros(1), atol=1e-4)
    assert torch.allclose(norm.train.x.std(dim=dims), torch.ones(1), atol=1e-3)
    mean = plain.train.x.double().mean(dim=dims)
    std = plain.train.x.double().std(dim=dims, unbiased=False)
    assert np.allclose(norm.info["mean"], mean.numpy(), atol=1e-6)
    assert np.allclose(norm.info["std"], std.numpy(), rtol=1e-5)
    shape = (1, -1) + (1,) * (norm.val.x.dim() - 2)
    m = torch.tensor(norm.info["mean"]).reshape(shape).float()
    s = torch.tensor(norm.info["std"]).reshape(shape).float()
    assert torch.allclose(norm.val.x, (plain.val.x - m) / s, atol=1e-5)
    assert torch.allclose(norm.test.x, (plain.test.x - m) / s, atol=1e-5)


def test_images_are_scaled_to_unit_range() -> None:
    for name in ("digits", "mnist5k"):
        x = load_splits(name, normalize=False).train.x
        assert x.min() >= 0.0 and x.max() == 1.0


def test_synthetic_options_and_learnability() -> None:
    from sklearn.linear_model import LogisticRegression

    data = load_splits("synthetic", options={"n_samples": 600, "num_classes": 3,
                                             "input_shape": [3, 4, 4], "noise": 0.5})
    assert data.input_shape == (3, 4, 4) and data.num_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (432, 48, 120)
    model = LogisticRegression(max_iter=500).fit(data.train.x.flatten(1), data.train.y)
    assert model.score(data.test.x.flatten(1), data.test.y) > 0.8
    other = load_splits("synthetic", options={"data_seed": 1})
    assert not torch.equal(other.train.x[:5], load_splits("synthetic").train.x[:5])


@pytest.mark.parametrize(("options", "field"), [
    ({"size": 3}, "data.options"),
    ({"n_samples": -1}, "data.options.n_samples"),
    ({"input_shape": [0, 3]}, "data.options.input_shape"),
    ({"num_classes": 1}, "data.options"),
])
def test_bad_synthetic_options_are_rejected(options: dict[str, object], field: str) -> None:
    with pytest.raises(DataError, match=field) as err:
        load_splits("synthetic", options=options)
    if "size" in options:
        assert "n_samples" in str(err.value)  # lists the valid options


def test_mnist1d_keeps_the_global_rng_and_takes_its_options() -> None:
    from ranksearch.data import clear_cache

    clear_cache()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    data = load_splits("mnist1d", options={"num_samples": 500, "final_seq_length": 32})
    assert np.array_equal(np.random.get_state()[1], before)
    assert data.input_shape == (32,) and len(data.test) == 100
    with pytest.raises(DataError, match="url"):  # unknown, lists valid options
        load_splits("mnist1d", options={"url": "x"})


def test_stratified_take_edges() -> None:
    y = np.array([0] * 7 + [1] * 3)
    rng = np.random.default_rng(0)
    for count in range(11):
        taken, rest = stratified_take(y, count, rng)
        assert len(taken) == count and len(rest) == 10 - count
        assert not set(taken) & set(rest)
    taken, _ = stratified_take(y, 5, rng)
    assert np.bincount(y[taken]).tolist() == [4, 1]  # 3.5 and 1.5 -> largest remainder, stable
