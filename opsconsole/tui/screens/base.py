"""What every top-level screen shares: the tab bar, the footer, the snapshot hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import Snapshot


if TYPE_CHECKING:
    from ..app import OpsConsoleApp

# (mode, key, title) in tab order
SCREENS = (
    ("dashboard", "1", "Dashboard"),
    ("diagnose", "2", "Diagnose"),
    ("kb", "3", "KB"),
    ("playbooks", "4", "Playbooks"),
    ("runs", "5", "Runs"),
    ("environment", "6", "Env"),
    ("help", "?", "Help"),
)


class TabBar(Static):
    """Clickable screen tabs plus host/source on the right."""

    DEFAULT_CSS = """
    TabBar { height: 1; background: $panel; color: $text; }
    """

    def __init__(self, current: str, **kwargs) -> None:
        super().__init__("", markup=True, **kwargs)
        self.current = current
        self.host = ""

    def on_mount(self) -> None:
        self.set_host(self.host)

    def set_host(self, host: str) -> None:
        self.host = host
        parts = []
        for mode, key, title in SCREENS:
            style = "reverse bold" if mode == self.current else ""
            label = f" {key} {title} "
            parts.append(f"[{style} @click=app.goto('{mode}')]{label}[/]" if style else f"[@click=app.goto('{mode}')]{label}[/]")
        line = "".join(parts)
        if host:
            line += f"  [dim]{host}[/]"
        self.update(line)


class OpsScreen(Screen):
    """Base screen: shows the newest snapshot while active, nothing while hidden."""

    MODE = ""
    AUTO_FOCUS = None  # each screen focuses a list/table itself: a text field would swallow the screen keys
    BINDINGS = [Binding("escape", "blur", "Leave field", show=False)]

    @property
    def ops(self) -> "OpsConsoleApp":
        return self.app  # type: ignore[return-value]

    def compose_tabs(self) -> ComposeResult:
        yield TabBar(self.MODE, id="tabs")

    def compose_footer(self) -> ComposeResult:
        yield Footer(compact=True, show_command_palette=True)

    def on_screen_resume(self) -> None:
        if self.ops.static:
            for widget in self.query("Input, TextArea"):
                widget.cursor_blink = False  # type: ignore[attr-defined]
        snapshot = self.ops.snapshot
        if snapshot is not None:
            self.receive_snapshot(snapshot)

    def receive_snapshot(self, snapshot: Snapshot) -> None:
        """Called by the app for the active screen only (hidden screens skip rendering)."""
        try:
            self._receive_snapshot(snapshot)
        except NoMatches:
            pass  # still composing (or being torn down): the next frame renders it

    def _receive_snapshot(self, snapshot: Snapshot) -> None:
        tabs = self.query("#tabs")
        if tabs:
            bar = tabs.first(TabBar)
            host = f"{snapshot.host.hostname} · {snapshot.source}"
            if bar.host != host:
                bar.set_host(host)
        self.show_snapshot(snapshot)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Override: render the snapshot."""

    def action_blur(self) -> None:
        self.set_focus(None)
