"""User training functions for tests/test_userfn.py, imported by name as a space file names them."""

from __future__ import annotations

import math

CALLS: list[dict] = []


def good(config, reporter):
    CALLS.append(dict(config))
    for epoch in range(1, config.get("epochs", 2) + 1):
        reporter(epoch=epoch, val_accuracy=0.5 + 0.1 * epoch * config.get("lr", 0.1), params=1000)


def returns_final(config, reporter):
    reporter(val_accuracy=0.1)
    return {"val_accuracy": 0.9, "params": 12}


def raises(config, reporter):
    reporter(epoch=1, val_accuracy=0.4, params=10)
    raise RuntimeError("out of memory on purpose")


def reports_nan(config, reporter):
    reporter(epoch=1, val_accuracy=0.4, params=10)
    reporter(epoch=2, val_accuracy=math.nan, params=10)
    raise AssertionError("the reporter stops a non-finite trial")


def reports_text(config, reporter):
    reporter(epoch=1, val_accuracy="high", params=10)


def forgets_params(config, reporter):
    reporter(epoch=1, val_accuracy=0.7)


def checkpoints(config, reporter):
    """Counts epochs across attempts through its checkpoint folder."""
    path = reporter.checkpoint_dir / "epoch.txt"
    start = int(path.read_text()) if reporter.resumed and path.is_file() else 0
    for epoch in range(start + 1, 4):
        path.write_text(str(epoch))
        reporter(epoch=epoch, val_accuracy=epoch / 10, params=5)
        if epoch == 2 and not reporter.resumed:
            raise RuntimeError("preempted")


def with_ranks(config, reporter):
    CALLS.append(dict(config))
    reporter(val_accuracy=0.5 + 0.001 * sum(config["ranks"]))


not_a_function = 3
