"""RunTail: incremental, bounded-memory reader of a run's events.jsonl and output.log.

Each poll reads only the bytes appended since the last one (by offset); a torn
last line waits for its end; a truncated or replaced file is read again from
its start. For display, `\\r` progress redraws keep only their last segment and
ANSI escape sequences are stripped. The files on disk are never modified.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import EVENTS_FILE, LOG_FILE, parse_event_line
from ..redact import redact_text
from .rundir import RunDir

READ_CHUNK = 1 << 20          # bytes read per file per poll at most (a flood is consumed over several polls)
MAX_LINE_BYTES = 64 * 1024    # a longer line is cut (display) so memory stays bounded
PARTIAL_TRIM_BYTES = 4096     # an unterminated line longer than this drops its overwritten \r segments
HISTORY = 5000                # progress events kept for curves

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI: colours, cursor moves, erase line
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*\x1b\\"          # DCS / SOS / PM / APC strings
    r"|\x1b[@-Z\\-_]"                      # other two-byte escapes
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_ansi(text: str) -> str:
    return _CONTROL.sub("", _ANSI.sub("", text))


def normalize_line(raw: str) -> str:
    """A display line: last non-empty `\\r` segment (what a terminal would show), ANSI stripped,
    secrets redacted (a job may print a token or a URL with a password)."""
    raw = raw.rstrip("\r")
    if "\r" in raw:
        for segment in reversed(raw.split("\r")):
            shown = strip_ansi(segment)
            if shown.strip():
                return redact_text(shown.rstrip())
        return ""
    return redact_text(strip_ansi(raw).rstrip())


def _last_visible_segments(partial: bytes) -> bytes:
    """Drop the `\r` segments a terminal would have overwritten, keeping what normalize_line shows."""
    segments = partial.split(b"\r")
    for index in range(len(segments) - 1, -1, -1):
        if strip_ansi(segments[index].decode("utf-8", "replace")).strip():
            return b"\r".join(segments[index:])
    return segments[-1]


class IncrementalLines:
    """Complete lines appended to one file since the last call, by byte offset."""

    def __init__(self, path: Path, start_at_end: bool = False, backlog_bytes: int = 0) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        self._ident: tuple[int, int] | None = None
        if start_at_end:
            self._seek_near_end(backlog_bytes)

    def _seek_near_end(self, backlog: int) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        self._ident = (st.st_dev, st.st_ino)
        self.offset = max(0, st.st_size - backlog)
        if self.offset > 0:
            with open(self.path, "rb") as fh:  # drop the first, probably partial, line
                fh.seek(self.offset - 1)
                head = fh.read(min(backlog, MAX_LINE_BYTES) + 1)
            cut = head.find(b"\n")
            self.offset += cut if cut >= 0 else len(head) - 1

    @property
    def partial(self) -> bytes:
        """The unterminated last line so far (e.g. a live progress bar)."""
        return self._partial

    def read(self, max_bytes: int = READ_CHUNK) -> list[bytes]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
            self.offset, self._partial = 0, b""  # replaced or truncated: start over
        self._ident = ident
        if st.st_size <= self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(min(max_bytes, st.st_size - self.offset))
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > PARTIAL_TRIM_BYTES and b"\r" in self._partial:
            self._partial = _last_visible_segments(self._partial)  # a live \r progress bar
        if len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial[:MAX_LINE_BYTES])
            self._partial = b""
        return [line[:MAX_LINE_BYTES] for line in lines]

    def pending(self) -> bool:
        try:
            return os.stat(self.path).st_size > self.offset
        except OSError:
            return False


@dataclass
class TailUpdate:
    """What one poll found: new display lines and new events."""

    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lines or self.events)


class RunTail:
    """Follow a run directory. Call `poll()` repeatedly (e.g. every 100 ms).

    State kept for display: `progress` (last progress event), `metrics` (latest
    value of each metric), `history` (bounded progress events), `artifacts`,
    `findings`, `start`, `finish`.
    """

    def __init__(self, run_dir: str | os.PathLike[str], from_end: bool = False, backlog_bytes: int = 64 * 1024) -> None:
        self.run_dir = Path(run_dir)
        RunDir(self.run_dir).remember_secrets()
        self._log = IncrementalLines(self.run_dir / LOG_FILE, start_at_end=from_end, backlog_bytes=backlog_bytes)
        self._events = IncrementalLines(self.run_dir / EVENTS_FILE)
        self.start: dict[str, Any] | None = None
        self.finish: dict[str, Any] | None = None
        self.progress: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.artifacts: list[dict[str, Any]] = []
        self.findings: list[dict[str, Any]] = []

    def poll_log(self, max_bytes: int = READ_CHUNK) -> list[str]:
        return [normalize_line(raw.decode("utf-8", "replace")) for raw in self._log.read(max_bytes)]

    def poll_events(self, max_bytes: int = READ_CHUNK) -> list[dict[str, Any]]:
        events = []
        for raw in self._events.read(max_bytes):
            event = parse_event_line(raw.decode("utf-8", "replace"))
            if event is not None:
                self._apply(event)
                events.append(event)
        return events

    def poll(self, max_bytes: int = READ_CHUNK) -> TailUpdate:
        return TailUpdate(lines=self.poll_log(max_bytes), events=self.poll_events(max_bytes))

    @property
    def partial_line(self) -> str:
        """The log's unterminated last line, normalised (a live tqdm bar shows here)."""
        return normalize_line(self._log.partial.decode("utf-8", "replace"))

    @property
    def behind(self) -> bool:
        """True while bytes of either file wait to be read (a flood larger than one poll)."""
        return self.log_behind or self._events.pending()

    @property
    def log_behind(self) -> bool:
        return self._log.pending()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "progress":
            self.progress = event
            self.history.append(event)
            metrics = event.get("metrics")
            if isinstance(metrics, dict):
                self.metrics.update(metrics)
        elif kind == "metric" and "name" in event:
            self.metrics[str(event["name"])] = event.get("value")
        elif kind == "artifact":
            self.artifacts.append(event)
        elif kind == "finding":
            self.findings.append(event)
        elif kind == "start":
            self.start = event
        elif kind == "finish":
            self.finish = event
            if isinstance(event.get("metrics"), dict):
                self.metrics.update(event["metrics"])
