"""The playbook model: playbooks, steps, `when:` conditions and conclusion rules (plain frozen data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_KINDS = ("check", "command", "manual")


@dataclass(frozen=True)
class Condition:
    """A test on earlier step results.

    op "status": step `step` has one of `statuses` (negated with `negate`);
    op "verdict": the verdict so far is one of `statuses` (conclusion rules only);
    op "all" / "any": combine `children`.
    """

    op: str
    step: str | None = None
    statuses: tuple[str, ...] = ()
    negate: bool = False
    children: tuple["Condition", ...] = ()

    def evaluate(self, results: Mapping[str, str], verdict: str | None = None) -> bool:
        if self.op == "all":
            return all(c.evaluate(results, verdict) for c in self.children)
        if self.op == "any":
            return any(c.evaluate(results, verdict) for c in self.children)
        value = verdict if self.op == "verdict" else results.get(self.step or "", "skip")
        return (value in self.statuses) != self.negate

    def describe(self) -> str:
        if self.op in ("all", "any"):
            joiner = " and " if self.op == "all" else " or "
            return "(" + joiner.join(c.describe() for c in self.children) + ")"
        subject = "verdict" if self.op == "verdict" else self.step
        return f"{subject} is {'not ' if self.negate else ''}{'|'.join(self.statuses)}"

    def step_refs(self) -> list[str]:
        if self.op in ("all", "any"):
            return [ref for c in self.children for ref in c.step_refs()]
        return [self.step] if self.op == "status" and self.step else []


@dataclass(frozen=True)
class Step:
    id: str
    kind: str                      # one of STEP_KINDS
    title: str
    line: int
    check: str | None = None       # kind "check": the built-in check's name
    params: Mapping[str, Any] = field(default_factory=dict)  # with defaults applied
    argv: tuple[str, ...] = ()     # kind "command"
    timeout: float = 30.0
    failure_status: str = "warn"   # kind "command": status of a non-zero exit
    instruction: str = ""          # kind "manual"
    when: Condition | None = None
    remedy: str | None = None      # playbook-specific advice added to the check's remedy

    def describe(self) -> str:
        """One line saying what the step does (for `show` and `--dry-run`)."""
        if self.kind == "check":
            args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
            return f"check {self.check}({args})"
        if self.kind == "command":
            return "command: " + " ".join(self.argv) + f"  (timeout {self.timeout:g} s)"
        return "manual: " + self.instruction


@dataclass(frozen=True)
class ConclusionRule:
    message: str
    line: int
    when: Condition | None = None   # None: always matches (the fallback)
    verdict: str | None = None      # raise the verdict to at least this


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    description: str
    path: Path
    trusted: bool
    steps: tuple[Step, ...]
    applies_to: tuple[str, ...] = ()
    conclusion: tuple[ConclusionRule, ...] = ()

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def summary_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description, "path": str(self.path),
                "applies_to": list(self.applies_to), "steps": len(self.steps), "trusted": self.trusted}
