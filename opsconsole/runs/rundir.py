"""The run directory: `$XDG_STATE_HOME/opsconsole/runs/<id>/`.

    cmd.json        argv, redacted env, interpreter, cwd, kind, device, GPUs
    output.log      raw stdout + stderr of the job
    events.jsonl    the event protocol (opsconsole.events)
    result.json     final status, exit code / signal, metrics, artifacts, diagnoses
    pids.json       supervisor and job pids (with start times, to survive pid reuse)
    stop.json       present once someone asked the run to stop
    supervisor.log  the supervisor's own messages (empty when all went well)
    artifacts/      images, adapters, files written by the job

Everything the registry holds can be rebuilt from these files.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..events import ARTIFACTS_DIR, CMD_FILE, EVENTS_FILE, LOG_FILE, RESULT_FILE
from ..paths import ensure_private_dir, state_dir
from ..records import checked_result

PIDS_FILE = "pids.json"
STOP_FILE = "stop.json"
SUPERVISOR_LOG = "supervisor.log"


def runs_root() -> Path:
    return state_dir() / "runs"


def new_run_id(kind: str, now: float | None = None) -> str:
    """Short, sortable, unique: 20261126-061530-gemma-infer-3f2a (UTC time)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{kind}-{secrets.token_hex(2)}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers never see half a file (temp file + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (torn, foreign)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class RunDir:
    """Paths and small readers/writers of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    cmd = property(lambda self: self.path / CMD_FILE)
    log = property(lambda self: self.path / LOG_FILE)
    events = property(lambda self: self.path / EVENTS_FILE)
    result = property(lambda self: self.path / RESULT_FILE)
    pids = property(lambda self: self.path / PIDS_FILE)
    stop_marker = property(lambda self: self.path / STOP_FILE)
    supervisor_log = property(lambda self: self.path / SUPERVISOR_LOG)
    artifacts = property(lambda self: self.path / ARTIFACTS_DIR)

    def create(self) -> "RunDir":
        ensure_private_dir(self.path.parent)
        self.path.mkdir(mode=0o700)  # fails if it exists: ids are unique
        os.chmod(self.path, 0o700)
        ensure_private_dir(self.artifacts)
        for name in (self.log, self.events):
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        return self

    def read_cmd(self) -> dict[str, Any] | None:
        return read_json(self.cmd)

    def remember_secrets(self) -> None:
        """Before showing this run's text: scrub the secret values of the environment it ran with
        (kept in cmd.json as fingerprints), even if this console's environment lacks them."""
        from ..redact import remember_fingerprints

        cmd = self.read_cmd()
        if isinstance(cmd, dict) and cmd.get("secret_fingerprints"):
            remember_fingerprints(cmd["secret_fingerprints"])

    def read_result(self) -> dict[str, Any] | None:
        """result.json with its types checked (a wrong field is emptied and named in record_problems)."""
        return checked_result(read_json(self.result))

    def read_pids(self) -> dict[str, Any] | None:
        return read_json(self.pids)

    def stop_requested(self) -> bool:
        return self.stop_marker.exists()
