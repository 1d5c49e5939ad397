"""The telemetry banner: "no NVIDIA driver found", "NVML not responding", ..."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import NvmlState


BANNER_TEXT = {
    "no_driver": "no NVIDIA driver found — host metrics, KB, playbooks and CPU runs still work",
    "library_not_found": "no NVIDIA driver found (libnvidia-ml.so missing) — host metrics, KB, playbooks and CPU runs still work",
    "driver_mismatch": "NVML driver/library version mismatch — reboot or reload the nvidia kernel module (see KB driver-library-mismatch)",
    "not_responding": "NVML not responding — GPU data is stale; the driver may be hung (see KB gpu-fallen-off-bus)",
    "error": "NVML error",
}


def banner_for(nvml: NvmlState, stalled_s: float = 0.0, stall_limit: float = 3.0) -> tuple[str, str] | None:
    """(text, severity) for the banner, or None when everything answers."""
    if stalled_s > stall_limit:
        return (f"NVML not responding — no answer for {stalled_s:.0f} s; the UI keeps working, data is stale", "critical")
    if nvml.status == "ok":
        return None
    text = BANNER_TEXT.get(nvml.status, f"NVML: {nvml.status}")
    if nvml.message and nvml.status in ("error", "driver_mismatch", "not_responding"):
        text += f" ({nvml.message})"
    severity = "warn" if nvml.status in ("no_driver", "library_not_found") else "critical"
    return text, severity


class Banner(Static):
    DEFAULT_CSS = """
    Banner { display: none; height: auto; padding: 0 1; text-style: bold; }
    Banner.shown { display: block; }
    Banner.warn { background: $warning 30%; color: $text; }
    Banner.critical { background: $error 40%; color: $text; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._current: tuple[str, str] | None = None

    def set_banner(self, banner: tuple[str, str] | None) -> None:
        if banner == self._current:
            return
        self._current = banner
        self.set_class(banner is not None, "shown")
        self.set_class(banner is not None and banner[1] == "warn", "warn")
        self.set_class(banner is not None and banner[1] == "critical", "critical")
        self.update(banner[0] if banner else "")
