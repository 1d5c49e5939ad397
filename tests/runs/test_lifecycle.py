"""Launch, finish, survive the launcher, follow, stop, crash: the lifecycle a user sees."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from opsconsole.paths import state_dir
from opsconsole.redact import REDACTED
from opsconsole.runs import RunManager

from runs_helpers import log_text, wait_for

RESULT_KEYS = {"id", "kind", "status", "exit_code", "signal", "metrics", "artifacts", "diagnoses"}


def _kb_available() -> bool:
    try:
        from opsconsole.kb import match_log  # noqa: F401
    except ImportError:
        return False
    return True


def test_launch_finishes_ok_with_result_json(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "3", "--artifact", "--device", "cpu"])
    result = manager.wait(record.id, timeout=30)
    assert RESULT_KEYS <= set(result)
    assert result["id"] == record.id and result["kind"] == "selftest"
    assert (result["status"], result["exit_code"], result["signal"]) == ("ok", 0, None)
    assert result["metrics"]["lines"] == 3
    assert [Path(a["path"]).name for a in result["artifacts"]] == ["selftest.txt"]
    assert Path(result["artifacts"][0]["path"]).read_text() == "3 lines\n"
    on_disk = json.loads((Path(record.dir) / "result.json").read_text())
    assert on_disk == result
    assert "selftest line 3/3" in log_text(record.dir)
    listed = {r.id: r for r in manager.list()}
    assert listed[record.id].status == "ok" and listed[record.id].exit_code == 0
    assert listed[record.id].metrics["lines"] == 3


def test_run_survives_the_launching_process(tmp_path: Path) -> None:
    launcher = subprocess.run(
        [sys.executable, "-m", "opsconsole", "run", "selftest", "--lines", "4", "--interval", "0.5", "--json"],
        capture_output=True, text=True, timeout=60, check=True)
    run_id = json.loads(launcher.stdout)["id"]
    manager = RunManager()
    assert manager.get(run_id).status in ("starting", "running")  # the launcher is gone, the run is not
    result = manager.wait(run_id, timeout=30)
    assert result["status"] == "ok" and result["metrics"]["lines"] == 4
    listed = subprocess.run([sys.executable, "-m", "opsconsole", "runs", "list", "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "ok")]


def test_follow_yields_every_line_in_order(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "8", "--interval", "0.05"])
    lines = [line for update in manager.follow(record.id) for line in update.lines]
    assert [line for line in lines if line.startswith("selftest")] == [f"selftest line {i}/8" for i in range(1, 9)]
    assert manager.get(record.id).status == "ok"


def test_stop_ends_the_run_as_stopped(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1"])
    wait_for(lambda: "selftest line 1/" in log_text(record.dir), what="first line")
    stopped = manager.stop(record.id, grace=5)
    assert stopped.status == "stopped"
    result = manager.result(record.id)
    assert result["status"] == "stopped" and result["exit_code"] == 143  # the job saw SIGTERM and finished
    assert result["metrics"]["lines"] < 1000


def test_stop_escalates_to_sigkill_after_the_grace_period(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1", "--ignore-sigterm"])
    wait_for(lambda: "selftest line 1/" in log_text(record.dir), what="first line")
    assert manager.stop(record.id, grace=0.5).status == "stopped"
    assert manager.result(record.id)["signal"] == signal.SIGKILL


def test_sigkilled_job_is_crashed_with_signal_and_diagnosed(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1"])
    pids = wait_for(lambda: manager.get(record.id).pid, what="job pid")
    wait_for(lambda: "selftest line 1/" in log_text(record.dir), what="first line")
    os.kill(pids, signal.SIGKILL)
    result = manager.wait(record.id, timeout=30)
    assert (result["status"], result["signal"], result["exit_code"]) == ("crashed", 9, None)
    assert "SIGKILL" in log_text(record.dir) and "SIGKILL" in result["error"]
    # diagnosed from the job's lines only: selftest lines explain nothing, and our own note is not evidence
    assert result["diagnoses"] == [] and "diagnosis_pending" not in result


def test_job_that_raises_is_failed_and_diagnosed(manager: RunManager) -> None:
    message = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"
    record = manager.launch("selftest", ["--lines", "1", "--raise", message])
    result = manager.wait(record.id, timeout=30)
    assert (result["status"], result["exit_code"]) == ("failed", 1)
    assert "Traceback" in log_text(record.dir)
    assert message in result["error"]
    if not _kb_available():
        pytest.skip("KB not importable yet")
    assert result["diagnoses"]
    top = result["diagnoses"][0]
    assert any("out of memory" in ev["text"] for ev in top["evidence"])


def test_dead_supervisor_and_job_are_marked_crashed_on_next_look(manager: RunManager) -> None:
    record = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1"])
    wait_for(lambda: manager.get(record.id).pid, what="job pid")
    live = manager.get(record.id)
    os.kill(live.supervisor_pid, signal.SIGKILL)  # power loss, OOM killer taking both
    os.kill(live.pid, signal.SIGKILL)
    wait_for(lambda: manager.get(record.id).status == "crashed", what="crashed status")
    result = manager.result(record.id)
    assert result["status"] == "crashed" and result["exit_code"] is None


def test_remove_refuses_a_running_run_and_deletes_a_finished_one(manager: RunManager) -> None:
    from opsconsole.errors import UsageError

    running = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1"])
    with pytest.raises(UsageError, match="stop it first"):
        manager.remove(running.id)
    manager.stop(running.id, grace=5)
    manager.remove(running.id)
    assert not Path(running.dir).exists()
    assert running.id not in [r.id for r in manager.list()]


def test_run_dirs_are_private_and_cmd_json_redacts_secrets(manager: RunManager, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_" + "Q" * 34
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("MY_DB_URL", "postgres://alice:s3cretpw@db/x")
    record = manager.launch("selftest", ["--lines", "1", "--artifact"])
    manager.wait(record.id, timeout=30)
    run_dir = Path(record.dir)
    for path in (state_dir(), state_dir() / "runs", run_dir, run_dir / "artifacts"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in run_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    text = (run_dir / "cmd.json").read_text()
    assert token not in text and "s3cretpw" not in text
    cmd = json.loads(text)
    assert cmd["env"]["HF_TOKEN"] == REDACTED
    assert cmd["python"] and cmd["cwd"] == os.getcwd()
    assert cmd["argv"][1:4] == ["-m", "opsconsole.jobs", "selftest"]


def test_flood_of_a_million_lines_finishes_and_tails_in_bounded_chunks(manager: RunManager) -> None:
    from opsconsole.runs import RunTail
    from opsconsole.runs.tail import MAX_LINE_BYTES, READ_CHUNK

    record = manager.launch("selftest", ["--flood", "--lines", "0"])
    assert manager.wait(record.id, timeout=120)["status"] == "ok"
    tail = RunTail(record.dir)
    count, last, polls = 0, "", 0
    while True:
        lines = tail.poll_log()
        if not lines and not tail.log_behind:
            break
        polls += 1
        assert sum(len(line) + 1 for line in lines) <= READ_CHUNK + MAX_LINE_BYTES  # chunk + carried partial line
        count += len(lines)
        last = next((line for line in reversed(lines) if line.startswith("flood")), last)
    assert last == "flood line 999999" and count >= 1_000_000
    assert polls > 1  # read in bounded chunks, not in one go


def test_nothing_the_job_started_outlives_the_run(manager: RunManager) -> None:
    import re

    import psutil

    record = manager.launch("selftest", ["--lines", "1", "--orphan"])
    assert manager.wait(record.id, timeout=30)["status"] == "ok"
    orphan = int(re.search(r"orphan pid (\d+)", log_text(record.dir)).group(1))
    wait_for(lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the orphan to be gone")
