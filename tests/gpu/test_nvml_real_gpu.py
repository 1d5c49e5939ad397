"""The real NvmlCollector against the real driver (marked gpu: skipped without CUDA).

(Named *_gpu so it does not clash with tests/telemetry/test_nvml_real.py, which checks
the same collector wherever a driver exists, CUDA or not.)
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from opsconsole.telemetry import open_source
from opsconsole.telemetry.nvml import NvmlCollector

pytestmark = pytest.mark.gpu

HOLD_BYTES = 512 * 2**20


def test_every_gpu_has_name_uuid_memory_and_temperature() -> None:
    collector = NvmlCollector(watch_xid=False)
    try:
        reading = collector.collect()
    finally:
        collector.close()
    assert reading.nvml.status == "ok", reading.nvml.message
    assert reading.gpus
    for gpu in reading.gpus:
        assert gpu.state == "ok", gpu.error
        assert gpu.name and gpu.uuid and gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.memory.total and gpu.memory.total > 1 << 30 and gpu.memory.used is not None
        assert gpu.temperature.current is not None and 0 < gpu.temperature.current < 120


def test_sampling_works_repeatedly_within_the_deadline() -> None:
    with open_source(probe_env=False) as source:
        snapshots = [source.sample() for _ in range(5)]
    assert all(s.nvml.status == "ok" and s.gpus for s in snapshots)
    assert all(s.sample_ms is not None and s.sample_ms < 2000 for s in snapshots)
    assert not any(f.id in ("nvml_not_responding", "gpu_lost") for s in snapshots for f in s.findings)


def test_processes_include_a_cuda_process_we_start() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, torch\n"
         f"x = torch.empty({HOLD_BYTES}, dtype=torch.uint8, device='cuda'); torch.cuda.synchronize()\n"
         "print('ready', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        collector = NvmlCollector(watch_xid=False)
        try:
            deadline = time.monotonic() + 10
            while True:
                processes = [p for g in collector.collect().gpus for p in g.processes]
                mine = [p for p in processes if p.pid == holder.pid]
                if mine or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            collector.close()
        if not mine:  # in a container NVML may report host pids: then it is listed, but not by our pid
            mine = [p for p in processes if not p.visible and (p.used_memory or 0) >= HOLD_BYTES]
        assert mine, f"pid {holder.pid} not among {[(p.pid, p.used_memory) for p in processes]}"
        if mine[0].pid == holder.pid:
            assert mine[0].visible and "python" in (mine[0].command or "")
            assert mine[0].used_memory is None or mine[0].used_memory >= HOLD_BYTES
    finally:
        holder.kill()
        holder.wait(timeout=10)
