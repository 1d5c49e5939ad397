"""Helpers shared by the run-manager tests (waiting, reading a run's log)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_text(run_dir: str | Path) -> str:
    return (Path(run_dir) / "output.log").read_text(encoding="utf-8", errors="replace")
