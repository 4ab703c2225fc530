"""User-facing error types shared by every entry point.

Each carries enough context (file, field, value, fix) for the CLI to print one clear line and
exit with status 2 before anything heavy (Ray, MLflow) starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RanksearchError(Exception):
    """Base class of every error caused by user input rather than a bug."""

    exit_code = 2


class SpaceError(RanksearchError, ValueError):
    """A search-space file (or a rank vector for it) is invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: Any = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.value = value
        self.hint = hint
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<search space>"
        parts = [where]
        if self.field:
            parts.append(f"field '{self.field}'")
        head = ": ".join(parts)
        text = f"{head}: {self.reason}"
        if self.field and self.value is not None:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f". {self.hint[:1].upper()}{self.hint[1:]}"
        return text

    def with_file(self, file: str) -> SpaceError:
        """The same error, attributed to `file` (used when a space is loaded from disk)."""
        return SpaceError(self.reason, file=file, field=self.field, value=self.value, hint=self.hint)


class SettingError(RanksearchError, ValueError):
    """A keyword setting of a library call (`workers`, `budget`, `address`...) has a bad value.

    The library names the setting as Python callers spell it; the CLI renders the same error
    with its flags (`render(names=flag_for)`), so errors raised from Python never mention flags.
    Other settings the text mentions are written `` `name` `` and listed in `related`.
    """

    def __init__(self, setting: str, message: str, *, value: Any = None, hint: str | None = None,
                 show_value: bool = True, related: tuple[str, ...] = ()) -> None:
        self.setting = setting
        self.value = value
        self.reason = message
        self.hint = hint
        self.show_value = show_value
        self.related = tuple(related)
        super().__init__(self.render())

    def render(self, names: Callable[[str], str] | None = None) -> str:
        """The message, each setting spelled by `names` (default: its Python name)."""
        name_of = names or (lambda s: s)
        text = f"{name_of(self.setting)} {self.reason}"
        if self.show_value:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f". {self.hint[:1].upper()}{self.hint[1:]}"
        for other in self.related:
            text = text.replace(f"`{other}`", name_of(other))
        return text


class ServiceError(RanksearchError):
    """Bad input to a service function: a search, store or rank config that cannot be used."""
