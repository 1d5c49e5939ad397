"""The GPU processes table: sortable, filterable, and cheap to refresh every second.

A Line-API widget (one Strip per visible row, rebuilt only when that row's values
change) instead of a DataTable: DataTable re-renders every cell after any
update_cell, which at 1 Hz with 40 processes was most of the console's idle CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...redact import redact_text
from ..format import gib, truncate

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import GpuProcess, Snapshot


COLUMNS = (("pid", "PID", 7), ("user", "USER", 8), ("gpu", "GPU", 3), ("vram", "GiB", 5),
           ("cpu", "CPU%", 4), ("command", "COMMAND", 60))
SORT_KEYS = ("vram", "pid", "user", "gpu", "cpu")


@dataclass(frozen=True)
class ProcessFilter:
    """`user:alice gpu:3 text` — every term must match."""

    user: str | None = None
    gpu: int | None = None
    text: str = ""

    @classmethod
    def parse(cls, query: str) -> "ProcessFilter":
        user, gpu, words = None, None, []
        for term in query.split():
            key, sep, value = term.partition(":")
            if sep and key == "user":
                user = value
            elif sep and key == "gpu" and value.isdigit():
                gpu = int(value)
            else:
                words.append(term.lower())
        return cls(user, gpu, " ".join(words))

    def accepts(self, proc: GpuProcess) -> bool:
        if self.user is not None and (proc.user or "") != self.user:
            return False
        if self.gpu is not None and proc.gpu != self.gpu:
            return False
        if self.text:
            hay = f"{proc.pid} {proc.user or ''} {proc.command or ''}".lower()
            return all(word in hay for word in self.text.split())
        return True

    def __str__(self) -> str:
        parts = ([f"user:{self.user}"] if self.user else []) + ([f"gpu:{self.gpu}"] if self.gpu is not None else [])
        return " ".join(parts + ([self.text] if self.text else []))


def _row_key(proc: GpuProcess) -> str:
    return f"{proc.pid}@{proc.gpu}"


def _sort_value(proc: GpuProcess, key: str):
    return {
        "vram": -(proc.used_memory or 0),
        "pid": proc.pid,
        "user": proc.user or "~",
        "gpu": proc.gpu,
        "cpu": -(proc.cpu_percent or 0.0),
    }[key]


class ProcessTable(ScrollView, can_focus=True):
    """Rows keyed "pid@gpu"; `show(snapshot)` re-renders only rows whose values changed."""

    DEFAULT_CSS = """
    ProcessTable { height: 1fr; overflow-x: hidden; }
    ProcessTable > .processes--header { text-style: bold; color: $text-accent; }
    ProcessTable > .processes--cursor { background: $accent 40%; }
    ProcessTable:focus > .processes--cursor { background: $accent; color: $text; }
    """
    COMPONENT_CLASSES = {"processes--header", "processes--cursor"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-100000)", "First", show=False),
        Binding("end", "cursor(100000)", "Last", show=False),
    ]
    cursor = reactive(0, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sort_key = "vram"
        self.filter = ProcessFilter()
        self.processes: dict[str, GpuProcess] = {}
        self.keys: list[str] = []
        self._cells: dict[str, tuple] = {}
        self._strips: dict[str, tuple[tuple, int, Strip]] = {}
        self._frame: tuple[int, Style, Style, Style] | None = None

    # -- data ------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self.keys)

    def row_cells(self, index: int) -> tuple:
        return self._cells[self.keys[index]]

    def cells(self, proc: GpuProcess) -> tuple:
        command = redact_text(proc.command or ("(other namespace)" if not proc.visible else "?"))
        return (
            str(proc.pid),
            truncate(proc.user or "?", 8),
            str(proc.gpu),
            gib(proc.used_memory),
            "n/a" if proc.cpu_percent is None else f"{proc.cpu_percent:.0f}",
            truncate(command, 300),
        )

    def show(self, snapshot: Snapshot) -> None:
        procs = [p for gpu in snapshot.gpus for p in gpu.processes if self.filter.accepts(p)]
        procs.sort(key=lambda p: (_sort_value(p, self.sort_key), p.pid, p.gpu))
        selected = self.keys[self.cursor] if self.keys and self.cursor < len(self.keys) else None
        self.processes = {_row_key(p): p for p in procs}
        keys = list(self.processes)
        cells = {key: self.cells(proc) for key, proc in self.processes.items()}
        if keys == self.keys and cells == self._cells:
            return  # nothing visible changed: no repaint at all
        self.keys, self._cells = keys, cells
        self.virtual_size = Size(self.size.width, len(keys) + 1)
        if selected in self.processes:
            self.cursor = keys.index(selected)
        else:
            self.cursor = min(self.cursor, max(0, len(keys) - 1))
        self.refresh()

    def cycle_sort(self) -> str:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        return self.sort_key

    def selected_process(self) -> GpuProcess | None:
        if not self.keys:
            return None
        return self.processes.get(self.keys[min(self.cursor, len(self.keys) - 1)])

    # -- rendering ---------------------------------------------------------------
    @staticmethod
    def _line(values: tuple, width: int) -> str:
        parts = []
        for (key, _, col_width), value in zip(COLUMNS, values):
            if key == "command":
                parts.append(value)
            elif key in ("vram", "cpu"):
                parts.append(value.rjust(col_width) + "  ")
            else:
                parts.append(truncate(value, col_width).ljust(col_width) + " ")
        line = "".join(parts)
        return truncate(line, width).ljust(width) if width > 0 else ""

    def _frame_styles(self) -> tuple[int, Style, Style, Style]:
        """(width, base, header, cursor) — computed once per repaint, not once per line."""
        if self._frame is None:
            base = self.rich_style
            self._frame = (self.scrollable_content_region.width, base,
                           base + self.get_component_rich_style("processes--header"),
                           base + self.get_component_rich_style("processes--cursor"))
        return self._frame

    def refresh(self, *args, **kwargs):
        self._frame = None
        return super().refresh(*args, **kwargs)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._frame = None
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        width, base, header, cursor = self._frame_styles()
        if y == 0:
            return Strip([Segment(self._line(tuple(label for _, label, _ in COLUMNS), width), header)], width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self.keys):
            return Strip.blank(width, base)
        key = self.keys[index]
        values = self._cells[key]
        selected = index == self.cursor
        cached = self._strips.get(key)
        if cached is None or cached[0] != (values, selected) or cached[1] != width:
            style = cursor if selected else base
            if not self.processes[key].visible:
                style += Style(dim=True)
            cached = ((values, selected), width, Strip([Segment(self._line(values, width), style)], width))
            self._strips[key] = cached
            if len(self._strips) > 4 * max(len(self.keys), 50):
                self._strips = {k: v for k, v in self._strips.items() if k in self.processes}
        return cached[2]

    # -- cursor ----------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        if self.keys:
            self.cursor = max(0, min(len(self.keys) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def on_click(self, event: events.Click) -> None:
        index = self.scroll_offset.y + event.y - 1
        if event.y >= 1 and 0 <= index < len(self.keys):
            self.cursor = index
            self.focus()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.keys) + 1)
