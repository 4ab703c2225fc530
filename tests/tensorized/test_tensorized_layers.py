"""Oracle tests of the tensorized layers against the dense layers they represent.

For TR, TT and Tucker the decomposition is exact once the ranks are large enough, so
`from_dense` at such ranks must reproduce the dense layer's output (float64, tight tolerance).
CP-ALS has no exactness guarantee on a generic weight, so the CP oracle uses a weight that is
exactly of CP rank R (built by a CP layer) and checks that ALS at rank R recovers it closely.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ranksearch.tensorized as T

FULL = 120  # large enough for exact TR/TT decompositions of the small weights below

LINEAR = ((3, 4, 5), (4, 6))  # 60 -> 24
CONV_CASES = [  # in_shape, out_shape, dense Conv2d kwargs, input H, W
    ((2, 3), (4, 2), dict(kernel_size=3, stride=2, padding=1), (9, 10)),
    ((2, 3), (2, 4), dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 1), dilation=2), (9, 10)),
    ((6,), (8,), dict(kernel_size=1), (5, 4)),
    ((1,), (4, 5), dict(kernel_size=5, padding=2), (8, 8)),  # LeNet conv1: one input channel
]


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _full_ranks(fmt: str, kind: str, ins, outs):
    if fmt == "tucker":
        return (math.prod(ins), math.prod(outs))
    return FULL


def _dense_linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(math.prod(LINEAR[0]), math.prod(LINEAR[1])).double()


def _dense_conv(ins, outs, kw) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(math.prod(ins), math.prod(outs), **kw).double()


def _all_layers():
    """One instance of every format x kind with moderate ranks (float64)."""
    torch.manual_seed(1)
    out = []
    for fmt in T.FORMATS:
        for kind, ins, outs, kw in (("linear", *LINEAR, {}), ("conv", *CONV_CASES[0][:3])):
            n = T.num_ranks(fmt, kind, ins, outs)
            ranks = tuple(2 + (i % 3) for i in range(n))
            out.append((fmt, kind, T.make_layer(fmt, kind, ins, outs, ranks, **kw).double()))
    return out


# ----------------------------------------------------------------------------- oracle: from_dense
@pytest.mark.parametrize("fmt", ["tr", "tt", "tucker"])
def test_from_dense_linear_is_exact_at_full_rank(fmt):
    dense = _dense_linear()
    layer = T.from_dense(dense, fmt, _full_ranks(fmt, "linear", *LINEAR), in_shape=LINEAR[0], out_shape=LINEAR[1])
    x = torch.randn(7, 60, dtype=torch.float64)
    torch.testing.assert_close(layer(x), dense(x), rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(layer.full_weight(), dense.weight, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("fmt", ["tr", "tt", "tucker"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_from_dense_conv_is_exact_at_full_rank(fmt, case):
    ins, outs, kw, hw = CONV_CASES[case]
    dense = _dense_conv(ins, outs, kw)
    layer = T.from_dense(dense, fmt, _full_ranks(fmt, "conv", ins, outs), in_shape=ins, out_shape=outs)
    assert (layer.stride, layer.padding, layer.dilation) == (dense.stride, dense.padding, dense.dilation)
    x = torch.randn(3, math.prod(ins), *hw, dtype=torch.float64)
    for mode in ("sequential", "reconstruct"):
        layer.mode = mode
        torch.testing.assert_close(layer(x), dense(x), rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_cp_recovers_an_exactly_low_rank_weight(kind):
    """CP-ALS at rank R on a weight of CP rank R: relative weight error below 1e-6."""
    torch.manual_seed(3)
    if kind == "linear":
        source = T.CPLinear(*LINEAR, 4).double()
        dense = nn.Linear(60, 24).double()
    else:
        ins, outs, kw, _ = CONV_CASES[0]
        source = T.CPConv2d(ins, outs, 4, **kw).double()
        dense = _dense_conv(ins, outs, kw)
    with torch.no_grad():
        dense.weight.copy_(source.full_weight())
    layer = T.from_dense(dense, "cp", 4, in_shape=source.in_shape, out_shape=source.out_shape)
    err = (layer.full_weight() - dense.weight).norm() / dense.weight.norm()
    assert err < 1e-6
    torch.testing.assert_close(layer.bias, dense.bias)


def test_cp_on_generic_weight_reduces_error_with_rank():
    """On an arbitrary weight CP-ALS only approximates; more rank must not be worse."""
    dense = _dense_linear()
    errs = [(T.from_dense(dense, "cp", r, in_shape=LINEAR[0], out_shape=LINEAR[1]).full_weight()
             - dense.weight).norm().item() / dense.weight.norm().item() for r in (2, 24)]
    assert errs[1] < errs[0] < 1.0


def test_truncated_ranks_give_an_approximation():
    dense = _dense_linear()
    small = T.from_dense(dense, "tt", 2, in_shape=LINEAR[0], out_shape=LINEAR[1])
    err = ((small.full_weight() - dense.weight).norm() / dense.weight.norm()).item()
    assert 0.0 < err < 1.0


def test_from_dense_defaults_and_float32():
    layer = T.from_dense(nn.Linear(1250, 320), "tt", 4)
    assert layer.in_shape == T.balanced_factors(1250, 4) and layer.out_shape == T.balanced_factors(320, 4)
    assert layer.cores[0].dtype == torch.float32
    torch.manual_seed(0)
    dense = nn.Linear(20, 12)
    tr = T.TRLinear.from_dense(dense, 30)
    assert (tr.in_shape, tr.out_shape) == ((4, 5), (12,))
    x = torch.randn(5, 20)
    torch.testing.assert_close(tr(x), dense(x), rtol=1e-3, atol=1e-5)


def test_from_dense_is_deterministic():
    dense = _dense_conv(*CONV_CASES[0][:3])
    for fmt in T.FORMATS:
        a = T.from_dense(dense, fmt, 3)
        b = T.from_dense(dense, fmt, 3)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)


def test_padded_ranks_stay_exact_and_trainable():
    """Ranks beyond what TT-SVD yields are padded without changing W, and the padding learns.

    Modes (3*4, 4*6, 5*1) give TT-SVD ranks (12, 5); asking for (40, 40) pads both bonds: the
    slices right of a padded bond index start at zero, yet receive gradient.
    """
    dense = _dense_linear()
    layer = T.from_dense(dense, "tt", (40, 40), in_shape=LINEAR[0], out_shape=LINEAR[1])
    torch.testing.assert_close(layer.full_weight(), dense.weight, rtol=1e-4, atol=1e-10)
    assert torch.all(layer.cores[1][12:] == 0)
    x = torch.randn(8, 60, dtype=torch.float64)
    (layer(x) - torch.randn(8, 24, dtype=torch.float64)).square().sum().backward()
    assert layer.cores[1].grad[12:, :, :, :5].abs().sum() > 0


# ----------------------------------------------------------------------------- paths and FLOPs
@pytest.mark.parametrize(("fmt", "kind", "layer"), _all_layers(), ids=lambda v: v if isinstance(v, str) else "")
def test_paths_agree_and_flops_match_counter(fmt, kind, layer):
    for batch in (1, 6):
        if kind == "linear":
            x, hw = torch.randn(batch, 60, dtype=torch.float64), None
        else:
            x, hw = torch.randn(batch, 6, 9, 10, dtype=torch.float64), (9, 10)
        outs = {}
        for mode in ("sequential", "reconstruct", "auto"):
            layer.mode = mode
            outs[mode] = layer(x)
            counted = _count(lambda: layer(x))  # noqa: B023
            assert counted == layer.flops(batch, hw), (mode, batch)
            kw = dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                      dilation=layer.dilation, input_hw=hw) if kind == "conv" else {}
            assert counted == T.layer_flops(fmt, kind, layer.in_shape, layer.out_shape, layer.ranks,
                                            batch_size=batch, mode=mode, **kw)
        torch.testing.assert_close(outs["sequential"], outs["reconstruct"], rtol=1e-9, atol=1e-12)
        costs = layer.path_costs(batch, hw)
        expected = "sequential" if costs["sequential"].cost < costs["reconstruct"].cost else "reconstruct"
        assert layer.path_for(batch, hw) == expected
        assert layer.path_flops(batch, hw) == {k: v.flops for k, v in costs.items()}
        layer.mode = "auto"


@pytest.mark.parametrize(("name", "kind", "ins", "outs", "sl", "k"), [
    ("conv1", "conv", (1,), (4, 5), slice(0, 4), 5),
    ("conv2", "conv", (4, 5), (5, 10), slice(4, 9), 5),
    ("fc1", "linear", (5, 5, 5, 10), (5, 8, 8), slice(9, 16), None),
    ("fc2", "linear", (5, 8, 8), (10,), slice(16, 20), None),
])
def test_pstrn_lenet_layers_flops_match_counter(name, kind, ins, outs, sl, k):
    ranks = (8, 14, 8, 18, 14, 18, 22, 28, 6, 24, 20, 14, 20, 20, 10, 22, 20, 20, 6, 20)[sl]
    geometry = {"conv1": dict(kernel_size=5, padding=2), "conv2": dict(kernel_size=5)}.get(name, {})
    layer = T.make_layer("tr", kind, ins, outs, ranks, **geometry)
    hw = {"conv1": (28, 28), "conv2": (14, 14)}.get(name)
    for batch in (4,) if hw else (1, 4, 512):  # plans change with the batch size
        x = torch.randn(batch, *((math.prod(ins), *hw) if hw else (math.prod(ins),)))
        with torch.no_grad():
            for mode in ("sequential", "reconstruct", "auto"):
                layer.mode = mode
                assert _count(lambda: layer(x)) == layer.flops(batch, hw)  # noqa: B023


def test_tt_benchmark_layer_flops_match_counter():
    layer = T.TTLinear((5, 5, 5, 10), (5, 8, 8, 1), 10)
    x = torch.randn(512, 1250)
    with torch.no_grad():
        for mode in ("sequential", "reconstruct"):
            layer.mode = mode
            assert _count(lambda: layer(x)) == layer.flops(512)  # noqa: B023


def test_einsum_counts_as_bmm():
    """FlopCounterMode counts an einsum through the bmm it lowers to (2*b*m*n*k)."""
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    assert _count(lambda: torch.einsum("bij,bjk->bik", a, b)) == 2 * 3 * 4 * 5 * 6


def test_tt_sequential_beats_reconstruction_at_large_batch():
    spec = T.TTLinear.make_spec((5, 5, 5, 10), (5, 8, 8, 1), 10)
    costs = T.TTLinear.count_flops(spec, 512, None)
    assert costs["sequential"] < 0.5 * costs["reconstruct"]


@pytest.mark.parametrize(("fmt", "kind", "layer"), _all_layers(), ids=lambda v: v if isinstance(v, str) else "")
def test_gradients_reach_every_parameter(fmt, kind, layer):
    x = torch.randn(2, 60, dtype=torch.float64) if kind == "linear" else torch.randn(2, 6, 7, 7, dtype=torch.float64)
    for mode in ("sequential", "reconstruct"):
        layer.mode = mode
        layer.zero_grad(set_to_none=True)
        layer(x).square().sum().backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (mode, name)


def test_gradcheck_tr_conv():
    torch.manual_seed(0)
    layer = T.TRConv2d((2,), (3,), (2, 2, 3), kernel_size=3, padding=1).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    for mode in ("sequential", "reconstruct"):
        layer.mode = mode
        assert torch.autograd.gradcheck(layer, (x,))


def test_shapes_like_torch_layers():
    lin = T.TTLinear((3, 4), (2, 5), 3)
    assert lin(torch.randn(2, 3, 12)).shape == (2, 3, 10)
    conv = T.TuckerConv2d((4,), (6,), (2, 3), kernel_size=3, stride=2, padding=1)
    assert conv(torch.randn(4, 9, 9)).shape == (6, 5, 5)
    assert conv.full_weight().shape == (6, 4, 3, 3)
    assert lin.full_weight().shape == (10, 12)


# ----------------------------------------------------------------------------- initialisation
INIT_CASES = [
    ("linear", (5, 5, 5, 10), (5, 8, 8), None),
    ("conv", (4, 5), (5, 10), 5),
]
INIT_RANKS = {"tr": 8, "tt": 8, "tucker": (10, 12), "cp": 16}


@pytest.mark.parametrize("fmt", T.FORMATS)
@pytest.mark.parametrize(("kind", "ins", "outs", "k"), INIT_CASES)
def test_init_variance_is_he(fmt, kind, ins, outs, k):
    """The merged weight's variance is about 2 / fan_in (median over seeds, within 2x)."""
    fan_in = math.prod(ins) * (k * k if k else 1)
    ratios = []
    for seed in range(5):
        torch.manual_seed(seed)
        layer = T.make_layer(fmt, kind, ins, outs, INIT_RANKS[fmt], kernel_size=k)
        ratios.append(layer.full_weight().var().item() * fan_in / 2)
    assert 0.5 < statistics.median(ratios) < 2.0, ratios
