"""The post-mortem of a failed run: OOM blamed only on the kernel's count, never on our own
note; result and registry (the GPU lock) first, then a diagnosis with a time limit."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from opsconsole.runs import result as result_module
from opsconsole.runs.result import add_diagnoses, build_result, crash_note, diagnose_within, oom_kill_count
from opsconsole.runs.rundir import RunDir


def crashed_run(tmp_path: Path, note: str) -> RunDir:
    run = RunDir(tmp_path / "20261204-120000-selftest-ab12").create()
    run.log.write_text("selftest line 1/100\nselftest line 2/100\n\n" + note + "\n")
    return run


def test_our_crash_note_is_not_diagnosed_as_oom(tmp_path):
    """A `kill -9` was diagnosed "killed by the OOM killer" from the console's own hint line."""
    run = crashed_run(tmp_path, crash_note(signal.SIGKILL, None, oom_kills=None))
    result = build_result(run, None, signal.SIGKILL, note="killed")
    assert result["status"] == "crashed"
    assert "cpu-ram-oom-killed" not in [d["id"] for d in result["diagnoses"]], result["diagnoses"]


def test_a_sigkill_with_a_kernel_oom_count_is_diagnosed_oom_with_that_evidence(tmp_path):
    run = crashed_run(tmp_path, crash_note(signal.SIGKILL, None, oom_kills=2))
    result = build_result(run, None, signal.SIGKILL, note="killed", oom_kills=2)
    first = result["diagnoses"][0]
    assert (first["id"], first["source"]) == ("cpu-ram-oom-killed", "kernel")
    assert "killed 2 process(es) during the run" in first["evidence"][0]["text"]
    not_oom = build_result(run, None, signal.SIGKILL, note="killed", oom_kills=0)
    assert "cpu-ram-oom-killed" not in [d["id"] for d in not_oom["diagnoses"]]


@pytest.mark.parametrize("oom_kills, words", [(None, "does not count OOM kills"), (0, "counted no OOM kill"),
                                              (3, "killed 3 process(es)")])
def test_the_crash_note_says_what_the_kernel_counted(oom_kills, words):
    assert words in crash_note(signal.SIGKILL, None, oom_kills)


def test_oom_kill_count_reads_vmstat(tmp_path):
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 1\noom_kill 17\nother 3\n")
    assert oom_kill_count(vmstat) == 17
    vmstat.write_text("nr_free_pages 1\n")
    assert oom_kill_count(vmstat) is None and oom_kill_count(tmp_path / "missing") is None


def test_a_slow_diagnosis_is_cut_off_with_a_reason(tmp_path, monkeypatch):
    """An 8 MB pathological log took 186 s to diagnose, and the run stayed `running` meanwhile."""
    release = threading.Event()
    monkeypatch.setattr(result_module, "diagnose", lambda *a, **k: (release.wait(30), ([], None))[1])
    run = crashed_run(tmp_path, "boom")
    pending = build_result(run, 1, None, diagnose_now=False)
    assert pending["status"] == "crashed" and pending["diagnosis_pending"] is True
    start = time.monotonic()
    final = diagnose_within(run, pending, limit_s=0.5)
    release.set()
    assert time.monotonic() - start < 5
    assert "diagnosis_pending" not in final and "took longer than 0.5 s" in final["diagnosis_skipped"]
    assert add_diagnoses(run, pending)["diagnoses"] == []


def test_the_registry_is_final_before_the_diagnosis_starts(tmp_path, monkeypatch):
    """The GPU lock (an active registry row) is released before the post-mortem, not after it."""
    from opsconsole.runs import supervisor as supervisor_module
    from opsconsole.runs.store import RunStore

    store = RunStore(tmp_path / "state")
    run = crashed_run(tmp_path, "")
    order = []
    monkeypatch.setattr(store, "update", lambda run_id, **fields: order.append(("registry", fields["status"])))

    def diagnosing(run_dir, result, limit_s, oom_kills=None):
        order.append(("diagnosis", run_dir.read_result()["diagnosis_pending"]))
        return add_diagnoses(run_dir, result, oom_kills)

    monkeypatch.setattr(supervisor_module, "diagnose_within", diagnosing)
    supervisor_module.Supervisor(run, ["true"], store).finish(exit_code=1, sig=None)
    assert order == [("registry", "crashed"), ("diagnosis", True)]  # result.json and the registry first
    final = run.read_result()
    assert final["status"] == "crashed" and "diagnosis_pending" not in final and "diagnoses" in final
