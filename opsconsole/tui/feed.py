"""Telemetry off the UI thread: one sampling thread, latest-frame-wins messages.

The thread opens the source (which may be slow: NVML init, env probe), then loops:
sample -> post -> wait `refresh` seconds -> sample again. The next poll is only
scheduled once the previous one has finished, so samples never overlap. If a
sample hangs (NVML stuck in the driver), the UI notices through `stalled_for()`
and shows a banner; nothing on the UI thread ever waits for the source.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

if TYPE_CHECKING:
    from ..telemetry.snapshot import Snapshot


class Source(Protocol):
    def sample(self) -> "Snapshot": ...
    def close(self) -> None: ...


class SnapshotArrived(Message):
    """A new telemetry frame. A newer one still queued replaces an older one."""

    def __init__(self, snapshot: "Snapshot") -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


class TelemetryFeed:
    """Owns the one sampling thread; `post` delivers frames (e.g. app.post_message)."""

    def __init__(self, open_source: Callable[[], Source], post: Callable[[Message], Any], refresh: float) -> None:
        self._open_source = open_source
        self._post = post
        self.refresh = refresh
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampling_since: float | None = None
        self.samples = 0
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="opsconsole-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; never waits for a hung sample (the thread is a daemon)."""
        self._stop.set()
        self._wake.set()

    def poll_now(self) -> None:
        """Sample again without waiting for the rest of the interval."""
        self._wake.set()

    def stalled_for(self) -> float:
        """Seconds the current sample (or source start) has been running; 0 when idle."""
        since = self._sampling_since
        return 0.0 if since is None else time.monotonic() - since

    def _run(self) -> None:
        self._sampling_since = time.monotonic()
        try:
            source = self._open_source()
        except Exception as exc:  # a source that cannot open is shown, not raised
            from ..telemetry.snapshot import NvmlState, Snapshot

            self._sampling_since = None
            self.error = f"{type(exc).__name__}: {exc}"
            self._post(SnapshotArrived(Snapshot(time=time.time(), source="error",
                                                nvml=NvmlState(status="error", message=self.error))))
            return
        try:
            while not self._stop.is_set():
                self._sampling_since = time.monotonic()
                snapshot = source.sample()
                self._sampling_since = None
                self.samples += 1
                if self._stop.is_set():
                    break
                self._post(SnapshotArrived(snapshot))
                self._wake.wait(self.refresh)
                self._wake.clear()
        finally:
            self._sampling_since = None
            try:
                source.close()
            except Exception:
                pass


class TelemetryHistory:
    """Bounded per-GPU history (utilisation %, VRAM %), fed on the UI thread.

    Kept for every GPU whatever screen is shown, so a screen that comes back has
    its sparklines full.
    """

    def __init__(self, seconds: float = 300.0, refresh: float = 1.0) -> None:
        self.length = max(10, int(seconds / max(refresh, 0.05)))
        self.util: dict[int, deque[float | None]] = {}
        self.vram: dict[int, deque[float | None]] = {}
        self.host_cpu: deque[float | None] = deque(maxlen=self.length)

    def add(self, snapshot: "Snapshot") -> None:
        for gpu in snapshot.gpus:
            util = self.util.setdefault(gpu.index, deque(maxlen=self.length))
            vram = self.vram.setdefault(gpu.index, deque(maxlen=self.length))
            util.append(gpu.utilization.gpu)
            fraction = gpu.memory.used_fraction
            vram.append(None if fraction is None else fraction * 100.0)
        self.host_cpu.append(snapshot.host.cpu_percent)
