"""Rank conventions, closed-form counts and input validation of ranksearch.tensorized."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ranksearch.tensorized as T

PSTRN_M_FASHION = (8, 14, 8, 18, 14, 18, 22, 28, 6, 24, 20, 14, 20, 20, 10, 22, 20, 20, 6, 20)
# (name, kind, in_shape, out_shape, rank slice, kernel size)
TR_LENET = (
    ("conv1", "conv", (1,), (4, 5), slice(0, 4), 5),
    ("conv2", "conv", (4, 5), (5, 10), slice(4, 9), 5),
    ("fc1", "linear", (5, 5, 5, 10), (5, 8, 8), slice(9, 16), None),
    ("fc2", "linear", (5, 8, 8), (10,), slice(16, 20), None),
)


def test_public_names():
    assert T.FORMATS == ("tr", "tt", "tucker", "cp")
    for name in ("TRLinear", "TRConv2d", "TTLinear", "TTConv2d", "TuckerLinear", "TuckerConv2d", "CPLinear",
                 "CPConv2d", "num_ranks", "make_layer", "layer_params", "layer_flops", "from_dense",
                 "balanced_factors"):
        assert hasattr(T, name), name


@pytest.mark.parametrize(("fmt", "kind", "ins", "outs", "expected"), [
    ("tr", "linear", (5, 5, 5, 10), (5, 8, 8), 7),
    ("tr", "linear", (5, 8, 8), (10,), 4),
    ("tr", "conv", (1,), (4, 5), 4),
    ("tr", "conv", (4, 5), (5, 10), 5),
    ("tt", "linear", (5, 5, 5, 10), (5, 8, 8, 1), 3),
    ("tt", "linear", (5, 5, 5, 10), (5, 8, 8), 3),  # the shorter shape is padded with 1s
    ("tt", "conv", (4, 5), (5, 10), 2),
    ("tt", "conv", (1,), (4, 5), 2),
    ("tucker", "linear", (5, 5, 5, 10), (5, 8, 8), 2),
    ("tucker", "conv", (4, 5), (5, 10), 2),
    ("cp", "linear", (5, 5, 5, 10), (5, 8, 8), 1),
    ("cp", "conv", (4, 5), (5, 10), 1),
])
def test_num_ranks(fmt, kind, ins, outs, expected):
    assert T.num_ranks(fmt, kind, ins, outs) == expected


def test_pstrn_lenet5_fashion_param_count():
    """PSTRN-M Fashion-MNIST: cores + biases of the four TR layers are 48,780 parameters."""
    total = 0
    for _, kind, ins, outs, sl, k in TR_LENET:
        ranks = PSTRN_M_FASHION[sl]
        n = T.layer_params("tr", kind, ins, outs, ranks, kernel_size=k)
        layer = T.make_layer("tr", kind, ins, outs, ranks, kernel_size=k)
        assert n == layer.n_params == sum(p.numel() for p in layer.parameters())
        total += n
    assert total == 48_780


def test_equal_rank_trn_reference():
    """TRN with r = 10 everywhere: 16,500 parameters for LeNet-5 (ANCHORS)."""
    total = sum(T.layer_params("tr", kind, ins, outs, 10, kernel_size=k) for _, kind, ins, outs, _, k in TR_LENET)
    assert total == 16_500


def test_tr_conv_formula():
    ins, outs, r, k = (4, 5), (5, 10), (14, 18, 22, 28, 6), 5
    expected = (r[0] * 4 * r[1] + r[1] * 5 * r[2] + k * k * r[2] * r[3] + r[3] * 5 * r[4] + r[4] * 10 * r[0]) + 50
    assert T.layer_params("tr", "conv", ins, outs, r, kernel_size=k) == expected


@pytest.mark.parametrize("fmt", T.FORMATS)
@pytest.mark.parametrize("bias", [True, False])
def test_params_match_built_layers(fmt, bias):
    for kind, ins, outs, k in (("linear", (3, 4, 5), (4, 6), None), ("conv", (2, 3), (4, 2), (3, 2))):
        n = T.num_ranks(fmt, kind, ins, outs)
        ranks = tuple(range(2, 2 + n))
        layer = T.make_layer(fmt, kind, ins, outs, ranks, kernel_size=k, bias=bias)
        assert T.layer_params(fmt, kind, ins, outs, ranks, kernel_size=k, bias=bias) == \
            sum(p.numel() for p in layer.parameters()) == layer.n_params


def test_tt_and_tucker_and_cp_formulas():
    ins, outs = (5, 5, 5, 10), (5, 8, 8, 1)
    assert T.layer_params("tt", "linear", ins, outs, 10) == 1 * 25 * 10 + 10 * 40 * 10 * 2 + 10 * 10 + 320
    assert T.layer_params("tt", "conv", (4, 5), (5, 10), (3, 4), kernel_size=5) == 25 * 3 + 3 * 20 * 4 + 4 * 50 + 50
    assert T.layer_params("tucker", "conv", (4, 5), (5, 10), (6, 7), kernel_size=3, bias=False) == \
        20 * 6 + 7 * 6 * 9 + 50 * 7
    assert T.layer_params("cp", "conv", (4, 5), (5, 10), 8, kernel_size=3, bias=False) == (4 + 5 + 9 + 5 + 10) * 8


def test_flops_need_input_hw_for_conv():
    with pytest.raises(ValueError, match="input_hw"):
        T.layer_flops("tr", "conv", (4, 5), (5, 10), 5, kernel_size=5)


def test_layer_flops_modes_and_choice():
    kw = dict(kernel_size=5, input_hw=(14, 14), batch_size=64)
    seq = T.layer_flops("tr", "conv", (4, 5), (5, 10), 5, mode="sequential", **kw)
    rec = T.layer_flops("tr", "conv", (4, 5), (5, 10), 5, mode="reconstruct", **kw)
    assert T.layer_flops("tr", "conv", (4, 5), (5, 10), 5, **kw) == seq < rec  # rank 5: cores win
    big = T.layer_flops("tr", "conv", (4, 5), (5, 10), 30, mode="sequential", **kw)
    assert T.layer_flops("tr", "conv", (4, 5), (5, 10), 30, **kw) < big  # rank 30: rebuilding W wins
    # batch 1 linear: contracting the cores is far cheaper than rebuilding W
    one = T.layer_flops("tr", "linear", (5, 5, 5, 10), (5, 8, 8), 10)
    assert one == T.layer_flops("tr", "linear", (5, 5, 5, 10), (5, 8, 8), 10, mode="sequential")
    assert one < T.layer_flops("tr", "linear", (5, 5, 5, 10), (5, 8, 8), 10, mode="reconstruct")


# ----------------------------------------------------------------------------- validation
def test_wrong_number_of_ranks_message():
    with pytest.raises(ValueError, match=r"TRLinear: ranks has 5 values, expected 7 \(one per mode of in_shape\+out_shape\)"):
        T.TRLinear((5, 5, 5, 10), (5, 8, 8), (1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"TRConv2d: ranks has 4 values, expected 5"):
        T.make_layer("tr", "conv", (4, 5), (5, 10), (1, 2, 3, 4), kernel_size=5)
    with pytest.raises(ValueError, match=r"TTLinear: ranks has 1 values, expected 3"):
        T.layer_params("tt", "linear", (5, 5, 5, 10), (5, 8, 8), (4,))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_non_positive_or_non_int_ranks(bad):
    with pytest.raises(ValueError, match="CPLinear: ranks"):
        T.CPLinear((4, 4), (4, 4), (bad,))


def test_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match="TRLinear: in_shape"):
        T.TRLinear((), (4,), 2)
    with pytest.raises(ValueError, match="TuckerLinear: out_shape"):
        T.TuckerLinear((4,), (0, 3), 2)
    with pytest.raises(ValueError, match="kernel_size is required"):
        T.make_layer("cp", "conv", (4,), (4,), 3)
    with pytest.raises(ValueError, match="TTConv2d: stride"):
        T.TTConv2d((4,), (4,), 3, kernel_size=3, stride=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        T.TRLinear((4,), (4,), 2, mode="fast")
    with pytest.raises(ValueError, match="unknown tensor format 'ht'"):
        T.num_ranks("ht", "linear", (4,), (4,))
    with pytest.raises(ValueError, match="unknown layer kind"):
        T.make_layer("tr", "conv1d", (4,), (4,), 2)
    with pytest.raises(ValueError, match="batch_size"):
        T.layer_flops("cp", "linear", (4,), (4,), 2, batch_size=0)


def test_from_dense_validation():
    with pytest.raises(ValueError, match=r"TRLinear.from_dense: in_shape \[5, 5\] has product 25, but the dense layer has 20 input features"):
        T.from_dense(nn.Linear(20, 10), "tr", 3, in_shape=(5, 5))
    with pytest.raises(ValueError, match="groups=1"):
        T.from_dense(nn.Conv2d(4, 4, 3, groups=2), "tucker", (2, 2))
    with pytest.raises(ValueError, match="padding_mode"):
        T.from_dense(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"), "cp", 2)
    with pytest.raises(ValueError, match="nn.Linear or nn.Conv2d"):
        T.from_dense(nn.Conv1d(4, 4, 3), "cp", 2)


def test_padding_strings():
    layer = T.make_layer("cp", "conv", (4,), (4,), 2, kernel_size=3, padding="same")
    assert layer.padding == (1, 1)
    assert T.make_layer("cp", "conv", (4,), (4,), 2, kernel_size=3, padding="valid").padding == (0, 0)
    with pytest.raises(ValueError, match="padding='same'"):
        T.make_layer("cp", "conv", (4,), (4,), 2, kernel_size=2, padding="same")


def test_input_shape_checked():
    layer = T.TRLinear((2, 3), (4,), 2)
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 6\)"):
        layer(torch.randn(3, 5))
    conv = T.TRConv2d((2, 3), (4,), 2, kernel_size=3)
    with pytest.raises(ValueError, match=r"expected input \(N, 6, H, W\)"):
        conv(torch.randn(1, 5, 8, 8))


# ----------------------------------------------------------------------------- balanced_factors
@pytest.mark.parametrize(("n", "expected"), [
    (1, (1,)), (7, (7,)), (20, (4, 5)), (50, (5, 10)), (320, (5, 8, 8)), (1250, (5, 5, 5, 10)),
    (784, (4, 4, 7, 7)),
])
def test_balanced_factors_default(n, expected):
    assert T.balanced_factors(n) == expected


@pytest.mark.parametrize("n", [1, 2, 12, 97, 320, 1000, 4096, 720720])
@pytest.mark.parametrize("k", [None, 1, 2, 3, 5])
def test_balanced_factors_product(n, k):
    f = T.balanced_factors(n, k)
    assert math.prod(f) == n
    assert list(f) == sorted(f)
    if k is not None:
        assert len(f) == k


def test_balanced_factors_validation():
    with pytest.raises(ValueError, match="positive int"):
        T.balanced_factors(0)
    with pytest.raises(ValueError, match="k must be"):
        T.balanced_factors(12, 0)


def test_import_has_no_tensorly_side_effect():
    """Importing the package neither imports tensorly nor changes its backend."""
    import subprocess
    import sys

    code = ("import sys, ranksearch.tensorized; assert 'tensorly' not in sys.modules; "
            "import tensorly as tl; assert tl.get_backend() == 'numpy'")
    subprocess.run([sys.executable, "-c", code], check=True)
