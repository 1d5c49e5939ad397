"""Process facts the run manager needs: is this pid still *our* process, and signalling groups.

A pid alone is not an identity (pids are reused), so every pid is stored with its
start time and compared with psutil's create_time.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

_START_TOLERANCE_S = 1.0


def start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def is_alive(pid: int | None, started: float | None = None) -> bool:
    """True while `pid` runs and (when known) was started at `started` (not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and abs(proc.create_time() - started) > _START_TOLERANCE_S:
            return False
        return True
    except (psutil.Error, OSError):
        return False


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def signal_processes(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.Error, OSError):
            pass


def wait_gone(check, timeout: float, interval: float = 0.05) -> bool:
    """Poll `check()` (True = still alive) until False or timeout; True when gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(interval)
    return not check()


def sigterm_then_kill(pgid: int, pid: int, started: float | None, grace: float) -> str:
    """SIGTERM the job's group, SIGKILL it (and strays in other groups) after `grace` seconds.

    Returns "not-running", "terminated" or "killed".
    """
    if not is_alive(pid, started):
        return "not-running"
    strays = descendants(pid)  # torchrun workers may live in their own sessions
    signal_group(pgid, signal.SIGTERM)
    signal_processes([p for p in strays if _pgid(p) != pgid], signal.SIGTERM)
    if wait_gone(lambda: is_alive(pid, started), grace):
        signal_processes([p for p in strays if p.is_running()], signal.SIGKILL)
        return "terminated"
    strays += descendants(pid)
    signal_group(pgid, signal.SIGKILL)
    signal_processes(strays, signal.SIGKILL)
    wait_gone(lambda: is_alive(pid, started), 5.0)
    return "killed"


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None
