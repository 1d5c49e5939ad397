"""Immutable telemetry snapshots: one shape, many readers (rules, playbooks, TUI, --json).

Conventions:
- every field a GPU may not support is `None` ("not available"), never an exception;
- memory in bytes, power in watts, clocks in MHz, temperatures in °C, percentages 0-100;
- `to_dict()` gives the JSON shape documented for `opsconsole status --json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warn", "critical")


@dataclass(frozen=True)
class MemoryInfo:
    total: int | None = None
    used: int | None = None
    free: int | None = None
    reserved: int | None = None  # v2 API only

    @property
    def used_fraction(self) -> float | None:
        if not self.total or self.used is None:
            return None
        return self.used / self.total


@dataclass(frozen=True)
class Utilization:
    gpu: float | None = None     # % of time a kernel ran
    memory: float | None = None  # % of time device memory was read/written


@dataclass(frozen=True)
class Temperature:
    current: float | None = None
    slowdown: float | None = None   # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    shutdown: float | None = None   # NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
    max_operating: float | None = None  # GPU_MAX (acoustic/operating) where reported
    memory: float | None = None     # HBM temperature where reported


@dataclass(frozen=True)
class Power:
    draw: float | None = None           # W
    limit: float | None = None          # enforced limit, W
    default_limit: float | None = None  # W


@dataclass(frozen=True)
class Clocks:
    sm: int | None = None
    sm_max: int | None = None
    memory: int | None = None
    memory_max: int | None = None
    graphics: int | None = None


@dataclass(frozen=True)
class Ecc:
    mode_enabled: bool | None = None
    volatile_corrected: int | None = None
    volatile_uncorrected: int | None = None
    aggregate_corrected: int | None = None
    aggregate_uncorrected: int | None = None
    retired_pages_sbe: int | None = None     # pre-Ampere page retirement
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None  # Ampere+ row remapping
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None


@dataclass(frozen=True)
class Pcie:
    gen: int | None = None
    max_gen: int | None = None
    width: int | None = None
    max_width: int | None = None
    replay_counter: int | None = None
    tx_kbps: int | None = None
    rx_kbps: int | None = None


@dataclass(frozen=True)
class MigDevice:
    index: int
    uuid: str | None = None
    name: str | None = None
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    gpu: int                         # GPU index
    used_memory: int | None = None   # bytes, None when NVML does not say
    type: str = "compute"            # "compute" | "graphics" | "compute+graphics"
    user: str | None = None
    command: str | None = None       # redacted command line
    start_time: float | None = None  # unix time
    cpu_percent: float | None = None
    rss: int | None = None
    visible: bool = True             # False: pid not in this host's pid namespace (container)


@dataclass(frozen=True)
class GpuSnapshot:
    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    compute_capability: str | None = None  # "9.0"
    state: str = "ok"                      # "ok" | "lost" | "not_accessible" (NO_PERMISSION) | "error" | "stale"
    error: str | None = None
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    bar1: MemoryInfo = field(default_factory=MemoryInfo)
    utilization: Utilization = field(default_factory=Utilization)
    temperature: Temperature = field(default_factory=Temperature)
    fan_percent: float | None = None
    power: Power = field(default_factory=Power)
    clocks: Clocks = field(default_factory=Clocks)
    performance_state: int | None = None   # P0..P15
    throttle_reasons: tuple[str, ...] = () # decoded names, e.g. ("sw_thermal_slowdown",)
    ecc: Ecc = field(default_factory=Ecc)
    pcie: Pcie = field(default_factory=Pcie)
    persistence_mode: bool | None = None
    compute_mode: str | None = None        # "default" | "exclusive_process" | "prohibited"
    mig_mode: bool | None = None
    mig_devices: tuple[MigDevice, ...] = ()
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class NvmlState:
    # "ok" | "no_driver" | "library_not_found" | "driver_mismatch" | "not_responding" | "error"
    status: str = "ok"
    message: str = ""
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: str | None = None  # max CUDA the driver supports, "12.4"
    # NVIDIA display/3D controllers on the PCI bus (sysfs), known even without a driver;
    # None where it was not looked at. Tells "no GPU here" from "GPU but no driver".
    pci_devices: int | None = None


@dataclass(frozen=True)
class DiskUsage:
    label: str   # "cwd" | "hf_cache" | "shm" | ...
    path: str
    total: int | None = None
    used: int | None = None
    free: int | None = None


@dataclass(frozen=True)
class HostSnapshot:
    hostname: str = ""
    cpu_percent: float | None = None
    cpu_count: int | None = None
    load_avg: tuple[float, float, float] | None = None
    memory_total: int | None = None
    memory_available: int | None = None
    memory_used: int | None = None
    swap_total: int | None = None
    swap_used: int | None = None
    disks: tuple[DiskUsage, ...] = ()
    uptime_s: float | None = None


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str | None = None
    capability: str | None = None  # "9.0"


@dataclass(frozen=True)
class LibraryInfo:
    name: str
    version: str | None = None
    error: str | None = None       # import error text, when it failed


@dataclass(frozen=True)
class CudaEnv:
    # "ok" | "no_torch" | "error" | "timeout" | "not_probed"
    status: str = "not_probed"
    python: str | None = None
    message: str = ""
    torch_version: str | None = None
    torch_cuda: str | None = None          # CUDA version torch was built with, None for CPU builds
    cudnn_version: str | None = None
    cuda_available: bool | None = None
    cuda_error: str | None = None
    device_count: int | None = None
    devices: tuple[CudaDevice, ...] = ()
    arch_list: tuple[str, ...] = ()        # torch.cuda.get_arch_list(), e.g. ("sm_80", "sm_90")
    arch_covered: bool | None = None       # every visible GPU's arch is in arch_list (or PTX-compatible)
    bf16_supported: bool | None = None
    sdpa_available: bool | None = None
    libraries: tuple[LibraryInfo, ...] = ()  # flash_attn, xformers, bitsandbytes, transformers, ...
    env: tuple[tuple[str, str | None], ...] = ()  # CUDA_VISIBLE_DEVICES, PYTORCH_CUDA_ALLOC_CONF, HF_HOME, ...

    def library(self, name: str) -> LibraryInfo | None:
        return next((lib for lib in self.libraries if lib.name == name), None)

    def env_value(self, name: str) -> str | None:
        return dict(self.env).get(name)


@dataclass(frozen=True)
class XidEvent:
    time: float
    xid: int
    gpu: int | None = None
    pci_bus_id: str | None = None
    message: str = ""        # the raw event/kernel text
    meaning: str = ""        # NVIDIA's description from the catalogue
    action: str = ""         # NVIDIA's recommended action
    severity: str = "warn"   # from the catalogue's action bucket
    source: str = "nvml"     # "nvml" | "kernel" | "simulated"


@dataclass(frozen=True)
class Finding:
    id: str                  # stable id, e.g. "thermal_throttle"; KB `telemetry:` lists refer to these
    severity: str            # one of SEVERITIES
    message: str
    gpu: int | None = None
    evidence: tuple[str, ...] = ()
    kb: str | None = None    # suggested KB entry id

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"bad severity {self.severity!r}")


@dataclass(frozen=True)
class Snapshot:
    time: float
    source: str                       # "nvml" | "simulated:<scenario>"
    nvml: NvmlState = field(default_factory=NvmlState)
    gpus: tuple[GpuSnapshot, ...] = ()
    host: HostSnapshot = field(default_factory=HostSnapshot)
    cuda_env: CudaEnv = field(default_factory=CudaEnv)
    xid_events: tuple[XidEvent, ...] = ()
    findings: tuple[Finding, ...] = ()
    sample_ms: float | None = None    # how long the sample took

    def gpu(self, index: int) -> GpuSnapshot | None:
        return next((g for g in self.gpus if g.index == index), None)

    @property
    def worst_severity(self) -> str | None:
        ranks = [SEVERITIES.index(f.severity) for f in self.findings]
        return SEVERITIES[max(ranks)] if ranks else None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def to_jsonable(value: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, recursively (for json.dumps)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, CudaEnv):
            out["env"] = {k: v for k, v in value.env}
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value
