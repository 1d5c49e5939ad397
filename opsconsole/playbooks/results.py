"""Statuses and results shared by checks, steps and the playbook verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, WARN, FAIL, SKIP, ERROR, MANUAL = "pass", "warn", "fail", "skip", "error", "manual"
STEP_STATUSES = (PASS, WARN, FAIL, SKIP, ERROR, MANUAL)
VERDICTS = (PASS, WARN, FAIL, ERROR)

# Verdict ranking: a step's status raises the verdict to at least this level.
# skip and manual never change the verdict; error ranks below fail (a box with a
# confirmed failure is failed even if another check could not run).
_RANK = {PASS: 0, WARN: 1, ERROR: 2, FAIL: 3}


def worst(statuses: list[str] | tuple[str, ...], start: str = PASS) -> str:
    """The overall verdict of step statuses (skip/manual ignored)."""
    verdict = start
    for status in statuses:
        if status in _RANK and _RANK[status] > _RANK[verdict]:
            verdict = status
    return verdict


@dataclass(frozen=True)
class CheckResult:
    """What a check returns: a status, a one-line summary, the values it read and, for warn/fail, a remedy."""

    status: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    remedy: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STEP_STATUSES:
            raise ValueError(f"bad status {self.status!r}")


def gib(value: int | float | None) -> float | None:
    """Bytes -> GiB rounded to 0.1 (None stays None)."""
    return None if value is None else round(value / 2**30, 1)
