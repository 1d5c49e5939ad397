"""Playbooks: list them, run one with its steps appearing live; manual steps ask for confirmation."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from .base import OpsScreen
from .confirm import ConfirmDialog
from ...markup import escape_markup

STATUS_ICON = {"pass": ("✓", "bold green"), "warn": ("!", "bold yellow"), "fail": ("✖", "bold red"),
               "skip": ("–", "dim"), "error": ("⚠", "bold red"), "manual": ("☐", "cyan"), "running": ("…", "cyan")}
VERDICT_STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "error": "bold red"}


def evidence_text(evidence: dict[str, Any], limit: int = 8) -> str:
    """Evidence as text for people: `gpus=GPU 0: gpu=0 used_gib=38.1` rather than Python reprs."""
    text = "  ".join(f"{key}={plain(value)}" for key, value in list(evidence.items())[:limit])
    return text if len(text) <= 160 else text[:159] + "…"


def plain(value: Any) -> str:
    """A value as short plain text: mappings as `(k=v k=v)`, lists joined with `; `."""
    if isinstance(value, dict):
        return "(" + " ".join(f"{k}={plain(v)}" for k, v in list(value.items())[:6]) + ")"
    if isinstance(value, (list, tuple)):
        return "; ".join(plain(v) for v in value[:6]) + (" …" if len(value) > 6 else "")
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def step_text(index: int, title: str, status: str, summary: str = "", evidence: dict | None = None,
              remedy: str | None = None) -> Text:
    icon, style = STATUS_ICON.get(status, ("?", ""))
    text = Text.assemble((f" {icon} ", style), (f"{index + 1}. {title}", "bold" if status != "skip" else "dim"))
    if summary:
        text.append(f"\n     {summary}", style="dim" if status == "skip" else "")
    if evidence:
        text.append(f"\n     {evidence_text(evidence)}", style="dim")
    if remedy:
        text.append(f"\n     → {remedy}", style="yellow")
    return text


class PlaybooksScreen(OpsScreen):
    MODE = "playbooks"
    BINDINGS = [
        Binding("r", "run", "Run playbook"),
        Binding("d", "dry_run", "Dry run"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._set = None
        self.ids: list[str | None] = []
        self.log_file: str | None = None
        self.outcome = None
        self.running = False

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal():
            with Vertical(classes="side", id="pb-side"):
                yield OptionList(id="pb-list")
            with Vertical(classes="main", id="pb-main"):
                yield Static("", id="pb-info")
                with VerticalScroll(id="pb-steps"):
                    pass
                yield Static("", id="pb-verdict")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#pb-side").border_title = "Playbooks"
        self.query_one("#pb-main").border_title = "Playbook"
        self.query_one("#pb-info").styles.height = "auto"
        self.query_one("#pb-verdict").styles.height = "auto"
        self.load()

    @property
    def playbook_set(self):
        if self._set is None:
            from ...playbooks import load_playbooks

            self._set = load_playbooks(self.ops.settings, kb=self.ops.kb)
        return self._set

    def load(self) -> None:
        pset = self.playbook_set
        listing = self.query_one("#pb-list", OptionList)
        listing.clear_options()
        self.ids = []
        for playbook in sorted(pset.playbooks.values(), key=lambda p: p.id):
            listing.add_option(Option(Text.assemble(playbook.id, (f"  {playbook.title}", "dim")), id=playbook.id))
            self.ids.append(playbook.id)
        for error in pset.errors:
            listing.add_option(Option(Text(f"✖ {error}", style="red"), disabled=True))
            self.ids.append(None)
        self.query_one("#pb-side").border_title = f"Playbooks ({len(pset.playbooks)})"
        if self.ids and self.ids[0]:
            listing.highlighted = 0
        listing.focus()

    def current(self):
        listing = self.query_one("#pb-list", OptionList)
        index = listing.highlighted
        if index is None or index >= len(self.ids) or self.ids[index] is None:
            return None
        return self.playbook_set.get(self.ids[index])

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if not self.running:
            self.show_info()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run()

    def show_info(self) -> None:
        playbook = self.current()
        if playbook is None:
            return
        info = Text.assemble((playbook.title, "bold"), "\n", playbook.description.strip())
        if playbook.applies_to:
            info.append(f"\napplies to: {', '.join(playbook.applies_to)}", style="dim")
        info.append(f"\n{len(playbook.steps)} steps · r runs it · d shows what would run", style="dim")
        if self.log_file:
            info.append(f"\nlog: {self.log_file}", style="cyan")
        self.query_one("#pb-info", Static).update(info)
        self.query_one("#pb-main").border_title = escape_markup(playbook.id)
        self.query_one("#pb-steps").remove_children()
        self.query_one("#pb-verdict", Static).update("")

    def select_playbook(self, playbook_id: str, log_file: str | None = None, run: bool = False) -> None:
        """Open a playbook by id (from a diagnosis or a KB entry); `log_file` is checked by the log steps."""
        if playbook_id not in self.ids:
            error = self.playbook_set.error_for(playbook_id)
            self.notify(str(error) if error else f"no playbook `{playbook_id}`", severity="error")
            return
        self.log_file = log_file
        self.query_one("#pb-list", OptionList).highlighted = self.ids.index(playbook_id)
        self.show_info()
        if run:
            self.action_run()

    def action_dry_run(self) -> None:
        from ...playbooks import PlaybookContext, PlaybookRunner

        playbook = self.current()
        if playbook is None or self.running:
            return
        self.show_info()
        steps = self.query_one("#pb-steps")
        plan = PlaybookRunner(playbook, PlaybookContext(self.ops.settings)).plan()
        steps.mount_all(Static(Text.assemble((f" · {i + 1}. {p.step.title}", "bold"), (f"\n     {p.action}", "dim"),
                                             (f"\n     when {p.condition}" if p.condition else "", "dim")))
                        for i, p in enumerate(plan))
        self.query_one("#pb-verdict", Static).update(Text("dry run: nothing was executed", style="dim"))

    def action_run(self) -> None:
        playbook = self.current()
        if playbook is None:
            self.notify("select a playbook", severity="warning")
            return
        if self.running:
            self.notify("a playbook is already running", severity="warning")
            return
        self.show_info()
        self.running = True
        self.query_one("#pb-verdict", Static).update(Text("running…", style="cyan"))
        self.run_playbook(playbook, self.log_file)

    # -- the engine runs in a thread; every display change goes through call_from_thread --
    @work(thread=True, exclusive=True, group="playbook")
    def run_playbook(self, playbook, log_file: str | None) -> None:
        from ...playbooks import PlaybookContext, PlaybookRunner

        worker = get_current_worker()
        context = PlaybookContext(self.ops.settings, simulate=self.ops.simulate, log_file=log_file,
                                  snapshot=self.ops.snapshot, kb=self.ops.kb)
        runner = PlaybookRunner(playbook, context, confirm=self._confirm_from_thread)
        try:
            for event in runner.events():
                if worker.is_cancelled:
                    return
                self.app.call_from_thread(self._show_event, event)
            self.app.call_from_thread(self._show_outcome, runner.outcome)
        finally:
            self.running = False

    def _confirm_from_thread(self, step, prompt: str) -> bool:
        answer: dict[str, bool] = {}
        done = threading.Event()

        def answered(value: bool | None) -> None:
            answer["yes"] = bool(value)
            done.set()

        kind = "Manual step" if step.kind == "manual" else "Command"
        self.app.call_from_thread(lambda: self.app.push_screen(
            ConfirmDialog(f"{kind}: {step.title}", prompt, yes="Done" if step.kind == "manual" else "Run", no="Skip"),
            answered))
        worker = get_current_worker()
        while not done.wait(0.1):
            if worker.is_cancelled:
                return False
        return answer["yes"]

    def _show_event(self, event) -> None:
        steps = self.query_one("#pb-steps")
        row_id = f"step-{event.index}"
        if event.type == "start":
            steps.mount(Static(step_text(event.index, event.step.title, "running"), id=row_id))
        else:
            outcome = event.outcome
            rows = steps.query(f"#{row_id}")
            text = step_text(event.index, event.step.title, outcome.status, outcome.summary, outcome.evidence, outcome.remedy)
            if rows:
                rows.first(Static).update(text)
            else:
                steps.mount(Static(text, id=row_id))
        self.call_after_refresh(steps.scroll_end, animate=False)

    def _show_outcome(self, outcome) -> None:
        self.outcome = outcome
        text = Text.assemble(("verdict: ", "bold"), (outcome.verdict.upper(), VERDICT_STYLE.get(outcome.verdict, "")))
        if outcome.conclusion:
            text.append(f"\n{outcome.conclusion}")
        self.query_one("#pb-verdict", Static).update(text)
        steps = self.query_one("#pb-steps")
        self.call_after_refresh(lambda: self.call_after_refresh(steps.scroll_end, animate=False))
