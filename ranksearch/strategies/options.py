"""Typed, documented strategy options: declared once per strategy, checked once where they enter.

A strategy declares its options as a frozen dataclass deriving from `StrategyOptions`, each
field made with `option(default, help, ...)`: the field's type annotation, default, help text
and range are the whole declaration. `StrategyOptions.parse` turns the raw mapping a user gave
(YAML, command line, Python) into that dataclass or raises one `StrategyError` that names the
strategy, the option, the value and what to give instead; nothing downstream re-checks them.

    @dataclass(frozen=True)
    class BeamOptions(StrategyOptions):
        children: int = option(3, "children evaluated per parent", low=1)

Supported annotations: `int`, `float`, `bool`, `str` (with `choices`), `tuple[T, ...]` of those
(a list is accepted), and any of them `| None`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union

import numpy as np

from ranksearch.strategies.errors import StrategyError

__all__ = ["StrategyOptions", "option"]

_T = TypeVar("_T", bound="StrategyOptions")
#: Names a strategy option may not take: the constructor's own arguments.
RESERVED = frozenset({"space", "seed", "budget", "options"})


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False,
           choices: Sequence[Any] | None = None, min_len: int | None = None) -> Any:
    """A documented option field. `low`/`high` bound numbers (and each item of a tuple),
    inclusive unless `*_open`; `choices` lists the allowed values; `min_len` a tuple's length."""
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": None if choices is None else tuple(choices), "min_len": min_len}
    return dataclasses.field(default=default, metadata={"ranksearch": meta})


@dataclass(frozen=True)
class StrategyOptions:
    """Base of every strategy's options dataclass (this base itself declares none)."""

    #: Strategy name used in messages until `parse` is given one.
    _strategy: ClassVar[str] = "strategy"

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return tuple(dataclasses.fields(cls))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.fields())

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in cls.fields()}

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One entry per option: name, type, default and help (for `ranksearch strategies`)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in cls.fields():
            meta = f.metadata.get("ranksearch", {})
            out.append({"name": f.name, "type": _describe_type(hints[f.name], meta),
                        "default": _plain(f.default), "help": meta.get("help", "")})
        return out

    @classmethod
    def parse(cls: type[_T], strategy: str, raw: Mapping[str, Any] | None) -> _T:
        """Validate `raw` (unknown names, types, ranges, then `check`) into this dataclass."""
        raw = dict(raw or {})
        names = cls.names()
        reserved = sorted(RESERVED & set(names))
        if reserved:
            raise StrategyError(f"strategy '{strategy}': option names {reserved} are reserved "
                                f"for the constructor; rename them in {cls.__name__}")
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise StrategyError(
                f"strategy '{strategy}' has no option {', '.join(repr(u) for u in unknown)}; "
                f"valid options: {_listing(cls)}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in cls.fields():
            if f.name not in raw:
                continue
            meta = f.metadata.get("ranksearch", {})
            values[f.name] = _coerce(strategy, f.name, hints[f.name], meta, raw[f.name])
        opts = cls(**values)
        opts.check(strategy)
        return opts

    def check(self, strategy: str) -> None:
        """Rules across options (override); raise `StrategyError` naming the options."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples stay tuples), in declaration order."""
        return {f.name: getattr(self, f.name) for f in self.fields()}

    def error(self, strategy: str, name: str, why: str) -> StrategyError:
        """An error for option `name` of this set (for `check`)."""
        return StrategyError(f"strategy '{strategy}': option '{name}' = {getattr(self, name)!r} "
                             f"{why}")


def _listing(cls: type[StrategyOptions]) -> str:
    items = ["budget (int, the number of configurations to propose)"]
    items += [f"{d['name']} ({d['type']}, default {d['default']!r})" for d in cls.describe()]
    return "; ".join(items)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _describe_type(tp: Any, meta: Mapping[str, Any]) -> str:
    """What to give, in words: 'int >= 1', 'float in (0, 1)', "one of 'a', 'b'",
    'list of float >= 0 (at least 1)', '..., or None'."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [_describe_type(a, meta) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("None")
        return ", ".join(parts[:-1]) + ", or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin is tuple:
        text = "list of " + _describe_type(typing.get_args(tp)[0], meta)
        if meta.get("min_len"):
            text += f" (at least {meta['min_len']})"
        return text
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    text = _type_name(tp)
    if tp in (int, float):
        rng = _range_text(meta)
        text = f"{text} {rng}" if rng else text
    return text


def _type_name(tp: Any) -> str:
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _range_text(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return ""
    if high is None:
        return f"{'>' if meta.get('low_open') else '>='} {low:g}"
    if low is None:
        return f"{'<' if meta.get('high_open') else '<='} {high:g}"
    left = "(" if meta.get("low_open") else "["
    right = ")" if meta.get("high_open") else "]"
    return f"in {left}{low:g}, {high:g}{right}"


class _Bad(Exception):
    pass


def _coerce(strategy: str, name: str, tp: Any, meta: Mapping[str, Any], value: Any) -> Any:
    try:
        return _value(tp, meta, value)
    except _Bad:
        want = _describe_type(tp, meta)
        raise StrategyError(f"strategy '{strategy}': option '{name}' = {value!r} is not valid; "
                            f"give {want} ({meta.get('help', '')})") from None


def _value(tp: Any, meta: Mapping[str, Any], value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _value(arg, meta, value)
            except _Bad:
                continue
        raise _Bad
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise _Bad
        item = typing.get_args(tp)[0]
        out = tuple(_value(item, meta, v) for v in value)
        if meta.get("min_len") is not None and len(out) < meta["min_len"]:
            raise _Bad
        return out
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise _Bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise _Bad
        return _in_range(int(value), meta)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise _Bad
        if not math.isfinite(float(value)):
            raise _Bad
        return _in_range(float(value), meta)
    if tp is str:
        if not isinstance(value, str):
            raise _Bad
        if meta.get("choices") and value not in meta["choices"]:
            raise _Bad
        return value
    raise TypeError(f"option type {tp!r} is not supported by StrategyOptions")


def _in_range(v: float, meta: Mapping[str, Any]) -> Any:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (v < low or (meta.get("low_open") and v == low)):
        raise _Bad
    if high is not None and (v > high or (meta.get("high_open") and v == high)):
        raise _Bad
    if meta.get("choices") and v not in meta["choices"]:
        raise _Bad
    return v
