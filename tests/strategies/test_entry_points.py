"""Third-party strategies: found through the `ranksearch.strategies` entry-point group.

A fake installed distribution (a folder on sys.path holding `fake_pkg/` and
`fake_pkg-0.1.dist-info/`) is used from a fresh interpreter, so neither sys.path nor the
registry's scan of installed packages leaks into other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ranksearch

PLUGIN = '''
from dataclasses import dataclass
from ranksearch.strategies import Strategy, StrategyOptions, option

LOADED = True


@dataclass(frozen=True)
class WalkOptions(StrategyOptions):
    step: int = option(1, "how many values each element moves up per proposal", low=1)


class Walk(Strategy):
    """Equal ranks from the lowest upwards: a plugin strategy with typed options."""

    name = "fake-walk"
    Options = WalkOptions

    def __init__(self, space, **kwargs):
        super().__init__(space, **kwargs)
        self._k = 0

    def _propose(self, limit):
        top = max(len(v) for v in self.values)
        while self._k < top:
            cfg = tuple(v[min(self._k, len(v) - 1)] for v in self.values)
            self._k += self.opts.step
            if self.is_new(cfg) and self.feasible(cfg):
                return [cfg]
        self.mark_exhausted()
        return []


class Misnamed(Walk):
    name = "something-else"


class NotAStrategy:
    pass
'''

ENTRY_POINTS = '''
[ranksearch.strategies]
fake-walk = fake_pkg:Walk
fake-broken = fake_pkg.missing:Nope
fake-plain = fake_pkg:NotAStrategy
fake-misnamed = fake_pkg:Misnamed
random = fake_pkg:Walk
'''

SCRIPT = '''
import sys, warnings
from ranksearch import strategies, testing
from ranksearch.strategies import StrategyError

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = strategies.available()
assert {"fake-walk", "fake-broken", "fake-plain", "fake-misnamed"} <= set(names), names
assert "fake_pkg" not in sys.modules, "an entry point was imported before it was asked for"
assert any("'random = fake_pkg:Walk'" in str(w.message) and "built-in" in str(w.message)
           for w in caught), [str(w.message) for w in caught]
assert strategies.strategy_class("random").__module__ == "ranksearch.strategies.random_search"

space = testing.small()
s = strategies.get("fake-walk", space, seed=0, budget=5, step=2)
assert type(s).__module__ == "fake_pkg" and s.opts.step == 2
assert testing.drive(s, space)[:2] == [tuple([1] * 7), tuple([3] * 7)]
try:
    strategies.get("fake-walk", space, step=0)
except StrategyError as exc:
    assert "'fake-walk'" in str(exc) and "'step' = 0" in str(exc), exc
else:
    raise AssertionError("a bad plugin option was accepted")
testing.check_strategy("fake-walk")

def error(name):
    try:
        strategies.strategy_class(name)
    except StrategyError as exc:
        return str(exc)
    raise AssertionError(f"{name} loaded")

e = error("fake-broken")
assert "could not be loaded" in e and "fake_pkg 0.1" in e and "ModuleNotFoundError" in e, e
e = error("fake-plain")
assert "not a subclass of ranksearch.strategies.Strategy" in e and "fake_pkg 0.1" in e, e
e = error("fake-misnamed")
assert "name = 'fake-misnamed'" in e, e
entries = {c["name"]: c for c in strategies.catalog()}
assert entries["fake-walk"]["options"][0]["name"] == "step"
assert "could not be loaded" in entries["fake-broken"]["error"]
print("OK")
'''


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    (tmp_path / "fake_pkg").mkdir()
    (tmp_path / "fake_pkg" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "fake_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake_pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS.lstrip())
    return tmp_path


def test_entry_point_strategies_load_lazily_with_clear_errors(installed):
    root = Path(ranksearch.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(root)])}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300, cwd=installed)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]


def test_without_plugins_only_registered_strategies_are_listed():
    from ranksearch import strategies

    assert not any(n.startswith("fake-") for n in strategies.available())
