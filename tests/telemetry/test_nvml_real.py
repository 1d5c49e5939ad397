"""The collector against the real NVML. Skipped where there is no NVIDIA driver."""

from __future__ import annotations

import pynvml
import pytest

from opsconsole.telemetry import open_source
from opsconsole.telemetry.nvml import NvmlCollector


def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


pytestmark = pytest.mark.skipif(not _nvml_works(), reason="no NVIDIA driver / NVML on this machine")


def test_real_nvml_reads_every_gpu() -> None:
    collector = NvmlCollector()
    try:
        reading = collector.collect()
    finally:
        collector.close()
    assert reading.nvml.status == "ok" and reading.nvml.driver_version
    assert reading.gpus and len(reading.gpus) == pynvml_count()
    for gpu in reading.gpus:
        assert gpu.state == "ok", gpu.error
        assert gpu.name and gpu.uuid and gpu.compute_capability
        assert gpu.memory.total and gpu.memory.used is not None
        assert gpu.temperature.current is not None


def pynvml_count() -> int:
    pynvml.nvmlInit()
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


def test_real_status_sample_has_findings_and_no_errors() -> None:
    with open_source(probe_env=False) as source:
        snapshot = source.sample()
    assert snapshot.nvml.status == "ok"
    assert all(f.severity in ("info", "warn", "critical") for f in snapshot.findings)
