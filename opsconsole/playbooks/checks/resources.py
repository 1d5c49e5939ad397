"""Machine resource checks: disk free at a path, /dev/shm size, RAM available."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ...telemetry.snapshot import DiskUsage
from ..context import PlaybookContext
from ..results import ERROR, FAIL, PASS, SKIP, WARN, CheckResult, gib
from .registry import Param, check


def hf_cache_dir(ctx: PlaybookContext) -> Path:
    """The Hugging Face hub cache of the ML environment (HF_HUB_CACHE > HF_HOME/hub > XDG cache)."""
    hub, _ = ctx.env_value("HF_HUB_CACHE")
    if hub:
        return Path(hub).expanduser()
    home, _ = ctx.env_value("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg, _ = ctx.env_value("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache").expanduser() / "huggingface" / "hub"


def resolve_path(ctx: PlaybookContext, path: str) -> Path:
    """Expand `~`, `$VARS` and the names `hf_cache`, `tmp`, `cwd`."""
    if path == "hf_cache":
        return hf_cache_dir(ctx)
    if path == "tmp":
        return Path(ctx.environ.get("TMPDIR") or "/tmp")
    if path == "cwd":
        return Path.cwd()
    return Path(os.path.expandvars(os.path.expanduser(path)))


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (a cache not created yet lands on its parent's disk)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_usage(ctx: PlaybookContext, label: str) -> DiskUsage | None:
    """Disk usage for a label or path: the snapshot's disks first (so simulated boxes stay consistent)."""
    for disk in ctx.snapshot.host.disks:
        if label in (disk.label, disk.path):
            return disk
    if ctx.simulated and label in ("shm", "hf_cache", "cwd", "tmp"):
        return None
    path = _existing(resolve_path(ctx, label))
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskUsage(label=label, path=str(path), total=usage.total, used=usage.used, free=usage.free)


@check("disk_free", "Free space on the file system holding `path` is at least `min_gib` (warn below `warn_gib`).",
       "statvfs of the path (host snapshot disks for `cwd`, `hf_cache`, `shm` where reported)",
       path=Param("str", "cwd", "a path, or cwd | hf_cache | tmp; ~ and $VARS are expanded"),
       min_gib=Param("number", 5, "fail below this many GiB free"),
       warn_gib=Param("number", 0, "warn below this many GiB free (0: no warning level)"))
def disk_free(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    usage = disk_usage(ctx, p["path"])
    if usage is None and ctx.simulated:
        return CheckResult(SKIP, f"the simulated machine does not report {p['path']}", {"path": p["path"]})
    if usage is None or usage.free is None:
        return CheckResult(ERROR, f"cannot read disk usage of {p['path']}", {"path": p["path"]})
    free = gib(usage.free)
    evidence = {"path": usage.path, "label": p["path"], "free_gib": free, "total_gib": gib(usage.total),
                "used_percent": round(100 * usage.used / usage.total, 1) if usage.total and usage.used is not None else None}
    remedy = (f"Free space on {usage.path}: `du -xh --max-depth=1 {usage.path} | sort -h | tail`; clear old checkpoints, "
              "`huggingface-cli delete-cache` for unused models, `pip cache purge`, or point HF_HOME / TMPDIR at a "
              "bigger disk.")
    if usage.free < p["min_gib"] * 2**30:
        return CheckResult(FAIL, f"{free:g} GiB free on {usage.path}, {p['min_gib']:g} GiB needed", evidence, remedy)
    if p["warn_gib"] and usage.free < p["warn_gib"] * 2**30:
        return CheckResult(WARN, f"{free:g} GiB free on {usage.path} (warning below {p['warn_gib']:g} GiB)", evidence, remedy)
    return CheckResult(PASS, f"{free:g} GiB free on {usage.path}", evidence)


@check("shm_size", "/dev/shm is at least `min_gib` (PyTorch DataLoader workers pass batches through it).",
       "statvfs of /dev/shm (host snapshot `shm` disk where reported)",
       min_gib=Param("number", 1, "size needed in GiB"))
def shm_size(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    usage = disk_usage(ctx, "shm") or (None if ctx.simulated else disk_usage(ctx, "/dev/shm"))
    if usage is None and ctx.simulated:
        return CheckResult(SKIP, "the simulated machine does not report /dev/shm", {})
    if usage is None or usage.total is None:
        return CheckResult(ERROR, "cannot read /dev/shm", {})
    evidence = {"path": usage.path, "total_gib": gib(usage.total), "free_gib": gib(usage.free),
                "total_mib": round(usage.total / 2**20)}
    if usage.total < p["min_gib"] * 2**30 or (usage.free is not None and usage.free < p["min_gib"] * 2**30):
        size = f"{evidence['total_mib']} MiB" if usage.total < 2**30 else f"{evidence['total_gib']:g} GiB"
        return CheckResult(FAIL, f"/dev/shm is {size} ({gib(usage.free):g} GiB free), {p['min_gib']:g} GiB needed", evidence,
                           "In Docker the default is 64 MiB: run with `--shm-size=16g` or `--ipc=host` (Kubernetes: mount "
                           "an `emptyDir: {medium: Memory}` at /dev/shm). Meanwhile use fewer DataLoader workers, "
                           "`num_workers=0`, or `torch.multiprocessing.set_sharing_strategy('file_system')`.")
    return CheckResult(PASS, f"/dev/shm has {gib(usage.free):g} GiB free of {gib(usage.total):g} GiB", evidence)


@check("ram_free", "Available RAM is at least `min_gib`.", "host memory (psutil, or the snapshot's host section)",
       min_gib=Param("number", 4, "GiB needed"))
def ram_free(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    host = ctx.snapshot.host
    available, total = host.memory_available, host.memory_total
    if available is None and not ctx.simulated:
        import psutil

        memory = psutil.virtual_memory()
        available, total = memory.available, memory.total
    if available is None:
        return CheckResult(SKIP if ctx.simulated else ERROR, "cannot read available memory", {})
    evidence = {"available_gib": gib(available), "total_gib": gib(total), "swap_used_gib": gib(host.swap_used)}
    if available < p["min_gib"] * 2**30:
        return CheckResult(FAIL, f"{gib(available):g} GiB RAM available, {p['min_gib']:g} GiB needed", evidence,
                           "Stop memory-hungry processes (`ps aux --sort=-rss | head`), load models with "
                           "`low_cpu_mem_usage=True` / safetensors (memory-mapped), and use fewer DataLoader workers; "
                           "the kernel OOM killer ends the process silently (check `dmesg | grep -i killed`).")
    return CheckResult(PASS, f"{gib(available):g} GiB RAM available of {gib(total):g} GiB", evidence)
