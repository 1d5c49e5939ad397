"""GPU processes from NVML, enriched with psutil (user, redacted command line, start, CPU %, RSS).

NVML reports pids in the host's pid namespace. A pid that does not exist here
(another container) is kept with `visible=False`. Per-process facts that do not
change (user, command, start time) are cached per (pid, create time), so a
sample only pays for CPU % and RSS.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

import psutil

from ..redact import redact_argv
from .snapshot import GpuProcess


class ProcessEnricher:
    def __init__(self, max_cached: int = 4096) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._static: dict[tuple[int, float], tuple[str | None, str | None]] = {}
        self.max_cached = max_cached

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is not None and proc.is_running():
            return proc
        try:
            proc = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            self._procs.pop(pid, None)
            return None
        if len(self._procs) >= self.max_cached:
            self._procs.clear()
            self._static.clear()
        self._procs[pid] = proc
        return proc

    def enrich(self, gpu: int, raw: Iterable[tuple[int, int | None, str]]) -> tuple[GpuProcess, ...]:
        """raw: (pid, used bytes or None, "compute"|"graphics"|"compute+graphics")."""
        out = []
        for pid, used, kind in raw:
            proc = self._process(pid)
            if proc is None:
                out.append(GpuProcess(pid=pid, gpu=gpu, used_memory=used, type=kind, visible=False))
                continue
            try:
                with proc.oneshot():
                    created = proc.create_time()
                    user, command = self._static_facts(proc, pid, created)
                    cpu = _safe(proc.cpu_percent)
                    mem = _safe(proc.memory_info)
            except psutil.NoSuchProcess:
                out.append(GpuProcess(pid=pid, gpu=gpu, used_memory=used, type=kind, visible=False))
                continue
            out.append(GpuProcess(pid=pid, gpu=gpu, used_memory=used, type=kind, user=user, command=command,
                                  start_time=created, cpu_percent=cpu, rss=None if mem is None else mem.rss))
        return tuple(out)

    def _static_facts(self, proc: psutil.Process, pid: int, created: float) -> tuple[str | None, str | None]:
        key = (pid, created)
        facts = self._static.get(key)
        if facts is None:
            user = _safe(proc.username)
            argv = _safe(proc.cmdline)
            command = shlex.join(redact_argv(argv)) if argv else _safe(proc.name)
            facts = self._static[key] = (user, command)
        return facts


def _safe(fn):  # noqa: ANN001, ANN202 - AccessDenied/zombie fields become "not available"
    try:
        return fn()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def merge_process_lists(compute: Iterable, graphics: Iterable) -> list[tuple[int, int | None, str]]:
    """Merge NVML compute and graphics process lists by pid (a pid may be in both)."""
    merged: dict[int, tuple[int | None, str]] = {}
    for kind, procs in (("compute", compute), ("graphics", graphics)):
        for p in procs or ():
            pid = int(p.pid)
            used = getattr(p, "usedGpuMemory", None)
            used = None if used is None or used >= 2 ** 63 else int(used)
            if pid in merged:
                old_used, old_kind = merged[pid]
                merged[pid] = (max(old_used or 0, used or 0) if (old_used, used) != (None, None) else None,
                               old_kind if old_kind == kind else "compute+graphics")
            else:
                merged[pid] = (used, kind)
    return [(pid, used, kind) for pid, (used, kind) in merged.items()]
