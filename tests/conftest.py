from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"

# Published PSTRN ranks (ANCHORS.md) for the TR-LeNet-5 space.
PSTRN_M_FASHION = (8, 14, 8, 18, 14, 18, 22, 28, 6, 24, 20, 14, 20, 20, 10, 22, 20, 20, 6, 20)
PSTRN_S_FASHION = (22, 12, 6, 22, 16, 22, 30, 22, 16, 18, 24, 30, 30, 8, 30, 24, 22, 20, 6, 18)
PSTRN_M_MNIST = (6, 20, 14, 8, 12, 20, 2, 20, 16, 16, 20, 12, 12, 8, 6, 26, 8, 2, 6, 20)
PSTRN_S_MNIST = (2, 24, 18, 8, 8, 30, 18, 30, 22, 26, 22, 26, 30, 14, 30, 8, 24, 12, 10, 30)


@pytest.fixture(scope="session")
def pstrn_space():
    from ranksearch import load_space

    return load_space(SPACES / "pstrn_lenet5_fashion.yaml")


@pytest.fixture(scope="session")
def digits_space():
    from ranksearch import load_space

    return load_space(SPACES / "quickstart_digits.yaml")
