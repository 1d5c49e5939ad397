"""Shared helpers of the TUI tests (imported by name: tests/tui is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable

from opsconsole.tui.capture import screen_text

__all__ = ["notified", "screen_text", "wait_until"]


async def wait_until(pilot, predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until `predicate()` is truthy (fails the test after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n--- screen ---\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def notified(app) -> str:
    """Every notification still shown, title and message, one per line (toasts wrap on screen)."""
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)
