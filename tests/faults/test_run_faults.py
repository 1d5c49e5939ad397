"""Run faults: killed child, killed console, disk full, missing/gated model, GPU lock, corrupt registry/run dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from opsconsole.config import Settings
from opsconsole.errors import UsageError
from opsconsole.runs import RunManager, RunStore

from faults_helpers import opsconsole, read_text, start_run, wait_for


def result_of(run_id: str) -> dict:
    shown = opsconsole("runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def wait_final(run_id: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (r := result_of(run_id))["result"] and r, timeout, f"run {run_id} to end")


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_child_sigkilled_by_a_user_is_crashed_and_not_blamed_on_oom(sig: int) -> None:
    """Our own hint line ("the usual sender is the kernel oom-killer") was diagnosed as OOM: now
    the kernel's OOM count decides, and a kill -9 with no OOM kill says so."""
    from opsconsole.runs.result import oom_kill_count

    run = start_run("--lines", "1000", "--interval", "0.05")
    pids = wait_for(lambda: json.loads(read_text(Path(run["dir"]) / "pids.json") or "null"), what="pids.json")
    wait_for(lambda: "selftest line 2/" in read_text(Path(run["dir"]) / "output.log"), what="output")
    os.kill(pids["pid"], sig)
    shown = wait_final(run["id"])
    result = shown["result"]
    assert (result["status"], result["signal"]) == ("crashed", int(sig))
    assert "SIGKILL" in result["error"]
    assert "cpu-ram-oom-killed" not in [d["id"] for d in result["diagnoses"]], result["diagnoses"]
    text = opsconsole("runs", "show", run["id"]).stdout
    assert "crashed" in text and "SIGKILL" in text
    log = read_text(Path(run["dir"]) / "output.log")
    counted = "does not count OOM kills" if oom_kill_count() is None else "counted no OOM kill during the run"
    assert counted in log


def test_console_sigkilled_mid_run_the_run_goes_on_and_reattach_shows_the_whole_log() -> None:
    console = subprocess.Popen([sys.executable, "-m", "opsconsole", "run", "selftest", "--lines", "40", "--interval",
                                "0.05", "--foreground"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = console.stderr.readline()
    run_id = re.search(r"run (\S+) started", first).group(1)
    wait_for(lambda: "selftest line 3/" in opsconsole("runs", "logs", run_id).stdout, what="a few lines")
    console.kill()
    console.wait(timeout=10)
    attach = opsconsole("runs", "attach", run_id, timeout=60)
    assert attach.returncode == 0, attach.stderr
    numbers = [int(n) for n in re.findall(r"selftest line (\d+)/40", attach.stdout)]
    assert numbers == list(range(1, 41))  # the whole log, from the first line, none twice
    assert wait_final(run_id)["result"]["status"] == "ok"


def test_disk_full_while_writing_is_a_clear_error_and_the_registry_stays_consistent(tmp_path: Path) -> None:
    # RLIMIT_FSIZE in the child: writes past 64 KiB fail with EFBIG, as on a full disk.
    python = tmp_path / "python-small-disk"
    python.write_text(f"#!/bin/sh\nulimit -f 64\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    full = opsconsole("run", "selftest", "--flood", "--python", str(python), "--foreground", "--json", timeout=120)
    result = json.loads(full.stdout)
    assert full.returncode == 2 and result["status"] == "failed"
    assert "file size limit" in result["error"] and "File too large" in result["error"]
    listed = json.loads(opsconsole("runs", "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(result["id"], "failed")]
    after = opsconsole("run", "selftest", "--lines", "2", "--foreground", "--json")
    assert json.loads(after.stdout)["status"] == "ok"
    assert {r["status"] for r in json.loads(opsconsole("runs", "list", "--json").stdout)} == {"failed", "ok"}


def test_missing_model_is_one_clear_line_and_nothing_is_registered(tmp_path: Path) -> None:
    missing = opsconsole("run", "gemma-infer", "--model", "google/gemma-2-2b-it", "--device", "cpu")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    assert "not in the local Hugging Face cache" in missing.stderr and "huggingface-cli download" in missing.stderr
    nopath = opsconsole("run", "sd-infer", "--model", str(tmp_path / "nope"), "--device", "cpu")
    assert nopath.returncode == 3 and "no such file or directory" in nopath.stderr
    assert json.loads(opsconsole("runs", "list", "--json").stdout) == []


def test_gated_model_error_in_a_log_is_diagnosed(tmp_path: Path) -> None:
    log = tmp_path / "gated.log"
    log.write_text(
        "OSError: You are trying to access a gated repo.\n"
        "Make sure to have access to it at https://huggingface.co/google/gemma-2-2b-it.\n"
        "401 Client Error. (Request ID: Root=1-abc)\n"
        "Cannot access gated repo for url https://huggingface.co/google/gemma-2-2b-it/resolve/main/config.json.\n"
        "Access to model google/gemma-2-2b-it is restricted. You must have access to it and be authenticated.\n")
    data = json.loads(opsconsole("diagnose", str(log), "--json").stdout)
    assert data["matches"][0]["id"] == "gated-model"


def test_two_runs_on_one_gpu_the_second_is_refused_until_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("opsconsole.runs.launch.cuda_status", lambda python: (True, 1, ""))
    manager = RunManager(Settings())
    first = manager.launch("selftest", ["--device", "cuda:0", "--lines", "500", "--interval", "0.05"])
    with pytest.raises(UsageError) as refused:
        manager.launch("selftest", ["--device", "cuda:0", "--lines", "1"])
    assert f"GPU 0 is in use by run {first.id}" in str(refused.value) and "--force" in str(refused.value)
    forced = manager.launch("selftest", ["--device", "cuda:0", "--lines", "1"], force=True)
    manager.stop(first.id, grace=3)
    assert manager.wait(forced.id, timeout=60)["status"] == "ok"
    second = manager.launch("selftest", ["--device", "cuda:0", "--lines", "1"])  # free again
    assert manager.wait(second.id, timeout=60)["status"] == "ok"


def test_corrupt_registry_is_rebuilt_and_said_and_a_corrupt_run_dir_is_reported(tmp_path: Path) -> None:
    ids = [json.loads(opsconsole("run", "selftest", "--lines", "1", "--foreground", "--json").stdout)["id"]
           for _ in range(2)]
    db = RunStore().path
    db.write_bytes(b"this is not a database" * 100)
    listed = opsconsole("runs", "list", "--json")
    assert listed.returncode == 0
    assert "damaged" in listed.stderr and "rebuilt" in listed.stderr
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == sorted(ids)
    assert list(db.parent.glob("*corrupt*")) or any("runs" in p.name and p != db for p in db.parent.iterdir())

    broken = Path(json.loads(opsconsole("runs", "show", ids[0], "--json").stdout)["record"]["dir"])
    (broken / "result.json").write_text("{ torn")
    (broken / "events.jsonl").write_text("not json\n\x00\x01\n")
    shown = opsconsole("runs", "show", ids[0])
    assert shown.returncode in (0, 3) and "Traceback" not in shown.stderr
    assert opsconsole("runs", "show", ids[1], "--json").returncode == 0  # the other run is untouched
    report = opsconsole("report", "--out", str(tmp_path / "r"), "--runs", "5")
    assert report.returncode == 0, report.stderr


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and mount namespaces for a small tmpfs")
def test_really_full_disk_under_the_state_dir_is_said_plainly_and_nothing_is_lost(tmp_path: Path) -> None:
    """The whole state dir (registry + run dirs) on a 1 MiB tmpfs in a private mount namespace."""
    state = tmp_path / "state"
    state.mkdir()
    cli = f"{sys.executable} -m opsconsole"
    script = (f"mount -t tmpfs -o size=1m tmpfs {state} || exit 99\n"
              f"export XDG_STATE_HOME={state}\n"
              f"{cli} run selftest --flood --foreground --json >/dev/null 2>{tmp_path}/run.err; echo RUN_EXIT=$?\n"
              f"{cli} runs list 2>&1; echo LIST_EXIT=$?\n"
              f"rm -f {state}/opsconsole/runs/*/output.log\n"  # the user frees space
              f"{cli} runs list --json; echo LIST2_EXIT=$?\n"
              f"{cli} run selftest --lines 1 --foreground --json 2>/dev/null | grep '\"status\"'\n")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert "RUN_EXIT=0" not in out and "Traceback" not in out + read_text(tmp_path / "run.err")
    assert "is full" in out and "free space" in out and "LIST_EXIT=3" in out  # one clear line, no "damaged"
    assert "damaged" not in out
    listed = json.loads(out.split("LIST_EXIT=3", 1)[1].split("LIST2_EXIT=0", 1)[0])
    assert len(listed) == 1 and listed[0]["status"] in ("failed", "crashed")
    assert '"status": "ok"' in out  # with space again, the next run works
