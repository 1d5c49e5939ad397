"""Telemetry faults: no driver, an NVML call that hangs, a GPU lost mid-session, NOT_SUPPORTED fields, MIG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pynvml
import pytest
from rich.console import Console

from opsconsole.cli.status import render_snapshot, snapshot_json
from opsconsole.telemetry.fake_nvml import FakeNvml, Raises, fake_nvml, h100
from opsconsole.telemetry.host import HostCollector
from opsconsole.telemetry.nvml import NvmlCollector
from opsconsole.telemetry.source import TelemetrySource

from faults_helpers import opsconsole

REPO = Path(__file__).resolve().parents[2]


def _driver_present() -> bool:
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except pynvml.NVMLError:
        return False


def rendered(snapshot) -> str:  # noqa: ANN001
    console = Console(record=True, width=160, file=open(os.devnull, "w"))
    console.print(render_snapshot(snapshot))
    return console.export_text()


def sampled(fake: FakeNvml, *actions) -> list:  # noqa: ANN001, ANN002
    source = TelemetrySource(NvmlCollector(watch_xid=False), HostCollector().collect, None, nvml_timeout=2.0)
    try:
        snapshots = [source.sample()]
        for action in actions:
            action()
            snapshots.append(source.sample())
        return snapshots
    finally:
        source.close()


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
def test_no_driver_status_says_so_and_the_rest_of_the_console_works(tmp_path: Path) -> None:
    status = opsconsole("status", "--json", "--no-probe")
    data = json.loads(status.stdout)
    assert data["nvml"]["status"] in ("no_driver", "library_not_found") and data["gpus"] == []
    assert any(f["id"] == "no_driver" for f in data["findings"])
    assert data["host"]["memory_total"] > 0  # host metrics still there
    text = opsconsole("status", "--no-probe")
    assert "driver" in text.stdout.lower() and "Traceback" not in text.stderr
    log = tmp_path / "log.txt"
    log.write_text("RuntimeError: CUDA error: out of memory\n")
    assert "cuda-oom" in opsconsole("diagnose", str(log)).stdout
    assert opsconsole("playbook", "list").returncode == 0
    run = opsconsole("run", "selftest", "--lines", "2", "--foreground", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["status"] == "ok"


def test_nvml_hang_keeps_status_watch_responsive_and_it_recovers() -> None:
    """pynvml blocks (fake with a gate) for 4 s in the middle of `status --watch --json`."""
    driver = (
        "import signal, sys, threading, time\n"
        "from opsconsole.telemetry.fake_nvml import FakeNvml\n"
        "fake = FakeNvml(2).install()\n"
        "def script():\n"
        "    time.sleep(1.5); fake.hang(); print('HANG', file=sys.stderr, flush=True)\n"
        "    time.sleep(4.0); fake.release(); print('RELEASE', file=sys.stderr, flush=True)\n"
        "threading.Thread(target=script, daemon=True).start()\n"
        "def stop(*_): raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGALRM, stop); signal.alarm(9)\n"
        "from opsconsole.cli import main\n"
        "sys.exit(main(['status', '--watch', '0.3', '--json', '--no-probe']))\n")
    env = dict(os.environ, OPSCONSOLE_NVML_TIMEOUT="0.5", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    lines: list[tuple[float, dict]] = []
    reader = threading.Thread(target=lambda: [lines.append((time.monotonic(), json.loads(line)))
                                              for line in proc.stdout], daemon=True)
    reader.start()
    assert proc.wait(timeout=40) in (0, 1, 2), proc.stderr.read()
    reader.join(timeout=5)
    states = [snap["nvml"]["status"] for _, snap in lines]
    gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:])]
    assert "not_responding" in states, states
    first_hung = states.index("not_responding")
    assert "ok" in states[:first_hung] and states[-1] == "ok", states  # worked, hung, recovered
    assert max(gaps) < 2.5, gaps  # a frame at least every deadline + interval, also while NVML hangs
    hung = lines[first_hung][1]
    assert any(f["id"] == "nvml_not_responding" for f in hung["findings"])
    recovered = lines[-1][1]
    assert [g["state"] for g in recovered["gpus"]] == ["ok", "ok"]


def test_gpu_lost_mid_session_is_isolated_and_reported() -> None:
    with fake_nvml(FakeNvml(3)) as fake:
        before, after = sampled(fake, lambda: fake.lose(1))
    assert [g.state for g in before.gpus] == ["ok", "ok", "ok"]
    assert [g.state for g in after.gpus] == ["ok", "lost", "ok"]
    assert after.gpu(0).memory.total and after.gpu(2).memory.total  # the others keep their readings
    lost = [f for f in after.findings if f.id == "gpu_lost"]
    assert lost and lost[0].gpu == 1 and lost[0].kb == "gpu-fallen-off-bus" and lost[0].severity == "critical"
    assert "lost" in rendered(after).lower()
    json.dumps(snapshot_json(after))


def test_not_supported_fields_are_blank_not_errors() -> None:
    keep = {"nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo", "nvmlDeviceGetMemoryInfo"}
    bare = {name: Raises(pynvml.NVML_ERROR_NOT_SUPPORTED) for name in h100(0) if name not in keep}
    with fake_nvml(FakeNvml([h100(0, **bare), h100(1)])) as fake:
        [snapshot] = sampled(fake)
    gpu = snapshot.gpu(0)
    assert gpu.state == "ok" and gpu.name == "NVIDIA H100 80GB HBM3" and gpu.memory.total
    assert gpu.temperature.current is None and gpu.power.draw is None and gpu.utilization.gpu is None
    assert snapshot.gpu(1).temperature.current == 61  # the other GPU is read in full
    assert not any(f.severity == "critical" for f in snapshot.findings)
    row = next(line for line in rendered(snapshot).splitlines() if line.strip().startswith("0 "))
    assert "H100" in row and "—/—" in row  # unsupported fields show as a dash
    json.dumps(snapshot_json(snapshot))


def test_mig_partitions_show_in_status() -> None:
    data = json.loads(opsconsole("status", "--simulate", "mig-a100", "--json", "--no-probe").stdout)
    gpu0 = data["gpus"][0]
    assert gpu0["mig_mode"] is True and len(gpu0["mig_devices"]) == 7
    text = opsconsole("status", "--simulate", "mig-a100", "--no-probe")
    assert text.returncode in (0, 1, 2) and "MIG" in text.stdout and "Traceback" not in text.stderr
