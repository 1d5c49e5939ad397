"""Helpers shared by the GPU checks: preconditions, GPU labels, version comparison."""

from __future__ import annotations

import re
from typing import Any

from ...telemetry.snapshot import GpuSnapshot
from ..context import PlaybookContext
from ..results import ERROR, FAIL, SKIP, CheckResult, gib

NVML_PROBLEMS = {
    "no_driver": "no NVIDIA driver is loaded",
    "library_not_found": "the NVML library (libnvidia-ml.so) was not found",
    "driver_mismatch": "NVML and the kernel driver versions differ",
    "not_responding": "NVML is not responding",
    "error": "NVML reported an error",
}


def gpu_label(gpu: GpuSnapshot) -> str:
    size = gib(gpu.memory.total)
    name = gpu.name or "GPU"
    return f"GPU {gpu.index} ({name}{f', {size:g} GiB' if size else ''})"


def select_gpus(ctx: PlaybookContext, selector: Any) -> tuple[list[GpuSnapshot], CheckResult | None]:
    """The GPUs a check looks at, or the result to return when there are none to look at."""
    nvml = ctx.nvml
    if nvml.status != "ok":
        problem = NVML_PROBLEMS.get(nvml.status, nvml.status)
        return [], CheckResult(SKIP, f"not checked: {problem}", {"nvml_status": nvml.status, "nvml_message": nvml.message})
    gpus = ctx.gpus(selector)
    if not gpus:
        if selector == "all":
            return [], CheckResult(SKIP, "not checked: no GPU found", {"gpu_count": 0})
        present = [g.index for g in ctx.gpus()]
        return [], CheckResult(ERROR, f"GPU {selector} does not exist on this machine", {"gpus_present": present})
    return gpus, None


def lost_gpus(gpus: list[GpuSnapshot]) -> list[GpuSnapshot]:
    return [g for g in gpus if g.state != "ok"]


def lost_result(lost: list[GpuSnapshot]) -> CheckResult:
    return CheckResult(
        FAIL,
        ", ".join(f"GPU {g.index} is {g.state}" for g in lost),
        {"gpus": [{"index": g.index, "state": g.state, "error": g.error, "pci_bus_id": g.pci_bus_id} for g in lost]},
        "The GPU does not answer: drain the node, collect `nvidia-bug-report.sh`, then reset it "
        "(`nvidia-smi -r -i N`) or reboot; if it happens again, report it to your hardware vendor.",
    )


def version_tuple(text: Any) -> tuple[int, ...]:
    """'535.104.05' -> (535, 104, 5); '12.1' -> (12, 1); '2.3.0+cu121' -> (2, 3, 0)."""
    parts = re.findall(r"\d+", str(text).split("+")[0])
    return tuple(int(p) for p in parts[:4])


def version_at_least(have: Any, need: Any) -> bool:
    a, b = version_tuple(have), version_tuple(need)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def sm_arch(capability: str | None) -> str | None:
    """'9.0' -> 'sm_90'."""
    if not capability or "." not in capability:
        return None
    major, minor = capability.split(".", 1)
    return f"sm_{major}{minor}"
