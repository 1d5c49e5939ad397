"""The interface every GPU collector (real NVML or simulated) implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .snapshot import GpuSnapshot, NvmlState, XidEvent


@dataclass(frozen=True)
class GpuReading:
    """What one GPU collection yields; the source adds host, env and findings."""

    nvml: NvmlState
    gpus: tuple[GpuSnapshot, ...] = ()
    xid_events: tuple[XidEvent, ...] = ()


class GpuCollector(Protocol):
    name: str  # "nvml" | "simulated:<scenario>"

    def collect(self) -> GpuReading:
        """One reading. Must not raise: failures are values in the reading."""
        ...

    def close(self) -> None:
        ...
