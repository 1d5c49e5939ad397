"""Turn a run directory into a registry record, and notice runs whose processes died.

Used to rebuild a damaged registry and to mark crashed runs (supervisor and job
gone, no result) on the next look.
"""

from __future__ import annotations

import time

from .procs import is_alive
from .rundir import RunDir, write_json_atomic
from .result import build_result
from .store import RunRecord

STARTING_TIMEOUT_S = 60.0  # a run still "starting" with no live supervisor after this is dead


def record_from_run_dir(run: RunDir) -> RunRecord | None:
    """A registry record from the files of `run` (None when cmd.json is unreadable)."""
    cmd = run.read_cmd()
    if not isinstance(cmd, dict) or "kind" not in cmd:
        return None
    result = run.read_result() or {}
    pids = run.read_pids() or {}
    return RunRecord(
        id=run.id,
        kind=str(cmd["kind"]),
        status=result.get("status") or ("running" if pids else "starting"),
        dir=str(run.path),
        started_at=float(cmd.get("created") or run.path.stat().st_mtime),
        params=list(cmd.get("job_argv") or []),
        ended_at=result.get("ended_at"),
        exit_code=result.get("exit_code"),
        signal=result.get("signal"),
        device=cmd.get("device"),
        gpus=list(cmd.get("gpus") or []),
        pid=pids.get("pid"),
        pid_started=pids.get("pid_started"),
        supervisor_pid=pids.get("supervisor_pid"),
        supervisor_started=pids.get("supervisor_started"),
        python=cmd.get("python"),
        metrics=result.get("metrics") or {},
    )


def is_dead(record: RunRecord) -> bool:
    """An active record whose supervisor and job are both gone (or never came up)."""
    if not record.active:
        return False
    pids = record.run_dir.read_pids() or {}
    supervisor = record.supervisor_pid or pids.get("supervisor_pid")
    sup_started = record.supervisor_started or pids.get("supervisor_started")
    job = record.pid or pids.get("pid")
    job_started = record.pid_started or pids.get("pid_started")
    if is_alive(supervisor, sup_started) or is_alive(job, job_started):
        return False
    if supervisor is None and job is None:
        return time.time() - record.started_at > STARTING_TIMEOUT_S
    return True


def finalize_dead(record: RunRecord) -> dict:
    """Write result.json for a run nobody is left to finish (status crashed unless it said otherwise)."""
    run = record.run_dir
    existing = run.read_result()
    if existing:
        return existing
    note = ("[opsconsole] the run's processes are gone and no result was written (supervisor killed, "
            "reboot or power loss); marked crashed.")
    supervisor_error = _last_line(run.supervisor_log)
    if supervisor_error:
        note += f" The supervisor said: {supervisor_error}"
    try:
        with open(run.log, "a", encoding="utf-8") as fh:
            fh.write("\n" + note + "\n")
    except OSError:
        pass
    result = build_result(run, exit_code=None, signal=None, note=note)
    write_json_atomic(run.result, result)
    return result


def _last_line(path) -> str:
    """Last non-empty line of a small file ('' when missing or empty)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [l for l in fh.read().decode("utf-8", "replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
