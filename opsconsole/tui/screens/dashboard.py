"""The start screen: GPU cards, host strip, processes, findings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList, Static

from ..widgets.banner import Banner
from ..widgets.findings import FindingsList
from ..widgets.gpu_card import GpuCard
from ..widgets.host_strip import HostStrip
from ..widgets.processes import ProcessFilter, ProcessTable
from .base import OpsScreen
from .confirm import ConfirmDialog
from ...markup import escape_markup

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import Snapshot


CARD_HEIGHT = 6


def gpu_layout(count: int, width: int, height: int) -> tuple[int, bool]:
    """(columns, compact) for `count` GPUs in a terminal of width×height."""
    if count == 0:
        return 1, False
    columns = 2 if width >= 110 and count > 1 else 1
    rows = -(-count // columns)
    full_fits = rows * CARD_HEIGHT <= (height - 4) * 0.6 and width >= 60
    return (columns, False) if full_fits else (1, True)


class DashboardScreen(OpsScreen):
    MODE = "dashboard"
    BINDINGS = [
        Binding("q", "app.quit", "Quit"),
        Binding("k", "kill", "Kill process"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("f", "focus_findings", "Findings"),
        Binding("t", "focus_processes", "Processes", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[int, GpuCard] = {}
        self.compact = False
        self.lower_ready = False

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield Banner(id="banner")
        yield HostStrip(id="host")
        yield Vertical(Static("waiting for telemetry…", id="gpu-wait"), id="gpus")
        # The processes and findings panes are mounted right after the first frame is out
        # (progressive start-up: the tab bar, host strip and footer show ~50 ms sooner).
        yield Horizontal(id="lower")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._mount_lower)

    async def _mount_lower(self) -> None:
        pane = Vertical(ProcessTable(id="processes"), id="proc-pane")  # the filter Input comes on first use
        findings = FindingsList(id="findings")
        pane.border_title = "Processes (sort: vram)"
        findings.border_title = "Findings"
        await self.query_one("#lower").mount_all([pane, findings])
        self.lower_ready = True
        self.query_one("#processes", ProcessTable).focus()
        if self.ops.snapshot is not None:
            self.receive_snapshot(self.ops.snapshot)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "kill" and self.ops.settings.readonly:
            return False
        return True

    # -- rendering -------------------------------------------------------
    def show_snapshot(self, snapshot: Snapshot) -> None:
        self.query_one("#banner", Banner).set_banner(self.ops.banner())
        self.query_one("#host", HostStrip).show(snapshot.host, snapshot.nvml)
        self._ensure_cards(snapshot)
        history = self.ops.history
        for gpu in snapshot.gpus:
            card = self.cards.get(gpu.index)
            if card is not None:
                card.show(gpu, history.util.get(gpu.index, ()), history.vram.get(gpu.index, ()), snapshot.xid_events)
        if self.lower_ready:
            self.query_one("#processes", ProcessTable).show(snapshot)
            self.query_one("#findings", FindingsList).show(snapshot.findings)

    def _ensure_cards(self, snapshot: Snapshot) -> None:
        indexes = [g.index for g in snapshot.gpus]
        container = self.query_one("#gpus")
        if indexes != list(self.cards):
            container.remove_children()
            self.cards = {i: GpuCard(i) for i in indexes}
            if self.cards:
                container.mount_all(self.cards.values())
            else:
                container.mount(Static(self._no_gpu_text(snapshot), id="gpu-wait"))
            self._apply_layout()
        elif not indexes:  # still no GPU: the "waiting for telemetry…" placeholder says why now
            for placeholder in self.query("#gpu-wait").results(Static):
                placeholder.update(self._no_gpu_text(snapshot))

    def _no_gpu_text(self, snapshot: Snapshot) -> str:
        if snapshot.nvml.status in ("no_driver", "library_not_found"):
            return "no NVIDIA driver found — no GPUs to show"
        return "no GPUs reported"

    def on_resize(self) -> None:
        self._apply_layout()

    def _apply_layout(self) -> None:
        columns, compact = gpu_layout(len(self.cards), self.size.width, self.size.height)
        self.compact = compact
        container = self.query_one("#gpus")
        container.styles.layout = "grid"
        container.styles.grid_size_columns = columns
        for card in self.cards.values():
            card.set_class(compact, "compact")
        self.set_class(compact, "compact")

    # -- actions ---------------------------------------------------------
    def action_sort(self) -> None:
        if not self.lower_ready:  # the first ~50 ms of start-up
            return
        table = self.query_one("#processes", ProcessTable)
        key = table.cycle_sort()
        self.query_one("#proc-pane").border_title = f"Processes (sort: {key})"
        if self.ops.snapshot:
            table.show(self.ops.snapshot)

    def filter_box(self) -> Input:
        boxes = self.query("#proc-filter")
        if boxes:
            return boxes.first(Input)
        box = Input(placeholder="filter: user:NAME gpu:N text   (Enter applies, Esc closes)", id="proc-filter",
                    compact=True)
        self.query_one("#proc-pane").mount(box, before=0)
        return box

    def action_filter(self) -> None:
        if not self.lower_ready:  # the first ~50 ms of start-up
            return
        box = self.filter_box()
        box.add_class("shown")
        self.call_after_refresh(box.focus)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "proc-filter":
            return
        table = self.query_one("#processes", ProcessTable)
        table.filter = ProcessFilter.parse(event.value)
        label = f"Processes (sort: {table.sort_key}"
        self.query_one("#proc-pane").border_title = label + (f", filter: {escape_markup(table.filter)})" if str(table.filter) else ")")
        if not event.value:
            event.input.remove_class("shown")
        if self.ops.snapshot:
            table.show(self.ops.snapshot)
        table.focus()

    def action_blur(self) -> None:
        boxes = self.query("#proc-filter")
        box = boxes.first(Input) if boxes else None
        if box is not None and box.has_focus and not box.value:
            box.remove_class("shown")
        self.query_one("#processes", ProcessTable).focus()

    def action_focus_findings(self) -> None:
        if not self.lower_ready:  # the first ~50 ms of start-up
            return
        self.query_one("#findings").focus()

    def action_focus_processes(self) -> None:
        if not self.lower_ready:  # the first ~50 ms of start-up
            return
        self.query_one("#processes").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        finding = self.query_one("#findings", FindingsList).selected_finding(event.option_index)
        if finding is None:
            return
        if finding.kb:
            self.ops.open_kb_entry(finding.kb)
        else:
            self.notify(f"{finding.message} — no KB entry for this finding", title=finding.id)

    def action_kill(self) -> None:
        if not self.lower_ready:  # the first ~50 ms of start-up
            return
        if self.ops.settings.readonly:
            self.notify("read-only mode: kill is disabled", severity="error")
            return
        proc = self.query_one("#processes", ProcessTable).selected_process()
        if proc is None:
            self.notify("no process selected", severity="warning")
            return
        from ...telemetry.process_actions import action_refusal

        refusal = action_refusal(self.ops.snapshot, proc)
        if refusal:  # simulated / replayed data, another namespace, an unverifiable pid: never a dialog
            self.notify(refusal, title="kill refused", severity="error")
            return
        detail = f"user {proc.user or '?'} · GPU {proc.gpu}\n{proc.command or ''}"

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_sigterm(proc)

        self.app.push_screen(ConfirmDialog(f"Send SIGTERM to pid {proc.pid}?", detail, yes="Kill"), answered)

    def send_sigterm(self, proc) -> None:  # noqa: ANN001 - a GpuProcess of the current snapshot
        from ...telemetry.process_actions import send_signal_checked

        outcome = send_signal_checked(self.ops.snapshot, proc)  # re-checks start time and owner first
        self.notify(outcome.message, severity="information" if outcome.sent else "error")
        if outcome.sent:
            self.ops.feed_poll_now()
