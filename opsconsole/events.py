"""The run event protocol (child -> console), see shared DESIGN.md.

The child appends one JSON object per line to the run's `events.jsonl`; every
object has `t` (unix time, float) and `type`. Types:

    start     {"kind", "params", "pid", "device", "dtype"}
    progress  {"step", "total", "unit", "metrics": {...}}   # unit: "step" | "token" | "image" ...
    metric    {"name", "value", "step"?}                     # one scalar, e.g. ttft_s
    artifact  {"path", "kind"}                               # kind: "image" | "adapter" | "model" | "file"
    finding   {"severity", "message", "kb"?}                 # e.g. black image, NaN logits
    finish    {"status": "ok|failed|stopped", "summary": {...}, "metrics": {...}, "error"?: str}

This module is imported by the child (jobs/) and by the console (runs/), so it
must stay free of heavy imports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from .records import valid_event
from .redact import redact_tree

EVENT_TYPES = ("start", "progress", "metric", "artifact", "finding", "finish")
EVENTS_FILE = "events.jsonl"
LOG_FILE = "output.log"
RESULT_FILE = "result.json"
CMD_FILE = "cmd.json"
ARTIFACTS_DIR = "artifacts"


class EventWriter:
    """Append protocol events to events.jsonl; each line is flushed at once.

    Only rank 0 of a multi-process job should write (pass enabled=False elsewhere).
    """

    def __init__(self, path: str | os.PathLike[str] | None, enabled: bool = True) -> None:
        self.path = Path(path) if path else None
        self.enabled = enabled and self.path is not None
        self._fh: TextIO | None = None

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        # the job has the run's environment: secret values it reports never reach the file
        event = {"t": round(time.time(), 3), "type": type_, **redact_tree(fields)}
        if self.enabled:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")  # type: ignore[arg-type]
            self._fh.write(json.dumps(event, default=_json_default) + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()  # numpy / torch scalars
    if isinstance(value, Path):
        return str(value)
    return str(value)


def parse_event_line(line: str) -> dict[str, Any] | None:
    """Parse one events.jsonl line; a torn or foreign line gives None, never an exception."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES or not valid_event(event):
        return None  # a wrong-typed event (a metric with value null) is dropped like a torn line
    return event
