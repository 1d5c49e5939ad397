"""Runs: every run (this session, the CLI, earlier sessions), launch, stop, and the live detail."""

from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from ..widgets.run_detail import STATUS_STYLE, RunDetail
from .base import OpsScreen
from .confirm import ConfirmDialog
from .launch import LaunchDialog, LaunchRequest

LIST_REFRESH_S = 2.0


class RunsScreen(OpsScreen):
    MODE = "runs"
    BINDINGS = [
        Binding("n", "launch", "New run"),
        Binding("x", "stop", "Stop run"),
        Binding("f", "follow", "Follow log"),
        Binding("l", "tab('tab-log')", "Log", show=False),
        Binding("c", "tab('tab-loss')", "Loss curve", show=False),
        Binding("i", "tab('tab-image')", "Image", show=False),
        Binding("d", "tab('tab-diagnosis')", "Diagnosis", show=False),
        Binding("ctrl+g", "run_playbook", "Run playbook", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, object] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal():
            with Vertical(classes="side", id="runs-side"):
                yield DataTable(id="runs-table", cursor_type="row")
            with Vertical(classes="main", id="run-pane"):
                yield RunDetail(id="run-detail")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_column("STARTED", key="started", width=11)
        table.add_column("KIND", key="kind", width=11)
        table.add_column("STATUS", key="status", width=8)
        self.query_one("#runs-side").border_title = "Runs (n: new)"
        self.query_one("#run-pane").border_title = "Run"
        self.set_interval(LIST_REFRESH_S, self.refresh_runs)
        self.refresh_runs()
        table.focus()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("launch", "stop") and self.ops.settings.readonly:
            return False
        return True

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.refresh_runs()

    @work(exclusive=True, group="runs-list")
    async def refresh_runs(self) -> None:
        if self.app.screen is not self:
            return
        try:
            records = await asyncio.to_thread(self.ops.run_manager.list)
        except Exception as exc:  # a broken registry is shown, never fatal
            self.query_one("#runs-side").border_subtitle = f"registry: {exc}"
            return
        self.show_records(records)

    def show_records(self, records: list) -> None:
        table = self.query_one("#runs-table", DataTable)
        records = sorted(records, key=lambda r: r.started_at, reverse=True)
        new = {r.id: r for r in records}
        if list(new) != list(self.records):
            selected = self.selected_id()
            table.clear()
            for record in records:
                table.add_row(*self._cells(record), key=record.id)
            if selected in new:
                table.move_cursor(row=list(new).index(selected))
        else:
            for record in records:
                if record.status != getattr(self.records[record.id], "status", None):
                    table.update_cell(record.id, "status", self._cells(record)[2])
        self.records = new
        self.query_one("#runs-side").border_title = f"Runs ({len(records)}, n: new)"
        detail = self.query_one("#run-detail", RunDetail)
        if detail.record is not None and detail.record.id in new:
            detail.update_record(new[detail.record.id])

    @staticmethod
    def _cells(record) -> tuple:
        started = time.strftime("%m-%d %H:%M", time.localtime(record.started_at))
        return (started, record.kind, Text(record.status, style=STATUS_STYLE.get(record.status, "")))

    def selected_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        record = self.records.get(event.row_key.value) if event.row_key else None
        if record is not None:
            self.query_one("#run-detail", RunDetail).follow(record)
            self.query_one("#run-pane").border_title = f"Run {record.id}"

    def open_run(self, run_id: str) -> None:
        """Show a run (e.g. one just launched); waits for the list to know it."""
        record = self.records.get(run_id) or self.ops.run_manager.get(run_id)
        if record is None:
            self.notify(f"unknown run {run_id}", severity="error")
            return
        self.records = {run_id: record, **{k: v for k, v in self.records.items() if k != run_id}}
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        for item in self.records.values():
            table.add_row(*self._cells(item), key=item.id)
        table.move_cursor(row=0)
        self.query_one("#run-detail", RunDetail).follow(record)
        self.query_one("#run-pane").border_title = f"Run {record.id}"

    # -- actions ---------------------------------------------------------------
    def action_launch(self) -> None:
        if self.ops.settings.readonly:
            self.notify("read-only mode: launching runs is disabled", severity="error")
            return
        self.app.push_screen(LaunchDialog(self.ops.settings.presets), self._launch_answered)

    def _launch_answered(self, request: LaunchRequest | None) -> None:
        if request is not None:
            self.launch(request)

    @work(exclusive=True, group="launch")
    async def launch(self, request: LaunchRequest) -> None:
        manager = self.ops.run_manager
        try:
            record = await asyncio.to_thread(manager.launch, request.kind, request.argv,
                                             python=self.ops.settings.python, force=request.force)
        except Exception as exc:  # UsageError etc.: one clear line
            self.notify(str(exc), title=f"cannot launch {request.kind}", severity="error", timeout=10)
            return
        self.notify(f"run {record.id} started ({request.kind})")
        self.open_run(record.id)

    def action_stop(self) -> None:
        if self.ops.settings.readonly:
            self.notify("read-only mode: stopping runs is disabled", severity="error")
            return
        run_id = self.selected_id()
        record = self.records.get(run_id) if run_id else None
        if record is None or not record.active:
            self.notify("select a running run to stop", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop_run(record.id)

        self.app.push_screen(ConfirmDialog(f"Stop run {record.id} ({record.kind})?",
                                           "SIGTERM to its process group, SIGKILL after a grace period.", yes="Stop"),
                             answered)

    @work(group="stop")
    async def stop_run(self, run_id: str) -> None:
        try:
            await asyncio.to_thread(self.ops.run_manager.stop, run_id)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"run {run_id} stopped")
        self.refresh_runs()

    def action_follow(self) -> None:
        following = self.query_one("#run-detail", RunDetail).toggle_follow()
        self.notify("following the log" if following else "log paused (f resumes)", timeout=2)

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-detail #run-tabs").active = tab  # type: ignore[attr-defined]

    def action_run_playbook(self) -> None:
        detail = self.query_one("#run-detail", RunDetail)
        diagnoses = detail.diagnoses
        if not diagnoses or not diagnoses[0].get("playbook"):
            self.notify("no diagnosis with a playbook for this run", severity="warning")
            return
        self.ops.open_playbook(diagnoses[0]["playbook"], log_file=f"{detail.record.dir}/output.log", run=True)
