from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"


@pytest.fixture(scope="session")
def pstrn_space():
    from ranksearch import load_space

    return load_space(SPACES / "pstrn_lenet5_fashion.yaml")


@pytest.fixture(scope="session")
def digits_space():
    from ranksearch import load_space

    return load_space(SPACES / "quickstart_digits.yaml")
