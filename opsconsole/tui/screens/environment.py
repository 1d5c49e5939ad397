from textual.app import ComposeResult
from textual.widgets import Static
from .base import OpsScreen


class EnvironmentScreen(OpsScreen):
    MODE = "environment"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield Static("todo")
        yield from self.compose_footer()
