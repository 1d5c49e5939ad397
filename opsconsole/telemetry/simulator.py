"""Scenario player: a simulated GPU box behind the same collector interface as NVML.

Scenarios are YAML files in `scenarios/` (data, not code). Numeric values are
either a number or a `[low, high]` range; ranged values move smoothly and
deterministically with the sample tick (seed + tick), so history graphs move and
two runs replay the same values. `frozen=True` pins the tick and the clock, for
snapshot tests. Keys are documented in scenarios/README.md.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from .collector import GpuReading
from .cuda_arch import all_supported
from .snapshot import (
    Clocks, CudaDevice, CudaEnv, DiskUsage, Ecc, GpuProcess, GpuSnapshot, HostSnapshot,
    LibraryInfo, MemoryInfo, MigDevice, NvmlState, Pcie, Power, Temperature, Utilization,
)
from .xid import make_event

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
FROZEN_TIME = 1767225600.0  # 2026-01-01T00:00:00Z: the clock of frozen simulations
GIB = 1024 ** 3


class UnknownScenarioError(UsageError):
    def __init__(self, name: str) -> None:
        self.name = name
        shown = name if len(name) <= 120 else name[:120] + "…"
        super().__init__(f"unknown scenario {shown!r}; known scenarios: {', '.join(list_scenarios())}")


def list_scenarios() -> list[str]:
    """Names of the bundled scenarios, sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=32)
def load_scenario(name: str) -> dict[str, Any]:
    if name not in list_scenarios():  # the bundled names only: no path, no 10,000-character stat()
        raise UnknownScenarioError(name)
    path = SCENARIO_DIR / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.setdefault("name", name)
    return data


def scenario_descriptions() -> dict[str, str]:
    return {name: str(load_scenario(name).get("description", "")).strip() for name in list_scenarios()}


class Wave:
    """Deterministic smooth variation in [0, 1] for a (key, tick)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, key: str, tick: int) -> float:
        h = zlib.crc32(f"{self.seed}:{key}".encode())
        phase = (h % 1000) / 1000.0
        period = 20 + h % 40  # ticks
        jitter = (zlib.crc32(f"{self.seed}:{key}:{tick}".encode()) % 1000) / 1000.0 - 0.5
        value = 0.5 + 0.38 * math.sin(2 * math.pi * (tick / period + phase)) + 0.2 * jitter
        return min(1.0, max(0.0, value))


class SimulatedMachine:
    """Replays one scenario. `collect()` is the GPU collector; `host()` and `cuda_env()` the rest."""

    def __init__(self, scenario: str, frozen: bool = False) -> None:
        self.scenario = load_scenario(scenario)
        self.name = f"simulated:{scenario}"
        self.frozen = frozen
        self.tick = 0
        self.wave = Wave(int(self.scenario.get("seed", 0)))
        self.viewer: str | None = self.scenario.get("viewer")
        self._start = FROZEN_TIME if frozen else time.time()

    # -- helpers ---------------------------------------------------------
    def now(self) -> float:
        return FROZEN_TIME if self.frozen else time.time()

    def value(self, spec: Any, key: str) -> Any:
        """A number, or a point inside a [low, high] range that moves with the tick."""
        if isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
            low, high = spec
            point = low + (high - low) * self.wave(key, self.tick)
            return round(point, 1) if isinstance(low, float) or isinstance(high, float) else int(round(point))
        return spec

    def advance(self) -> None:
        if not self.frozen:
            self.tick += 1

    # -- GPU -------------------------------------------------------------
    def collect(self) -> GpuReading:
        nvml = dict(self.scenario.get("nvml") or {})
        state = NvmlState(
            status=nvml.get("status", "ok"),
            message=str(nvml.get("message", "")),
            driver_version=nvml.get("driver_version"),
            nvml_version=nvml.get("nvml_version"),
            cuda_driver_version=None if nvml.get("cuda_driver_version") is None else str(nvml["cuda_driver_version"]),
            pci_devices=nvml.get("pci_devices"),
        )
        gpus: tuple[GpuSnapshot, ...] = ()
        if state.status == "ok":
            count = int(self.scenario.get("gpu_count", 0))
            processes = self._processes()
            gpus = tuple(self._gpu(i, [p for p in processes if p.gpu == i]) for i in range(count))
        events = tuple(
            make_event(int(e["xid"]), time_s=self.now() - float(e.get("ago_s", 0)), gpu=e.get("gpu"),
                       pci_bus_id=self._pci_bus_id(e["gpu"]) if e.get("gpu") is not None else None,
                       message=str(e.get("message", "")), source="simulated")
            for e in self.scenario.get("xid_events") or ()
        )
        reading = GpuReading(nvml=state, gpus=gpus, xid_events=events)
        self.advance()
        return reading

    def _gpu_spec(self, index: int) -> dict[str, Any]:
        spec = dict(self.scenario.get("gpu") or {})
        spec.update((self.scenario.get("gpus") or {}).get(index) or {})
        return spec

    def _pci_bus_id(self, index: int) -> str:
        buses = self.scenario.get("pci_buses") or [0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB]
        bus = buses[index % len(buses)] + 0x100 * (index // len(buses))
        return f"00000000:{bus:02X}:00.0"

    def _uuid(self, index: int) -> str:
        seed = self.scenario.get("seed", 0)
        h = f"{zlib.crc32(f'{seed}:{index}'.encode()):08x}"
        return f"GPU-{h}-{h[:4]}-{h[4:]}-{index:04x}-{h}{index:04x}"

    def _gpu(self, index: int, processes: list[GpuProcess]) -> GpuSnapshot:
        s = self._gpu_spec(index)
        v = lambda name, default=None: self.value(s.get(name, default), f"{index}:{name}")  # noqa: E731
        identity = dict(index=index, name=s.get("name"), uuid=self._uuid(index), pci_bus_id=self._pci_bus_id(index),
                        compute_capability=None if s.get("compute_capability") is None else str(s["compute_capability"]))
        if s.get("state", "ok") != "ok":
            return GpuSnapshot(**identity, state=s["state"], error=s.get("error", "GPU is lost"))
        total = int(float(s.get("memory_total_gib", 80)) * GIB)
        held = sum(p.used_memory or 0 for p in processes)
        used = min(int(total * 0.999), int(float(v("memory_overhead_gib", 0.5)) * GIB) + held
                   + int(float(v("memory_extra_used_gib", 0)) * GIB))
        bar1_total = int(float(s.get("bar1_total_gib", 128)) * GIB)
        bar1_used = int(float(v("bar1_used_gib", 2)) * GIB)
        sm_max = s.get("clocks_sm_max")
        return GpuSnapshot(
            **identity,
            memory=MemoryInfo(total=total, used=used, free=total - used, reserved=int(0.45 * GIB)),
            bar1=MemoryInfo(total=bar1_total, used=bar1_used, free=bar1_total - bar1_used),
            utilization=Utilization(gpu=v("utilization_gpu", 0), memory=v("utilization_memory", 0)),
            temperature=Temperature(current=v("temperature"), slowdown=s.get("temperature_slowdown"),
                                    shutdown=s.get("temperature_shutdown"),
                                    max_operating=s.get("temperature_max_operating"),
                                    memory=v("temperature_memory")),
            fan_percent=v("fan_percent"),
            power=Power(draw=v("power_draw"), limit=s.get("power_limit"),
                        default_limit=s.get("power_default_limit", s.get("power_limit"))),
            clocks=Clocks(sm=v("clocks_sm"), sm_max=sm_max, memory=v("clocks_memory"),
                          memory_max=s.get("clocks_memory_max"), graphics=v("clocks_sm")),
            performance_state=s.get("performance_state", 0),
            throttle_reasons=tuple(s.get("throttle_reasons") or ()),
            ecc=Ecc(**{k: self.value(val, f"{index}:ecc:{k}") for k, val in (s.get("ecc") or {}).items()}),
            pcie=Pcie(**{k: self.value(val, f"{index}:pcie:{k}") for k, val in (s.get("pcie") or {}).items()}),
            persistence_mode=s.get("persistence_mode"),
            compute_mode=s.get("compute_mode", "default"),
            mig_mode=s.get("mig_mode"),
            mig_devices=tuple(self._mig_device(index, i, m) for i, m in enumerate(s.get("mig_devices") or ())),
            processes=tuple(processes),
        )

    def _mig_device(self, gpu: int, index: int, m: dict[str, Any]) -> MigDevice:
        total = int(float(m.get("memory_total_gib", 10)) * GIB)
        used = int(float(self.value(m.get("memory_used_gib", 0), f"{gpu}:mig{index}:used")) * GIB)
        return MigDevice(index=index, uuid=f"MIG-{self._uuid(gpu)[4:]}-{index}", name=m.get("name"),
                         memory=MemoryInfo(total=total, used=used, free=total - used),
                         gpu_instance_id=m.get("gpu_instance_id"), compute_instance_id=m.get("compute_instance_id", 0))

    def _processes(self) -> list[GpuProcess]:
        out: list[GpuProcess] = []
        pid = int(self.scenario.get("first_pid", 20000 + int(self.scenario.get("seed", 0)) * 37))
        for n, entry in enumerate(self.scenario.get("processes") or ()):
            gpus = entry.get("gpus", [entry.get("gpu", 0)])
            for gpu in gpus:
                for k in range(int(entry.get("count", 1))):
                    key = f"proc{n}:{gpu}:{k}"
                    pid += 1 + zlib.crc32(key.encode()) % 50
                    visible = bool(entry.get("visible", True))
                    memory = self.value(entry.get("memory_gib"), f"{key}:mem")
                    out.append(GpuProcess(
                        pid=pid, gpu=int(gpu), type=entry.get("type", "compute"),
                        used_memory=None if memory is None else int(float(memory) * GIB),
                        user=entry.get("user") if visible else None,
                        command=entry.get("command", "").replace("{gpu}", str(gpu)).replace("{k}", str(k)) if visible else None,
                        start_time=self.now() - float(entry.get("age_h", 1)) * 3600 - 60 * k if visible else None,
                        cpu_percent=self.value(entry.get("cpu_percent", 0), f"{key}:cpu") if visible else None,
                        rss=int(float(self.value(entry.get("rss_gib", 2), f"{key}:rss")) * GIB) if visible else None,
                        visible=visible,
                    ))
        return out

    # -- host and env ----------------------------------------------------
    def host(self) -> HostSnapshot:
        h = dict(self.scenario.get("host") or {})
        v = lambda name, default=None: self.value(h.get(name, default), f"host:{name}")  # noqa: E731
        load = v("load_avg")
        mem_total = int(float(h.get("memory_total_gib", 512)) * GIB)
        mem_used = int(float(v("memory_used_gib", 64)) * GIB)
        disks = tuple(
            DiskUsage(label=d["label"], path=d["path"], total=int(float(d["total_gib"]) * GIB),
                      used=int(float(self.value(d["used_gib"], f"disk:{d['label']}")) * GIB),
                      free=int((float(d["total_gib"]) - float(self.value(d["used_gib"], f"disk:{d['label']}"))) * GIB))
            for d in h.get("disks") or ()
        )
        return HostSnapshot(
            hostname=h.get("hostname", "sim"), cpu_percent=v("cpu_percent"), cpu_count=h.get("cpu_count"),
            load_avg=None if load is None else (float(load), round(float(load) * 0.96, 2), round(float(load) * 0.9, 2)),
            memory_total=mem_total, memory_used=mem_used, memory_available=mem_total - mem_used,
            swap_total=int(float(h.get("swap_total_gib", 0)) * GIB), swap_used=int(float(v("swap_used_gib", 0)) * GIB),
            disks=disks, uptime_s=float(h.get("uptime_days", 10)) * 86400 + self.tick,
        )

    def cuda_env(self) -> CudaEnv:
        e = dict(self.scenario.get("cuda_env") or {"status": "no_torch", "message": "No module named 'torch'"})
        devices = tuple(CudaDevice(index=i, name=d.get("name"), capability=str(d["capability"]))
                        for i, d in enumerate(e.pop("devices", None) or ()))
        libraries = tuple(
            LibraryInfo(name=name, version=spec) if not isinstance(spec, dict)
            else LibraryInfo(name=name, version=spec.get("version"), error=spec.get("error"))
            for name, spec in (e.pop("libraries", None) or {}).items()
        )
        env = tuple((k, None if val is None else str(val)) for k, val in (e.pop("env", None) or {}).items())
        arch_list = tuple(e.pop("arch_list", None) or ())
        covered = all_supported([d.capability for d in devices], arch_list) if devices else None
        return CudaEnv(python=e.pop("python", "/opt/venvs/ml/bin/python"), devices=devices, libraries=libraries,
                       env=env, arch_list=arch_list, arch_covered=covered,
                       device_count=e.pop("device_count", len(devices)), **e)

    def close(self) -> None:
        pass
