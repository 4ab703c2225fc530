"""Shipped files found through the package: dashboard assets, search spaces by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranksearch import resources
from ranksearch.errors import SpaceError

ROOT = Path(__file__).resolve().parents[1]


def test_dashboard_and_spaces_dirs_hold_the_top_level_files():
    for name in ("index.html", "app.js", "style.css"):
        assert (resources.dashboard_dir() / name).read_bytes() == (ROOT / "dashboards" / name).read_bytes()
    shipped = resources.shipped_spaces()
    assert set(shipped) == {p.stem for p in (ROOT / "search_spaces").glob("*.yaml")} and shipped
    assert all(path.read_text() == (ROOT / "search_spaces" / path.name).read_text() for path in shipped.values())


def test_resolve_space_path_prefers_files_then_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = resources.shipped_spaces()["quickstart_digits"]
    assert resources.resolve_space_path("quickstart_digits") == shipped
    assert resources.resolve_space_path("quickstart_digits.yaml") == shipped
    (tmp_path / "quickstart_digits.yaml").write_text("name: mine\n")  # a file here wins
    assert resources.resolve_space_path("quickstart_digits.yaml") == Path("quickstart_digits.yaml")
    with pytest.raises(SpaceError, match="file not found.*quickstart_digits") as exc:
        resources.resolve_space_path("nonesuch")
    assert exc.value.file == "nonesuch"
    with pytest.raises(SpaceError, match="file not found"):  # a path is never looked up by name
        resources.resolve_space_path("sub/quickstart_digits.yaml")
