"""Child lifecycle: every short-lived child (probe, playbook command, helper check) runs here.

One policy, one place: the child gets its own session and process group, stdin is
closed, it has a timeout, and on timeout (or any exception while waiting) the whole
group is killed (SIGTERM, then SIGKILL) and reaped, so no grandchild outlives it.
Long-lived runs have their own supervisor (opsconsole.runs.supervisor); this module
is for children the caller waits on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# How long a group gets between SIGTERM and SIGKILL when it is cut short.
TERM_GRACE_S = 1.0


@dataclass(frozen=True)
class ChildResult:
    """What a finished (or cut short) child left: exit code, output, whether it timed out."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def kill_group(pgid: int, grace: float = TERM_GRACE_S) -> None:
    """SIGTERM the process group, wait up to `grace`, then SIGKILL what is left. Never raises."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(argv: Sequence[str], timeout: float, *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, input_text: str | None = None) -> ChildResult:
    """Run argv (no shell) in its own process group and wait at most `timeout` seconds.

    Raises OSError (FileNotFoundError, PermissionError) when argv[0] cannot be started;
    everything else, including a timeout, is in the result. Output is decoded as UTF-8
    with replacement, so binary output never raises.
    """
    argv = tuple(str(a) for a in argv)
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            close_fds=True, env=dict(env) if env is not None else None, cwd=cwd)
    # Pipes are drained by threads so that the wait is on the child itself: a grandchild that
    # keeps the pipes open must not keep us waiting once the child has exited.
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    readers = [threading.Thread(target=_drain, args=(pipe, chunks[name]), daemon=True)
               for name, pipe in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        if input_text is not None and proc.stdin is not None:
            try:
                proc.stdin.write(input_text.encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Done, timed out or interrupted: nothing of the child's group outlives this call.
        kill_group(proc.pid, grace=TERM_GRACE_S if timed_out else 0)
        proc.wait()
        for reader in readers:
            reader.join(timeout=1.0)
    return ChildResult(argv=argv, returncode=None if timed_out else proc.returncode,
                       stdout=b"".join(chunks["out"]).decode("utf-8", "replace"),
                       stderr=b"".join(chunks["err"]).decode("utf-8", "replace"),
                       timed_out=timed_out, seconds=time.monotonic() - start)


def _drain(pipe, sink: list[bytes], limit: int = 8 << 20) -> None:
    """Read a pipe to EOF, keeping at most `limit` bytes (the tail is what matters)."""
    kept = 0
    try:
        while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
            sink.append(chunk)
            kept += len(chunk)
            while kept > limit and len(sink) > 1:
                kept -= len(sink.pop(0))
    except (OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass
