"""Throttle decoding, CUDA arch coverage, host metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsconsole.telemetry.cuda_arch import all_supported, arch_supports
from opsconsole.telemetry.host import HostCollector, hf_cache_dir
from opsconsole.telemetry.throttle import decode_throttle_reasons, encode_throttle_reasons


def test_throttle_decode_roundtrip_and_unknown_bits() -> None:
    names = ("sw_power_cap", "hw_thermal_slowdown")
    assert decode_throttle_reasons(encode_throttle_reasons(names)) == names
    assert decode_throttle_reasons(0) == ()
    assert decode_throttle_reasons(0x1000 | 0x1) == ("gpu_idle", "bit_0x1000")
    with pytest.raises(ValueError):
        encode_throttle_reasons(["melting"])


@pytest.mark.parametrize("cap, arch, ok", [
    ("9.0", ["sm_80", "sm_90"], True),
    ("8.9", ["sm_80", "sm_86"], True),          # sm_86 cubin runs on 8.9 (same major)
    ("12.0", ["sm_80", "sm_90"], False),        # Blackwell consumer needs sm_120
    ("12.0", ["sm_90", "compute_90"], True),    # PTX JIT
    ("9.0", ["sm_90a"], True),
    ("10.0", ["sm_90a"], False),                # arch-specific targets are exact
    ("7.0", ["sm_75", "sm_80"], False),
])
def test_arch_support(cap: str, arch: list[str], ok: bool) -> None:
    assert arch_supports(cap, arch) is ok


def test_all_supported_is_unknown_without_data() -> None:
    assert all_supported([], ["sm_90"]) is None
    assert all_supported(["9.0"], []) is None
    assert all_supported(["9.0", "12.0"], ["sm_90"]) is False


def test_hf_cache_dir_precedence(tmp_path: Path) -> None:
    assert hf_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hf_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hf_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"


def test_host_collector_reads_this_machine(tmp_path: Path) -> None:
    host = HostCollector(cwd=str(tmp_path)).collect()
    assert host.cpu_count and host.memory_total and host.memory_used is not None
    assert host.uptime_s and host.uptime_s > 0
    labels = {d.label: d for d in host.disks}
    assert labels["cwd"].path == str(tmp_path) and labels["cwd"].free
    assert labels["hf_cache"].free  # measured on the nearest existing parent


def test_host_cpu_percent_waits_only_for_the_first_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    intervals: list[float | None] = []
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: intervals.append(interval) or 12.5)
    collector = HostCollector()
    for _ in range(4):
        assert collector.collect().cpu_percent == 12.5
    # priming call, then one short fixed window right after start, then never blocking again
    assert intervals == [None, 0.1, None, None, None]
