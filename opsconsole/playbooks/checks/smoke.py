"""The smoke-run check: launch a short job of a given kind and require it to finish OK."""

from __future__ import annotations

from typing import Any

from ...jobs import JOB_KINDS
from ..context import PlaybookContext
from ..results import ERROR, FAIL, PASS, SKIP, CheckResult
from .registry import Param, check


def _why_not_runnable(ctx: PlaybookContext) -> str | None:
    if ctx.simulated:
        return "the machine is simulated: no real run is launched"
    if ctx.settings.readonly:
        return "read-only mode forbids launching runs"
    try:
        from ...runs import RunManager  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return "runs are not available in this build"
    torch = ctx.module_info("torch")
    if not torch.importable:
        return f"the [ml] extra is missing in {ctx.settings.python} (torch does not import): pip install 'opsconsole[ml]'"
    return None


@check("smoke_run", "A smoke run of `kind` (e.g. gemma-infer with --model tiny) finishes OK.",
       "a real child run through the run manager (skipped on simulated machines, in read-only mode or without the [ml] extra)",
       kind=Param("str", help="job kind", choices=tuple(JOB_KINDS)),
       args=Param("str_list", [], "job flags, e.g. [--model, tiny]"),
       timeout=Param("number", 600, "seconds before the run counts as failed"))
def smoke_run(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    reason = _why_not_runnable(ctx)
    argv = [str(a) for a in p["args"]]
    evidence: dict[str, Any] = {"kind": p["kind"], "args": argv}
    if reason:
        return CheckResult(SKIP, reason, evidence)
    from ...runs import RunManager  # type: ignore[attr-defined]

    manager = RunManager(ctx.settings)
    try:
        record = manager.launch(p["kind"], argv, foreground=True)
        run_id = getattr(record, "id", None) or getattr(record, "run_id", None)
        result = manager.wait(run_id, timeout=p["timeout"]) or {}
    except Exception as exc:  # a launch problem is this check's error, not the playbook's crash
        return CheckResult(ERROR, f"could not run {p['kind']}: {exc}", evidence)
    status = str(result.get("status", "unknown"))
    evidence.update({"run_id": run_id, "status": status, "exit_code": result.get("exit_code"),
                     "summary": result.get("summary"), "metrics": result.get("metrics")})
    if status in ("ok", "finished", "succeeded", "success"):
        return CheckResult(PASS, f"{p['kind']} run {run_id} finished OK", evidence)
    return CheckResult(FAIL, f"{p['kind']} run {run_id} ended {status}" + (f": {result.get('error')}" if result.get("error") else ""),
                       evidence, f"Read the run's log (`opsconsole runs show {run_id}`) and diagnose it "
                       f"(`opsconsole diagnose <run dir>/output.log`).")
