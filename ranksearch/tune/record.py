"""An append-only event log in a search's experiment directory: O(1) work per event.

On a local disk the log is one file, `record.jsonl`, appended one JSON line per event and
flushed at once (a killed driver loses nothing it wrote; a torn last line, from a kill in the
middle of a write, is skipped on reading). Object stores cannot append, so on S3 each append is
one new object `record/<session>-<sequence>.jsonl`; reading lists and concatenates them in name
order. Either way a write costs the same whatever the length of the search.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ranksearch.tune.storage import Storage, StorageError

log = logging.getLogger(__name__)

RECORD_FILE = "record.jsonl"
RECORD_DIR = "record"


class EventLog:
    """Append events (JSON-able dicts) for search `name`; `read()` gives them back in order."""

    def __init__(self, storage: Storage, name: str, *, session: int = 0) -> None:
        self.storage = storage
        self.name = name
        self.session = int(session)
        self._seq = 0
        self._file: Any = None
        self.appended = 0

    # -- writing ----------------------------------------------------------------------------------
    def append(self, *events: dict[str, Any]) -> None:
        if not events:
            return
        text = "".join(dumps(e) + "\n" for e in events)
        if self.storage.is_local:
            if self._file is None:
                path = Path(self.storage.path(self.name, RECORD_FILE))
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends
            self._file.write(text)
            self._file.flush()
        else:
            self._seq += 1
            self.storage.write_text(text, self.name, RECORD_DIR, f"{self.session:04d}-{self._seq:08d}.jsonl")
        self.appended += len(events)

    def sync(self) -> None:
        """Make what was appended durable against a machine crash (not only a process kill)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            try:
                self.sync()
            finally:
                self._file.close()
                self._file = None

    # -- reading ----------------------------------------------------------------------------------
    def read(self) -> list[dict[str, Any]]:
        """Every event, oldest first (local file and S3 segments both, should a search have
        moved between them)."""
        texts: list[str] = []
        if self.storage.exists(self.name, RECORD_FILE):
            texts.append(self.storage.read_text(self.name, RECORD_FILE))
        for entry in self.storage.list_dir(self.name, RECORD_DIR):
            if entry.endswith(".jsonl"):
                texts.append(self.storage.read_text(self.name, RECORD_DIR, entry))
        events: list[dict[str, Any]] = []
        for text in texts:
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    events.append(loads(line))
                except ValueError:
                    if i == len(lines) - 1:  # a write cut short by a kill: the event never happened
                        log.warning("search %s: skipping a torn last line of its record", self.name)
                        continue
                    raise StorageError(f"{self.storage.display(self.name, RECORD_FILE)}: line {i + 1} "
                                       "is not valid JSON; the record is damaged") from None
        return events

    def next_session(self) -> int:
        """A session number above every S3 segment's (local files need none)."""
        sessions = [int(e.split("-", 1)[0]) for e in self.storage.list_dir(self.name, RECORD_DIR)
                    if e.endswith(".jsonl") and e.split("-", 1)[0].isdigit()]
        return max(sessions, default=-1) + 1


# Strict JSON has no NaN/inf: keep them as tagged values so results read back exactly.
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return encode(obj.item())
    return obj


def decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return _NONFINITE[obj["__float__"]]
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(encode(obj), separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    return decode(json.loads(text))
