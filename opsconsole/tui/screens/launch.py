"""The launch form (a modal): kind, model, device, dtype, main options, presets."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

DEVICES = ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3")
DTYPES = ("auto", "fp32", "fp16", "bf16")
# Flags the form owns; the same flags inside a preset's args fill the fields instead.
FORM_FLAGS = {"--model": "model", "--device": "device", "--dtype": "dtype"}


@dataclass(frozen=True)
class LaunchRequest:
    kind: str
    argv: list[str]
    force: bool = False


def job_kinds() -> list[str]:
    from ...jobs import JOB_KINDS

    return list(JOB_KINDS)


def split_preset(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Form fields (model/device/dtype) and the remaining options of a preset's args."""
    fields: dict[str, str] = {}
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        flag, eq, value = arg.partition("=")
        if flag in FORM_FLAGS:
            fields[FORM_FLAGS[flag]] = value if eq else next(items, "")
        else:
            rest.append(arg)
    return fields, rest


def build_argv(model: str, device: str, dtype: str, options: str) -> list[str]:
    argv: list[str] = []
    if model:
        argv += ["--model", model]
    if device and device != "auto":
        argv += ["--device", device]
    if dtype and dtype != "auto":
        argv += ["--dtype", dtype]
    return argv + shlex.split(options)


class LaunchDialog(ModalScreen[LaunchRequest | None]):
    DEFAULT_CSS = """
    LaunchDialog { align: center middle; }
    LaunchDialog > VerticalScroll { width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1; }
    LaunchDialog Horizontal { height: auto; }
    LaunchDialog Horizontal { margin-bottom: 1; }
    LaunchDialog Label { width: 9; }
    LaunchDialog Select, LaunchDialog Input { width: 1fr; }
    LaunchDialog #launch-buttons { align-horizontal: right; }
    LaunchDialog Button { margin-left: 1; }
    LaunchDialog Select:focus > SelectCurrent, LaunchDialog Input:focus, LaunchDialog Checkbox:focus {
        background: $accent 30%; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "launch", "Launch", priority=True)]

    def __init__(self, presets: dict[str, dict], kinds: list[str] | None = None) -> None:
        super().__init__()
        self.presets = presets
        self.kinds = kinds or job_kinds()

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("[b]Launch a smoke run[/b]  (ctrl+s launches, Esc cancels)\n")
            with Horizontal():
                yield Label("preset")
                yield Select([(name, name) for name in self.presets], id="preset", prompt="(none)", compact=True)
            with Horizontal():
                yield Label("kind")
                yield Select([(k, k) for k in self.kinds], id="kind", allow_blank=False, value=self.kinds[0], compact=True)
            with Horizontal():
                yield Label("model")
                yield Input("tiny", id="model", placeholder="tiny | local path | HF id in the cache", compact=True)
            with Horizontal():
                yield Label("device")
                yield Select([(d, d) for d in DEVICES], id="device", allow_blank=False, value="auto", compact=True)
            with Horizontal():
                yield Label("dtype")
                yield Select([(d, d) for d in DTYPES], id="dtype", allow_blank=False, value="auto", compact=True)
            with Horizontal():
                yield Label("options")
                yield Input("", id="options", placeholder="e.g. --steps 20 --max-new-tokens 16", compact=True)
            with Horizontal():
                yield Label("")
                yield Checkbox("force (GPU already in use by a run)", id="force", compact=True)
            with Horizontal(id="launch-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Launch (ctrl+s)", id="launch", variant="success", compact=True)

    def on_mount(self) -> None:
        self.query_one("#preset", Select).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "preset" or event.value is Select.BLANK:
            return
        preset = self.presets[str(event.value)]
        fields, rest = split_preset([str(a) for a in preset.get("args", [])])
        if preset["kind"] in self.kinds:
            self.query_one("#kind", Select).value = preset["kind"]
        self.query_one("#model", Input).value = fields.get("model", "")
        self.query_one("#device", Select).value = fields.get("device", "auto") if fields.get("device", "auto") in DEVICES else "auto"
        self.query_one("#dtype", Select).value = fields.get("dtype", "auto") if fields.get("dtype", "auto") in DTYPES else "auto"
        self.query_one("#options", Input).value = shlex.join(rest)

    def request(self) -> LaunchRequest:
        return LaunchRequest(
            kind=str(self.query_one("#kind", Select).value),
            argv=build_argv(self.query_one("#model", Input).value.strip(), str(self.query_one("#device", Select).value),
                            str(self.query_one("#dtype", Select).value), self.query_one("#options", Input).value),
            force=self.query_one("#force", Checkbox).value,
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.dismiss(None)

    def action_launch(self) -> None:
        try:
            request = self.request()
        except ValueError as exc:  # shlex: unbalanced quotes
            self.notify(f"options: {exc}", severity="error")
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
