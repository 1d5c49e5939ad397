"""Build a run's result.json from what the job left behind (events, exit status, log).

    {"id", "kind", "status": "ok|failed|crashed|stopped", "exit_code", "signal",
     "metrics": {...}, "artifacts": [{"path", "kind"}], "diagnoses": [Diagnosis.to_dict()],
     "error", "findings", "started_at", "ended_at", "duration_s"}
"""

from __future__ import annotations

import json
import os
import signal as signal_module
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import parse_event_line
from ..redact import redact_tree
from .rundir import RunDir

TOP_DIAGNOSES = 3
DIAGNOSE_MAX_BYTES = 8 * 1024 * 1024  # diagnose the last 8 MiB of a huge log (tracebacks are at the end)
NOTE_PREFIX = "[opsconsole] "         # our lines in output.log: shown to the user, never diagnosed
VMSTAT = Path("/proc/vmstat")
OOM_ENTRY = "cpu-ram-oom-killed"


@dataclass
class JobEvents:
    """What events.jsonl says about a run (read once, line by line: bounded memory)."""

    start: dict[str, Any] | None = None
    finish: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)


def read_job_events(path: Path) -> JobEvents:
    found = JobEvents()
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return found
    with fh:
        for line in fh:
            event = parse_event_line(line)
            if event is None:
                continue
            kind = event["type"]
            if kind == "start":
                found.start = event
            elif kind == "finish":
                found.finish = event
            elif kind == "metric" and "name" in event:
                found.metrics[str(event["name"])] = event.get("value")
            elif kind == "artifact" and "path" in event:
                found.artifacts.append({"path": event["path"], "kind": event.get("kind", "file")})
            elif kind == "finding":
                found.findings.append({k: v for k, v in event.items() if k not in ("t", "type")})
    return found


def decide_status(finish: dict[str, Any] | None, exit_code: int | None, signal: int | None,
                  stop_requested: bool) -> str:
    """ok | failed | crashed | stopped. No finish event and no stop request means crashed."""
    if finish is None:
        return "stopped" if stop_requested else "crashed"
    said = finish.get("status")
    if said == "stopped" or (stop_requested and (signal is not None or exit_code not in (0, None))):
        return "stopped"
    if said == "ok":
        if signal is None and exit_code in (0, None):
            return "ok"
        return "crashed" if signal is not None else "failed"
    return "failed"


def signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return signal_module.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def oom_kill_count(path: Path = VMSTAT) -> int | None:
    """OOM kills since boot, host-wide (`oom_kill` in /proc/vmstat, Linux >= 4.13; memcg kills
    count too). None where the kernel does not say."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def crash_note(signal: int | None, exit_code: int | None, oom_kills: int | None = None) -> str:
    """Lines the supervisor appends to output.log when a job ends without a finish event.
    `oom_kills`: OOM kills the kernel counted during the run (None: unknown)."""
    if signal == signal_module.SIGKILL:
        first = f"{NOTE_PREFIX}the job was ended by signal 9 (SIGKILL) before it finished, and nobody asked it to stop."
        if oom_kills is None:
            second = ("the kernel OOM killer (host RAM exhausted) is a common sender; this kernel does not count OOM "
                      "kills: check `dmesg | grep -i -E 'oom|killed process'`.")
        elif oom_kills > 0:
            second = (f"the kernel OOM killer killed {oom_kills} process(es) on this host during the run "
                      "(oom_kill in /proc/vmstat): host RAM ran out.")
        else:
            second = ("the kernel counted no OOM kill during the run (oom_kill in /proc/vmstat unchanged): the "
                      "SIGKILL came from a user, a scheduler or a watchdog, not from running out of RAM.")
        return f"{first}\n{NOTE_PREFIX}{second}"
    if signal is not None:
        return f"{NOTE_PREFIX}the job was ended by signal {signal} ({signal_name(signal)}) before it finished."
    return f"{NOTE_PREFIX}the job exited with code {exit_code} without reporting a finish event."


def _without_our_notes(lines: Iterable[str]) -> Iterator[str]:
    """The job's own lines; ours (crash notes such as "the usual sender is the kernel
    oom-killer") become blank, so a `kill -9` is not diagnosed as OOM from our hint and
    evidence line numbers still match the log."""
    for line in lines:
        yield "" if line.startswith(NOTE_PREFIX) else line


def diagnose(run: RunDir, finish: dict[str, Any] | None, top: int = TOP_DIAGNOSES,
             kernel_oom: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Top KB diagnoses of the run's log (+ the KB entry the job itself named). Never raises.

    Returns (diagnoses, error): error says why diagnosis was skipped, else None.
    """
    try:
        from ..kb import load_kb, match_log  # the KB may not be importable (yet): skip gracefully
    except ImportError as exc:
        return [], f"KB not available: {exc}"
    try:
        kb = load_kb()
        with open(run.log, encoding="utf-8", errors="replace") as fh:
            if os.fstat(fh.fileno()).st_size > DIAGNOSE_MAX_BYTES:
                fh.buffer.seek(-DIAGNOSE_MAX_BYTES, os.SEEK_END)
                fh.readline()  # the first, partial line
            diagnoses = [d.to_dict() for d in match_log(_without_our_notes(fh), kb=kb, top=top).matches]
        named = []  # (KB id, who names it, evidence): the job's own verdict, then the kernel's
        if (finish or {}).get("kb"):
            named.append((finish["kb"], "job", str(finish.get("error", ""))))
        if kernel_oom:
            named.append((OOM_ENTRY, "kernel", kernel_oom))
        for name, source, text in named:
            entry = kb.get(name)
            if entry is not None and name not in {d["id"] for d in diagnoses}:
                diagnoses.insert(0, {"id": entry.id, "category": entry.category, "title": entry.title,
                                     "score": 1.0, "playbook": entry.playbook, "source": source,
                                     "evidence": [{"line": 0, "text": text}]})
        return diagnoses[:top], None
    except Exception as exc:  # a KB bug must not lose the run's result
        return [], f"diagnosis failed: {type(exc).__name__}: {exc}"


def build_result(run: RunDir, exit_code: int | None, signal: int | None, *,
                 ended_at: float | None = None, note: str | None = None, diagnose_now: bool = True,
                 oom_kills: int | None = None) -> dict[str, Any]:
    """result.json of a finished run. A failed or crashed run is diagnosed with the KB unless
    `diagnose_now` is False: then it carries `diagnosis_pending` and `add_diagnoses` follows."""
    cmd = run.read_cmd() or {}
    events = read_job_events(run.events)
    status = decide_status(events.finish, exit_code, signal, run.stop_requested())
    finish = events.finish or {}
    metrics = {**events.metrics, **(finish.get("metrics") or {})}
    artifacts = _dedupe(events.artifacts, run)
    ended = ended_at or time.time()
    started = cmd.get("created")
    result: dict[str, Any] = {
        "id": run.id,
        "kind": cmd.get("kind") or (events.start or {}).get("kind"),
        "status": status,
        "exit_code": exit_code,
        "signal": signal,
        "signal_name": signal_name(signal),
        "metrics": metrics,
        "summary": finish.get("summary") or {},
        "artifacts": artifacts,
        "findings": events.findings,
        "diagnoses": [],
        "error": finish.get("error") or (note if status == "crashed" else None),
        "started_at": started,
        "ended_at": ended,
        "duration_s": round(ended - started, 3) if isinstance(started, (int, float)) else None,
    }
    if status not in ("failed", "crashed"):
        return redact_tree(result)  # errors and evidence quote the log, which may print secrets
    if not diagnose_now:
        return redact_tree({**result, "diagnosis_pending": True})
    return add_diagnoses(run, result, oom_kills, events.finish)


def add_diagnoses(run: RunDir, result: dict[str, Any], oom_kills: int | None = None,
                  finish: dict[str, Any] | None = None) -> dict[str, Any]:
    """`result` with the KB's diagnoses of the run's log; `oom_kills` > 0 after a SIGKILL puts
    the kernel's OOM evidence first."""
    kernel_oom = None
    if result.get("signal") == signal_module.SIGKILL and oom_kills:
        kernel_oom = f"the kernel OOM killer killed {oom_kills} process(es) during the run (oom_kill in /proc/vmstat)"
    if finish is None:
        finish = read_job_events(run.events).finish
    diagnoses, skipped = diagnose(run, finish, kernel_oom=kernel_oom)
    out = _settled(result)
    out["diagnoses"] = diagnoses
    if skipped:
        out["diagnosis_skipped"] = skipped
    return redact_tree(out)


def diagnose_within(run: RunDir, result: dict[str, Any], limit_s: float, oom_kills: int | None = None) -> dict[str, Any]:
    """add_diagnoses, given at most `limit_s` seconds (a pathological log or KB regex must not
    keep the supervisor alive): past it, the result says the diagnosis was skipped and why."""
    done: dict[str, dict[str, Any]] = {}
    worker = threading.Thread(target=lambda: done.setdefault("result", add_diagnoses(run, result, oom_kills)),
                              name="diagnosis", daemon=True)
    worker.start()
    worker.join(limit_s)
    if "result" in done:
        return done["result"]
    out = _settled(result)
    out["diagnosis_skipped"] = (f"the diagnosis took longer than {limit_s:g} s and was stopped; "
                                f"run `opsconsole diagnose {run.log}` to try it without a limit")
    return out


def _settled(result: dict[str, Any]) -> dict[str, Any]:
    """A copy of `result` without the `diagnosis_pending` mark."""
    return {key: value for key, value in result.items() if key != "diagnosis_pending"}


def _dedupe(artifacts: list[dict[str, Any]], run: RunDir) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for item in artifacts:
        path = str(item["path"])
        if path in seen:
            continue
        seen.add(path)
        absolute = Path(path) if os.path.isabs(path) else run.path / path
        out.append({"path": str(absolute), "kind": item.get("kind", "file"), "exists": absolute.exists()})
    return out


def result_summary(result: dict[str, Any]) -> str:
    """One line for humans: `ok  ttft_s=0.12 decode_tokens_per_s=40.1` or `crashed (SIGKILL)`."""
    status = result.get("status", "?")
    if result.get("signal"):
        status += f" ({result.get('signal_name') or result['signal']})"
    elif result.get("exit_code") not in (0, None):
        status += f" (exit {result['exit_code']})"
    metrics = result.get("metrics") or {}
    shown = [f"{k}={_short(v)}" for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "  ".join([status, *shown[:6]])


def _short(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, default=str)
