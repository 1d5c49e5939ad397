"""Helpers shared by the run-manager tests (waiting, reading a run's log)."""

from __future__ import annotations

from pathlib import Path

from waiting import wait_for as _wait_for


def log_text(run_dir: str | Path) -> str:
    return (Path(run_dir) / "output.log").read_text(encoding="utf-8", errors="replace")


def wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    """tests/waiting.wait_for with this suite's default timeout."""
    return _wait_for(condition, timeout, what)
