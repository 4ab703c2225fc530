"""The data package imports nothing heavy and never touches the network."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from ranksearch.data import clear_cache, load_splits


def test_import_is_light() -> None:
    code = ("import sys, ranksearch.data; "
            "print(sorted(m for m in ('sklearn', 'mlxtend', 'mnist1d') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loaders_work_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a data loader tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    clear_cache()
    for name in ("digits", "mnist5k", "mnist1d", "synthetic"):
        assert len(load_splits(name).train) > 0
