"""The opsconsole Textual app: modes (one per screen), the telemetry feed, app-wide actions.

`create_app(settings, simulate=...)` is the one factory used by the CLI, the tests
and the benchmarks; `run_tui(args, settings)` is what `opsconsole` (no command) runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import argparse
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.notifications import SeverityLevel

from ..config import Settings
from .feed import SnapshotArrived, Source, TelemetryFeed, TelemetryHistory
from .screens.base import SCREENS, OpsScreen
from .widgets.banner import banner_for

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ..telemetry.snapshot import Snapshot


def default_source_factory(settings: Settings, simulate: str | None, frozen: bool) -> Callable[[], Source]:
    def open_default() -> Source:
        from ..telemetry import open_source  # imported in the feed thread: NVML init stays off the UI

        kwargs: dict[str, Any] = {"simulate": simulate, "python": settings.python, "nvml_timeout": settings.nvml_timeout}
        if simulate and frozen:
            kwargs["frozen"] = True
        return open_source(**kwargs)

    return open_default


def prefers_light() -> bool:
    """Light terminal background, as far as COLORFGBG tells ("15;0" dark, "0;15" light)."""
    bg = os.environ.get("COLORFGBG", "").split(";")[-1]
    return bg in ("7", "15")


# mode -> (module, class): each screen's module is imported when the screen is first shown,
# so starting the console only pays for the dashboard.
SCREEN_CLASSES = {
    "dashboard": ("dashboard", "DashboardScreen"), "diagnose": ("diagnose", "DiagnoseScreen"),
    "kb": ("kb", "KbScreen"), "playbooks": ("playbooks", "PlaybooksScreen"), "runs": ("runs", "RunsScreen"),
    "environment": ("environment", "EnvironmentScreen"), "help": ("help", "HelpScreen"),
}


def screen_class(mode: str) -> type[Screen]:
    module, name = SCREEN_CLASSES[mode]
    return getattr(importlib.import_module(f"{__package__}.screens.{module}"), name)


def _modes() -> dict[str, Callable[[], Screen]]:
    return {mode: partial(lambda m: screen_class(m)(), mode) for mode in SCREEN_CLASSES}


class OpsConsoleApp(App[int]):
    TITLE = "opsconsole"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    DEFAULT_MODE = "dashboard"  # the first frame composes the dashboard directly
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # F1 is help, as in every terminal tool; the screens follow on F2-F7 (and on 1-6)
        *(Binding(f"{key},f{n + 2}" if key != "?" else "question_mark,f1", f"goto('{mode}')", title, show=False)
          for n, (mode, key, title) in enumerate(SCREENS)),
        Binding("ctrl+t", "toggle_dark", "Light/dark", show=False),
    ]

    def __init__(self, settings: Settings, simulate: str | None = None, *, frozen: bool = False,
                 source_factory: Callable[[], Source] | None = None, start_mode: str = "dashboard",
                 static: bool = False) -> None:
        super().__init__()
        self.static = static  # snapshot tests / text captures: no blinking cursor, no animation
        if static:
            self.animation_level = "none"
        self.settings = settings
        self.simulate = simulate
        self.frozen = frozen
        self.snapshot: Snapshot | None = None
        self.history = TelemetryHistory(refresh=settings.refresh)
        self._source_factory = source_factory or default_source_factory(settings, simulate, frozen)
        self.feed: TelemetryFeed | None = None
        self.start_mode = start_mode
        self._kb = None
        self._kb_lock = threading.Lock()
        self._run_manager = None
        for mode, factory in _modes().items():
            self.add_mode(mode, factory)
        if prefers_light():  # the default theme is textual-dark; setting it again would re-parse the CSS
            self.theme = "textual-light"

    # -- lifecycle -------------------------------------------------------
    def on_mount(self) -> None:
        if self.start_mode != self.DEFAULT_MODE:
            self.switch_mode(self.start_mode)
        self.feed = TelemetryFeed(self._source_factory, self.post_message, self.settings.refresh)
        # Start sampling once the first frame is out: the first snapshot mounts every GPU
        # card, and that work would otherwise hold up the first paint.
        self.call_after_refresh(self.feed.start)
        self.set_timer(1.0, lambda: self.run_worker(self._preload, thread=True, group="preload"))
        self.set_interval(0.5, self._watch_stall)

    def on_unmount(self) -> None:
        # Detached runs are separate process groups: leaving never stops them.
        if self.feed is not None:
            self.feed.stop()

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self.snapshot = message.snapshot
        self.history.add(message.snapshot)
        screen = self.active_ops_screen()
        if screen is not None:
            screen.receive_snapshot(message.snapshot)

    def active_ops_screen(self) -> OpsScreen | None:
        """The screen in view if it is one of ours (not a dialog; none while shutting down)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return None
        return screen if isinstance(screen, OpsScreen) else None

    def _watch_stall(self) -> None:
        if self.feed is None or self.feed.stalled_for() <= self.stall_limit:
            return
        screen = self.active_ops_screen()
        if screen is not None and self.snapshot is not None:
            screen.receive_snapshot(self.snapshot)  # re-render with the banner

    @property
    def stall_limit(self) -> float:
        return self.settings.nvml_timeout + 1.0

    def banner(self) -> tuple[str, str] | None:
        if self.snapshot is None:
            return None
        stalled = self.feed.stalled_for() if self.feed else 0.0
        return banner_for(self.snapshot.nvml, stalled, self.stall_limit)

    def feed_poll_now(self) -> None:
        if self.feed is not None:
            self.feed.poll_now()

    # -- shared services (loaded on first use) ----------------------------
    @property
    def kb(self):
        with self._kb_lock:  # loaded once, by whoever asks first (the preload thread, usually)
            if self._kb is None:
                from ..kb import load_kb

                self._kb = load_kb(extra_dirs=self.settings.extra_kb_dirs)
            return self._kb

    def _preload(self) -> None:
        """Load the KB in the background after start-up, so Diagnose and KB open at once."""
        try:
            self.kb
        except Exception:  # reported when a screen asks for it
            pass

    @property
    def run_manager(self):
        if self._run_manager is None:
            from ..runs import RunManager

            self._run_manager = RunManager(self.settings)
        return self._run_manager

    # -- navigation --------------------------------------------------------
    def action_goto(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)

    def open_kb_entry(self, entry_id: str) -> None:
        self.switch_mode("kb")
        self.call_after_refresh(lambda: self.screen.show_entry(entry_id))  # type: ignore[attr-defined]

    def open_playbook(self, playbook_id: str, log_file: str | None = None, run: bool = False) -> None:
        self.switch_mode("playbooks")
        self.call_after_refresh(lambda: self.screen.select_playbook(playbook_id, log_file=log_file, run=run))  # type: ignore[attr-defined]

    def open_run(self, run_id: str) -> None:
        self.switch_mode("runs")
        self.call_after_refresh(lambda: self.screen.open_run(run_id))  # type: ignore[attr-defined]

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications are always plain text: they quote paths, model names and log lines
        (`[rank0]`, `/tmp/x[/y].log`), which as markup would vanish or raise MarkupError.
        `markup` is accepted and ignored because Widget.notify passes markup=True to here."""
        del markup
        super().notify(str(message), title=str(title), severity=severity, timeout=timeout, markup=False)

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    # -- command palette: every screen and every action of the active screen --
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for mode, key, title in SCREENS:
            yield SystemCommand(f"Go to {title}", f"Show the {title} screen (key {key})", partial(self.action_goto, mode))
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or binding.action in seen or binding.action.startswith("goto("):
                continue
            seen.add(binding.action)
            if binding.description:
                yield SystemCommand(binding.description, f"key {binding.key_display or key}",
                                    partial(self.run_action, binding.action, active.node))
        yield SystemCommand("Toggle light/dark theme", "ctrl+t", self.action_toggle_dark)
        yield from super().get_system_commands(screen)


def create_app(settings: Settings, simulate: str | None = None, *, frozen: bool = False,
               source_factory: Callable[[], Source] | None = None, start_mode: str = "dashboard",
               static: bool = False) -> OpsConsoleApp:
    """The app as the CLI, the tests and the benchmarks build it.

    frozen: deterministic simulated values; static: no cursor blink or animation
    (both for snapshot tests and text captures).
    """
    return OpsConsoleApp(settings, simulate, frozen=frozen, source_factory=source_factory, start_mode=start_mode,
                         static=static)


def _bundled_scenario_exists(name: str) -> bool:
    """Cheap check before start-up (the telemetry package is imported later, by the sampler)."""
    from ..paths import PACKAGE_DIR

    return "/" not in name and (PACKAGE_DIR / "telemetry" / "scenarios" / f"{name}.yaml").is_file()


def run_tui(args: argparse.Namespace, settings: Settings) -> int:
    simulate = getattr(args, "simulate", None)
    if simulate and not _bundled_scenario_exists(simulate):
        from ..telemetry import UnknownScenarioError, list_scenarios  # the slow, definitive check

        if simulate not in list_scenarios():
            raise UnknownScenarioError(simulate)
    if os.environ.get("OPSCONSOLE_TERMINAL_GRAPHICS") == "1" and sys.stdout.isatty():
        # textual-image asks the terminal about kitty/sixel support, which only works before
        # Textual takes the terminal (and may wait for an answer): opt-in. Default: half-blocks.
        import textual_image.widget  # noqa: F401
    app = create_app(settings, simulate=simulate)
    app.run()
    return app.return_code or 0
