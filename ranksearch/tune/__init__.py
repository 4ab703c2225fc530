"""Execution on Ray Tune: the only package that imports Ray.

- `searcher.StrategySearcher`: any Strategy as a Tune Searcher (keyed by trial id, JSON state);
- `trainable.train_trial`: the function trainable (per-epoch reports and checkpoints);
- `scheduler.MultiObjectiveASHA`: multi-objective successive halving (`scheduler:` in the space);
- `warmstart`: the dense network trained once per search for `training.init: dense`;
- `driver.run_search`: run or resume a search (tracking in the driver, progress display);
- `storage.Storage` / `state.SearchState`: the experiment directory (local or S3) and the
  `search.json` that `resume` reads.
- `submit`: searches as Ray jobs on a cluster (Jobs API): submit, list, logs, stop, resume.

Nothing here is imported by `import ranksearch`; Ray itself is imported only when a search
runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ranksearch.tune.driver import SearchOutcome, SearchSettings, run_search
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

_EXPORTS = {
    "run_search": "ranksearch.tune.driver",
    "SearchSettings": "ranksearch.tune.driver",
    "SearchOutcome": "ranksearch.tune.driver",
    "SearchState": "ranksearch.tune.state",
    "Storage": "ranksearch.tune.storage",
}

__all__ = ["SearchOutcome", "SearchSettings", "SearchState", "Storage", "run_search"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ranksearch.tune' has no attribute {name!r}")
