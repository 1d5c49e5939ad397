"""Each findings rule, its thresholds, and the findings every scenario must raise."""

from __future__ import annotations

import dataclasses

import pytest

from opsconsole.telemetry import list_scenarios, open_source
from opsconsole.telemetry.findings import (
    FINDING_IDS, FINDING_KB, RETIRED_PAGES_LIMIT, evaluate, exit_code_for,
)
from opsconsole.telemetry.snapshot import (
    Clocks, CudaDevice, CudaEnv, Ecc, GpuProcess, GpuSnapshot, MemoryInfo, NvmlState, Pcie, Power, Snapshot,
    Temperature, Utilization,
)
from opsconsole.telemetry.xid import make_event

GIB = 1024 ** 3
NOW = 1_800_000_000.0


def gpu(**changes) -> GpuSnapshot:  # noqa: ANN003
    base = GpuSnapshot(
        index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
        memory=MemoryInfo(total=80 * GIB, used=40 * GIB, free=40 * GIB),
        utilization=Utilization(gpu=90, memory=40), temperature=Temperature(current=60, slowdown=87, shutdown=92),
        power=Power(draw=500, limit=700, default_limit=700), clocks=Clocks(sm=1980, sm_max=1980),
        ecc=Ecc(mode_enabled=True, volatile_uncorrected=0, remapped_rows_pending=False, remapped_rows_failure=False),
        pcie=Pcie(gen=5, max_gen=5, width=16, max_width=16), persistence_mode=True,
    )
    return dataclasses.replace(base, **changes)


def snap(*gpus: GpuSnapshot, nvml: NvmlState | None = None, env: CudaEnv | None = None, xids=()) -> Snapshot:  # noqa: ANN001
    return Snapshot(time=NOW, source="test", nvml=nvml or NvmlState(status="ok", cuda_driver_version="12.4"),
                    gpus=gpus, cuda_env=env or CudaEnv(), xid_events=tuple(xids))


def ids(snapshot: Snapshot, user: str = "alice") -> dict[str, str]:
    return {f.id: f.severity for f in evaluate(snapshot, user=user)}


def test_finding_ids_and_kb_ids_are_the_team_contract() -> None:
    assert set(FINDING_IDS) == {
        "thermal_throttle", "temp_near_slowdown", "power_cap", "hw_slowdown", "ecc_uncorrectable", "retired_pages",
        "row_remap_failure", "row_remap_pending", "pcie_degraded", "xid", "vram_pressure", "hidden_process_vram",
        "other_user_vram", "persistence_off", "nvml_driver_mismatch", "no_driver", "nvml_not_responding", "gpu_lost",
        "gpu_not_accessible",
        "torch_cpu_only", "torch_arch_mismatch", "torch_cuda_too_new", "torch_missing"}
    assert FINDING_KB["row_remap_failure"] == "gpu-row-remap" and FINDING_KB["persistence_off"] is None


def test_a_healthy_gpu_raises_nothing() -> None:
    assert evaluate(snap(gpu())) == ()


@pytest.mark.parametrize("reasons, fid, severity", [
    (("sw_thermal_slowdown",), "thermal_throttle", "warn"),
    (("hw_thermal_slowdown",), "thermal_throttle", "critical"),
    (("hw_slowdown",), "hw_slowdown", "warn"),
    (("hw_power_brake_slowdown",), "hw_slowdown", "warn"),
    (("sw_power_cap",), "power_cap", "info"),
])
def test_throttle_reasons(reasons: tuple[str, ...], fid: str, severity: str) -> None:
    assert ids(snap(gpu(throttle_reasons=reasons)))[fid] == severity


def test_idle_and_user_clock_reasons_are_not_findings() -> None:
    assert evaluate(snap(gpu(throttle_reasons=("gpu_idle", "applications_clocks_setting")))) == ()


def test_power_cap_is_a_warning_when_the_limit_was_lowered() -> None:
    found = ids(snap(gpu(throttle_reasons=("sw_power_cap",), power=Power(draw=400, limit=400, default_limit=700))))
    assert found["power_cap"] == "warn"


@pytest.mark.parametrize("temp, fires", [(81.9, False), (82.0, True), (86.0, True)])
def test_temperature_near_slowdown_threshold(temp: float, fires: bool) -> None:
    found = ids(snap(gpu(temperature=Temperature(current=temp, slowdown=87))))
    assert ("temp_near_slowdown" in found) is fires


def test_ecc_uncorrectable_is_critical() -> None:
    assert ids(snap(gpu(ecc=Ecc(volatile_uncorrected=1))))["ecc_uncorrectable"] == "critical"


@pytest.mark.parametrize("sbe, dbe, pending, severity", [
    (0, 0, False, None), (10, 4, False, None), (15, 0, False, "warn"), (1, 0, True, "warn"),
    (RETIRED_PAGES_LIMIT - 10, 10, False, "critical"), (40, 23, False, "critical"),
])
def test_retired_pages(sbe: int, dbe: int, pending: bool, severity: str | None) -> None:
    found = ids(snap(gpu(ecc=Ecc(retired_pages_sbe=sbe, retired_pages_dbe=dbe, retired_pages_pending=pending))))
    assert found.get("retired_pages") == severity


def test_row_remap_failure_and_pending() -> None:
    found = ids(snap(gpu(ecc=Ecc(remapped_rows_failure=True, remapped_rows_pending=True))))
    assert found["row_remap_failure"] == "critical" and found["row_remap_pending"] == "warn"


@pytest.mark.parametrize("util, gen, width, fires", [
    (90, 4, 16, True), (90, 5, 8, True), (5, 1, 16, False), (90, 5, 16, False)])
def test_pcie_degraded_only_when_busy(util: float, gen: int, width: int, fires: bool) -> None:
    found = ids(snap(gpu(utilization=Utilization(gpu=util), pcie=Pcie(gen=gen, max_gen=5, width=width, max_width=16))))
    assert ("pcie_degraded" in found) is fires


def test_vram_pressure_names_the_biggest_holder() -> None:
    bob = GpuProcess(pid=42, gpu=0, used_memory=70 * GIB, user="bob", command="python serve.py --port 1")
    pressed = gpu(memory=MemoryInfo(total=80 * GIB, used=77 * GIB, free=3 * GIB), processes=(bob,))
    findings = {f.id: f for f in evaluate(snap(pressed), user="alice")}
    assert "bob" in findings["vram_pressure"].message and "pid 42" in findings["vram_pressure"].message
    assert findings["other_user_vram"].kb == "cuda-oom-other-process"
    assert "other_user_vram" not in ids(snap(pressed), user="bob")  # your own process is not "another user"


def test_vram_below_95_percent_is_not_pressure() -> None:
    assert "vram_pressure" not in ids(snap(gpu(memory=MemoryInfo(total=100 * GIB, used=94 * GIB, free=6 * GIB))))


def test_hidden_process_vram() -> None:
    ghost = GpuProcess(pid=999999, gpu=0, used_memory=20 * GIB, visible=False)
    small = GpuProcess(pid=999998, gpu=0, used_memory=100 * 1024 ** 2, visible=False)
    assert ids(snap(gpu(processes=(ghost,))))["hidden_process_vram"] == "warn"
    assert "hidden_process_vram" not in ids(snap(gpu(processes=(small,))))


def test_persistence_off_is_info_without_kb() -> None:
    (finding,) = evaluate(snap(gpu(persistence_mode=False)))
    assert (finding.id, finding.severity, finding.kb) == ("persistence_off", "info", None)


@pytest.mark.parametrize("status, pci, fid, severity", [
    ("driver_mismatch", 4, "nvml_driver_mismatch", "critical"),
    ("no_driver", 2, "no_driver", "warn"),
    ("no_driver", 0, "no_driver", "info"),
    ("not_responding", None, "nvml_not_responding", "critical"),
])
def test_nvml_states(status: str, pci: int | None, fid: str, severity: str) -> None:
    assert ids(snap(nvml=NvmlState(status=status, message="m", pci_devices=pci))) == {fid: severity}


def test_lost_gpu_is_critical_and_skips_gpu_rules() -> None:
    found = evaluate(snap(gpu(state="lost", error="GPU is lost", persistence_mode=False)))
    assert [(f.id, f.severity, f.kb) for f in found] == [("gpu_lost", "critical", "gpu-fallen-off-bus")]


@pytest.mark.parametrize("xid, severity, kb", [
    (79, "critical", "gpu-fallen-off-bus"), (48, "critical", "gpu-ecc-errors"), (94, "warn", "gpu-ecc-errors"),
    (13, "warn", "illegal-memory-access"), (43, "info", "illegal-memory-access"), (119, "critical", "gpu-xid-errors"),
    (9999, "warn", "gpu-xid-errors"),
])
def test_xid_severity_follows_nvidia_bucket(xid: int, severity: str, kb: str) -> None:
    event = make_event(xid, time_s=NOW - 60, gpu=0)
    (finding,) = evaluate(snap(gpu(), xids=[event]))
    assert (finding.id, finding.severity, finding.kb, finding.gpu) == ("xid", severity, kb, 0)


def test_old_xids_are_history() -> None:
    event = make_event(79, time_s=NOW - 3 * 86400, gpu=0)
    assert ids(snap(gpu(), xids=[event])) == {"xid": "info"}


def cuda_env(**changes) -> CudaEnv:  # noqa: ANN003
    base = CudaEnv(status="ok", python="/venv/bin/python", torch_version="2.5.1+cu124", torch_cuda="12.4",
                   cuda_available=True, devices=(CudaDevice(0, "H100", "9.0"),),
                   arch_list=("sm_80", "sm_86", "sm_90"), arch_covered=True)
    return dataclasses.replace(base, **changes)


def test_torch_findings() -> None:
    assert ids(snap(gpu(), env=cuda_env())) == {}
    assert ids(snap(gpu(), env=cuda_env(torch_cuda=None, torch_version="2.5.1+cpu", arch_list=())))["torch_cpu_only"] == "warn"
    hidden = evaluate(snap(gpu(), env=cuda_env(cuda_available=False, cuda_error="no CUDA GPUs are available")))
    assert [(f.id, f.kb) for f in hidden] == [("torch_cpu_only", "cuda-not-visible")]
    blackwell = gpu(compute_capability="12.0")
    assert ids(snap(blackwell, env=cuda_env()))["torch_arch_mismatch"] == "critical"
    assert ids(snap(gpu(), env=cuda_env(torch_cuda="12.8")))["torch_cuda_too_new"] == "warn"
    assert ids(snap(gpu(), env=cuda_env(torch_cuda="13.0")))["torch_cuda_too_new"] == "critical"
    assert ids(snap(env=CudaEnv(status="no_torch", python="/usr/bin/python3"))) == {"torch_missing": "info"}


def test_cpu_only_torch_on_a_machine_without_gpus_is_fine() -> None:
    env = cuda_env(torch_cuda=None, cuda_available=False, devices=(), arch_list=())
    assert ids(snap(nvml=NvmlState(status="no_driver", pci_devices=0), env=env)) == {"no_driver": "info"}


def test_exit_codes_follow_the_worst_severity() -> None:
    assert exit_code_for(evaluate(snap(gpu()))) == 0
    assert exit_code_for(evaluate(snap(gpu(persistence_mode=False)))) == 0
    assert exit_code_for(evaluate(snap(gpu(throttle_reasons=("sw_thermal_slowdown",))))) == 1
    assert exit_code_for(evaluate(snap(gpu(ecc=Ecc(volatile_uncorrected=3))))) == 2


EXPECTED = {  # scenario -> {(finding id, gpu)}, exactly
    "healthy-8xh100": set(),
    "vram-pressure": {("vram_pressure", 0), ("other_user_vram", 0), ("hidden_process_vram", 1)},
    "thermal-throttle": {("thermal_throttle", 2), ("temp_near_slowdown", 3)},
    "xid79-fell-off-bus": {("gpu_lost", 5), ("xid", 5)},
    "ecc-row-remap": {("ecc_uncorrectable", 6), ("row_remap_failure", 6), ("row_remap_pending", 2),
                      ("xid", 2), ("xid", 6)},
    "driver-mismatch": {("nvml_driver_mismatch", None)},
    "no-driver": {("no_driver", None)},
    "mig-a100": set(),
    "torch-arch-mismatch": {("torch_arch_mismatch", None)},
}


def test_every_scenario_is_covered() -> None:
    assert set(EXPECTED) == set(list_scenarios())


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_findings_hold_on_every_tick(scenario: str) -> None:
    with open_source(simulate=scenario) as source:  # values move with the tick; findings must not flicker
        for _ in range(60):  # a full period of the slowest-moving value
            snapshot = source.sample()
            assert {(f.id, f.gpu) for f in snapshot.findings} == EXPECTED[scenario], snapshot.time
