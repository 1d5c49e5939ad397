"""The registry: a corrupt database is moved aside and rebuilt from the run directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opsconsole.config import Settings
from opsconsole.paths import state_dir
from opsconsole.runs import RunManager, RunStore
from opsconsole.runs.store import DB_NAME


def test_corrupt_registry_is_rebuilt_from_run_dirs(manager: RunManager) -> None:
    finished = manager.launch("selftest", ["--lines", "2"])
    manager.wait(finished.id, timeout=30)
    failed = manager.launch("selftest", ["--lines", "1", "--raise", "boom"])
    manager.wait(failed.id, timeout=30)
    db = state_dir() / DB_NAME
    db.write_bytes(b"this is not an sqlite database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    store = RunStore()
    assert store.recovery_note and "rebuilt from 2 run dir(s)" in store.recovery_note
    assert list(state_dir().glob(f"{DB_NAME}.corrupt-*")), "the damaged file is kept, not deleted"
    rebuilt = {r.id: r for r in RunManager(Settings(), store=store).list()}
    assert rebuilt[finished.id].status == "ok" and rebuilt[finished.id].metrics["lines"] == 2
    assert rebuilt[failed.id].status == "failed" and rebuilt[failed.id].exit_code == 1


def test_two_corrupt_registries_in_one_second_keep_both_copies(monkeypatch) -> None:
    """The second kept-aside copy overwrote the first (same second, same name)."""
    import time as time_module

    monkeypatch.setattr(time_module, "strftime", lambda fmt, *a: "20261204-120000")
    db = state_dir() / DB_NAME
    kept = []
    for damage in (b"first damaged registry " * 50, b"second damaged registry " * 50):
        RunStore()  # a healthy registry exists
        db.write_bytes(damage)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        assert RunStore().recovery_note
        kept.append(damage)
    copies = sorted(p.read_bytes() for p in state_dir().glob(f"{DB_NAME}.corrupt-*") if p.suffix != "-wal")
    assert [c for c in copies if c in kept] == sorted(kept)


def test_cli_reports_the_recovery_on_stderr(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1"])
    manager.wait(record.id, timeout=30)
    db = state_dir() / DB_NAME
    db.write_bytes(b"\x00garbage" * 64)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "opsconsole", "runs", "list", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "rebuilt" in done.stderr
    assert [r["id"] for r in json.loads(done.stdout)] == [record.id]


def test_registry_and_state_dir_are_private() -> None:
    store = RunStore()
    assert store.path.stat().st_mode & 0o077 == 0
    assert state_dir().stat().st_mode & 0o077 == 0


def test_deleted_registry_is_rebuilt_and_said(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1"])
    manager.wait(record.id, timeout=30)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state_dir() / DB_NAME}{suffix}").unlink(missing_ok=True)
    store = RunStore()
    assert store.recovery_note and "missing" in store.recovery_note
    assert [(r.id, r.status) for r in store.list()] == [(record.id, "ok")]


def test_a_supervisor_that_cannot_start_leaves_a_crashed_run_with_its_reason(manager: RunManager,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the supervisor is started with the console's interpreter; make it fail at once
    monkeypatch.setattr("opsconsole.runs.manager.sys.executable", "/bin/false")
    record = manager.launch("selftest", ["--lines", "1"])
    result = manager.wait(record.id, timeout=90)
    assert result["status"] == "crashed" and "no result was written" in result["error"]


def test_a_damaged_result_json_does_not_hang_wait_or_show(manager: RunManager,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from opsconsole.cli import main

    record = manager.launch("selftest", ["--lines", "1"])
    manager.wait(record.id, timeout=30)
    (Path(record.dir) / "result.json").write_text("{ torn")
    result = manager.wait(record.id, timeout=5)
    assert result["status"] == "ok" and "no readable result.json" in result["error"]
    assert main(["runs", "show", record.id]) == 0
    assert "unreadable" in capsys.readouterr().out
