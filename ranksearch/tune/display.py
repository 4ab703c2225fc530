"""The live progress display of a running search (rich), replacing Tune's own console output.

On a terminal it is a live panel (trials done/total, running, failed, front size,
hypervolume, best accuracy, elapsed time) with one line per finished trial scrolling above
it. When stdout is not a terminal (CI, a pipe, a log file) it prints only those lines, each
with the counters, so a log reads the same as the screen and nothing redraws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


@dataclass
class Counters:
    """What the display shows; the driver keeps it current."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    retried: int = 0
    tell_errors: int = 0  # results the strategy raised on (recorded; the search goes on)
    front_size: int = 0
    hypervolume: float = 0.0
    best_accuracy: float = math.nan
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        best = f"{self.best_accuracy:.4f}" if math.isfinite(self.best_accuracy) else "-"
        errors = f"strategy errors {self.tell_errors}  " if self.tell_errors else ""
        return (f"done {self.done}/{self.total}  running {self.running}  failed {self.failed}  {errors}"
                f"front {self.front_size}  hv {self.hypervolume:.4f}  best acc {best}  "
                f"{_elapsed(time.monotonic() - self.started)}")


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class SearchDisplay:
    """Live panel on a TTY, plain lines elsewhere; `enabled=False` prints nothing at all."""

    def __init__(self, title: str, counters: Counters, *, console: Console | None = None,
                 enabled: bool = True, live: bool | None = None) -> None:
        self.title = title
        self.counters = counters
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live = self.console.is_terminal if live is None else live
        self._live: Any = None

    def __enter__(self) -> SearchDisplay:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if not self.enabled:
            return
        if self.live:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        else:
            self.console.print(f"{self.title}: {self.counters.total} trials", highlight=False)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def event(self, text: str) -> None:
        """One line about one trial (finished, failed, retried)."""
        if not self.enabled:
            return
        if self._live is not None:
            self._live.console.print(text, highlight=False, soft_wrap=True)
            self._live.update(self._render())
        else:
            c = self.counters
            self.console.print(f"[{c.done:>{len(str(c.total))}}/{c.total}] {text} | {c.line()}",
                               highlight=False, soft_wrap=True, markup=False)

    def _render(self) -> Group:
        c = self.counters
        grid = Table.grid(padding=(0, 2))
        for _ in range(7):
            grid.add_column()
        best = f"{c.best_accuracy:.4f}" if math.isfinite(c.best_accuracy) else "-"
        grid.add_row(
            Text(f"trials {c.done}/{c.total}", style="bold"),
            Text(f"running {c.running}", style="cyan"),
            Text(f"failed {c.failed}", style="red" if c.failed else "dim"),
            Text(f"front {c.front_size}", style="green"),
            Text(f"hypervolume {c.hypervolume:.4f}"),
            Text(f"best acc {best}"),
            Text(_elapsed(time.monotonic() - c.started), style="dim"),
        )
        bar = ProgressBar(total=max(c.total, 1), completed=c.done, width=60)
        return Group(Text(self.title, style="bold"), bar, grid)


def format_hparams(hparams: Mapping[str, Any]) -> str:
    """Hyperparameter values on one line for people: `optimizer.lr=0.0031 optimizer.name=sgd`
    (the recipe's leading `training.` dropped, floats to 3 significant digits)."""
    parts = []
    for name, v in hparams.items():
        short = name.removeprefix("training.")
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{short}={text}")
    return " ".join(parts)
