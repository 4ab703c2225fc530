"""Files shipped inside the package: the dashboard's web assets and the ready search spaces.

They live at the top of the checkout (`dashboards/`, `search_spaces/`) and reach the wheel as
package data under `ranksearch/_data/` (committed relative symlinks that setuptools copies
through), so the same lookup works from a checkout, an editable install and a plain wheel.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ranksearch.errors import SpaceError

_DATA_PACKAGE = "ranksearch._data"
SPACE_SUFFIXES = (".yaml", ".yml")


def _data_dir(name: str) -> Path:
    # A package installed from a wheel or a checkout is a real folder, so `files()` is a Path;
    # zip imports are not supported (the dashboard serves the folder with Flask).
    return Path(str(resources.files(_DATA_PACKAGE).joinpath(name)))


def dashboard_dir() -> Path:
    """The folder holding the dashboard's index.html, app.js and style.css."""
    return _data_dir("dashboards")


def shipped_spaces_dir() -> Path:
    """The folder holding the search spaces that ship with ranksearch."""
    return _data_dir("search_spaces")


def shipped_spaces() -> dict[str, Path]:
    """Shipped search spaces by name (file name without its suffix), sorted."""
    folder = shipped_spaces_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in SPACE_SUFFIXES and p.is_file()}


def resolve_space_path(arg: str | os.PathLike[str]) -> Path:
    """The search-space file `arg` names: an existing path, else a shipped space by name.

    `quickstart_digits` and `quickstart_digits.yaml` both find the shipped copy when no such
    file exists here, so a fresh install can run `ranksearch validate quickstart_digits`.
    A file that is neither raises `SpaceError` listing the shipped names.
    """
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    text = os.fspath(arg)
    shipped = shipped_spaces()
    if os.sep not in text and "/" not in text:
        stem = Path(text).stem if Path(text).suffix in SPACE_SUFFIXES else text
        if stem in shipped:
            return shipped[stem]
    hint = ("give the path of a search-space YAML file, or the name of a shipped space: "
            + (", ".join(shipped) or "(none installed)"))
    if path.exists():
        raise SpaceError("is not a file", file=text, hint=hint)
    raise SpaceError("file not found", file=text, hint=hint)
