"""User training functions that misbehave, run by Ray workers (this folder is on their PYTHONPATH)."""

from __future__ import annotations

import os
from pathlib import Path


def dies_once(config, reporter):
    """Reports epochs 1-3, checkpointing each; the first attempt's worker dies after epoch 2."""
    path = reporter.checkpoint_dir / "epoch.txt"
    start = int(path.read_text()) if reporter.resumed and path.is_file() else 0
    marker = Path(config["marker"])
    for epoch in range(start + 1, 4):
        path.write_text(str(epoch))
        reporter(epoch=epoch, val_accuracy=0.2 * epoch, params=100 + start)
        if epoch == 2 and not marker.exists():
            marker.write_text("died")
            os._exit(1)  # the worker process is gone: Ray retries the trial from its checkpoint


def raises(config, reporter):
    reporter(epoch=1, val_accuracy=0.3, params=10)
    raise ValueError("the user's code broke")
