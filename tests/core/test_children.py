"""The child-lifecycle policy: own group, timeout, the whole group killed and reaped."""

from __future__ import annotations

import os
import time

import pytest

from opsconsole.children import run_child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_grandchild_too(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    result = run_child(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; sleep 60"], timeout=0.5)
    assert result.timed_out and result.returncode is None and not result.ok
    assert "started" in result.stdout
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the grandchild outlived its timed-out parent"


def test_a_finished_child_leaves_no_grandchild_in_its_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    result = run_child(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exit 4"], timeout=5)
    assert result.returncode == 4 and not result.timed_out
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_binary_output_is_decoded_and_missing_programs_raise_oserror():
    result = run_child(["printf", r"\377\376ok"], timeout=5)
    assert result.ok and result.stdout.endswith("ok")
    with pytest.raises(FileNotFoundError):
        run_child(["/nonexistent/program"], timeout=5)
