"""One GPU as a card (full) or a line (compact), rendered from a GpuSnapshot.

A card is a single Line-API widget: `show()` stores the data, `render_line()`
turns its few Rich Text lines straight into Strips (cached per frame and width).
No child widgets to lay out and no markup pipeline, so eight cards at 1 Hz stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from ..format import NA, bar, fraction_style, gib, pct, sparkline, truncate
from ...markup import escape_markup

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import GpuSnapshot, XidEvent


# Throttle reasons that mean the GPU is slowed by heat/power/hardware (not idle/app clocks).
SEVERE_THROTTLE = ("thermal", "hw_", "power_brake")



def state_style(gpu: GpuSnapshot) -> str:
    """Lost/error in red; not accessible (hidden by permissions, nothing wrong) dimmed."""
    return "dim" if gpu.state == "not_accessible" else "bold red"

def short_name(name: str | None) -> str:
    if not name:
        return "GPU"
    return name.replace("NVIDIA ", "").replace("GeForce ", "")


def health_badges(gpu: GpuSnapshot, xids: Sequence[XidEvent], problems_only: bool = False) -> Text:
    """ECC / XID / remap / PCIe / MIG badges, coloured by state (problems_only: just the bad ones)."""
    parts: list[tuple[str, str]] = []
    ecc = gpu.ecc
    if ecc.mode_enabled is False:
        parts.append(("ECC off", "dim"))
    elif (ecc.volatile_uncorrected or 0) > 0 or (ecc.aggregate_uncorrected or 0) > 0 or (ecc.retired_pages_dbe or 0) > 0:
        parts.append((f"ECC ✖{(ecc.volatile_uncorrected or 0) + (ecc.aggregate_uncorrected or 0)}", "bold red"))
    elif ecc.mode_enabled is None:
        parts.append(("ECC ?", "dim"))
    else:
        parts.append(("ECC ✓", "green"))
    gpu_xids = [x.xid for x in xids if x.gpu == gpu.index]
    if gpu_xids:
        parts.append(("XID " + ",".join(str(x) for x in sorted(set(gpu_xids))), "bold red"))
    else:
        parts.append(("XID ✓", "green"))
    if ecc.remapped_rows_failure:
        parts.append(("remap ✖", "bold red"))
    elif ecc.remapped_rows_pending or (ecc.remapped_rows_uncorrectable or 0) > 0:
        parts.append(("remap !", "yellow"))
    elif ecc.remapped_rows_pending is None and ecc.remapped_rows_failure is None:
        parts.append(("remap ?", "dim"))
    else:
        parts.append(("remap ✓", "green"))
    pcie = gpu.pcie
    if pcie.gen is None or pcie.width is None:
        parts.append(("PCIe ?", "dim"))
    else:
        # An idle GPU drops its link generation to save power: only a narrow link, or a slow
        # generation under load, is a degraded link.
        busy = (gpu.utilization.gpu or 0) >= 30
        degraded = (pcie.max_width and pcie.width < pcie.max_width) or (busy and pcie.max_gen and pcie.gen < pcie.max_gen)
        parts.append((f"PCIe {pcie.gen}x{pcie.width}", "yellow" if degraded else "green"))
    if gpu.state == "stale":
        parts.insert(0, ("STALE", "bold yellow"))
    if gpu.mig_mode:
        parts.append((f"MIG {len(gpu.mig_devices)}", "magenta"))
    if problems_only:
        parts = [(label, style) for label, style in parts if style not in ("green", "dim")]
        if not parts:
            return Text("healthy", style="green")
    text = Text()
    for label, style in parts:
        if text:
            text.append(" ")
        text.append(f"[{label}]", style=style)
    return text


def throttle_text(gpu: GpuSnapshot) -> Text:
    reasons = [r for r in gpu.throttle_reasons if r not in ("gpu_idle", "none")]
    if not reasons:
        return Text("none", style="dim")
    text = Text()
    for reason in reasons:
        if text:
            text.append(",")
        text.append(reason, style="bold red" if any(s in reason for s in SEVERE_THROTTLE) else "yellow")
    return text


def temp_text(gpu: GpuSnapshot) -> Text:
    temp = gpu.temperature
    if temp.current is None:
        return Text(f"{NA}", style="dim")
    style = "green"
    if temp.slowdown:
        margin = temp.slowdown - temp.current
        style = "bold red" if margin <= 0 else "yellow" if margin <= 5 else "green"
    out = Text(f"{temp.current:.0f}°C", style=style)
    if temp.slowdown:
        out.append(f"/{temp.slowdown:.0f}", style="dim")
    return out


def power_text(gpu: GpuSnapshot) -> Text:
    power = gpu.power
    if power.draw is None:
        return Text(NA, style="dim")
    frac = power.draw / power.limit if power.limit else None
    out = Text(f"{power.draw:.0f}W", style=fraction_style(frac, 0.9, 0.98))
    if power.limit:
        out.append(f"/{power.limit:.0f}", style="dim")
    return out


def mig_text(gpu: GpuSnapshot) -> Text:
    """MIG instances by profile with their memory in use: `1g.10gb×7 6.4/9.8G 2.9/9.8G …`."""
    counts: dict[str, int] = {}
    for device in gpu.mig_devices:
        counts[device.name or "?"] = counts.get(device.name or "?", 0) + 1
    text = Text("MIG ", style="magenta")
    text.append(" ".join(f"{name}×{n}" for name, n in counts.items()) + " ", style="magenta")
    for device in gpu.mig_devices:
        text.append_text(bar(device.memory.used_fraction, 2))
        text.append(" ")
    return text


def vram_label(gpu: GpuSnapshot) -> str:
    return f"{gib(gpu.memory.used)}/{gib(gpu.memory.total, 0)}G"


class GpuCard(Widget):
    """Renders one GPU; `show(gpu, util_history, vram_history, xids)` updates it."""

    DEFAULT_CSS = """
    GpuCard { height: 6; border: round $primary-darken-1; padding: 0 1; }
    GpuCard.compact { height: 1; border: none; padding: 0; }
    GpuCard.problem { border: round $error; }
    GpuCard.compact.problem { border: none; background: $error 15%; }
    """

    def __init__(self, index: int, **kwargs) -> None:
        super().__init__(id=f"gpu-{index}", **kwargs)
        self.index = index
        self.gpu: GpuSnapshot | None = None
        self.util_history: Sequence[float | None] = ()
        self.vram_history: Sequence[float | None] = ()
        self.xids: Sequence[XidEvent] = ()
        self._strips: tuple[int, bool, list[Strip]] | None = None

    def show(self, gpu: GpuSnapshot, util_history: Sequence[float | None], vram_history: Sequence[float | None],
             xids: Sequence[XidEvent]) -> None:
        self.gpu, self.util_history, self.vram_history, self.xids = gpu, util_history, vram_history, xids
        self.set_class(gpu.state not in ("ok",), "problem")
        title = f"GPU {gpu.index} · {escape_markup(short_name(gpu.name))}"
        if self.border_title != title:
            self.border_title = title
        self._strips = None
        self.refresh()

    def render_text(self) -> Text:
        gpu = self.gpu
        width = self.content_size.width
        if gpu is None:
            return Text(f"GPU {self.index}: waiting for telemetry…", style="dim")
        if self.has_class("compact"):
            return self._render_line(gpu, width)
        return self._render_card(gpu, width)

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        compact = self.has_class("compact")
        if self._strips is None or self._strips[0] != width or self._strips[1] != compact:
            base = self.rich_style
            console = self.app.console
            strips = []
            for line in self.render_text().split("\n"):
                line.no_wrap = True
                segments = Segment.apply_style(line.render(console), base)
                strips.append(Strip(list(segments)).crop_extend(0, width, base))
            self._strips = (width, compact, strips)
        strips = self._strips[2]
        return strips[y] if y < len(strips) else Strip.blank(width, self.rich_style)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 if self.has_class("compact") else 4

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def _render_line(self, gpu: GpuSnapshot, width: int) -> Text:
        head = Text(f"{gpu.index} ", style="bold")
        head.append(truncate(short_name(gpu.name), 14).ljust(14))
        if gpu.state not in ("ok", "stale"):
            head.append(f" {gpu.state.upper()}: {gpu.error or ''} ", style=state_style(gpu))
            head.append_text(health_badges(gpu, self.xids, problems_only=True))
            head.truncate(width)
            return head
        util, frac = gpu.utilization.gpu, gpu.memory.used_fraction
        spark = max(0, min(20, width - 70))
        head.append(" ")
        head.append_text(bar(None if util is None else util / 100, 5))
        head.append(f"{pct(util)} ")
        if spark:
            head.append_text(sparkline(self.util_history, spark))
            head.append(" ")
        head.append_text(bar(frac, 5))
        head.append(f"{vram_label(gpu):>11} ")
        head.append_text(temp_text(gpu))
        head.append(" ")
        head.append_text(power_text(gpu))
        head.append(" ")
        throttle = throttle_text(gpu)
        if throttle.plain != "none":
            head.append_text(throttle)
            head.append(" ")
        head.append_text(health_badges(gpu, self.xids, problems_only=True))
        head.no_wrap = True
        head.truncate(width)
        return head

    def _render_card(self, gpu: GpuSnapshot, width: int) -> Text:
        lines: list[Text] = []
        if gpu.state not in ("ok", "stale"):
            lines.append(Text(f"{gpu.state.upper()}: {gpu.error or 'no data'}", style=state_style(gpu)))
            lines.append(health_badges(gpu, self.xids))
            return Text("\n").join(lines)
        bar_w = max(4, min(20, (width - 24) // 2))
        spark_w = max(0, width - bar_w - 12)
        util = gpu.utilization.gpu
        if util is None and gpu.mig_mode:  # NVML reports no utilisation for a GPU split into MIG instances
            lines.append(Text("inst ").append_text(mig_text(gpu)))
        else:
            line = Text("util ")
            line.append_text(bar(None if util is None else util / 100, bar_w))
            line.append(f" {pct(util):>5} ")
            line.append_text(sparkline(self.util_history, spark_w, style="cyan"))
            lines.append(line)
        frac = gpu.memory.used_fraction
        line = Text("vram ")
        line.append_text(bar(frac, bar_w))
        line.append(f" {vram_label(gpu):>11} ")
        line.append_text(sparkline(self.vram_history, max(0, spark_w - 6), style="magenta"))
        lines.append(line)
        line = Text("temp ")
        line.append_text(temp_text(gpu))
        line.append("  pwr ")
        line.append_text(power_text(gpu))
        clocks = gpu.clocks
        if clocks.sm is not None:
            line.append(f"  sm {clocks.sm}")
            if clocks.sm_max:
                line.append(f"/{clocks.sm_max}", style="dim")
            line.append("MHz")
        line.append("  thr ")
        line.append_text(throttle_text(gpu))
        lines.append(line)
        lines.append(health_badges(gpu, self.xids))
        out = Text("\n").join(lines)
        out.no_wrap = True
        return out
