"""TelemetrySource: the NVML deadline (not_responding, then recovery) and never raising."""

from __future__ import annotations

import time

import pytest

from opsconsole.telemetry import UnknownScenarioError, open_source
from opsconsole.telemetry.collector import GpuReading
from opsconsole.telemetry.fake_nvml import FakeNvml
from opsconsole.telemetry.nvml import NvmlCollector
from opsconsole.telemetry.snapshot import HostSnapshot, NvmlState
from opsconsole.telemetry.source import TelemetrySource


def nvml_source(timeout: float) -> TelemetrySource:
    return TelemetrySource(NvmlCollector(watch_xid=False), HostSnapshot, None, nvml_timeout=timeout)


def timed_sample(source: TelemetrySource):  # noqa: ANN201
    start = time.monotonic()
    snapshot = source.sample()
    return snapshot, time.monotonic() - start


def test_hung_nvml_reports_not_responding_with_stale_gpus_then_recovers(fake: FakeNvml) -> None:
    source = nvml_source(timeout=0.3)
    try:
        good = source.sample()
        assert good.nvml.status == "ok" and all(g.state == "ok" for g in good.gpus)

        fake.hang()
        for _ in range(2):  # the second call finds the worker still stuck: it must not queue or block longer
            hung, took = timed_sample(source)
            assert took < 2.0, "sample() blocked past the NVML deadline"
            assert hung.nvml.status == "not_responding"
            assert "did not answer" in hung.nvml.message
            assert [g.state for g in hung.gpus] == ["stale"] * 3
            assert hung.gpus[0].memory.used == good.gpus[0].memory.used  # last known values kept
            assert any(f.id == "nvml_not_responding" and f.severity == "critical" for f in hung.findings)

        fake.release()
        deadline = time.monotonic() + 5
        recovered = source.sample()
        while recovered.nvml.status != "ok" and time.monotonic() < deadline:
            recovered = source.sample()
        assert recovered.nvml.status == "ok"
        assert [g.state for g in recovered.gpus] == ["ok"] * 3
        assert not any(f.id == "nvml_not_responding" for f in recovered.findings)
    finally:
        fake.release()
        source.close()


def test_close_returns_even_when_nvml_is_wedged(fake: FakeNvml) -> None:
    source = nvml_source(timeout=0.2)
    source.sample()
    fake.hang()
    source.sample()  # the worker is now stuck inside NVML
    start = time.monotonic()
    source.close(timeout=0.5)
    assert time.monotonic() - start < 2.0
    fake.release()


def test_nvml_hanging_from_the_start_gives_not_responding_without_gpus(fake: FakeNvml) -> None:
    fake.hang()
    source = nvml_source(timeout=0.2)
    try:
        snapshot, took = timed_sample(source)
        assert took < 2.0
        assert snapshot.nvml.status == "not_responding" and snapshot.gpus == ()
    finally:
        fake.release()
        source.close()


class ExplodingCollector:
    name = "broken"

    def collect(self) -> GpuReading:
        raise RuntimeError("collector bug")

    def close(self) -> None:
        pass


def test_sample_never_raises_even_when_the_collector_does() -> None:
    def bad_host() -> HostSnapshot:
        raise OSError("psutil broke")

    source = TelemetrySource(ExplodingCollector(), bad_host, None, nvml_timeout=1.0)
    try:
        snapshot = source.sample()
    finally:
        source.close()
    assert snapshot.nvml.status == "error" and "collector bug" in snapshot.nvml.message
    assert snapshot.host == HostSnapshot()


def test_unknown_scenario_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownScenarioError) as info:
        open_source(simulate="no-such-box")
    assert info.value.exit_code == 3
    assert "healthy-8xh100" in str(info.value)


def test_simulated_source_attaches_findings_and_env() -> None:
    with open_source(simulate="thermal-throttle", frozen=True) as source:
        snapshot = source.sample()
    assert snapshot.source == "simulated:thermal-throttle"
    assert snapshot.cuda_env.status == "ok" and snapshot.host.hostname == "ws-l40s-02"
    assert {f.id for f in snapshot.findings} >= {"thermal_throttle", "temp_near_slowdown"}
    assert snapshot.sample_ms is not None


def test_real_source_without_driver_still_reports_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    machine = FakeNvml(0, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND).install()
    try:
        with open_source(probe_env=False) as source:
            snapshot = source.sample()
    finally:
        machine.uninstall()
    assert snapshot.nvml.status == "no_driver"
    assert snapshot.host.memory_total and snapshot.host.cpu_count
    assert snapshot.cuda_env.status == "not_probed"
    assert isinstance(snapshot.nvml, NvmlState)
