"""RunManager: launch, look at, follow, stop and remove runs.

A launch validates first (launch.plan_launch), registers the run (refusing a GPU
another active run uses, unless forced), writes cmd.json and starts the detached
supervisor (runs.supervisor) in its own session. Every look at an active run
checks its processes, so a run whose supervisor and job died is marked crashed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Settings
from ..errors import UsageError
from ..paths import PACKAGE_DIR
from ..redact import fingerprint_env, redact_argv, redact_env
from .launch import LaunchPlan, child_env, plan_launch
from .procs import is_alive, sigterm_then_kill, start_time, wait_gone
from .records import finalize_dead, is_dead
from .rundir import RunDir, new_run_id, write_json_atomic
from .store import FINAL_STATUSES, RunRecord, RunStore
from .tail import RunTail, TailUpdate

DEFAULT_GRACE_S = 10.0
POLL_S = 0.1


# `runs stop/rm` need the full id or a unique suffix this long (the 4 hex digits of new_run_id)
MIN_ACTION_SUFFIX = 4


class RunManager:
    def __init__(self, settings: Settings | None = None, store: RunStore | None = None) -> None:
        self.settings = settings or Settings()
        self.store = store or RunStore()

    @property
    def runs_dir(self) -> Path:
        return self.store.runs_dir

    # --- launch -----------------------------------------------------------------------
    def plan(self, kind: str, argv: list[str], python: str | None = None, gpus: int | None = None) -> LaunchPlan:
        return plan_launch(kind, list(argv), python or self.settings.python, gpus)

    def launch(self, kind: str, argv: list[str], python: str | None = None, force: bool = False,
               foreground: bool = False, gpus: int | None = None) -> RunRecord:
        """Validate, register and start a run; return its record (status starting/running).

        `foreground` is accepted for the shared interface: the run is started the
        same way, and the caller ties it to the terminal with `follow()` + `stop()`.
        """
        plan = self.plan(kind, argv, python, gpus)
        self.refresh_active()

        def conflicts(active: list[RunRecord]) -> list[RunRecord]:
            if force or not plan.gpus:
                return []
            return [r for r in active if set(r.gpus) & set(plan.gpus)]

        for attempt in range(5):  # two launches of one kind in the same second may draw the same suffix
            run_id = new_run_id(kind)
            run = RunDir(self.runs_dir / run_id)
            now = time.time()
            record = RunRecord(id=run_id, kind=kind, status="starting", dir=str(run.path), started_at=now,
                               params=redact_argv(plan.job_argv), device=plan.device, gpus=plan.gpus,
                               python=plan.python)
            try:
                busy = self.store.insert_if_free(record, conflicts)
                break
            except sqlite3.IntegrityError:
                if attempt == 4:
                    raise
        if busy:
            other = busy[0]
            shared = sorted(plan.gpu_labels.get(g, g) for g in set(other.gpus) & set(plan.gpus))
            raise UsageError(f"GPU {','.join(shared)} is in use by run {other.id} ({other.kind}, {other.status}); "
                             f"wait for it, stop it (`opsconsole runs stop {other.id}`) or pass --force to share it")
        try:
            run.create()
            env = child_env(run.path, plan.env)
            write_json_atomic(run.cmd, {
                "id": run_id, "kind": kind, "created": now,
                "argv": redact_argv(plan.child_argv), "job_argv": redact_argv(plan.job_argv),
                "python": plan.python, "cwd": plan.cwd, "device": plan.device, "gpus": plan.gpus,
                "world_size": plan.world_size, "foreground": foreground,
                "env": redact_env(env), "secret_fingerprints": fingerprint_env(env), "console_python": sys.executable, "opsconsole_version": __version__,
            })
            proc = self._spawn_supervisor(run, plan, env)
        except BaseException:
            self.store.delete(run_id)
            shutil.rmtree(run.path, ignore_errors=True)
            raise
        self.store.update_if_active(run_id, supervisor_pid=proc.pid, supervisor_started=start_time(proc.pid))
        return self.store.get(run_id) or record

    def _spawn_supervisor(self, run: RunDir, plan: LaunchPlan, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # -E: the supervisor (console-side Python) ignores the PYTHONPATH meant for the user's interpreter;
        # it finds opsconsole where this process found it. The job still gets the full env.
        boot = (f"import sys; sys.path.insert(0, {str(PACKAGE_DIR.parent)!r}); "
                "from opsconsole.runs.supervisor import main; sys.exit(main())")
        argv = [sys.executable, "-E", "-c", boot, "--state-dir", str(self.store.root), str(run.path), "--",
                *plan.child_argv]
        log_fd = os.open(run.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=env, cwd=plan.cwd)
        finally:
            os.close(log_fd)
        # Reap it when it ends so a long-lived console (the TUI) collects no zombies.
        threading.Thread(target=proc.wait, name=f"reap-{run.id}", daemon=True).start()
        return proc

    # --- looking ----------------------------------------------------------------------
    def _reconcile(self, record: RunRecord) -> RunRecord:
        if record.active and is_dead(record):
            result = finalize_dead(record)
            self.store.update(record.id, status=result["status"], ended_at=result.get("ended_at"),
                              exit_code=result.get("exit_code"), signal=result.get("signal"),
                              metrics=result.get("metrics") or {})
            return self.store.get(record.id) or record
        return record

    def refresh_active(self) -> list[RunRecord]:
        return [self._reconcile(r) for r in self.store.list(active_only=True)]

    def list(self) -> list[RunRecord]:
        return [self._reconcile(r) if r.active else r for r in self.store.list()]

    def get(self, run_id: str) -> RunRecord:
        """The record of `run_id` (exact id, unique prefix, or unique part such as the suffix)."""
        record = self.store.get(run_id) or self.store.get(self.resolve_id(run_id))
        assert record is not None
        return self._reconcile(record)

    def resolve_id(self, text: str, destructive: bool = False) -> str:
        """The run id `text` names. Viewing takes a unique prefix or part; a destructive command
        (stop, rm) takes the full id or a unique suffix of at least 4 characters (`runs rm e`
        removed whichever run had an `e` in its id)."""
        ids = self.store.ids()
        if text in ids:
            return text
        if destructive:
            matches = [i for i in ids if i.endswith(text)] if len(text) >= MIN_ACTION_SUFFIX else []
            if len(matches) == 1:
                return matches[0]
            why = (f"matches {len(matches)} runs ({', '.join(matches[:3])}{' ...' if len(matches) > 3 else ''})"
                   if matches else "is not a full run id or the last 4+ characters of one")
            raise UsageError(f"run id {text!r} {why}; stop and rm need the full id or a unique suffix "
                             f"of at least {MIN_ACTION_SUFFIX} characters (see `opsconsole runs list`)")
        for matches in ([i for i in ids if i.startswith(text)], [i for i in ids if text in i]):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"run id {text!r} is ambiguous: {', '.join(matches[:5])}"
                                 + (" ..." if len(matches) > 5 else ""))
        raise UsageError(f"no run {text!r} (see `opsconsole runs list`)")

    def result(self, run_id: str) -> dict[str, Any] | None:
        return self.get(run_id).run_dir.read_result()

    def tail(self, run_id: str, from_end: bool = False) -> RunTail:
        return RunTail(self.get(run_id).dir, from_end=from_end)

    def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run is final; return result.json. TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        run_id = self.resolve_id(run_id)
        while True:
            record = self.get(run_id)
            if record.status in FINAL_STATUSES:
                result = record.run_dir.read_result()
                if result is None:
                    # final in the registry but no readable result (written before the registry update, so
                    # it is gone or damaged, not half-written): answer from the registry instead of waiting forever
                    why = "is missing" if not record.run_dir.path.exists() else "has no readable result.json"
                    return {"id": record.id, "kind": record.kind, "status": record.status,
                            "exit_code": record.exit_code, "signal": record.signal, "metrics": record.metrics,
                            "artifacts": [], "diagnoses": [], "error": f"run directory {record.dir} {why}"}
                # final (the GPU is free already) with the diagnosis still running: wait for it while
                # its supervisor lives (it gives the diagnosis 30 s at most)
                if not (result.get("diagnosis_pending") and is_alive(record.supervisor_pid, record.supervisor_started)):
                    return result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {record.status} after {timeout} s")
            time.sleep(POLL_S)

    def follow(self, run_id: str, from_end: bool = False, poll: float = POLL_S,
               tail: RunTail | None = None) -> Iterator[TailUpdate]:
        """Yield new log lines / events until the run is final and everything is read.

        from_end: start with the last 64 KiB of the log instead of its beginning;
        tail: continue an existing reader (e.g. after printing the last N lines).
        """
        record = self.get(run_id)
        tail = tail or RunTail(record.dir, from_end=from_end)
        last_check = 0.0
        while True:
            update = tail.poll()
            if update:
                yield update
            if tail.behind:
                continue
            now = time.monotonic()
            if now - last_check >= max(poll, 0.2):
                last_check = now
                if self.get(record.id).status in FINAL_STATUSES:
                    final = tail.poll()
                    while final:
                        yield final
                        final = tail.poll()
                    if tail.partial_line:  # a last line without a newline (e.g. a progress bar)
                        yield TailUpdate(lines=[tail.partial_line])
                    return
            time.sleep(poll)

    # --- acting -----------------------------------------------------------------------
    def stop(self, run_id: str, grace: float = DEFAULT_GRACE_S) -> RunRecord:
        """SIGTERM the job's process group, SIGKILL after `grace` s; the run ends `stopped`."""
        record = self.get(self.resolve_id(run_id, destructive=True))
        if not record.active:
            raise UsageError(f"run {record.id} is not running (status {record.status})")
        run = record.run_dir
        if not run.stop_marker.exists():
            write_json_atomic(run.stop_marker, {"t": time.time(), "grace_s": grace})
        pids = self._wait_for_pids(record)
        if pids:
            sigterm_then_kill(pids.get("pgid") or pids["pid"], pids["pid"], pids.get("pid_started"), grace)
        supervisor = pids.get("supervisor_pid") if pids else record.supervisor_pid
        sup_started = pids.get("supervisor_started") if pids else record.supervisor_started
        # the supervisor writes result.json, updates the registry, then exits
        wait_gone(lambda: is_alive(supervisor, sup_started), 15.0)
        return self.get(record.id)

    def _wait_for_pids(self, record: RunRecord, timeout: float = 10.0) -> dict[str, Any] | None:
        run = record.run_dir
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = run.read_pids()
            if pids or run.result.exists():
                return pids
            if not is_alive(record.supervisor_pid, record.supervisor_started) and record.supervisor_pid:
                return None
            time.sleep(0.05)
        return run.read_pids()

    def remove(self, run_id: str) -> RunRecord:
        record = self.get(self.resolve_id(run_id, destructive=True))
        if record.active:
            raise UsageError(f"run {record.id} is still {record.status}; stop it first (`opsconsole runs stop {record.id}`)")
        shutil.rmtree(record.dir, ignore_errors=True)
        self.store.delete(record.id)
        return record
