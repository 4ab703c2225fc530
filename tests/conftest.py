from __future__ import annotations

from pathlib import Path

import pytest
from servers import mlflow_template_db, moto_s3  # noqa: F401 - the shared server fixtures

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
#: Markers that follow from the fixtures a test uses (directly or through other fixtures).
_MARK_BY_FIXTURE = {"moto_s3": "s3", "local_stack": "cluster"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that need S3 (`s3`) or the multi-node stack (`cluster`), so `-m 'not s3'`
    deselects exactly the tests that would start those servers."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _MARK_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def pstrn_space():
    from ranksearch import load_space

    return load_space(SPACES / "pstrn_lenet5_fashion.yaml")


@pytest.fixture(scope="session")
def digits_space():
    from ranksearch import load_space

    return load_space(SPACES / "quickstart_digits.yaml")
