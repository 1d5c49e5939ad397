"""The GPU processes table: sortable, filterable, updated in place (no rebuild per frame)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from ...redact import redact_text
from ...telemetry.snapshot import GpuProcess, Snapshot
from ..format import gib, truncate

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


class ProcessTable(DataTable):
    """Rows keyed "pid@gpu"; `show(snapshot)` adds/removes/updates only what changed."""

    DEFAULT_CSS = "ProcessTable { height: 1fr; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.sort_key = "vram"
        self.filter = ProcessFilter()
        self.processes: dict[str, GpuProcess] = {}
        self._cells: dict[str, tuple] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def cells(self, proc: GpuProcess) -> tuple:
        user = proc.user or "?"
        command = redact_text(proc.command or ("(other namespace)" if not proc.visible else "?"))
        return (
            Text(str(proc.pid), style="" if proc.visible else "dim"),
            truncate(user, 8),
            str(proc.gpu),
            Text(gib(proc.used_memory), justify="right"),
            Text("n/a" if proc.cpu_percent is None else f"{proc.cpu_percent:.0f}", justify="right"),
            truncate(command, 200),
        )

    def show(self, snapshot: Snapshot) -> None:
        procs = [p for gpu in snapshot.gpus for p in gpu.processes if self.filter.accepts(p)]
        procs.sort(key=lambda p: (_sort_value(p, self.sort_key), p.pid, p.gpu))
        wanted = {_row_key(p): p for p in procs}
        order = list(wanted)
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
        for key, proc in wanted.items():
            cells = self.cells(proc)
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            elif old != cells:
                for (column, _, _), value, before in zip(COLUMNS, cells, old):
                    if value != before:
                        self.update_cell(key, column, value)
            self._cells[key] = cells
        self.processes = wanted
        if order != self._order:
            rank = {key: i for i, key in enumerate(order)}
            # DataTable sorts on cell values: the (pid, gpu) cells identify the row.
            self.sort("pid", "gpu", key=lambda cells: rank.get(f"{cells[0].plain}@{cells[1]}", 1 << 30))
            self._order = order

    def cycle_sort(self) -> str:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self._order = []
        return self.sort_key

    def selected_process(self) -> GpuProcess | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return self.processes.get(key.value)
