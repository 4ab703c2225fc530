"""Per-format weight geometry on the layer classes: which unfoldings bound which rank."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import ranksearch
from ranksearch.tensorized import layer_class, make_layer


@pytest.mark.parametrize(("fmt", "kind", "ins", "outs", "kernel", "rank"), [
    ("tr", "linear", (4, 5), (5, 4), None, 3),
    ("tr", "conv", (4, 5), (5, 4), (3, 3), 2),
    ("tt", "linear", (4, 6, 5), (5, 6, 4), None, 3),
    ("tt", "conv", (4, 5), (5, 4), (3, 3), 3),
    ("tucker", "linear", (40,), (30,), None, 6),
    ("tucker", "conv", (20,), (24,), (3, 3), 5),
    ("cp", "linear", (4, 6), (6, 5), None, 3),
    ("cp", "conv", (4, 5), (5, 4), (3, 3), 3),
])
def test_bond_ranks_read_planted_ranks_back(fmt, kind, ins, outs, kernel, rank):
    cls = layer_class(fmt, kind)
    torch.manual_seed(0)
    layer = make_layer(fmt, kind, ins, outs, rank, kernel_size=kernel).double()
    weight = layer.full_weight().detach().numpy()
    t = cls.weight_tensor(layer.spec, weight)
    assert t.size == weight.size and t.ndim >= 2
    found = cls.bond_ranks(layer.spec, weight, np.linalg.matrix_rank)
    assert len(found) == len(layer.ranks)
    if fmt == "tr":  # a cut's rank r_a * r_b is shared evenly between its two bonds
        assert all(1 <= v <= rank + 1e-9 for v in found), found
    else:  # a TT bond, a Tucker factor, the CP rank: the unfolding's rank is the rank itself
        assert found == pytest.approx((rank,) * len(found)), found


def test_weight_tensor_is_what_from_dense_decomposes():
    """At full rank, decomposing `weight_tensor`'s layout reproduces the dense layer exactly."""
    torch.manual_seed(1)
    dense = torch.nn.Linear(20, 12).double()
    for fmt in ("tr", "tt", "cp"):
        cls = layer_class(fmt, "linear")
        rank = 30 if fmt == "cp" else 12
        layer = cls.from_dense(dense, rank, in_shape=(4, 5), out_shape=(3, 4))
        w = layer.full_weight().detach().numpy()
        t_dense = cls.weight_tensor(layer.spec, dense.weight.detach().numpy())
        t_layer = cls.weight_tensor(layer.spec, w)
        assert np.allclose(t_layer, t_dense, atol=1e-6), fmt


def test_no_module_imports_another_modules_private_names():
    """Private functions and classes stay in their module (a package's private submodule,
    such as tensorized._decompose, may be imported inside that package)."""
    root = Path(ranksearch.__file__).parent

    def is_module(package: str, name: str) -> bool:
        return (root.parent / package.replace(".", "/") / f"{name}.py").exists()

    offenders = []
    for path in sorted((root / "strategies").glob("*.py")) + sorted((root / "tensorized").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ranksearch"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not is_module(node.module, a.name)]
    assert not offenders, offenders
