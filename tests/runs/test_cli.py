"""The `run` / `runs` command-line contract: output shapes, exit codes, GPU lock, read-only mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsconsole.cli import main
from opsconsole.paths import state_dir
from opsconsole.runs import RunManager, RunStore

from runs_helpers import log_text, wait_for


def _run_dirs() -> list[Path]:
    root = state_dir() / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int = 2) -> None:
    """Pretend the user's torch sees `count` GPUs (selftest never touches CUDA itself)."""
    monkeypatch.setattr("opsconsole.runs.launch.cuda_status", lambda python: (True, count, ""))


def test_run_prints_the_id_and_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "selftest", "--lines", "1"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert run_id.endswith(tuple("0123456789abcdef")) and "-selftest-" in run_id
    assert main(["run", "selftest", "--lines", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"id", "dir", "status"}
    assert Path(payload["dir"]).name == payload["id"] and payload["status"] in ("starting", "running", "ok")
    RunManager().wait(payload["id"], timeout=30)
    RunManager().wait(run_id, timeout=30)


def test_foreground_json_waits_and_prints_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "selftest", "--lines", "2", "--foreground", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is only the JSON; the log went to stderr
    assert result["status"] == "ok" and result["metrics"]["lines"] == 2
    assert "selftest line 2/2" in captured.err


def test_foreground_failure_exits_2_and_shows_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "selftest", "--lines", "1", "--foreground", "--raise",
                 "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB"])
    assert code == 2
    out = capsys.readouterr().out
    assert "failed" in out and "Traceback" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-kind"], "unknown run kind"),
    (["run", "selftest", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["run", "selftest", "--lines", "many"], "--lines"),
    (["run", "selftest", "--lines", "-1"], "--lines -1: must be 0 to 1,000,000"),
    (["run", "selftest", "--lines", "10000000000000000000"], "must be 0 to 1,000,000"),
    (["run", "selftest", "--interval", "nan"], "--interval nan: must be 0 to 86,400 s"),
    (["run", "selftest", "--seed", "99999999999"], "--seed 99999999999: must be 0 to 4,294,967,295"),
    (["run", "selftest", "--gpus", "100000"], "--gpus 100000: must be 1 to"),
    (["run", "selftest", "--model", "/nonexistent/model"], "no such file or directory"),
    (["run", "selftest", "--model", "some-org/not-cached-model"], "not in the local Hugging Face cache"),
    (["run", "selftest", "--python", "/nonexistent/python"], "no such interpreter"),
    (["run", "selftest", "--gpus", "0"], "--gpus"),
])
def test_bad_input_is_one_line_exit_3_and_nothing_registered(argv: list[str], message: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert RunStore().list() == [] and _run_dirs() == []


def test_cuda_requested_without_cuda_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    monkey_free = main(["run", "selftest", "--device", "cuda"])  # the real probe of this (CPU-only) box
    err = capsys.readouterr().err
    assert monkey_free == 3 and "CUDA is not available" in err
    assert RunStore().list() == [] and _run_dirs() == []


def test_gpu_lock_refuses_a_second_run_on_the_same_gpu_unless_forced(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _fake_cuda(monkeypatch)
    slow = ["--lines", "1000", "--interval", "0.1"]
    assert main(["run", "selftest", "--device", "cuda", *slow]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["run", "selftest", "--device", "cuda:0", "--lines", "1"]) == 3
    err = capsys.readouterr().err
    assert "GPU 0 is in use by run" in err and first in err and "--force" in err
    assert [r.id for r in RunStore().list()] == [first]
    # another GPU and a CPU run are free to start
    assert main(["run", "selftest", "--device", "cuda:1", "--lines", "1"]) == 0
    assert main(["run", "selftest", "--device", "cpu", "--lines", "1"]) == 0
    assert main(["run", "selftest", "--device", "cuda", "--lines", "1", "--force"]) == 0
    capsys.readouterr()
    manager = RunManager()
    manager.stop(first, grace=5)
    assert {r.status for r in manager.list() if r.id != first} <= {"starting", "running", "ok"}
    for record in manager.list():
        manager.wait(record.id, timeout=30)


def test_logs_follow_attach_stop_and_rm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "selftest", "--lines", "5", "--interval", "0.05"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert main(["runs", "logs", run_id, "-f"]) == 0
    assert [l for l in capsys.readouterr().out.splitlines() if l.startswith("selftest")] == [
        f"selftest line {i}/5" for i in range(1, 6)]
    assert main(["runs", "logs", run_id[-4:], "-n", "2"]) == 0  # a unique part of the id is enough
    assert capsys.readouterr().out.splitlines() == ["selftest line 4/5", "selftest line 5/5"]
    assert main(["runs", "attach", run_id]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["runs", "show", run_id]) == 0
    assert "lines=5" in capsys.readouterr().out

    assert main(["run", "selftest", "--lines", "1000", "--interval", "0.1"]) == 0
    slow = capsys.readouterr().out.strip()
    wait_for(lambda: "line 1/" in log_text(RunManager().get(slow).dir), what="first line")
    assert main(["runs", "rm", slow]) == 3
    assert "stop it first" in capsys.readouterr().err
    assert main(["runs", "stop", slow, "--grace", "5"]) == 0
    assert capsys.readouterr().out.strip() == f"{slow}: stopped"
    assert main(["runs", "rm", slow]) == 0
    assert capsys.readouterr().out.strip() == f"removed {slow}"
    assert main(["runs", "show", slow]) == 3
    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [run_id]


def test_destructive_commands_need_a_full_id_or_a_unique_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    """`runs rm e` deleted whichever run had an `e` in its id."""
    ids = []
    for _ in range(2):
        assert main(["run", "selftest", "--lines", "1"]) == 0
        ids.append(capsys.readouterr().out.strip())
    for run_id in ids:
        RunManager().wait(run_id, timeout=30)
    for vague in ("e", "selftest", ids[0][:15], ids[0][-3:]):  # a part, a prefix, a 3-character suffix
        assert main(["runs", "rm", vague]) == 3, vague
        assert "full id or a unique suffix of at least 4 characters" in capsys.readouterr().err
    assert sorted(r.id for r in RunManager().list()) == sorted(ids)  # nothing removed
    assert main(["runs", "show", ids[0][:15]]) in (0, 3)  # viewing still takes a prefix (or says ambiguous)
    capsys.readouterr()
    assert main(["runs", "rm", ids[0][-4:]]) == 0
    assert capsys.readouterr().out.strip() == f"removed {ids[0]}"
    assert [r.id for r in RunManager().list()] == [ids[1]]


def test_readonly_refuses_run_stop_and_rm(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--readonly", "run", "selftest"]) == 3
    assert main(["run", "selftest", "--readonly"]) == 3
    monkeypatch.setenv("OPSCONSOLE_READONLY", "1")
    assert main(["runs", "stop", "whatever"]) == 3
    assert main(["runs", "rm", "whatever"]) == 3
    assert "read-only mode" in capsys.readouterr().err
    assert RunStore().list() == []


def test_job_help_lists_the_kind_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "selftest", "--help"]) == 0
    assert "--interval" in capsys.readouterr().out


@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP"])
def test_foreground_run_is_stopped_by_ctrl_c_or_hangup(sig: str) -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "opsconsole", "run", "selftest", "--foreground",
                             "--lines", "1000", "--interval", "0.1", "--grace", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # the log is streamed to the terminal
        if line.startswith("selftest line 1/"):
            break
    proc.send_signal(getattr(signal, sig))
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "stopping run" in err
    (record,) = RunManager().list()
    assert record.status == "stopped" and "stopped" in rest


def test_run_without_kind_names_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 3
    err = capsys.readouterr().err
    assert "[job flags]" in err and "selftest" in err


def test_concurrent_launches_on_one_gpu_start_exactly_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from opsconsole.errors import UsageError

    _fake_cuda(monkeypatch)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def launch() -> None:
        manager = RunManager()
        barrier.wait()
        try:
            manager.launch("selftest", ["--device", "cuda:0", "--lines", "1000", "--interval", "0.1"])
            outcomes.append("started")
        except UsageError:
            outcomes.append("refused")

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["refused"] * 3 + ["started"]
    manager = RunManager()
    (record,) = manager.list()
    manager.stop(record.id, grace=5)
    assert _run_dirs() == [Path(record.dir)]  # the refused launches left nothing behind


def test_ctrl_c_in_attach_detaches_and_the_run_goes_on() -> None:
    import signal
    import subprocess
    import sys

    manager = RunManager()
    record = manager.launch("selftest", ["--lines", "1000", "--interval", "0.1"])
    proc = subprocess.Popen([sys.executable, "-m", "opsconsole", "runs", "attach", record.id],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("» line"):  # progress is shown
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "detached" in err
    assert manager.get(record.id).status == "running"
    manager.stop(record.id, grace=5)


def test_runs_logs_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "selftest", "--lines", "3", "--foreground", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["runs", "logs", run_id, "--json", "-n", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == run_id and data["status"] == "ok"
    assert main(["runs", "logs", run_id, "-n", "2"]) == 0
    assert data["lines"] == capsys.readouterr().out.splitlines()  # the same lines as the text output
    assert main(["runs", "logs", run_id, "--json", "-f"]) == 0
    followed = [json.loads(line)["line"] for line in capsys.readouterr().out.splitlines()]
    assert [l for l in followed if l.startswith("selftest line")] == [f"selftest line {i}/3" for i in (1, 2, 3)]
