"""Help: every key binding, per screen, generated from the screens' BINDINGS."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from .base import SCREENS, OpsScreen

GENERAL = """\
# opsconsole — keys

Screens: **1** Dashboard · **2** Diagnose · **3** KB · **4** Playbooks · **5** Runs · **6** Env · **?** Help
(also **F1**–**F7**). In a text field press **Esc** first. **ctrl+p** opens the command palette with every
action; **ctrl+q** quits from anywhere, **q** from the dashboard. Quitting never stops runs: they go on
and re-appear in Runs next time. **ctrl+t** toggles a light/dark theme. The mouse works (click tabs, rows, buttons).
"""


def bindings_line(bindings: list[Binding | tuple]) -> str:
    """`key` action · `key` action … for one screen."""
    items = []
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)
        if not binding.description:
            continue
        keys = "/".join(k.strip().replace("slash", "/").replace("question_mark", "?") for k in binding.key.split(","))
        items.append(f"`{keys}` {binding.description}")
    return " · ".join(items) if items else "_no keys of its own_"


def help_markdown() -> str:
    from ..app import screen_class

    parts = [GENERAL, "## Keys per screen\n"]
    for mode, key, title in SCREENS:
        if mode == "help":
            continue
        screen_cls = screen_class(mode)
        own = [b for b in screen_cls.BINDINGS if not (isinstance(b, Binding) and b.action == "blur")]
        parts.append(f"- **{key} {title}**: {bindings_line(own)}")
    return "\n".join(parts)


class HelpScreen(OpsScreen):
    MODE = "help"
    BINDINGS = [Binding("q,escape", "app.goto('dashboard')", "Back to dashboard")]

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with VerticalScroll(id="help-body"):
            yield Markdown(help_markdown(), id="help-text")
        yield from self.compose_footer()
