"""One line of host facts: CPU, RAM, disks (/dev/shm included), load."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widget import Widget

from ..format import bar, human_bytes

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import HostSnapshot, NvmlState


def host_text(host: HostSnapshot, nvml: NvmlState, width: int) -> Text:
    text = Text()
    text.append("CPU ", style="bold")
    cpu = host.cpu_percent
    text.append_text(bar(None if cpu is None else cpu / 100, 6))
    text.append(f" {cpu:3.0f}%" if cpu is not None else " n/a")
    if host.cpu_count:
        text.append(f"/{host.cpu_count}c", style="dim")
    text.append("  RAM ", style="bold")
    if host.memory_total and host.memory_available is not None:
        used = host.memory_total - host.memory_available
        text.append_text(bar(used / host.memory_total, 6))
        text.append(f" {human_bytes(used)}/{human_bytes(host.memory_total)}")
    else:
        text.append("n/a", style="dim")
    for disk in host.disks:
        text.append(f"  {disk.label} ", style="bold")
        if disk.total:
            used_frac = (disk.used or 0) / disk.total
            text.append_text(bar(used_frac, 4))
            text.append(f" {human_bytes(disk.free)} free")
        else:
            text.append("n/a", style="dim")
    if host.load_avg:
        text.append(f"  load {host.load_avg[0]:.2f}", style="dim")
    if nvml.driver_version:
        text.append(f"  driver {nvml.driver_version}", style="dim")
        if nvml.cuda_driver_version:
            text.append(f" CUDA {nvml.cuda_driver_version}", style="dim")
    text.no_wrap = True
    text.truncate(max(0, width))
    return text


class HostStrip(Widget):
    DEFAULT_CSS = "HostStrip { height: 1; padding: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.host: HostSnapshot | None = None
        self.nvml: NvmlState | None = None

    def show(self, host: HostSnapshot, nvml: NvmlState) -> None:
        self.host, self.nvml = host, nvml
        self.refresh()

    def render(self) -> Text:
        if self.host is None or self.nvml is None:
            return Text("host: waiting for telemetry…", style="dim")
        return host_text(self.host, self.nvml, self.content_size.width)
