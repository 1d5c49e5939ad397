"""The detail of one run: live log, progress + ETA, metrics, loss curve, GPU sparkline, image, diagnosis."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.events import MouseScrollUp
from textual.widgets import Log, ProgressBar, Static, TabbedContent, TabPane

from ...events import RESULT_FILE
from ..follower import FollowState, RunFollower
from ..format import duration, sparkline
from .image_view import ImageView

MAX_LOG_LINES = 5000
BATCH_S = 0.08
STATUS_STYLE = {"ok": "bold green", "running": "bold cyan", "starting": "cyan", "failed": "bold red",
                "crashed": "bold red", "stopped": "yellow"}


class FollowLog(Log):
    """A Log whose follow (auto-scroll) mode the user's scrolling turns off."""

    BINDINGS = [("end", "follow", "Follow")]

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self.auto_scroll = False

    def action_scroll_up(self) -> None:
        self.auto_scroll = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.auto_scroll = False
        super().action_page_up()

    def action_follow(self) -> None:
        self.auto_scroll = True
        self.scroll_end(animate=False)


def format_metrics(metrics: dict[str, Any], limit: int = 8) -> Text:
    text = Text()
    for key, value in list(metrics.items())[:limit]:
        if isinstance(value, (dict, list)):
            continue
        if text:
            text.append("  ")
        text.append(f"{key}=", style="dim")
        text.append(f"{value:.4g}" if isinstance(value, float) else str(value))
    return text


class RunDetail(Vertical):
    """Shows one run; `follow(record)` starts tailing it. Renders only while visible."""

    DEFAULT_CSS = """
    RunDetail { height: 1fr; }
    RunDetail #run-head, RunDetail #run-metrics, RunDetail #run-gpu { height: 1; }
    RunDetail #run-progress { height: 1; }
    RunDetail TabbedContent { height: 1fr; }
    RunDetail FollowLog { height: 1fr; }
    RunDetail #run-partial { height: auto; max-height: 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record = None
        self.follower: RunFollower | None = None
        self.recent: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self.log_stale = False
        self.state = FollowState()
        self.total_lines = 0
        self.diagnosed_for: str | None = None
        self.loss_points = 0
        self.partial_shown = ""
        self.diagnoses: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("select a run (Enter) or launch one (n)", style="dim"), id="run-head")
        yield ProgressBar(id="run-progress", show_eta=True, total=None)
        yield Static("", id="run-metrics")
        yield Static("", id="run-gpu")
        with TabbedContent(id="run-tabs"):
            with TabPane("Log", id="tab-log"):
                yield FollowLog(id="run-log", max_lines=MAX_LOG_LINES, highlight=False)
                yield Static("", id="run-partial", markup=False)
            with TabPane("Loss", id="tab-loss"):
                yield Static("", id="loss-empty")
            with TabPane("Image", id="tab-image"):
                yield ImageView(id="run-image")
            with TabPane("Diagnosis", id="tab-diagnosis"):
                with VerticalScroll():
                    yield Static(Text("shown when a run fails", style="dim"), id="run-diagnosis")

    def on_mount(self) -> None:
        self.query_one("#run-progress").display = False
        self.timer = self.set_interval(BATCH_S, self._tick, pause=True)

    def on_unmount(self) -> None:
        if self.follower:
            self.follower.stop()

    # -- which run ------------------------------------------------------------
    def follow(self, record: Any) -> None:
        if self.record is not None and self.record.id == record.id:
            self.record = record
            return
        if self.follower:
            self.follower.stop()
        self.record = record
        self.follower = RunFollower(record.dir).start()
        self.timer.resume()
        self.recent.clear()
        self.total_lines = 0
        self.diagnosed_for = None
        self.loss_points = 0
        log = self.query_one("#run-log", FollowLog)
        log.clear()
        log.auto_scroll = True
        self.query_one("#run-progress", ProgressBar).display = False
        self.query_one("#run-diagnosis", Static).update(Text("shown when a run fails", style="dim"))
        self._tick()

    def update_record(self, record: Any) -> None:
        if self.record is not None and record.id == self.record.id:
            self.record = record

    def toggle_follow(self) -> bool:
        log = self.query_one("#run-log", FollowLog)
        if log.auto_scroll:
            log.auto_scroll = False
        else:
            log.action_follow()
        return log.auto_scroll

    # -- rendering (only while this screen is the one shown) --------------------
    def _visible(self) -> bool:
        return self.app.screen is self.screen and self.display

    def _tick(self) -> None:
        if self.follower is None or not self._visible():
            return
        state = self.follower.take()
        if state.lines:
            self.recent.extend(state.lines)
        self.total_lines = state.total_lines
        tabs = self.query_one("#run-tabs", TabbedContent)
        log = self.query_one("#run-log", FollowLog)
        if tabs.active == "tab-log":
            if self.log_stale:
                log.clear()
                log.write_lines(list(self.recent))
                self.log_stale = False
            elif state.lines:
                if state.skipped:
                    log.write_line(f"… {state.skipped} lines not shown here (all are in output.log)")
                log.write_lines(state.lines)
        elif state.lines:
            self.log_stale = True
        partial = self.query_one("#run-partial", Static)
        if state.partial != self.partial_shown:
            self.partial_shown = state.partial  # the live, unterminated line (an open tqdm bar)
            partial.update(state.partial)
        if state.changed or self.state.progress is None:
            self.state = state
            self._render_state(state, tabs.active)
        self._render_head()

    def _render_head(self) -> None:
        record = self.record
        if record is None:
            return
        status = record.status
        if self.state.finish and status in ("running", "starting"):
            status = self.state.finish.get("status", status)
        end = record.ended_at or time.time()
        head = Text.assemble((f"{record.kind} ", "bold"), (status, STATUS_STYLE.get(status, "")),
                             (f"  {duration(end - record.started_at)}", "dim"), (f"  {self.total_lines} lines", "dim"))
        log = self.query_one("#run-log", FollowLog)
        head.append("  follow" if log.auto_scroll else "  paused (f: follow)", style="dim" if log.auto_scroll else "yellow")
        self.query_one("#run-head", Static).update(head)

    def _render_state(self, state: FollowState, active_tab: str | None) -> None:
        bar = self.query_one("#run-progress", ProgressBar)
        if state.progress and state.progress.get("total"):
            bar.display = True
            bar.update(total=float(state.progress["total"]), progress=float(state.progress.get("step", 0)))
        elif state.finish:
            bar.display = True
            bar.update(total=1, progress=1)
        self.query_one("#run-metrics", Static).update(format_metrics(state.metrics))
        self._render_gpu()
        if state.loss and active_tab == "tab-loss" and len(state.loss) != self.loss_points:
            self._plot_loss(state.loss)
        image = next((a for a in reversed(state.artifacts) if a.get("kind") == "image"), None)
        if image is not None:
            self.query_one("#run-image", ImageView).show(Path(image["path"]))
        if state.finish and state.finish.get("status") not in ("ok", None) and self.diagnosed_for != self.record.id:
            self.diagnosed_for = self.record.id
            self.show_diagnosis()

    def _render_gpu(self) -> None:
        start = self.state.start or {}
        device = (self.state.metrics.get("device") or start.get("device")
                  or (self.record.device if self.record else None) or "")
        widget = self.query_one("#run-gpu", Static)
        if not str(device).startswith("cuda"):
            widget.update(Text(f"device {device or '?'} (no GPU telemetry for this run)", style="dim"))
            return
        index = int(str(device).partition(":")[2] or 0)
        history = self.app.history  # type: ignore[attr-defined]
        line = Text(f"GPU {index} util ")
        line.append_text(sparkline(history.util.get(index, ()), 30))
        line.append("  vram ")
        line.append_text(sparkline(history.vram.get(index, ()), 30, style="magenta"))
        widget.update(line)

    def _plot_loss(self, loss: list[tuple[float, float]]) -> None:
        from textual_plotext import PlotextPlot

        pane = self.query_one("#tab-loss", TabPane)
        plots = pane.query(PlotextPlot)
        if not plots:
            pane.query("#loss-empty").remove()
            plot = PlotextPlot(id="loss-plot")
            pane.mount(plot)
        else:
            plot = plots.first()
        plt = plot.plt
        plt.clear_data()
        plt.title("training loss")
        plt.xlabel("step")
        plt.plot([p[0] for p in loss], [p[1] for p in loss], marker="braille")
        plot.refresh()
        self.loss_points = len(loss)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-loss" and self.state.loss:
            self._plot_loss(self.state.loss)

    # -- diagnosis of a failed run --------------------------------------------
    @work(thread=True, exclusive=True, group="run-diagnosis")
    def show_diagnosis(self) -> None:
        record = self.record
        if record is None:
            return
        result_path = Path(record.dir) / RESULT_FILE
        diagnoses: list[dict[str, Any]] = []
        error = (self.state.finish or {}).get("error")
        try:
            result = json.loads(result_path.read_text())
            diagnoses = result.get("diagnoses") or []
        except (OSError, ValueError):
            pass
        if not diagnoses:
            from ...events import LOG_FILE
            from ...kb import match_log

            log_path = Path(record.dir) / LOG_FILE
            if log_path.is_file():
                diagnoses = [d.to_dict() for d in match_log(log_path, self.app.kb, top=3).matches]  # type: ignore[attr-defined]
        text = Text()
        if error:
            text.append(f"error: {error}\n\n", style="bold red")
        if not diagnoses:
            text.append("no KB entry matched this run's log", style="yellow")
        for rank, diagnosis in enumerate(diagnoses, 1):
            text.append(f"{rank}. {diagnosis.get('title')}", style="bold")
            text.append(f"  [{diagnosis.get('id')}]  playbook: {diagnosis.get('playbook') or '-'}\n", style="dim")
            for evidence in (diagnosis.get("evidence") or [])[:4]:
                text.append(f"   {evidence.get('line'):>6} │ ", style="dim")
                text.append(f"{evidence.get('text', '')}\n", style="yellow")
            text.append("\n")
        self.diagnoses = diagnoses
        self.app.call_from_thread(self._show_diagnosis_text, text)

    def _show_diagnosis_text(self, text: Text) -> None:
        self.query_one("#run-diagnosis", Static).update(text)
        self.query_one("#run-tabs", TabbedContent).active = "tab-diagnosis"
