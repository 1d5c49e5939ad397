"""`opsconsole status`: the JSON contract, exit codes, scenarios, watch mode, the no-driver path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pynvml
import pytest

from opsconsole.cli import main
from opsconsole.telemetry.fake_nvml import FakeNvml

CLI = [sys.executable, "-m", "opsconsole"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["status", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--simulate", "vram-pressure")
    assert {"gpus", "host", "cuda_env", "findings", "nvml"} <= set(data)
    assert set(data["nvml"]) >= {"status", "message", "driver_version"}
    gpu = data["gpus"][0]
    assert {"index", "name", "uuid", "memory", "utilization", "temperature", "power", "throttle_reasons",
            "processes"} <= set(gpu)
    assert set(gpu["memory"]) >= {"total", "used", "free"} and gpu["memory"]["total"] == 40 * 1024 ** 3
    assert isinstance(gpu["throttle_reasons"], list)
    assert {"pid", "user", "used_memory", "command"} <= set(gpu["processes"][0])
    finding = data["findings"][0]
    assert set(finding) >= {"id", "severity", "gpu", "message", "kb"}
    assert code == data["exit_code"] == 1


@pytest.mark.parametrize("scenario, code", [
    ("healthy-8xh100", 0), ("mig-a100", 0), ("vram-pressure", 1), ("thermal-throttle", 2), ("no-driver", 1),
    ("xid79-fell-off-bus", 2), ("ecc-row-remap", 2), ("driver-mismatch", 2), ("torch-arch-mismatch", 2)])
def test_exit_codes_by_scenario(capsys: pytest.CaptureFixture[str], scenario: str, code: int) -> None:
    assert main(["status", "--simulate", scenario, "--json"]) == code


def test_global_option_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", "thermal-throttle", "status", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["source"] == "simulated:thermal-throttle"


def test_unknown_scenario_exits_3_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--simulate", "nope"]) == 3
    err = capsys.readouterr().err
    assert "unknown scenario 'nope'" in err and "healthy-8xh100" in err and "Traceback" not in err


def test_bad_python_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # noqa: ANN001
    assert main(["status", "--python", str(tmp_path / "nope" / "python"), "--simulate", "healthy-8xh100"]) == 3
    assert "--python" in capsys.readouterr().err


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--list-scenarios", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)]
    assert "xid79-fell-off-bus" in names and "mig-a100" in names


def test_rich_summary_shows_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--simulate", "xid79-fell-off-bus"]) == 2
    text = capsys.readouterr().out
    for expected in ("GPUs", "GPU processes", "Host dgx-a100-12", "CUDA environment", "Findings", "gpu_lost",
                     "lost", "XID 79"):
        assert expected in text, expected


def test_no_driver_ends_normally_and_still_shows_host_and_env(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeNvml(0, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND).install()
    monkeypatch.setattr("opsconsole.telemetry.nvml.count_nvidia_pci_devices", lambda: 0)
    try:
        code = main(["status"])
    finally:
        machine.uninstall()
    text = capsys.readouterr().out
    assert code == 0
    assert "no NVIDIA driver found" in text
    assert "Host" in text and "CUDA environment" in text and "torch" in text


def test_watch_json_streams_and_ctrl_c_exits_cleanly() -> None:
    proc = subprocess.Popen([*CLI, "status", "--simulate", "healthy-8xh100", "--watch", "0.1", "--json", "--no-probe"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        times = [json.loads(line)["time"] for line in lines]
        assert times == sorted(times) and len(set(times)) == 3
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    assert code == 0
    assert "Traceback" not in proc.stderr.read()


def test_watch_rejects_negative_interval(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--simulate", "healthy-8xh100", "--watch", "-1"]) == 3


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver")
def test_real_status_on_a_machine_without_a_driver() -> None:
    proc = subprocess.run([*CLI, "status", "--no-probe"], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert "no NVIDIA driver found" in proc.stdout and "Host" in proc.stdout


def test_watch_keeps_refreshing_and_quits_on_ctrl_c_while_nvml_hangs(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setenv("OPSCONSOLE_NVML_TIMEOUT", "0.2")
    machine = FakeNvml(2).install()
    machine.hang()  # NVML never answers
    interrupt = threading.Timer(1.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    interrupt.start()
    try:
        code = main(["status", "--watch", "0.1", "--json", "--no-probe"])
    finally:
        interrupt.cancel()
        machine.uninstall()
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(frames) >= 3  # kept refreshing although every NVML call hangs
    assert {f["nvml"]["status"] for f in frames} == {"not_responding"}
    assert code == 2


def test_watch_piped_prints_plain_frames_and_sigterm_ends_it_cleanly() -> None:
    """Rich Live drew nothing on a pipe: `status --watch | tee` showed nothing."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "opsconsole", "status", "--simulate", "healthy-8xh100", "--no-probe",
                             "--watch", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline and seen.count("Findings") < 2:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=20)
    assert seen.count("Findings") >= 2, seen[-2000:]  # frames arrive while it runs, not at exit
    assert proc.returncode == 0 and "Traceback" not in err
