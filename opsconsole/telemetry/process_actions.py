"""Signalling a GPU process, safe by construction.

Only a process that this machine's live telemetry showed may be signalled:

- a simulated or replayed snapshot names pids of another (imagined) machine, so every
  action on them is refused with a message saying why;
- a process seen in another pid namespace cannot be addressed from here;
- just before the signal, the pid is pinned with a pidfd and its start time and owner are
  compared with the snapshot's: a pid reused since the sample (another program, another
  user) is refused, and the pidfd makes the check and the signal hit the same process.
"""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass

from .snapshot import GpuProcess, Snapshot

LIVE_SOURCE = "nvml"
START_TIME_TOLERANCE_S = 1.0  # create_time is derived from boot time + ticks: equal to within a tick


@dataclass(frozen=True)
class SignalOutcome:
    sent: bool
    message: str  # one line for the user, plain text


def action_refusal(snapshot: Snapshot | None, proc: GpuProcess) -> str | None:
    """Why no action may touch `proc` from this snapshot, or None if one may be offered."""
    if snapshot is None:
        return "no telemetry yet: nothing to act on"
    if snapshot.source != LIVE_SOURCE:
        return (f"this is {snapshot.source} data, not this machine's live telemetry: pid {proc.pid} is not a "
                "process here, so nothing is signalled")
    if not proc.visible:
        return f"pid {proc.pid} is in another pid namespace: cannot signal it from here"
    if proc.start_time is None:
        return f"pid {proc.pid}: its start time could not be read, so it cannot be told apart from a reused pid"
    return None


def send_signal_checked(snapshot: Snapshot | None, proc: GpuProcess, sig: int = _signal.SIGTERM) -> SignalOutcome:
    """Signal `proc` if it is still the process the snapshot showed (same start time and owner)."""
    refusal = action_refusal(snapshot, proc)
    if refusal:
        return SignalOutcome(False, refusal)
    import psutil

    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return SignalOutcome(False, f"pid {proc.pid} has already exited")
    except (OSError, AttributeError):
        pidfd = None  # no pidfd (old kernel): the re-check below still runs just before os.kill
    try:
        try:
            live = psutil.Process(proc.pid)
            started, owner = live.create_time(), _owner(live)
        except psutil.NoSuchProcess:
            return SignalOutcome(False, f"pid {proc.pid} has already exited")
        except psutil.Error as exc:
            return SignalOutcome(False, f"pid {proc.pid}: cannot check who it is now ({type(exc).__name__}); "
                                        "nothing is signalled")
        if abs(started - float(proc.start_time)) > START_TIME_TOLERANCE_S:  # type: ignore[arg-type]
            return SignalOutcome(False, f"pid {proc.pid} now belongs to another process (started "
                                        f"{started - float(proc.start_time):+.0f} s after the one shown): "  # type: ignore[arg-type]
                                        "the pid was reused; nothing is signalled")
        if proc.user and owner and owner != proc.user:
            return SignalOutcome(False, f"pid {proc.pid} is now owned by {owner}, not {proc.user}: the pid was "
                                        "reused; nothing is signalled")
        try:
            if pidfd is not None:
                _signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            return SignalOutcome(False, f"pid {proc.pid} has already exited")
        except PermissionError:
            return SignalOutcome(False, f"not allowed to signal pid {proc.pid} (another user's process?)")
        return SignalOutcome(True, f"{_signal.Signals(sig).name} sent to pid {proc.pid}")
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _owner(live: object) -> str | None:
    try:
        return live.username()  # type: ignore[attr-defined]
    except Exception:
        return None
