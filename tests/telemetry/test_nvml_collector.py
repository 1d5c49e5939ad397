"""The real NvmlCollector code against a pynvml-level fake raising real pynvml.NVMLError codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pynvml
import pytest

from opsconsole.redact import REDACTED
from opsconsole.telemetry.fake_nvml import GIB, FakeNvml
from opsconsole.telemetry.nvml import SLOW_TTL_S, NvmlCollector


def collect(**kwargs):
    collector = NvmlCollector(watch_xid=False, **kwargs)
    try:
        return collector.collect()
    finally:
        collector.close()


def test_healthy_gpu_fields_are_read_and_converted(fake: FakeNvml) -> None:
    reading = collect()
    assert reading.nvml.status == "ok"
    assert reading.nvml.driver_version == "550.90.07"
    assert reading.nvml.cuda_driver_version == "12.4"
    assert [g.index for g in reading.gpus] == [0, 1, 2]
    gpu = reading.gpus[0]
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.compute_capability == "9.0"
    assert gpu.pci_bus_id == "00000000:18:00.0"
    assert gpu.memory.total == 80 * GIB and gpu.memory.used == 61 * GIB and gpu.memory.reserved == GIB // 2
    assert gpu.power.draw == pytest.approx(612.0) and gpu.power.limit == pytest.approx(700.0)  # mW -> W
    assert gpu.temperature.current == 61 and gpu.temperature.slowdown == 87 and gpu.temperature.shutdown == 92
    assert gpu.temperature.memory == 58
    assert gpu.clocks.sm == 1980 and gpu.clocks.sm_max == 1980
    assert gpu.pcie.gen == 5 and gpu.pcie.max_width == 16
    assert gpu.ecc.mode_enabled is True and gpu.ecc.remapped_rows_failure is False
    assert gpu.persistence_mode is True and gpu.compute_mode == "default" and gpu.mig_mode is False
    assert gpu.state == "ok"


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION,
                                  pynvml.NVML_ERROR_FUNCTION_NOT_FOUND])
def test_unavailable_field_becomes_none_and_the_rest_is_read(fake: FakeNvml, code: int) -> None:
    fake.fail(0, "nvmlDeviceGetPowerUsage", code)
    fake.fail(0, "nvmlDeviceGetRemappedRows", code)
    gpu = collect().gpus[0]
    assert gpu.state == "ok"
    assert gpu.power.draw is None and gpu.power.limit == pytest.approx(700.0)
    assert gpu.ecc.remapped_rows_pending is None and gpu.ecc.mode_enabled is True
    assert gpu.fan_percent is None  # NOT_SUPPORTED by the fake H100 (passively cooled)
    assert gpu.memory.used == 61 * GIB


def test_memory_temperature_not_reported_by_the_board_is_none(fake: FakeNvml) -> None:
    fake.gpus[0]["nvmlDeviceGetFieldValues"] = [SimpleNamespace(nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED,
                                                                value=SimpleNamespace(uiVal=0))]
    collector = NvmlCollector(watch_xid=False)
    try:
        assert collector.collect().gpus[0].temperature.memory is None
        collector.collect()
    finally:
        collector.close()
    assert fake.calls_by_name["nvmlDeviceGetFieldValues"] == 1 + 2 * 2  # GPU 0 asked once, GPUs 1-2 every sample


def test_throttle_reasons_are_decoded_to_names(fake: FakeNvml) -> None:
    fake.gpus[1]["nvmlDeviceGetCurrentClocksEventReasons"] = (
        pynvml.nvmlClocksEventReasonSwThermalSlowdown | pynvml.nvmlClocksEventReasonSwPowerCap)
    gpu = collect().gpus[1]
    assert set(gpu.throttle_reasons) == {"sw_thermal_slowdown", "sw_power_cap"}


def test_old_driver_without_clock_event_api_falls_back_to_throttle_reasons(fake: FakeNvml) -> None:
    fake.fail(0, "nvmlDeviceGetCurrentClocksEventReasons", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    fake.gpus[0]["nvmlDeviceGetCurrentClocksThrottleReasons"] = pynvml.nvmlClocksThrottleReasonHwSlowdown
    assert collect().gpus[0].throttle_reasons == ("hw_slowdown",)


def test_one_unknown_field_on_a_healthy_gpu_is_not_a_lost_gpu(fake: FakeNvml) -> None:
    """One NVML_ERROR_UNKNOWN marked the whole GPU lost and raised "drain the node and reboot it"."""
    from opsconsole.telemetry.findings import evaluate
    from opsconsole.telemetry.snapshot import Snapshot

    fake.fail(1, "nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_UNKNOWN)
    reading = collect()
    gpu = reading.gpus[1]
    assert gpu.state == "ok" and gpu.utilization.gpu is None  # the one field is unknown…
    assert gpu.memory.used == 61 * GIB and gpu.temperature.current == 61  # …the rest is read
    snapshot = Snapshot(time=0.0, source="nvml", nvml=reading.nvml, gpus=reading.gpus)
    assert "gpu_lost" not in [f.id for f in evaluate(snapshot)]


def test_a_handle_refused_with_no_permission_is_not_accessible_not_lost(fake: FakeNvml) -> None:
    """cgroup/Slurm-restricted nodes: NO_PERMISSION from nvmlDeviceGetHandleByIndex."""
    from opsconsole.telemetry.findings import evaluate, exit_code_for
    from opsconsole.telemetry.snapshot import Snapshot

    fake.handle_errors[2] = pynvml.NVML_ERROR_NO_PERMISSION
    reading = collect()
    assert [g.state for g in reading.gpus] == ["ok", "ok", "not_accessible"]
    findings = evaluate(Snapshot(time=0.0, source="nvml", nvml=reading.nvml, gpus=reading.gpus))
    assert [(f.id, f.severity) for f in findings if f.gpu == 2] == [("gpu_not_accessible", "info")]
    assert "gpu_lost" not in [f.id for f in findings]
    assert exit_code_for([f for f in findings if f.gpu == 2]) == 0


@pytest.mark.parametrize("code, canary", [
    (pynvml.NVML_ERROR_GPU_IS_LOST, None),  # NVML says so: lost at once
    (pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_UNKNOWN),  # unknown, and the canaries fail too
])
def test_lost_gpu_is_marked_and_the_others_keep_working(fake: FakeNvml, code: int, canary: int | None) -> None:
    fake.fail(1, "nvmlDeviceGetUtilizationRates", code)
    if canary is not None:
        fake.fail(1, "nvmlDeviceGetUUID", canary)
        fake.fail(1, "nvmlDeviceGetTemperature", canary)
    reading = collect()
    assert reading.nvml.status == "ok"
    lost = reading.gpus[1]
    assert lost.state == "lost" and lost.name == "NVIDIA H100 80GB HBM3"  # identity kept from init
    assert lost.memory.used is None
    assert [g.state for g in reading.gpus] == ["ok", "lost", "ok"]
    assert reading.gpus[2].memory.used == 61 * GIB


def test_gpu_lost_before_init_has_no_handle_but_does_not_break_others(fake: FakeNvml) -> None:
    fake.lose(2)
    reading = collect()
    assert [g.state for g in reading.gpus] == ["ok", "ok", "lost"]


@pytest.mark.parametrize("code, status", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no_driver"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "no_driver"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "driver_mismatch"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "error"),
])
def test_init_failures_are_states_not_exceptions(code: int, status: str) -> None:
    machine = FakeNvml(2, init_error=code).install()
    try:
        reading = collect()
    finally:
        machine.uninstall()
    assert reading.nvml.status == status
    assert reading.gpus == ()
    if status == "no_driver":
        assert reading.nvml.message.startswith("no NVIDIA driver found")
    if status == "driver_mismatch":
        assert "mismatch" in reading.nvml.message


def test_gpu_count_failing_is_an_error_state(fake: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_count() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", broken_count)
    reading = collect()
    assert reading.nvml.status == "error" and "cannot list the GPUs" in reading.nvml.message


def test_init_is_retried_only_after_a_pause(clock) -> None:  # noqa: ANN001
    machine = FakeNvml(1, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED).install()
    collector = NvmlCollector(watch_xid=False, clock=clock)
    try:
        collector.collect()
        collector.collect()
        assert machine.init_calls == 1
        machine.init_error = None  # driver loaded meanwhile
        clock.now += 11
        assert collector.collect().nvml.status == "ok"
    finally:
        collector.close()
        machine.uninstall()


def test_driver_going_away_mid_session_becomes_a_state(fake: FakeNvml) -> None:
    collector = NvmlCollector(watch_xid=False)
    try:
        assert collector.collect().nvml.status == "ok"
        fake.fail(0, "nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
        assert collector.collect().nvml.status == "driver_mismatch"
    finally:
        collector.close()


def test_handles_are_fetched_once_and_slow_fields_cached(fake: FakeNvml, clock) -> None:  # noqa: ANN001
    collector = NvmlCollector(watch_xid=False, clock=clock)
    try:
        collector.collect()
        fake.gpus[0]["nvmlDeviceGetTotalEccErrors"] = 5
        fake.gpus[0]["nvmlDeviceGetUtilizationRates"] = SimpleNamespace(gpu=11, memory=3)
        second = collector.collect().gpus[0]
        assert second.utilization.gpu == 11          # fast field: read every sample
        assert second.ecc.volatile_uncorrected == 0  # slow field: cached
        clock.now += SLOW_TTL_S + 0.1
        assert collector.collect().gpus[0].ecc.volatile_uncorrected == 5
        assert fake.calls_by_name["nvmlDeviceGetHandleByIndex"] == 3
        assert fake.calls_by_name["nvmlDeviceGetName"] == 3
    finally:
        collector.close()


def test_mig_devices_are_listed(fake: FakeNvml) -> None:
    fake.gpus[0]["nvmlDeviceGetMigMode"] = [1, 1]
    fake.mig[0] = [{"uuid": "MIG-a", "name": "3g.40gb", "total": 40 * GIB, "used": 10 * GIB, "gi": 1},
                   {"uuid": "MIG-b", "name": "3g.40gb", "total": 40 * GIB, "used": 0, "gi": 2}]
    gpu = collect().gpus[0]
    assert gpu.mig_mode is True
    assert [(m.uuid, m.gpu_instance_id, m.memory.used) for m in gpu.mig_devices] == [("MIG-a", 1, 10 * GIB), ("MIG-b", 2, 0)]


def test_processes_merge_compute_and_graphics_and_flag_invisible_pids(fake: FakeNvml) -> None:
    ghost = 4_100_000  # above pid_max: never a pid on this host
    fake.gpus[0]["nvmlDeviceGetComputeRunningProcesses"] = [SimpleNamespace(pid=ghost, usedGpuMemory=3 * GIB)]
    fake.gpus[0]["nvmlDeviceGetGraphicsRunningProcesses"] = [SimpleNamespace(pid=ghost, usedGpuMemory=3 * GIB)]
    (proc,) = collect().gpus[0].processes
    assert proc.pid == ghost and proc.type == "compute+graphics" and proc.used_memory == 3 * GIB
    assert proc.visible is False and proc.user is None


def test_visible_process_is_enriched_with_redacted_command(fake: FakeNvml) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--hf-token",
                              "hf_abcdefghijklmnopqrstuvwxyz0123"])
    try:
        time.sleep(0.2)
        fake.gpus[0]["nvmlDeviceGetComputeRunningProcesses"] = [SimpleNamespace(pid=child.pid, usedGpuMemory=GIB)]
        (proc,) = collect().gpus[0].processes
    finally:
        child.kill()
        child.wait()
    assert proc.visible is True
    assert proc.user and proc.start_time and proc.rss
    assert "time.sleep" in proc.command and "hf_abcdefghijklmnopqrstuvwxyz0123" not in proc.command
    assert REDACTED in proc.command


def test_own_process_shows_its_user(fake: FakeNvml) -> None:
    fake.gpus[2]["nvmlDeviceGetComputeRunningProcesses"] = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=GIB)]
    (proc,) = collect().gpus[2].processes
    import getpass

    assert proc.user == getpass.getuser() and proc.gpu == 2


def wait_for(predicate, timeout: float = 5.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_xid_from_the_nvml_event_set_reaches_the_reading(fake: FakeNvml, tmp_path) -> None:  # noqa: ANN001
    from opsconsole.telemetry.xid import KernelXidReader

    quiet_kernel = KernelXidReader(kmsg_path=str(tmp_path / "none"), dmesg=("false",))
    collector = NvmlCollector(kernel_reader=quiet_kernel)
    try:
        collector.collect()
        fake.emit_xid(1, 79)
        events = wait_for(lambda: collector.collect().xid_events)
    finally:
        collector.close()
    (event,) = events
    assert (event.xid, event.gpu, event.source, event.severity) == (79, 1, "nvml", "critical")
    assert event.pci_bus_id == "00000000:28:00.0" and "fallen off the bus" in event.meaning


def test_kernel_xid_lines_are_mapped_to_gpus_by_pci_id(fake: FakeNvml, tmp_path) -> None:  # noqa: ANN001
    from opsconsole.telemetry.xid import KernelXidReader

    log = tmp_path / "dmesg.txt"
    log.write_text("[ 10.5] NVRM: Xid (PCI:0000:38:00): 48, pid=7, name=python, DBE (double bit ECC error)\n")
    fake.events_supported = False  # only the kernel log reports XIDs on this box
    reader = KernelXidReader(kmsg_path=str(tmp_path / "none"),
                             dmesg=(sys.executable, "-c", f"print(open({str(log)!r}).read())"), dmesg_interval=0)
    collector = NvmlCollector(kernel_reader=reader)
    try:
        collector.collect()
        events = wait_for(lambda: collector.collect().xid_events)
    finally:
        collector.close()
    (event,) = events
    assert (event.xid, event.gpu, event.source) == (48, 2, "kernel")


def test_driver_reload_restarts_cleanly_with_one_xid_watcher(fake: FakeNvml, clock, tmp_path) -> None:  # noqa: ANN001
    import threading

    from opsconsole.telemetry.xid import KernelXidReader

    before = {t for t in threading.enumerate() if t.name == "opsconsole-xid"}  # other tests' leftovers, if any
    collector = NvmlCollector(kernel_reader=KernelXidReader(kmsg_path=str(tmp_path / "x"), dmesg=("false",)), clock=clock)
    watchers = lambda: [t for t in threading.enumerate() if t.name == "opsconsole-xid" and t not in before]  # noqa: E731
    try:
        assert collector.collect().nvml.status == "ok" and len(watchers()) == 1
        fake.fail(0, "nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        assert collector.collect().nvml.status == "no_driver"
        assert watchers() == []
        fake.gpus[0]["nvmlDeviceGetUtilizationRates"] = SimpleNamespace(gpu=5, memory=1)
        clock.now += 11
        assert collector.collect().nvml.status == "ok" and len(watchers()) == 1
        fake.emit_xid(0, 13)
        events = wait_for(lambda: collector.collect().xid_events)
        assert [e.xid for e in events] == [13]
    finally:
        collector.close()
    assert watchers() == []
