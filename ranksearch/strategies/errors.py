"""The strategies' error type (its own module so options and the base class can both raise it)."""

from __future__ import annotations

from ranksearch.errors import RanksearchError


class StrategyError(RanksearchError, ValueError):
    """A strategy was misused or broke its contract (the message names the strategy)."""
