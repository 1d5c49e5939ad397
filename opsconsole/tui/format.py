"""Small text formatters shared by the TUI widgets (values may be None = not available)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

NA = "n/a"
SPARK_CHARS = "▁▂▃▄▅▆▇█"
SEVERITY_STYLE = {"info": "cyan", "warn": "bold yellow", "critical": "bold red"}
SEVERITY_ICON = {"info": "i", "warn": "!", "critical": "✖"}


def gib(value: int | float | None, digits: int = 1) -> str:
    if value is None:
        return NA
    return f"{value / 2**30:.{digits}f}"


def human_bytes(value: int | float | None) -> str:
    if value is None:
        return NA
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def pct(value: float | None) -> str:
    return NA if value is None else f"{value:3.0f}%"


def fraction_style(fraction: float | None, warn: float = 0.8, crit: float = 0.95) -> str:
    if fraction is None:
        return "dim"
    if fraction >= crit:
        return "red"
    if fraction >= warn:
        return "yellow"
    return "green"


def bar(fraction: float | None, width: int, style: str | None = None) -> Text:
    """A horizontal bar of `width` cells (eighth-block resolution)."""
    width = max(1, width)
    if fraction is None:
        return Text("·" * width, style="dim")
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    body = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return Text.assemble((body, style or fraction_style(fraction)), ("·" * (width - len(body)), "dim"))


def sparkline(values: Sequence[float | None], width: int, maximum: float = 100.0, style: str = "cyan") -> Text:
    """The last `width` values as block characters scaled to `maximum` (None -> blank)."""
    width = max(1, width)
    tail = list(values)[-width:]
    chars = []
    for value in tail:
        if value is None:
            chars.append(" ")
        else:
            level = min(max(value / maximum if maximum else 0.0, 0.0), 1.0)
            chars.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int(level * (len(SPARK_CHARS) - 1) + 0.5))])
    return Text(" " * (width - len(tail)) + "".join(chars), style=style)


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def truncate(text: str, width: int) -> str:
    if width <= 1:
        return text[:width]
    return text if len(text) <= width else text[: width - 1] + "…"
