"""Helpers of the fault-injection suite: run the CLI as a user would, wait for a condition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from waiting import wait_for as _wait_for
from typing import Any


def opsconsole(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
               stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, input=stdin)


def start_run(*job_args: str, kind: str = "selftest") -> dict[str, Any]:
    """Start a background run through the CLI; return {"id", "dir", "status"}."""
    proc = opsconsole("run", kind, *job_args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """tests/waiting.wait_for with this suite's default timeout."""
    return _wait_for(condition, timeout, what)
