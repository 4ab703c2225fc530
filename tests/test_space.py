from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from ranksearch import SpaceError, build_model, count_flops, count_params, load_space
from ranksearch.anchors import PSTRN_M_FASHION, PSTRN_M_MNIST, PSTRN_S_FASHION, PSTRN_S_MNIST
from ranksearch.space import SearchSpace, compression_ratio

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _flops(model: torch.nn.Module, input_shape, batch_size: int = 1) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(batch_size, *input_shape))
    return int(counter.get_total_flops())


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_space_loads_and_round_trips(path):
    space = load_space(path)
    assert space.n_ranks >= 1 or space.user_function is not None  # a user function may search hparams only
    again = SearchSpace.from_dict(copy.deepcopy(space.to_dict()))
    assert again == space
    assert again.to_dict() == space.to_dict()
    assert [e.name for e in again.elements] == [e.name for e in space.elements]


def test_pstrn_layout_has_twenty_elements_in_paper_order(pstrn_space):
    names = [e.name for e in pstrn_space.elements]
    assert len(names) == 20
    assert names[:4] == ["conv1.r0", "conv1.r1", "conv1.r2", "conv1.r3"]
    assert names[4] == "conv2.r0" and names[9] == "fc1.r0" and names[16] == "fc2.r0"
    assert pstrn_space.lower == (2,) * 20 and pstrn_space.upper == (30,) * 20
    assert pstrn_space.dense_params == 429_100


@pytest.mark.parametrize(
    "ranks,params",
    [(PSTRN_M_FASHION, 48_780), (PSTRN_S_FASHION, 62_000), (PSTRN_M_MNIST, 25_920),
     (PSTRN_S_MNIST, 65_628), ((10,) * 20, 16_500)],
    ids=["M-fashion", "S-fashion", "M-mnist", "S-mnist", "equal-10"],
)
def test_params_match_published_pstrn_counts(pstrn_space, ranks, params):
    assert count_params(pstrn_space, ranks) == params
    assert _numel(build_model(pstrn_space, ranks)) == params


@pytest.mark.parametrize("fmt", ["tr", "tt", "tucker", "cp"])
def test_closed_form_counts_equal_built_model(pstrn_space, fmt):
    data = pstrn_space.to_dict()
    data["model"]["format"] = fmt
    space = SearchSpace.from_dict(data)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ranks = tuple(int(rng.integers(e.low, e.high + 1)) for e in space.elements)
        model = build_model(space, ranks)
        assert count_params(space, ranks) == _numel(model)
        assert count_flops(space, ranks) == _flops(model, space.input_shape)
        assert count_flops(space, ranks, batch_size=64) == _flops(model, space.input_shape, 64)


def test_dense_flops_are_the_dense_models(pstrn_space):
    from ranksearch.models import build_dense

    dense = build_dense(pstrn_space.config.model, pstrn_space.input_shape, pstrn_space.num_classes)
    assert pstrn_space.dense_flops == _flops(dense, pstrn_space.input_shape)
    assert _numel(dense) == pstrn_space.dense_params


def test_resnet20_tied_groups():
    space = load_space(SPACES / "resnet20_tr_cifar10.yaml")
    assert [e.name for e in space.elements] == [
        "conv1", "stage1", "stage2_entry", "stage2", "stage3_entry", "stage3", "classifier"]
    assert space.dense_params == 269_722
    ranks = (4, 8, 6, 8, 6, 12, 10)
    per_layer = space.layer_ranks(ranks)
    assert set(per_layer["layer2.1.conv1"]) == {8} and set(per_layer["layer3.0.conv1"]) == {6}
    model = build_model(space, ranks)
    assert count_params(space, ranks) == _numel(model)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet32_and_56_spaces_build():
    for depth, dense in ((32, 464_154), (56, None)):
        data = yaml.safe_load((SPACES / "resnet20_tr_cifar10.yaml").read_text())
        data["model"]["name"] = f"resnet{depth}"
        data["model"]["layers"] = {"conv1": None, "layer*.conv*": None, "fc": None}
        data["ranks"] = {"min": 2, "max": 8, "uniform": True}
        space = SearchSpace.from_dict(data)
        if dense:
            assert space.dense_params == dense
        assert space.n_ranks == 6 * ((depth - 2) // 6) + 2
        ranks = space.equal_ranks(4)
        assert count_params(space, ranks) == _numel(build_model(space, ranks))


def test_resolve_rank_vocabulary(pstrn_space):
    assert pstrn_space.resolve_ranks(10) == (10,) * 20
    assert pstrn_space.resolve_ranks(1) == (2,) * 20  # clipped to the lower bound
    assert pstrn_space.resolve_ranks("8,14,8,18,14,18,22,28,6,24,20,14,20,20,10,22,20,20,6,20") == PSTRN_M_FASHION
    tenth = pstrn_space.resolve_ranks(0.1)
    assert count_params(pstrn_space, tenth) <= 0.1 * pstrn_space.dense_params
    bigger = tuple(min(r + 1, 30) for r in tenth)
    assert count_params(pstrn_space, bigger) > 0.1 * pstrn_space.dense_params
    same = pstrn_space.resolve_ranks("same")
    assert count_params(pstrn_space, same) <= pstrn_space.dense_params
    assert compression_ratio(pstrn_space, PSTRN_M_FASHION) == pytest.approx(429_100 / 48_780)


def test_choices_and_per_layer_bounds(pstrn_space):
    data = pstrn_space.to_dict()
    data["ranks"] = {"choices": [2, 4, 8, 16]}
    data["model"]["layers"]["fc2"]["ranks"] = {"min": 3, "max": 5}
    space = SearchSpace.from_dict(data)
    assert space.elements[0].values == (2, 4, 8, 16)
    assert space.elements[-1].values == (3, 4, 5)
    assert space.equal_ranks(7)[:2] == (8, 8)
    with pytest.raises(SpaceError, match="conv1.r0"):
        space.check_ranks((3,) + (4,) * 19)


# -- bad input: one clear message naming file, field, value and fix ---------------------------------
def _write(tmp_path, data, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _base():
    return yaml.safe_load((SPACES / "quickstart_digits.yaml").read_text())


def test_malformed_yaml(tmp_path):
    path = _write(tmp_path, "name: x\nmodel: [unclosed\n")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value) and "malformed YAML at line" in str(info.value)


def test_unknown_key_lists_valid_keys(tmp_path):
    data = _base()
    data["training"]["epochz"] = 3
    with pytest.raises(SpaceError) as info:
        load_space(_write(tmp_path, data))
    text = str(info.value)
    assert "training.epochz" in text and "unknown key" in text and "batch_size" in text


def test_unknown_model_and_dataset(tmp_path):
    data = _base()
    data["model"]["name"] = "lenet7"
    with pytest.raises(SpaceError, match=r"model.name.*lenet7.*lenet5"):
        load_space(_write(tmp_path, data))
    data = _base()
    data["data"]["dataset"] = "imagenet"
    with pytest.raises(SpaceError, match=r"data.dataset.*imagenet"):
        load_space(_write(tmp_path, data))


def test_shape_product_mismatch_names_layer_and_fix(tmp_path):
    data = _base()
    data["model"]["layers"]["fc1"]["in_shape"] = [4, 4, 5]
    with pytest.raises(SpaceError) as info:
        load_space(_write(tmp_path, data))
    text = str(info.value)
    assert "model.layers.fc1.in_shape" in text and "[4, 4, 5]" in text and "64" in text


def test_unknown_layer_lists_modules(tmp_path):
    data = _base()
    data["model"]["layers"]["fc9"] = None
    with pytest.raises(SpaceError, match=r"fc9.*fc1, fc2, fc3"):
        load_space(_write(tmp_path, data))


def test_bad_rank_vectors(pstrn_space):
    with pytest.raises(SpaceError, match="has 3 values but this space has 20"):
        pstrn_space.check_ranks([1, 2, 3])
    with pytest.raises(SpaceError, match=r"'fc2.r3' is 31.*between 2 and 30"):
        pstrn_space.check_ranks((10,) * 19 + (31,))
    with pytest.raises(SpaceError, match="integers"):
        pstrn_space.resolve_ranks("a,b")


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="file not found"):
        load_space(tmp_path / "nope.yaml")


def test_budget_must_be_given(tmp_path):
    data = _base()
    del data["training"]["epochs"]
    with pytest.raises(SpaceError, match="training.*epochs' or 'steps'"):
        load_space(_write(tmp_path, data))


def test_check_space_is_the_one_edge_and_names_settings_not_flags(tmp_path):
    """What `run` would reject, `check_space` (behind validate) rejects; Python callers see
    setting names, never command-line flags."""
    import yaml as _yaml

    from ranksearch.checks import check_space
    from ranksearch.errors import SettingError

    quick = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart_digits.yaml"
    with pytest.raises(SettingError) as exc:
        check_space(quick, strategy="nope")
    assert exc.value.setting == "strategy" and "--" not in str(exc.value) and "'nope'" in str(exc.value)
    data = _yaml.safe_load(quick.read_text())
    data["constraints"] = {"max_params": 1000}
    path = tmp_path / "tight.yaml"
    path.write_text(_yaml.safe_dump(data))
    with pytest.raises(SpaceError) as exc:
        check_space(path)
    smallest = count_params(load_space(quick), load_space(quick).lower)
    assert exc.value.field == "constraints.max_params" and exc.value.value == 1000
    assert f"{smallest:,}" in str(exc.value) and smallest > 1000
    data["constraints"] = {"max_params": smallest}  # exactly the smallest configuration: feasible
    path.write_text(_yaml.safe_dump(data))
    assert check_space(path).config.constraints.max_params == smallest


def test_duplicate_keys_name_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nseed: 1\nname: b\n")
    with pytest.raises(SpaceError, match=r"key 'name' is given twice \(lines 1 and 3\)"):
        load_space(path)
    merged = tmp_path / "merge.yaml"  # a YAML merge key may be overridden: that is not a repeat
    merged.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n")
    from ranksearch.space import read_yaml

    assert read_yaml(merged)["other"] == {"x": 2}
