from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ranksearch.models import tensorize
from ranksearch.models.zoo import ZOO


@pytest.mark.parametrize("name,shape,params", [
    ("lenet5", (1, 28, 28), 429_100),
    ("lenet300", (1, 28, 28), 266_610),
    ("resnet20", (3, 32, 32), 269_722),
    ("resnet32", (3, 32, 32), 464_154),
])
def test_zoo_parameter_counts(name, shape, params):
    model = ZOO[name](shape, 10)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_resnet56_runs():
    model = ZOO["resnet56"]((3, 32, 32), 10)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(24, 12)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("fmt", ["tr", "tt", "tucker", "cp"])
def test_tensorize_any_user_module_by_name(fmt):
    net = UserNet()
    dense_out_shape = net(torch.zeros(2, 3, 8, 8)).shape
    tensorize(net, {"features.0": 3, "head": 4}, format=fmt)
    assert not isinstance(net.features[0], nn.Conv2d) and not isinstance(net.head, nn.Linear)
    assert net(torch.zeros(2, 3, 8, 8)).shape == dense_out_shape


def test_tensorize_from_dense_keeps_function_at_high_rank():
    torch.manual_seed(0)
    net = UserNet().double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    before = net(x)
    tensorize(net, {"head": 64}, format="tt", shapes={"head": ((4, 6), (3, 4))}, from_dense=True)
    net.double()
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)


def test_tensorize_rejects_unknown_and_non_linear_layers():
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        tensorize(UserNet(), {"nope": 2})
    with pytest.raises(ValueError, match="not Linear or Conv2d"):
        tensorize(UserNet(), {"features.1": 2})


def test_build_model_accepts_a_rank_config(digits_space, tmp_path):
    from ranksearch import build_model, load_rank_config
    from ranksearch.service import RankConfigFile

    ranks = digits_space.equal_ranks(5)
    path = tmp_path / "best.yaml"
    path.write_text(RankConfigFile(space=digits_space, ranks=ranks, metrics={}, provenance={}).to_yaml())
    config = load_rank_config(str(path))
    model = build_model(config)
    from ranksearch import count_params

    assert sum(p.numel() for p in model.parameters()) == count_params(digits_space, ranks)
    with pytest.raises(TypeError, match="load_rank_config"):
        build_model(digits_space)
