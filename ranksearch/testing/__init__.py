"""Tools for strategy authors: the conformance suite every strategy must pass, and fake spaces.

    from ranksearch.testing import check_strategy
    check_strategy(MyStrategy, options={"width": 3})

runs every check (`CHECKS`) and raises one AssertionError naming each that failed; with pytest,
`@pytest.mark.parametrize("check", CHECKS)` and `run_check(check, MyStrategy, options)` give
one test per check. The checks run on `ranksearch.testing.spaces`' small fake spaces with a
cheap synthetic objective: seconds, no Ray, no training.
"""

from __future__ import annotations

from ranksearch.testing.conformance import BUDGET, CHECKS, check_strategy, drive, drive_proposals, run_check
from ranksearch.testing.spaces import FakeLayer, FakeSpace, lenet5, mixed, objective, small, tiny

__all__ = ["BUDGET", "CHECKS", "FakeLayer", "FakeSpace", "check_strategy", "drive", "drive_proposals",
           "lenet5", "mixed", "objective", "run_check", "small", "tiny"]
