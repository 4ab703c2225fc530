"""Reading search-space files: YAML with duplicate keys refused, then validation and layout.

Every failure (a missing or unreadable file, binary junk, an empty file, malformed YAML, a key
given twice) is a `SpaceError` naming the file, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ranksearch.errors import SpaceError
from ranksearch.space.layout import SearchSpace


def load_space(path: str | Path) -> SearchSpace:
    """Read, validate and resolve a search-space YAML file.

    `path` is a file, or the name of a space shipped with ranksearch (`quickstart_digits`)
    when no such file exists. Malformed YAML, a key given twice, binary or empty files are
    `SpaceError`s naming the file.
    """
    from ranksearch.resources import resolve_space_path

    path = resolve_space_path(path)
    source = str(path)
    return SearchSpace.from_dict(read_yaml(path), source=source)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives one key twice (PyYAML would silently keep the last one)."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        self.key = key
        self.lines = (first.line + 1, second.line + 1)
        super().__init__(None, None, f"key {key!r} is given twice (lines {self.lines[0]} and "
                         f"{self.lines[1]})", second)


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice, naming both lines."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            # Only the keys written here: a `<<: *anchor` merge may be overridden (the base
            # class flattens merges afterwards).
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise DuplicateKeyError(key, first, key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, *, source: str | None = None) -> Any:
    """Parse a YAML file with `UniqueKeyLoader`; every failure is a `SpaceError` naming the file."""
    path = Path(path)
    source = source or str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"not a text file (byte {exc.start} is not UTF-8)", file=source,
                         hint="give a search-space YAML file") from None
    except OSError as exc:
        raise SpaceError(f"cannot be read ({exc.strerror or exc})", file=source) from None
    if not text.strip():
        raise SpaceError("the file is empty", file=source,
                         hint="write the sections name, model, data and training (see search_spaces/)")
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise SpaceError(f"key '{exc.key}' is given twice (lines {exc.lines[0]} and {exc.lines[1]})",
                         file=source, field=str(exc.key),
                         hint="keep one of them; YAML would silently use the last") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(
            f"malformed YAML{where}: {problem}", file=source,
            hint="fix the YAML syntax (indentation, colons, brackets)",
        ) from None
    if data is None:
        raise SpaceError("the file is empty (it holds only comments)", file=source,
                         hint="write the sections name, model, data and training (see search_spaces/)")
    return data
