"""Follow one run off the UI thread: a reader thread tails the run dir into a bounded buffer.

The UI takes what has accumulated every ~80 ms (`take()`) and writes it to its Log
in one batch; lines beyond the buffer are counted, not kept (the file has them all).
During a flood only the lines that can still be shown are normalised (ANSI, \r,
redaction): the rest are counted as raw bytes, which keeps the reader thread from
starving the UI thread of the GIL.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import LOG_FILE
from ..runs.tail import IncrementalLines, RunTail, normalize_line

POLL_S = 0.08
READ_BYTES = 256 * 1024
LOSS_KEYS = ("loss", "train_loss")


@dataclass
class FollowState:
    """What the UI needs of a run, copied out under the lock."""

    lines: list[str] = field(default_factory=list)
    skipped: int = 0                       # lines that arrived but did not fit the batch
    total_lines: int = 0
    start: dict[str, Any] | None = None
    finish: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    loss: list[tuple[float, float]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    partial: str = ""
    changed: bool = False


class RunFollower:
    def __init__(self, run_dir: str | Path, batch_lines: int = 300, backlog_bytes: int = 128 * 1024) -> None:
        self.run_dir = Path(run_dir)
        self._tail = RunTail(self.run_dir)  # events only (progress, metrics, artifacts, finish)
        self._log = IncrementalLines(self.run_dir / LOG_FILE, start_at_end=True, backlog_bytes=backlog_bytes)
        self._lock = threading.Lock()
        self._pending: deque[str] = deque(maxlen=batch_lines)
        self._skipped = 0
        self._total = 0
        self._loss: list[tuple[float, float]] = []
        self._changed = True
        self._state: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{self.run_dir.name}", daemon=True)

    def start(self) -> "RunFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw_lines = self._log.read(READ_BYTES)
                events = self._tail.poll_events(READ_BYTES)
            except OSError:
                raw_lines, events = [], []
            update = bool(raw_lines or events)
            behind = self._log.pending()  # events are few and small: one read keeps up
            if update:
                keep = self._pending.maxlen or 0
                shown = [normalize_line(raw.decode("utf-8", "replace")) for raw in raw_lines[-keep:]]
                with self._lock:
                    overflow = len(self._pending) + len(shown) - keep
                    self._skipped += max(0, overflow) + len(raw_lines) - len(shown)
                    self._pending.extend(shown)
                    self._total += len(raw_lines)
                    for event in events:
                        if event["type"] == "progress":
                            metrics = event.get("metrics") or {}
                            loss = next((metrics[k] for k in LOSS_KEYS if isinstance(metrics.get(k), (int, float))), None)
                            if loss is not None:
                                self._loss.append((float(event.get("step", len(self._loss))), float(loss)))
                        elif event["type"] == "metric" and event.get("name") in LOSS_KEYS:
                            self._loss.append((float(event.get("step", len(self._loss))), float(event.get("value", 0.0))))
                    self._changed = True
                    tail = self._tail
                    self._state = dict(start=tail.start, finish=tail.finish, progress=tail.progress,
                                       metrics=dict(tail.metrics), artifacts=list(tail.artifacts),
                                       findings=list(tail.findings),
                                       partial=normalize_line(self._log.partial.decode("utf-8", "replace")))
            if self._tail.finish is not None and not behind and not update:
                # finished and drained: slow down, but keep reading (a late flush may follow)
                self._stop.wait(0.5)
            elif not (update and behind):
                self._stop.wait(POLL_S)

    def take(self) -> FollowState:
        """Everything new since the last call (lines) plus the current run state."""
        with self._lock:
            state = FollowState(lines=list(self._pending), skipped=self._skipped, total_lines=self._total,
                                loss=list(self._loss), changed=self._changed, **self._state)
            self._pending.clear()
            self._skipped = 0
            self._changed = False
        return state
