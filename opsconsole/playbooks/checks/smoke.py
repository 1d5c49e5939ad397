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
    except Exception as exc:  # a launch problem is this check's error, not the playbook's crash
        return CheckResult(ERROR, f"could not start {p['kind']}: {exc}", evidence)
    run_id = record.id
    evidence["run_id"] = run_id
    try:
        result = manager.wait(run_id, timeout=p["timeout"]) or {}
    except TimeoutError:
        manager.stop(run_id)
        return CheckResult(FAIL, f"{p['kind']} run {run_id} did not finish within {p['timeout']:g} s (stopped)", evidence,
                           f"Look at its log (`opsconsole runs logs {run_id}`): a hang at start is often NCCL or a "
                           "download in offline mode.")
    status = str(result.get("status", "unknown"))
    evidence.update({"run_id": run_id, "status": status, "exit_code": result.get("exit_code"),
                     "metrics": result.get("metrics"), "error": result.get("error"),
                     "diagnoses": [d.get("id") for d in result.get("diagnoses") or []]})
    if status == "ok":
        return CheckResult(PASS, f"{p['kind']} run {run_id} finished OK", evidence)
    return CheckResult(FAIL, f"{p['kind']} run {run_id} ended {status}" + (f": {result.get('error')}" if result.get("error") else ""),
                       evidence, f"Read the run's log (`opsconsole runs logs {run_id}`)"
                       + (f"; the KB names {evidence['diagnoses'][0]} (`opsconsole kb show {evidence['diagnoses'][0]}`)."
                          if evidence["diagnoses"] else "."))
