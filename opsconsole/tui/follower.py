"""Follow one run off the UI thread: a reader thread tails the run dir into a bounded buffer.

The UI takes what has accumulated every ~80 ms (`take()`) and writes it to its Log
in one batch; lines beyond the buffer are counted, not kept (the file has them all).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs.tail import RunTail

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
    def __init__(self, run_dir: str | Path, batch_lines: int = 1000, backlog_bytes: int = 128 * 1024) -> None:
        self.run_dir = Path(run_dir)
        self._tail = RunTail(self.run_dir, from_end=True, backlog_bytes=backlog_bytes)
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
                update = self._tail.poll(READ_BYTES)
            except OSError:
                update = None
            if update:
                with self._lock:
                    overflow = len(self._pending) + len(update.lines) - (self._pending.maxlen or 0)
                    if overflow > 0:
                        self._skipped += overflow
                    self._pending.extend(update.lines)
                    self._total += len(update.lines)
                    for event in update.events:
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
                                       findings=list(tail.findings), partial=tail.partial_line)
            if self._tail.finish is not None and not self._tail.behind and not update:
                # finished and drained: slow down, but keep reading (a late flush may follow)
                self._stop.wait(0.5)
            elif not (update and self._tail.behind):
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
