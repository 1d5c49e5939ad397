"""Host metrics from psutil: CPU, load, RAM/swap, the disks ML work fills up, uptime."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil

from .snapshot import DiskUsage, HostSnapshot


def hf_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """Where huggingface_hub puts models: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    env = os.environ if environ is None else environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _existing_parent(path: Path) -> Path:
    """The nearest existing directory (the HF cache may not exist yet; its disk does)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def disk_usage(label: str, path: Path) -> DiskUsage:
    try:
        usage = psutil.disk_usage(str(_existing_parent(path)))
    except OSError:
        return DiskUsage(label=label, path=str(path))
    return DiskUsage(label=label, path=str(path), total=usage.total, used=usage.used, free=usage.free)


class HostCollector:
    """Reads the host. `cpu_percent` is measured between calls (the first call primes it)."""

    def __init__(self, cwd: str | None = None) -> None:
        self.cwd = cwd
        self.hostname = socket.gethostname()
        psutil.cpu_percent(interval=None)  # prime: the next call reports usage since now
        self._primed_at: float | None = time.monotonic()

    def _cpu_percent(self) -> float:
        # psutil reports usage since the previous call. Right after start that window
        # is a few milliseconds (noise, often 0 or 100 %): only the first reading is
        # taken over a short fixed window instead.
        if self._primed_at is not None:
            too_soon = time.monotonic() - self._primed_at < 0.1
            self._primed_at = None
            if too_soon:
                return psutil.cpu_percent(interval=0.1)
        return psutil.cpu_percent(interval=None)

    def disk_paths(self) -> list[tuple[str, Path]]:
        return [("cwd", Path(self.cwd or os.getcwd())), ("hf_cache", hf_cache_dir()), ("shm", Path("/dev/shm"))]

    def collect(self) -> HostSnapshot:
        vm = psutil.virtual_memory()
        try:
            swap = psutil.swap_memory()
            swap_total, swap_used = swap.total, swap.used
        except (OSError, RuntimeError):
            swap_total = swap_used = None
        try:
            load = tuple(round(x, 2) for x in os.getloadavg())
        except OSError:
            load = None
        return HostSnapshot(
            hostname=self.hostname,
            cpu_percent=self._cpu_percent(),
            cpu_count=psutil.cpu_count(),
            load_avg=load,  # type: ignore[arg-type]
            memory_total=vm.total, memory_available=vm.available, memory_used=vm.total - vm.available,
            swap_total=swap_total, swap_used=swap_used,
            disks=tuple(disk_usage(label, path) for label, path in self.disk_paths()
                        if label != "shm" or path.exists()),
            uptime_s=time.time() - psutil.boot_time(),
        )
