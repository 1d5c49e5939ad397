"""GPU memory and GPU health checks: each one's pass and fail paths on hand-made snapshots."""

from __future__ import annotations

from dataclasses import replace

from pb_builders import gpu, process, snapshot

from opsconsole.telemetry.snapshot import Ecc, NvmlState, Pcie, Power, Temperature, Utilization, XidEvent


def test_vram_free_passes_with_room_and_fails_naming_the_holder(run_check):
    ok = run_check("vram_free", snapshot((gpu(0, used_gib=10),)), min_gib=20)
    assert ok.status == "pass"
    assert ok.evidence["gpus"][0]["free_gib"] == 70.0

    bob = process(4242, gib=75, user="bob", command="python serve.py --port 8080")
    full = run_check("vram_free", snapshot((gpu(0, used_gib=78, processes=(bob,)),)), min_gib=20)
    assert full.status == "fail"
    assert "2 GiB free" in full.summary
    assert "pid 4242" in full.remedy and "bob" in full.remedy and "serve.py" in full.remedy
    assert "80 GiB" in full.remedy  # advice sized to this GPU


def test_vram_free_advice_depends_on_gpu_size(run_check):
    small = run_check("vram_free", snapshot((gpu(0, total_gib=12, used_gib=11.9),)))
    big = run_check("vram_free", snapshot((gpu(0, total_gib=80, used_gib=79),)))
    assert "4-bit" in small.remedy and "ZeRO-3" not in small.remedy
    assert "ZeRO-3" in big.remedy


def test_vram_free_severity_and_gpu_selection(run_check):
    snap = snapshot((gpu(0, used_gib=79), gpu(1, used_gib=1)))
    assert run_check("vram_free", snap, gpu=1).status == "pass"
    assert run_check("vram_free", snap, severity="warn").status == "warn"
    assert run_check("vram_free", snap, gpu=5).status == "error"


def test_vram_holders_other_user_fails_own_warns_none_passes(run_check):
    other = process(100, gib=30, user="bob", command="python train.py")
    mine = process(200, gib=30, user="alice", command="python notebook.py")
    failing = run_check("vram_holders", snapshot((gpu(0, used_gib=31, processes=(other,)),)))
    assert failing.status == "fail"
    assert "pid 100" in failing.summary and "bob" in failing.summary and "train.py" in failing.summary

    own = run_check("vram_holders", snapshot((gpu(0, used_gib=31, processes=(mine,)),)))
    assert own.status == "warn" and "pid 200" in own.summary and "kill" in own.remedy

    assert run_check("vram_holders", snapshot((gpu(0, used_gib=0.5),))).status == "pass"
    tiny = process(300, gib=0.2, user="bob")
    assert run_check("vram_holders", snapshot((gpu(0, used_gib=1, processes=(tiny,)),))).status == "pass"


def test_vram_holders_reports_invisible_processes(run_check):
    hidden = process(500, gib=20, user=None, command=None, visible=False)
    result = run_check("vram_holders", snapshot((gpu(0, used_gib=21, processes=(hidden,)),)))
    assert result.status == "fail" and "container" in result.remedy
    unaccounted = run_check("vram_holders", snapshot((gpu(0, used_gib=40),)))
    assert unaccounted.status == "fail" and "cannot see" in unaccounted.summary


def test_gpu_checks_skip_without_a_driver(run_check):
    snap = snapshot((), nvml=NvmlState(status="no_driver", message="no driver"))
    for name in ("vram_free", "vram_holders", "gpu_throttle", "gpu_ecc", "gpu_pcie", "persistence_mode"):
        result = run_check(name, snap)
        assert result.status == "skip" and "no NVIDIA driver" in result.summary, name


def test_driver_loaded(run_check):
    assert run_check("driver_loaded", snapshot((gpu(),))).status == "pass"
    mismatch = run_check("driver_loaded", snapshot((), nvml=NvmlState(status="driver_mismatch", message="Driver/library version mismatch")))
    assert mismatch.status == "fail" and "reboot" in mismatch.remedy.lower()
    missing = run_check("driver_loaded", snapshot((), nvml=NvmlState(status="no_driver")))
    assert missing.status == "fail" and "install" in missing.remedy.lower()


def test_gpu_count(run_check):
    assert run_check("gpu_count", snapshot((gpu(0), gpu(1))), min=2).status == "pass"
    one = run_check("gpu_count", snapshot((gpu(0),)), min=2)
    assert one.status == "fail" and one.evidence["gpu_count"] == 1


def test_gpu_throttle_names_the_reason(run_check):
    cool = gpu(0, temperature=Temperature(current=50, slowdown=88), throttle_reasons=("gpu_idle",))
    assert run_check("gpu_throttle", snapshot((cool,))).status == "pass"
    hot = gpu(1, temperature=Temperature(current=90, slowdown=88), throttle_reasons=("sw_thermal_slowdown",))
    result = run_check("gpu_throttle", snapshot((cool, hot)))
    assert result.status == "warn"
    assert "GPU 1" in result.summary and "sw_thermal_slowdown" in result.summary
    assert result.evidence["gpu1"]["temperature_c"] == 90
    near = gpu(0, temperature=Temperature(current=85, slowdown=88))
    assert run_check("gpu_throttle", snapshot((near,))).status == "warn"


def test_gpu_ecc(run_check):
    clean = gpu(0, ecc=Ecc(mode_enabled=True, volatile_uncorrected=0, volatile_corrected=0, aggregate_uncorrected=0))
    assert run_check("gpu_ecc", snapshot((clean,))).status == "pass"
    bad = gpu(0, ecc=Ecc(mode_enabled=True, volatile_uncorrected=2))
    result = run_check("gpu_ecc", snapshot((bad,)))
    assert result.status == "fail" and "2 uncorrectable" in result.summary and "RMA" in result.remedy
    old = gpu(0, ecc=Ecc(mode_enabled=True, volatile_uncorrected=0, aggregate_uncorrected=3))
    assert run_check("gpu_ecc", snapshot((old,))).status == "warn"
    assert run_check("gpu_ecc", snapshot((gpu(0),))).status == "skip"  # consumer GPU: no ECC fields


def test_gpu_row_remap(run_check):
    ok = gpu(0, ecc=Ecc(remapped_rows_pending=False, remapped_rows_failure=False))
    assert run_check("gpu_row_remap", snapshot((ok,))).status == "pass"
    pending = gpu(0, ecc=Ecc(remapped_rows_pending=True, remapped_rows_failure=False))
    assert run_check("gpu_row_remap", snapshot((pending,))).status == "warn"
    failed = gpu(0, ecc=Ecc(remapped_rows_pending=False, remapped_rows_failure=True))
    result = run_check("gpu_row_remap", snapshot((failed,)))
    assert result.status == "fail" and "RMA" in result.remedy


def test_gpu_xid_fails_with_nvidias_action(run_check):
    assert run_check("gpu_xid", snapshot((gpu(0),))).status == "pass"
    event = XidEvent(time=0, xid=79, gpu=0, meaning="GPU has fallen off the bus", action="Drain the node and reboot it",
                     severity="critical")
    noise = XidEvent(time=0, xid=45, gpu=0, meaning="channel cleanup", action="None by itself", severity="info")
    result = run_check("gpu_xid", snapshot((gpu(0),), xid_events=(event, noise)))
    assert result.status == "fail"
    assert "XID 79" in result.summary and "Drain the node and reboot it" in result.remedy
    assert "None by itself" not in result.remedy
    assert run_check("gpu_xid", snapshot((gpu(0),), xid_events=(noise,))).status == "pass"


def test_gpu_xid_fails_for_a_lost_gpu_without_events(run_check):
    lost = gpu(1, state="lost", error="GPU is lost")
    result = run_check("gpu_xid", snapshot((gpu(0), lost)))
    assert result.status == "fail" and "GPU 1 is lost" in result.summary
    # the other GPU checks look at the GPUs that still answer
    assert run_check("gpu_throttle", snapshot((gpu(0), lost))).status == "pass"


def test_gpu_pcie(run_check):
    full = gpu(0, pcie=Pcie(gen=5, max_gen=5, width=16, max_width=16))
    assert run_check("gpu_pcie", snapshot((full,))).status == "pass"
    narrow = gpu(0, pcie=Pcie(gen=5, max_gen=5, width=8, max_width=16))
    result = run_check("gpu_pcie", snapshot((narrow,)))
    assert result.status == "warn" and "x8 of x16" in result.summary
    idle_low_gen = gpu(0, pcie=Pcie(gen=1, max_gen=5, width=16, max_width=16), utilization=Utilization(gpu=0))
    assert run_check("gpu_pcie", snapshot((idle_low_gen,))).status == "pass"  # power saving at idle is normal
    busy_low_gen = replace(idle_low_gen, utilization=Utilization(gpu=95))
    assert run_check("gpu_pcie", snapshot((busy_low_gen,))).status == "warn"


def test_persistence_mode(run_check):
    assert run_check("persistence_mode", snapshot((gpu(0, persistence_mode=True),))).status == "pass"
    off = run_check("persistence_mode", snapshot((gpu(0, persistence_mode=False),)))
    assert off.status == "warn" and "nvidia-persistenced" in off.remedy


def test_gpu_power_cap(run_check):
    assert run_check("gpu_power_cap", snapshot((gpu(0, power=Power(limit=700, default_limit=700)),))).status == "pass"
    capped = run_check("gpu_power_cap", snapshot((gpu(0, power=Power(limit=400, default_limit=700)),)))
    assert capped.status == "warn" and "-pl 700" in capped.remedy


def test_gpu_health_combines_the_worst(run_check):
    healthy = gpu(0, persistence_mode=True, ecc=Ecc(volatile_uncorrected=0, remapped_rows_failure=False),
                  pcie=Pcie(gen=5, max_gen=5, width=16, max_width=16))
    assert run_check("gpu_health", snapshot((healthy,))).status == "pass"
    broken = replace(healthy, ecc=Ecc(volatile_uncorrected=1, remapped_rows_failure=True))
    result = run_check("gpu_health", snapshot((healthy, replace(broken, index=1))))
    assert result.status == "fail"
    assert result.evidence["ecc"]["status"] == "fail" and result.evidence["row_remap"]["status"] == "fail"
    nodriver = run_check("gpu_health", snapshot((), nvml=NvmlState(status="no_driver")))
    assert nodriver.status == "fail"


def test_gpu_count_without_a_driver_fails_and_counts_the_pci_bus(run_check):
    result = run_check("gpu_count", snapshot((), nvml=NvmlState(status="no_driver", pci_devices=2)))
    assert result.status == "fail" and "2 NVIDIA device(s) on the PCI bus" in result.summary
