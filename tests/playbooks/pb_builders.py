"""Builders for hand-made snapshots: checks are unit-tested on exactly the values they read."""

from __future__ import annotations

import sys
from typing import Any

from opsconsole.telemetry.snapshot import (
    CudaDevice, CudaEnv, GpuProcess, GpuSnapshot, HostSnapshot, MemoryInfo, NvmlState, Snapshot,
)

GIB = 2**30


def gpu(index: int = 0, *, total_gib: float = 80, used_gib: float = 1, name: str = "NVIDIA H100 80GB HBM3",
        capability: str = "9.0", processes: tuple[GpuProcess, ...] = (), **fields: Any) -> GpuSnapshot:
    memory = MemoryInfo(total=int(total_gib * GIB), used=int(used_gib * GIB), free=int((total_gib - used_gib) * GIB))
    return GpuSnapshot(index=index, name=name, compute_capability=capability, memory=memory,
                       processes=processes, uuid=f"GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd", **fields)


def process(pid: int, gpu_index: int = 0, gib: float = 10, user: str | None = "bob",
            command: str = "python serve.py", visible: bool = True) -> GpuProcess:
    return GpuProcess(pid=pid, gpu=gpu_index, used_memory=int(gib * GIB), user=user, command=command, visible=visible)


def cuda_env(**fields: Any) -> CudaEnv:
    base = dict(status="ok", python=sys.executable, torch_version="2.5.1+cu124", torch_cuda="12.4",
                cuda_available=True, device_count=1, devices=(CudaDevice(0, "NVIDIA H100 80GB HBM3", "9.0"),),
                arch_list=("sm_80", "sm_86", "sm_90"), bf16_supported=True, sdpa_available=True)
    base.update(fields)
    return CudaEnv(**base)


def snapshot(gpus: tuple[GpuSnapshot, ...] = (), *, nvml: NvmlState | None = None, env: CudaEnv | None = None,
             host: HostSnapshot | None = None, source: str = "simulated:unit-test", **fields: Any) -> Snapshot:
    return Snapshot(time=0.0, source=source,
                    nvml=nvml or NvmlState(status="ok", driver_version="550.90.07", cuda_driver_version="12.4"),
                    gpus=gpus, cuda_env=env or cuda_env(), host=host or HostSnapshot(), **fields)


