"""The playbook engine: runs steps one by one, yields events for live display, gives a verdict.

    runner = PlaybookRunner(playbook, PlaybookContext(settings, simulate="vram-pressure"))
    for event in runner.events():        # StepEvent("start"|"finish", ...)
        show(event)
    outcome = runner.outcome              # PlaybookOutcome: verdict, steps, conclusion

Verdict: the worst of the step statuses with fail > error > warn > pass; skip and
manual never count. A conclusion rule may raise it (never lower it). When no
step could check anything, the verdict is warn ("nothing verified").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import EXIT_CRITICAL, EXIT_OK, EXIT_WARN
from .checks.gpu_memory import memory_advice
from .checks.registry import get_check
from .commands import run_command
from .context import PlaybookContext
from .model import Playbook, Step
from .results import ERROR, FAIL, MANUAL, PASS, SKIP, WARN, CheckResult, gib, worst

# confirm(step, prompt) -> True to go on. Asked before each command and for each manual step.
ConfirmCallback = Callable[[Step, str], bool]

EXIT_CODES = {PASS: EXIT_OK, WARN: EXIT_WARN, FAIL: EXIT_CRITICAL, ERROR: EXIT_CRITICAL}


# summaries of checks that could not be made (the data is missing), as opposed to steps not needed
UNCHECKED_PREFIXES = ("not reported", "not checked")

@dataclass(frozen=True)
class StepOutcome:
    step: Step
    status: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    remedy: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.step.id, "kind": self.step.kind, "title": self.step.title, "status": self.status,
                "summary": self.summary, "evidence": self.evidence, "remedy": self.remedy}


@dataclass(frozen=True)
class StepEvent:
    type: str                 # "start" (before the step runs) | "finish"
    index: int                # 0-based
    total: int
    step: Step
    outcome: StepOutcome | None = None   # set on "finish"
    will_run: bool = True     # False: its `when` is false, the step is skipped


@dataclass(frozen=True)
class PlaybookOutcome:
    playbook: Playbook
    verdict: str
    steps: tuple[StepOutcome, ...]
    conclusion: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.playbook.id, "title": self.playbook.title, "verdict": self.verdict,
                "conclusion": self.conclusion, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class PlannedStep:
    """A dry-run line: what the step would do, and under which condition."""

    step: Step
    action: str
    condition: str | None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.step.id, "kind": self.step.kind, "title": self.step.title, "action": self.action,
               "when": self.condition}
        if self.step.kind == "command":
            out["argv"] = list(self.step.argv)
        return out


class PlaybookRunner:
    def __init__(self, playbook: Playbook, context: PlaybookContext, confirm: ConfirmCallback | None = None) -> None:
        self.playbook, self.context, self.confirm = playbook, context, confirm
        self.outcome: PlaybookOutcome | None = None
        context.wait_for_probe = any(spec.probe for spec in map(get_check, (s.check for s in playbook.steps if s.check))
                                     if spec is not None)

    def plan(self) -> list[PlannedStep]:
        """What would run (`--dry-run`): nothing is executed, telemetry is not read."""
        return [PlannedStep(s, s.describe(), s.when.describe() if s.when else None) for s in self.playbook.steps]

    def run(self) -> PlaybookOutcome:
        for _ in self.events():
            pass
        assert self.outcome is not None
        return self.outcome

    def events(self) -> Iterator[StepEvent]:
        steps = self.playbook.steps
        statuses: dict[str, str] = {}
        outcomes: list[StepOutcome] = []
        for index, step in enumerate(steps):
            will_run = step.when is None or step.when.evaluate(statuses)
            yield StepEvent("start", index, len(steps), step, will_run=will_run)
            started = time.monotonic()
            if will_run:
                result = self._run_step(step)
            else:
                result = CheckResult(SKIP, f"not needed: condition `{step.when.describe()}` is false")
            remedy = result.remedy
            if step.remedy and result.status in (WARN, FAIL):
                remedy = f"{remedy} {step.remedy}" if remedy else step.remedy
            outcome = StepOutcome(step, result.status, result.summary, result.evidence,
                                  remedy if result.status in (WARN, FAIL) else None,
                                  round(time.monotonic() - started, 3))
            statuses[step.id] = outcome.status
            outcomes.append(outcome)
            yield StepEvent("finish", index, len(steps), step, outcome)
        self.outcome = self._conclude(statuses, tuple(outcomes))

    def _run_step(self, step: Step) -> CheckResult:
        try:
            if step.kind == "check":
                spec = get_check(step.check or "")
                assert spec is not None, f"unknown check {step.check}"
                return spec.function(self.context, dict(step.params))
            if step.kind == "command":
                return self._run_command(step)
            return self._manual(step)
        except Exception as exc:  # one broken check must not stop the playbook
            return CheckResult(ERROR, f"{step.kind} {step.check or step.id} crashed: {type(exc).__name__}: {exc}",
                               {"exception": type(exc).__name__})

    def _run_command(self, step: Step) -> CheckResult:
        evidence = {"argv": list(step.argv)}
        if self.context.simulated:
            return CheckResult(SKIP, "not run: the machine is simulated", evidence)
        if self.confirm is not None and not self.confirm(step, "Run `" + " ".join(step.argv) + "`?"):
            return CheckResult(SKIP, "declined", evidence)
        return run_command(step.argv, step.timeout, step.failure_status)

    def _manual(self, step: Step) -> CheckResult:
        if self.confirm is None:
            return CheckResult(MANUAL, step.instruction, {"instruction": step.instruction})
        done = self.confirm(step, step.instruction)
        return CheckResult(PASS if done else SKIP, "confirmed" if done else "not confirmed",
                           {"instruction": step.instruction, "confirmed": done})

    def _conclude(self, statuses: dict[str, str], outcomes: tuple[StepOutcome, ...]) -> PlaybookOutcome:
        verdict = worst(list(statuses.values()))
        checked = [s for s in statuses.values() if s in (PASS, WARN, FAIL, ERROR)]
        conclusion = None
        for rule in self.playbook.conclusion:
            if rule.when is None or rule.when.evaluate(statuses, verdict):
                conclusion = self._format(rule.message)
                if rule.verdict:
                    verdict = worst([rule.verdict], start=verdict)
                break
        if not checked:
            verdict = worst([WARN], start=verdict)
            conclusion = (conclusion + " " if conclusion else "") + "(No step could check anything on this machine.)"
        unchecked = [o.step.id for o in outcomes if o.status == SKIP and o.summary.startswith(UNCHECKED_PREFIXES)]
        if checked and unchecked and verdict == PASS:
            # a pass message lists what is healthy; what could not be read is not healthy, it is unknown
            conclusion = (f"PASS on what could be checked ({', '.join(s for s, v in statuses.items() if v == PASS)}). "
                          f"NOT CHECKED: {', '.join(unchecked)}: this machine does not report them, so this is "
                          "not a clean bill of health.")
        return PlaybookOutcome(self.playbook, verdict, outcomes, conclusion)

    def _format(self, message: str) -> str:
        return message.format_map(message_fields(self.context)) if "{" in message else message


def message_fields(ctx: PlaybookContext) -> dict[str, Any]:
    """Values for the placeholders conclusion messages may use (see loader.MESSAGE_FIELDS)."""
    snap = ctx.snapshot
    biggest = max(snap.gpus, key=lambda g: g.memory.total or 0, default=None)
    total = biggest.memory.total if biggest else None
    return {
        "gpu_name": (biggest.name if biggest else None) or "no GPU",
        "gpu_total_gib": f"{gib(total):g}" if total else "?",
        "gpu_count": len(snap.gpus),
        "memory_advice": memory_advice(total),
        "python": ctx.settings.python,
        "driver_version": snap.nvml.driver_version or "none",
        "driver_cuda": snap.nvml.cuda_driver_version or "none",
        "torch_version": snap.cuda_env.torch_version or "not installed",
        "torch_cuda": snap.cuda_env.torch_cuda or "none (CPU build)",
        "log": str(ctx.log_file) if ctx.log_file else "(no log)",
    }
