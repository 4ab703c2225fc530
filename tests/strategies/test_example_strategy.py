"""The example strategy a newcomer copies (`ranksearch.examples.hillclimb`) meets the contract."""

from __future__ import annotations

import statistics
import subprocess
import sys

from ranksearch.examples.hillclimb import HillClimb
from ranksearch.testing import check_strategy, drive_proposals, spaces


def test_the_example_strategy_passes_the_conformance_suite():
    check_strategy(HillClimb)  # raises AssertionError listing every failed check


def test_the_example_climbs_above_its_random_start():
    space = spaces.mixed()
    gains = []
    for seed in range(3):
        s = HillClimb(space, seed=seed, budget=40, start=4)
        drive_proposals(s, space)
        acc = [o.accuracy for o in s.observations]
        gains.append(max(acc) - max(acc[:4]))
    assert statistics.median(gains) > 0, gains


def test_it_registers_by_path_as_its_docstring_says():
    # in a child process: registering here would add a strategy to every later test's registry
    code = ("from ranksearch import strategies\n"
            "from ranksearch.testing import spaces\n"
            "strategies.register('hillclimb', 'ranksearch.examples.hillclimb:HillClimb')\n"
            "s = strategies.get('hillclimb', spaces.mixed(), seed=0, budget=5)\n"
            "print(type(s).__name__, s.ask_proposal() is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["HillClimb", "True"]
