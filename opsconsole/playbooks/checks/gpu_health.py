"""GPU health checks in the spirit of `dcgmi diag -r 1`: driver, throttling, ECC, XID,
row remapping, PCIe link, persistence mode, power cap, and a combined verdict."""

from __future__ import annotations

from typing import Any

from ...telemetry.findings import RuleContext, rule_temperature, rule_throttle
from ...telemetry.snapshot import GpuSnapshot
from ..context import PlaybookContext
from ..results import ERROR, FAIL, PASS, SKIP, WARN, CheckResult, worst
from .common import NVML_PROBLEMS, gpu_label, lost_gpus, lost_result, select_gpus
from .registry import Param, check

GPU = Param("gpu", "all", 'GPU index or "all"')

_DRIVER_REMEDIES = {
    "no_driver": "Install the NVIDIA driver for this GPU (e.g. `sudo apt install nvidia-driver-550-server` or the "
                 "CUDA repo's `cuda-drivers`), then reboot; in a container, start it with `--gpus all` and the "
                 "NVIDIA Container Toolkit.",
    "library_not_found": "libnvidia-ml.so is missing: install the driver's user-space package "
                         "(`libnvidia-compute-XXX`) matching the kernel module, or mount it into the container "
                         "with the NVIDIA Container Toolkit.",
    "driver_mismatch": "The kernel module and the user-space libraries are different versions (the driver was "
                       "upgraded without a reboot). Reboot, or with no GPU process running reload the modules: "
                       "`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`.",
    "not_responding": "NVML did not answer in time: a GPU may be hung. Look for Xid errors in `sudo dmesg`, "
                      "drain the node, then reset the GPU (`nvidia-smi -r`) or reboot.",
}

# Throttle reasons that are normal operation, not a problem.
_BENIGN_THROTTLE = ("idle", "applications_clocks", "sync_boost", "display_clock", "none")


@check("driver_loaded", "The NVIDIA driver is loaded and NVML answers.", "NVML init status, driver version")
def driver_loaded(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    nvml = ctx.nvml
    evidence = {"nvml_status": nvml.status, "message": nvml.message, "driver_version": nvml.driver_version,
                "cuda_driver_version": nvml.cuda_driver_version}
    if nvml.status == "ok":
        return CheckResult(PASS, f"driver {nvml.driver_version} (CUDA {nvml.cuda_driver_version}) is loaded", evidence)
    if nvml.status in _DRIVER_REMEDIES:
        return CheckResult(FAIL, NVML_PROBLEMS[nvml.status] + (f": {nvml.message}" if nvml.message else ""),
                           evidence, _DRIVER_REMEDIES[nvml.status])
    return CheckResult(ERROR, f"NVML: {nvml.message or nvml.status}", evidence)


@check("gpu_count", "At least `min` GPUs are visible to NVML.", "NVML device count",
       min=Param("int", 1, "GPUs needed"))
def gpu_count(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    gpus = ctx.gpus() if ctx.nvml.status == "ok" else []
    count = len(gpus)
    pci = getattr(ctx.nvml, "pci_devices", None)
    evidence = {"gpu_count": count, "gpus": [gpu_label(g) for g in gpus], "min": p["min"], "pci_devices": pci,
                "nvml_status": ctx.nvml.status}
    if ctx.nvml.status != "ok":
        on_bus = f"; {pci} NVIDIA device(s) on the PCI bus" if pci else ""
        return CheckResult(FAIL, f"no usable GPU: {NVML_PROBLEMS.get(ctx.nvml.status, ctx.nvml.status)}{on_bus}", evidence,
                           _DRIVER_REMEDIES.get(ctx.nvml.status, "Fix the driver first (driver-mismatch playbook)."))
    if count >= p["min"]:
        return CheckResult(PASS, f"{count} GPU(s) visible", evidence)
    return CheckResult(FAIL, f"{count} GPU(s) visible, {p['min']} needed", evidence,
                       "Check `nvidia-smi -L` and `lspci | grep -i nvidia`: a GPU listed by lspci but not by "
                       "nvidia-smi has fallen off the bus or lacks a driver; in a container, request more GPUs "
                       "(`--gpus all`).")


def _gpu_loop(ctx: PlaybookContext, selector: Any, inspect) -> CheckResult:
    """Run `inspect(gpu) -> (status, message, evidence, remedy)` per GPU and merge the results."""
    gpus, early = select_gpus(ctx, selector)
    if early:
        return early
    # A lost GPU answers nothing: gpu_xid / gpu_health report it, the others look at the rest.
    lost = lost_gpus(gpus)
    gpus = [g for g in gpus if g not in lost]
    if not gpus:
        return CheckResult(SKIP, "not checked: " + ", ".join(f"GPU {g.index} is {g.state}" for g in lost),
                           {"lost_gpus": [g.index for g in lost]})
    statuses, messages, evidence, remedies = [], [], {}, []
    if lost:
        evidence["lost_gpus"] = [g.index for g in lost]
    for gpu in gpus:
        status, message, values, remedy = inspect(gpu)
        statuses.append(status)
        evidence[f"gpu{gpu.index}"] = values
        if status in (WARN, FAIL) and message:
            messages.append(f"GPU {gpu.index}: {message}")
        if status in (WARN, FAIL) and remedy and remedy not in remedies:
            remedies.insert(0 if status == FAIL else len(remedies), remedy)  # failures' remedies first
    if all(s == SKIP for s in statuses):
        return CheckResult(SKIP, "not reported by " + ("this GPU" if len(gpus) == 1 else "these GPUs"), evidence)
    verdict = worst(statuses)
    summary = "; ".join(messages) if messages else f"ok on {len(gpus)} GPU(s)"
    if lost:
        summary += " (not reachable: " + ", ".join(f"GPU {g.index}" for g in lost) + ")"
    return CheckResult(verdict, summary, evidence, " ".join(remedies) or None)


# The telemetry findings' severities decide a check's status, so `status` and a playbook never
# give one machine two verdicts (HW thermal slowdown: critical in status, FAIL here).
SEVERITY_STATUS = {"critical": FAIL, "warn": WARN, "info": PASS}


def telemetry_status(gpu: GpuSnapshot, *rules: Any) -> str:
    """The worst status the telemetry rules give this GPU (PASS when they find nothing)."""
    ctx = RuleContext(user=None, now=0.0)
    return worst([PASS, *(SEVERITY_STATUS.get(f.severity, PASS) for rule in rules for f in rule(gpu, ctx))])


def _throttle(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    _, message, values, remedy = _throttle_details(gpu)
    verdict = telemetry_status(gpu, rule_throttle, rule_temperature)
    return verdict, (message if verdict != PASS else ""), values, (remedy if verdict != PASS else None)


def _throttle_details(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    t = gpu.temperature
    reasons = [r for r in gpu.throttle_reasons if not any(b in r.lower() for b in _BENIGN_THROTTLE)]
    values = {"throttle_reasons": list(gpu.throttle_reasons), "temperature_c": t.current, "slowdown_c": t.slowdown,
              "sm_clock_mhz": gpu.clocks.sm, "sm_clock_max_mhz": gpu.clocks.sm_max, "power_w": gpu.power.draw,
              "power_limit_w": gpu.power.limit}
    if reasons:
        thermal = any("thermal" in r for r in reasons)
        clock = f" at {gpu.clocks.sm}/{gpu.clocks.sm_max} MHz" if gpu.clocks.sm and gpu.clocks.sm_max else ""
        temp = f", {t.current:g} °C (slowdown at {t.slowdown:g} °C)" if t.current is not None and t.slowdown else ""
        if thermal:
            remedy = ("Thermal throttling: check fans and airflow (blocked intake, failed fan, hot aisle), the "
                      "datacenter inlet temperature and the GPU's neighbours; `nvidia-smi -q -d TEMPERATURE,PERFORMANCE` "
                      "shows the thresholds.")
        elif any("power" in r for r in reasons):
            remedy = ("Power capping: compare the enforced limit with the default (`nvidia-smi -q -d POWER`); an "
                      "administrator may restore it with `sudo nvidia-smi -pl <default W>`; a HW power brake points "
                      "at the PSU or chassis power budget.")
        else:
            remedy = "Hardware slowdown: check power supply and cooling, and look for Xid events in `dmesg`."
        return WARN, "throttled (" + ", ".join(reasons) + f"){clock}{temp}", values, remedy
    if t.current is not None and t.slowdown and t.current >= t.slowdown - 5:
        return WARN, f"{t.current:g} °C, within 5 °C of the slowdown threshold ({t.slowdown:g} °C)", values, \
            "The GPU is about to throttle: check cooling and airflow."
    return PASS, "", values, None


@check("gpu_throttle", "No clock throttling other than idle / application clocks, and temperature below the slowdown threshold.",
       "NVML clocks-event (throttle) reasons, temperatures, clocks, power", gpu=GPU)
def gpu_throttle(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _throttle)


def _ecc_inspector(corrected_warn: int):
    def inspect(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
        e = gpu.ecc
        values = {"mode_enabled": e.mode_enabled, "volatile_corrected": e.volatile_corrected,
                  "volatile_uncorrected": e.volatile_uncorrected, "aggregate_uncorrected": e.aggregate_uncorrected,
                  "retired_pages_dbe": e.retired_pages_dbe, "retired_pages_pending": e.retired_pages_pending}
        if all(v is None for v in values.values()):
            return SKIP, "", values, None
        if e.volatile_uncorrected or e.retired_pages_pending:
            what = (f"{e.volatile_uncorrected} uncorrectable ECC error(s) since boot" if e.volatile_uncorrected
                    else "page retirement pending")
            return FAIL, what, values, ("Uncorrectable memory errors corrupt results: drain the GPU, reset it "
                                        "(`nvidia-smi -r -i N`) or reboot to retire the pages, then run "
                                        "`dcgmi diag -r 3`; if errors return, RMA the GPU.")
        if e.aggregate_uncorrected or e.retired_pages_dbe:
            return WARN, f"{e.aggregate_uncorrected or e.retired_pages_dbe} uncorrectable error(s) in the GPU's lifetime", \
                values, "Watch this GPU: past uncorrectable errors are handled, but a rising count means failing memory."
        if e.volatile_corrected is not None and e.volatile_corrected >= corrected_warn:
            return WARN, f"{e.volatile_corrected} corrected ECC errors since boot", values, \
                "Many corrected errors predict uncorrectable ones; schedule a `dcgmi diag -r 3` and watch the count."
        return PASS, "", values, None
    return inspect


@check("gpu_ecc", "No uncorrectable ECC errors and no pending page retirement; many corrected errors warn.",
       "NVML ECC counters and retired pages", gpu=GPU,
       corrected_warn=Param("int", 1000, "corrected errors since boot that raise a warning"))
def gpu_ecc(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _ecc_inspector(p["corrected_warn"]))


def _row_remap(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    e = gpu.ecc
    values = {"remapped_rows_correctable": e.remapped_rows_correctable,
              "remapped_rows_uncorrectable": e.remapped_rows_uncorrectable,
              "remapped_rows_pending": e.remapped_rows_pending, "remapped_rows_failure": e.remapped_rows_failure}
    if all(v is None for v in values.values()):
        return SKIP, "", values, None
    if e.remapped_rows_failure:
        return FAIL, "row remapping failed (no spare rows left)", values, \
            "The GPU ran out of spare memory rows: take it out of service and RMA it (NVIDIA's guidance for remap failure)."
    if e.remapped_rows_pending:
        return WARN, "a row remap is pending", values, \
            "A remap is applied at the next GPU reset: drain the GPU and reset it (`nvidia-smi -r -i N`) or reboot."
    return PASS, "", values, None


@check("gpu_row_remap", "Row remapping (Ampere and newer) has not failed and none is pending.",
       "NVML remapped rows", gpu=GPU)
def gpu_row_remap(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _row_remap)


@check("gpu_xid", "No XID error events; critical XIDs (e.g. 79 fallen off the bus) fail with NVIDIA's recommended action.",
       "XID events (NVML event stream / kernel log) with NVIDIA's XID catalogue", gpu=GPU)
def gpu_xid(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    gpus, early = select_gpus(ctx, p["gpu"])
    if early and ctx.nvml.status != "ok":
        return early
    indices = {g.index for g in gpus}
    events = [e for e in ctx.snapshot.xid_events if p["gpu"] == "all" or e.gpu in indices]
    evidence = {"events": [{"xid": e.xid, "gpu": e.gpu, "meaning": e.meaning, "action": e.action,
                            "severity": e.severity, "message": e.message} for e in events]}
    lost = lost_gpus(gpus)
    if not events:
        if lost:
            return lost_result(lost)
        return CheckResult(PASS, "no XID events", evidence)
    ranked = sorted(events, key=lambda e: {"critical": 0, "warn": 1}.get(e.severity, 2))
    status = worst([FAIL if e.severity == "critical" else WARN if e.severity == "warn" else PASS for e in events])
    if lost:
        status = FAIL
    summary = "; ".join(f"XID {e.xid} on GPU {e.gpu}: {e.meaning or e.message}" for e in ranked[:3])
    actions = []
    for e in ranked:
        if e.severity in ("critical", "warn") and e.action and e.action not in actions:
            actions.append(e.action)
    remedy = ("NVIDIA's recommended action: " + " / ".join(actions[:2])) if actions else \
        "Look up the XID in NVIDIA's XID catalogue and check `sudo dmesg` around the event."
    if status == PASS:
        return CheckResult(PASS, summary, evidence)
    return CheckResult(status, summary, evidence, remedy)


def _pcie(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    link = gpu.pcie
    values = {"gen": link.gen, "max_gen": link.max_gen, "width": link.width, "max_width": link.max_width,
              "replay_counter": link.replay_counter, "utilization_gpu": gpu.utilization.gpu}
    if link.width is None and link.gen is None:
        return SKIP, "", values, None
    remedy = ("Reseat the GPU or its riser/cable, check the slot's BIOS settings (PCIe gen, bifurcation) and "
              "`sudo lspci -vv` LnkSta vs LnkCap; a degraded link slows host↔GPU copies and multi-GPU training.")
    if link.width and link.max_width and link.width < link.max_width:
        return WARN, f"PCIe link x{link.width} of x{link.max_width}", values, remedy
    busy = (gpu.utilization.gpu or 0) >= 50
    if busy and link.gen and link.max_gen and link.gen < link.max_gen:
        return WARN, f"PCIe gen {link.gen} of {link.max_gen} while the GPU is busy", values, remedy
    if link.replay_counter is not None and link.replay_counter >= 1000:
        return WARN, f"{link.replay_counter} PCIe replays", values, remedy
    return PASS, "", values, None


@check("gpu_pcie", "PCIe link at full width (and full generation under load), few replays.",
       "NVML PCIe link gen/width (current and max), replay counter, utilisation", gpu=GPU)
def gpu_pcie(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _pcie)


def _persistence(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    values = {"persistence_mode": gpu.persistence_mode}
    if gpu.persistence_mode is None:
        return SKIP, "", values, None
    if gpu.persistence_mode:
        return PASS, "", values, None
    return WARN, "persistence mode is off", values, \
        "Without persistence the driver tears down and re-initialises the GPU for each job (slow first CUDA call, " \
        "lost clocks): enable the daemon `sudo systemctl enable --now nvidia-persistenced` (or `sudo nvidia-smi -pm 1`)."


@check("persistence_mode", "Persistence mode is on (nvidia-persistenced).", "NVML persistence mode", gpu=GPU)
def persistence_mode(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _persistence)


def _power_cap(gpu: GpuSnapshot) -> tuple[str, str, dict[str, Any], str | None]:
    power = gpu.power
    values = {"limit_w": power.limit, "default_limit_w": power.default_limit, "draw_w": power.draw}
    if power.limit is None or power.default_limit is None:
        return SKIP, "", values, None
    if power.limit < 0.9 * power.default_limit:
        return WARN, f"power limit {power.limit:g} W is below the default {power.default_limit:g} W", values, \
            f"Someone lowered the power limit; restore it with `sudo nvidia-smi -pl {power.default_limit:g} -i {gpu.index}` " \
            "if the node's power budget allows."
    return PASS, "", values, None


@check("gpu_power_cap", "The enforced power limit is not far below the GPU's default.", "NVML power limits", gpu=GPU)
def gpu_power_cap(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    return _gpu_loop(ctx, p["gpu"], _power_cap)


@check("gpu_health", "Combined DCGM-style verdict: XID, ECC, row remap, throttling, PCIe (persistence mode is "
       "reported but only warns).", "everything the individual GPU checks read", gpu=GPU)
def gpu_health(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    if ctx.nvml.status != "ok":
        return driver_loaded(ctx, {})
    parts = {
        "xid": gpu_xid(ctx, p),
        "ecc": gpu_ecc(ctx, {**p, "corrected_warn": 1000}),
        "row_remap": gpu_row_remap(ctx, p),
        "throttle": gpu_throttle(ctx, p),
        "pcie": gpu_pcie(ctx, p),
        "persistence": persistence_mode(ctx, p),
    }
    status = worst([r.status for r in parts.values()])
    evidence = {name: {"status": r.status, "summary": r.summary} for name, r in parts.items()}
    problems = [f"{name}: {r.summary}" for name, r in parts.items() if r.status in (WARN, FAIL, ERROR)]
    remedies = [r.remedy for r in parts.values() if r.status in (WARN, FAIL) and r.remedy]
    if status == PASS:
        return CheckResult(PASS, "all GPU health checks pass", evidence)
    return CheckResult(status, "; ".join(problems), evidence, " ".join(dict.fromkeys(remedies)) or None)
