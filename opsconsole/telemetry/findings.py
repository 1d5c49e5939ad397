"""Rules over a snapshot -> findings (severity, GPU, message, evidence, suggested KB entry).

Finding ids and the KB entries they suggest are a cross-team contract (see
FINDING_IDS / FINDING_KB). Thresholds follow NVIDIA / DCGM where those exist;
each rule cites its source.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .cuda_arch import arch_supports, version_tuple
from .snapshot import SEVERITIES, Finding, GpuProcess, GpuSnapshot, Snapshot
from .throttle import HW_SLOWDOWN_REASONS, THERMAL_REASONS
from .xid import xid_info

# id -> suggested KB entry (None: no entry). Fixed across the team.
FINDING_KB: dict[str, str | None] = {
    "thermal_throttle": "gpu-thermal-throttle",
    "temp_near_slowdown": "gpu-thermal-throttle",
    "power_cap": "gpu-power-throttle",
    "hw_slowdown": "gpu-hw-slowdown",
    "ecc_uncorrectable": "gpu-ecc-errors",
    "retired_pages": "gpu-ecc-errors",
    "row_remap_failure": "gpu-row-remap",
    "row_remap_pending": "gpu-row-remap",
    "pcie_degraded": "gpu-pcie-link-degraded",
    "xid": "gpu-xid-errors",  # per XID: see data/xid.yaml `kb`
    "vram_pressure": "cuda-oom-batch-too-large",
    "hidden_process_vram": "cuda-oom-other-process",
    "other_user_vram": "cuda-oom-other-process",
    "persistence_off": None,
    "nvml_driver_mismatch": "driver-library-mismatch",
    "no_driver": "no-nvidia-driver",
    "nvml_not_responding": "gpu-fallen-off-bus",
    "gpu_lost": "gpu-fallen-off-bus",
    "gpu_not_accessible": None,
    "torch_cpu_only": "torch-cpu-only",
    "torch_arch_mismatch": "no-kernel-image",
    "torch_cuda_too_new": "cuda-driver-too-old",
    "torch_missing": None,
}
FINDING_IDS: tuple[str, ...] = tuple(FINDING_KB)

GIB = 1024 ** 3

# --- thresholds (with their sources) ------------------------------------------
# NVML reports the slowdown threshold (NVML_TEMPERATURE_THRESHOLD_SLOWDOWN) at which
# the GPU starts HW slowdown; DCGM's thermal health watch warns before it. We warn
# within this margin of it.
TEMP_MARGIN_C = 5.0
# DCGM dcgm_gpu_hardware_limits.h: DCGM_LIMIT_MAX_RETIRED_PAGES 60 (RMA territory;
# NVIDIA's page retirement doc caps retirement at 64 pages) and
# DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT 15 (worth watching).
RETIRED_PAGES_LIMIT = 60
RETIRED_PAGES_SOFT_LIMIT = 15
# A PCIe link trains down at idle to save power (ASPM); only a busy GPU on a
# narrower/slower link than its max is degraded (nvidia-smi -q "GPU Link Info").
PCIE_BUSY_UTILIZATION = 20.0
# VRAM: an allocation fails when memory is full; 95 % leaves no headroom for the
# caching allocator's next segment.
VRAM_PRESSURE_FRACTION = 0.95
OTHER_USER_PRESSURE_FRACTION = 0.90   # the GPU is nearly full ...
OTHER_USER_SHARE = 0.50               # ... and other users hold at least half of it
HIDDEN_VRAM_MIN = 256 * 1024 ** 2     # invisible pids below this are CUDA contexts, not a problem
# XIDs older than this are history (still shown, as info).
XID_RECENT_S = 24 * 3600
# NVIDIA CUDA Compatibility guide: within one major version, a newer CUDA
# runtime runs on an older driver (minor version compatibility) except for PTX
# JIT and new APIs; across majors it does not run at all.


@dataclass(frozen=True)
class RuleContext:
    user: str | None
    now: float


def _gpu_rules_apply(gpu: GpuSnapshot) -> bool:
    return gpu.state == "ok"


_DEFAULT_KB = "<default>"


def _f(fid: str, severity: str, message: str, gpu: int | None = None, evidence: Iterable[str] = (),
       kb: str | None = _DEFAULT_KB) -> Finding:
    return Finding(id=fid, severity=severity, message=message, gpu=gpu, evidence=tuple(evidence),
                   kb=FINDING_KB[fid] if kb == _DEFAULT_KB else kb)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


# --- throttling -----------------------------------------------------------------

def rule_throttle(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    reasons = set(gpu.throttle_reasons)
    clocks = f"SM clock {gpu.clocks.sm} / {gpu.clocks.sm_max} MHz" if gpu.clocks.sm is not None else ""
    temp = f"temperature {gpu.temperature.current:.0f} °C (slowdown at {gpu.temperature.slowdown:.0f} °C)" \
        if gpu.temperature.current is not None and gpu.temperature.slowdown is not None else ""
    evidence = [e for e in (f"throttle reasons: {', '.join(gpu.throttle_reasons)}", clocks, temp) if e]
    thermal = reasons & THERMAL_REASONS
    if thermal:
        # HW thermal slowdown is the hardware protecting itself (DCGM: thermal violation).
        severity = "critical" if "hw_thermal_slowdown" in thermal else "warn"
        yield _f("thermal_throttle", severity, f"GPU {gpu.index} is thermally throttled ({', '.join(sorted(thermal))})",
                 gpu.index, evidence)
    slow = reasons & HW_SLOWDOWN_REASONS
    if slow:
        yield _f("hw_slowdown", "warn", f"GPU {gpu.index} clocks are cut by hardware ({', '.join(sorted(slow))}): "
                 "power brake, power supply or temperature", gpu.index, evidence)
    if "sw_power_cap" in reasons:
        draw, limit, default = gpu.power.draw, gpu.power.limit, gpu.power.default_limit
        lowered = limit is not None and default is not None and limit < default
        detail = f"{draw:.0f} W of {limit:.0f} W" if draw is not None and limit is not None else "at its power limit"
        yield _f("power_cap", "warn" if lowered else "info",
                 f"GPU {gpu.index} is held at its power cap ({detail})"
                 + (f"; the limit was lowered from the default {default:.0f} W" if lowered else ""),
                 gpu.index, evidence + [f"power {detail}"])


def rule_temperature(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    t = gpu.temperature
    if t.current is None or t.slowdown is None or set(gpu.throttle_reasons) & THERMAL_REASONS:
        return
    if t.current >= t.slowdown - TEMP_MARGIN_C:
        yield _f("temp_near_slowdown", "warn",
                 f"GPU {gpu.index} runs at {t.current:.0f} °C, within {TEMP_MARGIN_C:.0f} °C of its slowdown "
                 f"temperature {t.slowdown:.0f} °C", gpu.index,
                 [f"temperature {t.current:.0f} °C", f"slowdown threshold {t.slowdown:.0f} °C"]
                 + ([f"fan {gpu.fan_percent:.0f} %"] if gpu.fan_percent is not None else []))


# --- memory health --------------------------------------------------------------

def rule_ecc(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    e = gpu.ecc
    # DCGM health watch DCGM_HEALTH_WATCH_MEM: any volatile double-bit (uncorrectable) error fails.
    if e.volatile_uncorrected:
        yield _f("ecc_uncorrectable", "critical",
                 f"GPU {gpu.index} had {e.volatile_uncorrected} uncorrectable ECC error(s) since the last driver load",
                 gpu.index, [f"volatile uncorrected {e.volatile_uncorrected}",
                             f"aggregate uncorrected {e.aggregate_uncorrected}"])
    retired = (e.retired_pages_sbe or 0) + (e.retired_pages_dbe or 0)
    if e.retired_pages_sbe is not None or e.retired_pages_dbe is not None:
        evidence = [f"retired pages: {e.retired_pages_sbe or 0} single-bit, {e.retired_pages_dbe or 0} double-bit",
                    f"retirement pending: {e.retired_pages_pending}"]
        if retired >= RETIRED_PAGES_LIMIT:
            yield _f("retired_pages", "critical", f"GPU {gpu.index} has {retired} retired memory pages "
                     f"(DCGM limit {RETIRED_PAGES_LIMIT}): plan to replace it", gpu.index, evidence)
        elif e.retired_pages_pending:
            yield _f("retired_pages", "warn", f"GPU {gpu.index} has a page retirement pending: reset the GPU "
                     "(or reboot) to retire it", gpu.index, evidence)
        elif retired >= RETIRED_PAGES_SOFT_LIMIT:
            yield _f("retired_pages", "warn", f"GPU {gpu.index} has {retired} retired memory pages "
                     f"(DCGM soft limit {RETIRED_PAGES_SOFT_LIMIT})", gpu.index, evidence)
    elif e.retired_pages_pending:
        yield _f("retired_pages", "warn", f"GPU {gpu.index} has a page retirement pending: reset the GPU",
                 gpu.index, ["retirement pending: True"])
    # NVIDIA A100/H100 memory error management: a row-remapping failure means the
    # GPU could not repair itself (RMA); a pending remap applies on the next GPU reset.
    rows = [f"remapped rows: {e.remapped_rows_correctable} correctable, {e.remapped_rows_uncorrectable} uncorrectable",
            f"pending: {e.remapped_rows_pending}, failure: {e.remapped_rows_failure}"]
    if e.remapped_rows_failure:
        yield _f("row_remap_failure", "critical", f"GPU {gpu.index} failed to remap a bad memory row: "
                 "drain it and contact support / RMA", gpu.index, rows)
    if e.remapped_rows_pending:
        yield _f("row_remap_pending", "warn", f"GPU {gpu.index} has a row remap pending: reset the GPU "
                 "when its jobs finish so the repair takes effect", gpu.index, rows)


# --- link -----------------------------------------------------------------------

def rule_pcie(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    p = gpu.pcie
    busy = (gpu.utilization.gpu or 0) >= PCIE_BUSY_UTILIZATION
    slow_gen = p.gen is not None and p.max_gen is not None and p.gen < p.max_gen
    narrow = p.width is not None and p.max_width is not None and p.width < p.max_width
    if busy and (slow_gen or narrow):
        yield _f("pcie_degraded", "warn",
                 f"GPU {gpu.index} PCIe link runs at Gen{p.gen} x{p.width} under load (max Gen{p.max_gen} x{p.max_width})",
                 gpu.index, [f"link Gen{p.gen} x{p.width}, max Gen{p.max_gen} x{p.max_width}",
                             f"utilization {gpu.utilization.gpu:.0f} %", f"replay counter {p.replay_counter}"])


# --- VRAM -------------------------------------------------------------------------

def _holder(proc: GpuProcess) -> str:
    who = proc.user or "unknown user"
    words = (proc.command or "?").split()
    cmd = " ".join([words[0].rsplit("/", 1)[-1], *words[1:2]])
    return f"{who}: {cmd[:48]} (pid {proc.pid}, {_gib(proc.used_memory)})"


def rule_vram(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    m = gpu.memory
    fraction = m.used_fraction
    procs = sorted(gpu.processes, key=lambda p: p.used_memory or 0, reverse=True)
    if fraction is not None and fraction >= VRAM_PRESSURE_FRACTION:
        top = f"; largest holder {_holder(procs[0])}" if procs else ""
        yield _f("vram_pressure", "warn", f"GPU {gpu.index} memory is {fraction:.0%} full "
                 f"({_gib(m.used)} of {_gib(m.total)}){top}", gpu.index,
                 [f"used {_gib(m.used)} / {_gib(m.total)}"] + [_holder(p) for p in procs[:5]])
    hidden = [p for p in procs if not p.visible and (p.used_memory or 0) >= HIDDEN_VRAM_MIN]
    if hidden:
        held = sum(p.used_memory or 0 for p in hidden)
        yield _f("hidden_process_vram", "warn",
                 f"GPU {gpu.index}: {_gib(held)} is held by {len(hidden)} process(es) not visible on this host "
                 "(another container or pid namespace)", gpu.index,
                 [f"pid {p.pid} holds {_gib(p.used_memory)} (not in this pid namespace)" for p in hidden])
    if ctx.user and fraction is not None and fraction >= OTHER_USER_PRESSURE_FRACTION and m.total:
        others = [p for p in procs if p.visible and p.user and p.user != ctx.user]
        held = sum(p.used_memory or 0 for p in others)
        if others and held >= OTHER_USER_SHARE * m.total:
            yield _f("other_user_vram", "warn",
                     f"another user's process holds {_gib(held)} on GPU {gpu.index} ({_holder(others[0])})",
                     gpu.index, [_holder(p) for p in others[:5]])


# --- configuration / GPU state -------------------------------------------------

def rule_persistence(gpu: GpuSnapshot, ctx: RuleContext) -> Iterable[Finding]:
    # NVIDIA driver persistence guide: without persistence mode the driver tears the
    # GPU state down when the last client exits (slow starts, lost settings).
    if gpu.persistence_mode is False:
        yield _f("persistence_off", "info", f"GPU {gpu.index} has persistence mode off "
                 "(`sudo nvidia-smi -pm 1` or run nvidia-persistenced)", gpu.index, ["persistence mode: off"])


GPU_RULES: tuple[Callable[[GpuSnapshot, RuleContext], Iterable[Finding]], ...] = (
    rule_throttle, rule_temperature, rule_ecc, rule_pcie, rule_vram, rule_persistence,
)


def rule_gpu_state(snapshot: Snapshot, ctx: RuleContext) -> Iterable[Finding]:
    for gpu in snapshot.gpus:
        if gpu.state == "lost":
            yield _f("gpu_lost", "critical", f"GPU {gpu.index} is lost ({gpu.error or 'GPU is lost'}): "
                     "drain the node and reboot it", gpu.index, [f"{gpu.pci_bus_id or ''} {gpu.error or ''}".strip()])
        elif gpu.state == "not_accessible":
            yield _f("gpu_not_accessible", "info", f"GPU {gpu.index} is not accessible to this user (NVML: no "
                     "permission, e.g. a cgroup or Slurm allocation that is not yours); nothing says it is unwell",
                     gpu.index, [gpu.error or ""])


def rule_nvml(snapshot: Snapshot, ctx: RuleContext) -> Iterable[Finding]:
    n = snapshot.nvml
    if n.status == "driver_mismatch":
        yield _f("nvml_driver_mismatch", "critical", "NVIDIA driver/library version mismatch: the driver was "
                 "updated without reloading the kernel module; reboot (or reload nvidia modules)", None, [n.message])
    elif n.status in ("no_driver", "library_not_found"):
        hardware = bool(n.pci_devices)
        message = (f"no NVIDIA driver found, but {n.pci_devices} NVIDIA GPU(s) are on the PCI bus: install/load the driver"
                   if hardware else "no NVIDIA driver found (no NVIDIA GPU on this machine?)")
        yield _f("no_driver", "warn" if hardware else "info", message, None, [n.message])
    elif n.status == "not_responding":
        yield _f("nvml_not_responding", "critical", "NVML is not responding: a GPU may be wedged or fallen off the bus",
                 None, [n.message])


def rule_xid(snapshot: Snapshot, ctx: RuleContext) -> Iterable[Finding]:
    groups: dict[tuple[int | None, int], list] = {}
    for event in snapshot.xid_events:
        groups.setdefault((event.gpu, event.xid), []).append(event)
    for (gpu, xid), events in sorted(groups.items(), key=lambda kv: (kv[0][0] is None, kv[0])):
        last = max(events, key=lambda e: e.time)
        info = xid_info(xid)
        recent = ctx.now - last.time <= XID_RECENT_S
        where = f"GPU {gpu}" if gpu is not None else (last.pci_bus_id or "a GPU")
        count = f" ({len(events)}x)" if len(events) > 1 else ""
        yield _f("xid", info.severity if recent else "info",
                 f"XID {xid} on {where}{count}: {info.meaning} Action: {info.action}", gpu,
                 [e.message for e in events[-3:] if e.message] or [f"XID {xid}"], kb=info.kb)


def _known_capabilities(snapshot: Snapshot) -> list[str]:
    caps = [g.compute_capability for g in snapshot.gpus if g.compute_capability]
    return caps or [d.capability for d in snapshot.cuda_env.devices if d.capability]


def rule_torch(snapshot: Snapshot, ctx: RuleContext) -> Iterable[Finding]:
    env, nvml = snapshot.cuda_env, snapshot.nvml
    evidence = [f"python: {env.python}", f"torch {env.torch_version} (CUDA build {env.torch_cuda or 'none'})"]
    if env.status == "no_torch":
        yield _f("torch_missing", "info", f"torch is not installed in {env.python}", None, [env.message])
        return
    if env.status != "ok":
        return
    gpus_here = bool(snapshot.gpus) or bool(nvml.pci_devices)
    if gpus_here and env.torch_cuda is None:
        yield _f("torch_cpu_only", "warn", f"torch {env.torch_version} in {env.python} is a CPU-only build on a GPU "
                 "machine: install a CUDA build", None, evidence)
    elif gpus_here and env.cuda_available is False and nvml.status == "ok":
        # NVML works but torch cannot see a GPU: visibility (CUDA_VISIBLE_DEVICES, cgroup) or driver too old.
        yield _f("torch_cpu_only", "warn", f"torch {env.torch_version} cannot use the GPUs: {env.cuda_error or 'cuda unavailable'}",
                 None, evidence + [f"CUDA_VISIBLE_DEVICES={env.env_value('CUDA_VISIBLE_DEVICES')}"], kb="cuda-not-visible")
    arch_list = env.arch_list
    if arch_list and env.torch_cuda:
        missing = sorted({c for c in _known_capabilities(snapshot) if arch_supports(c, arch_list) is False})
        if missing or env.arch_covered is False:
            caps = ", ".join(f"sm_{c.replace('.', '')}" for c in missing) or "a visible GPU's arch"
            yield _f("torch_arch_mismatch", "critical", f"torch {env.torch_version} has no kernels for {caps}: "
                     "'no kernel image is available' — install a torch build that lists it", None,
                     evidence + [f"arch list: {' '.join(arch_list)}", f"GPU capabilities: {', '.join(missing)}"])
    built, driver = version_tuple(env.torch_cuda), version_tuple(nvml.cuda_driver_version)
    if built and driver and built[:2] > driver[:2]:
        major = built[0] > driver[0]
        yield _f("torch_cuda_too_new", "critical" if major else "warn",
                 f"torch was built for CUDA {env.torch_cuda} but the driver supports up to CUDA "
                 f"{nvml.cuda_driver_version}: " + ("update the driver or install a torch build for your CUDA"
                                                    if major else "minor-version compatibility may work, PTX JIT will not; "
                                                    "update the driver to be safe"),
                 None, evidence + [f"driver {nvml.driver_version} (CUDA {nvml.cuda_driver_version})"])


SNAPSHOT_RULES = (rule_nvml, rule_gpu_state, rule_xid, rule_torch)


def evaluate(snapshot: Snapshot, user: str | None = None, now: float | None = None) -> tuple[Finding, ...]:
    """All findings for `snapshot`, most severe first. `user`: the viewer (default: this process's user)."""
    if user is None:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            user = None
    ctx = RuleContext(user=user, now=snapshot.time if now is None else now)
    found: list[Finding] = []
    for snapshot_rule in SNAPSHOT_RULES:
        found.extend(snapshot_rule(snapshot, ctx))
    for gpu in snapshot.gpus:
        if _gpu_rules_apply(gpu):
            for gpu_rule in GPU_RULES:
                found.extend(gpu_rule(gpu, ctx))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return tuple(sorted(found, key=lambda f: (-rank[f.severity], f.gpu is not None, f.gpu or 0)))


def exit_code_for(findings: Iterable[Finding]) -> int:
    """0 nothing above info, 1 warn, 2 critical (the documented `status` exit codes)."""
    worst = max((SEVERITIES.index(f.severity) for f in findings), default=0)
    return {0: 0, 1: 1, 2: 2}[worst]

