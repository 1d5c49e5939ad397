"""The detached supervisor of one run: `python -m opsconsole.runs.supervisor [--state-dir D] RUN_DIR -- ARGV...`.

Started by RunManager in its own session (so it outlives the console and the SSH
link). It starts the job in its own session / process group with stdout+stderr
to output.log, records the pids, waits, records the exit code or signal, writes
result.json (diagnosed with the KB on failure) and updates the registry.
It runs with the console's interpreter; the job runs with the user's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .procs import descendants, signal_group, start_time
from .result import build_result, crash_note, diagnose_within, oom_kill_count
from .rundir import RunDir, write_json_atomic
from .store import RunStore

DIAGNOSIS_LIMIT_S = 30.0  # the post-mortem diagnosis of a failed run; a normal one takes < 1 s


def become_subreaper() -> bool:
    """Linux: orphans of the job (e.g. torchrun workers in their own sessions) are re-parented to us.

    So nothing a run started can outlive it unnoticed: see kill_leftovers().
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def kill_leftovers(pgid: int) -> None:
    """SIGKILL what the job left behind: its process group, and any descendant re-parented to us."""
    signal_group(pgid, signal.SIGKILL)
    for proc in descendants(os.getpid()):
        try:
            proc.kill()
        except Exception:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # reap them
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


class Supervisor:
    def __init__(self, run: RunDir, argv: list[str], store: RunStore) -> None:
        self.run, self.argv, self.store = run, argv, store
        self.proc: subprocess.Popen[bytes] | None = None
        self.oom_kills_at_start = oom_kill_count()  # a SIGKILL is blamed on OOM only if this count rises

    def _forward_stop(self, signum: int, frame: object) -> None:
        """SIGTERM/SIGINT to the supervisor (shutdown, `kill`) stops the job the same way `runs stop` does."""
        if self.proc is not None:
            try:
                if not self.run.stop_marker.exists():
                    write_json_atomic(self.run.stop_marker, {"t": time.time(), "by": f"signal {signum} to supervisor"})
            except OSError:
                pass
            signal_group(self.proc.pid, signal.SIGTERM)

    def start_job(self) -> subprocess.Popen[bytes]:
        log_fd = os.open(self.run.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        finally:
            os.close(log_fd)

    def run_job(self) -> int:
        run_id = self.run.id
        me = os.getpid()
        if self.run.stop_requested():  # stopped before it even started
            return self.finish(exit_code=None, sig=None)
        try:
            self.proc = self.start_job()
        except OSError as exc:
            self._append_log(f"[opsconsole] could not start the job: {exc}")
            return self.finish(exit_code=127, sig=None)
        pids = {"supervisor_pid": me, "supervisor_started": start_time(me),
                "pid": self.proc.pid, "pid_started": start_time(self.proc.pid), "pgid": self.proc.pid}
        write_json_atomic(self.run.pids, pids)
        self.store.update_if_active(run_id, status="running", pid=pids["pid"], pid_started=pids["pid_started"],
                                    supervisor_pid=me, supervisor_started=pids["supervisor_started"])
        returncode = self.proc.wait()
        kill_leftovers(self.proc.pid)
        if returncode < 0:
            return self.finish(exit_code=None, sig=-returncode)
        return self.finish(exit_code=returncode, sig=None)

    def finish(self, exit_code: int | None, sig: int | None) -> int:
        """result.json and the registry first (that releases the run's GPU), then the post-mortem
        diagnosis within DIAGNOSIS_LIMIT_S, written into result.json when it is ready."""
        from .result import read_job_events

        now = oom_kill_count()
        oom_kills = now - self.oom_kills_at_start if now is not None and self.oom_kills_at_start is not None else None
        note = None
        if read_job_events(self.run.events).finish is None and not self.run.stop_requested():
            note = crash_note(sig, exit_code, oom_kills)
            self._append_log(note)
        result = build_result(self.run, exit_code, sig, note=note.splitlines()[0] if note else None,
                              diagnose_now=False)
        write_json_atomic(self.run.result, result)
        self.store.update(self.run.id, status=result["status"], ended_at=result["ended_at"], exit_code=exit_code,
                          signal=sig, metrics=result["metrics"])
        if result.get("diagnosis_pending"):
            write_json_atomic(self.run.result, diagnose_within(self.run, result, DIAGNOSIS_LIMIT_S, oom_kills))
        return 0

    def _append_log(self, line: str) -> None:
        with open(self.run.log, "a", encoding="utf-8") as fh:
            fh.write("\n" + line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opsconsole-supervisor")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    job_argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    become_subreaper()
    run = RunDir(args.run_dir)
    store = RunStore(args.state_dir)
    supervisor = Supervisor(run, job_argv, store)
    signal.signal(signal.SIGTERM, supervisor._forward_stop)
    signal.signal(signal.SIGINT, supervisor._forward_stop)
    try:
        return supervisor.run_job()
    except BaseException:
        traceback.print_exc()  # goes to supervisor.log
        try:
            if not run.result.exists():
                supervisor.finish(exit_code=None, sig=None)
        except BaseException:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
