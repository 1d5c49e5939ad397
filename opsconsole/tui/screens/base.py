"""What every top-level screen shares: the tab bar, the footer, the snapshot hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...markup import escape_markup

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
        self.simulated = False

    def on_mount(self) -> None:
        self.set_host(self.host, self.simulated)

    def on_resize(self) -> None:
        self.set_host(self.host, self.simulated)

    def set_host(self, host: str, simulated: bool = False) -> None:
        self.host, self.simulated = host, simulated
        # the badge comes first, so no terminal width can cut it off: pids and values on screen are
        # not this machine's. Then the widest layout that keeps the host name in view.
        badge = "[bold white on red] SIMULATED [/] " if simulated else ""
        room = (self.size.width or 10_000) - (len(" SIMULATED  ") if simulated else 0)
        hostname = host.split(" · ")[0]
        layouts = ((2, host), (1, host), (1, hostname), (0, host), (0, hostname))
        titles, right = next(((t, r) for t, r in layouts if self._tabs_width(t) + len(r) + 2 <= room), layouts[-1])
        parts = [badge]
        for mode, key, title in SCREENS:
            label = f" {key} {self._title(title, titles)} " if titles else f" {key} "
            style = "reverse bold" if mode == self.current else ""
            parts.append(f"[{style} @click=app.goto('{mode}')]{label}[/]" if style else f"[@click=app.goto('{mode}')]{label}[/]")
        line = "".join(parts)
        if right:
            line += f"  [dim]{escape_markup(right)}[/]"
        self.update(line)

    @staticmethod
    def _title(title: str, level: int) -> str:
        return title if level == 2 else title[:4]

    @classmethod
    def _tabs_width(cls, level: int) -> int:
        return sum(len(f" {key} {cls._title(title, level)} ") if level else len(f" {key} ") for _, key, title in SCREENS)


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
            from ...telemetry.process_actions import LIVE_SOURCE  # loaded already: a snapshot exists

            simulated = snapshot.source != LIVE_SOURCE
            # the badge says SIMULATED: the right side names the scenario only
            source = snapshot.source.removeprefix("simulated:") if simulated else snapshot.source
            host = f"{snapshot.host.hostname} · {source}"
            if bar.host != host or bar.simulated != simulated:
                bar.set_host(host, simulated)
        self.show_snapshot(snapshot)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Override: render the snapshot."""

    def action_blur(self) -> None:
        self.set_focus(None)
