"""Diagnose: paste a log (or open a file) -> ranked KB matches, evidence in context, the entry, its playbook."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Paste
from textual.widgets import Input, OptionList, Static, TabbedContent, TabPane, TextArea
from textual.widgets.option_list import Option

from ..widgets.kb_view import KbEntryView
from .base import OpsScreen
from ...markup import escape_markup
from ...redact import redact_text

CONTEXT_RADIUS = 3
PREVIEW_BYTES = 200_000
MAX_EVIDENCE_BLOCKS = 6


def context_blocks(lines_of: callable, evidence_lines: list[int], radius: int = CONTEXT_RADIUS) -> Text:
    """Evidence lines with `radius` lines around them; evidence highlighted, gaps marked."""
    wanted: set[int] = set()
    for number in evidence_lines[:MAX_EVIDENCE_BLOCKS * 2]:
        wanted.update(range(max(1, number - radius), number + radius + 1))
    texts = lines_of(sorted(wanted))
    out = Text()
    previous = None
    hits = set(evidence_lines)
    for number in sorted(texts):
        if previous is not None and number != previous + 1:
            out.append("  ⋮\n", style="dim")
        line = redact_text(texts[number].rstrip("\n"))  # the CLI's evidence is redacted: so is ours
        if number in hits:
            out.append(f"{number:>6} ▶ ", style="bold")
            out.append(line + "\n", style="bold reverse yellow")
        else:
            out.append(f"{number:>6}   ", style="dim")
            out.append(line + "\n")
        previous = number
    return out


def lines_from_text(text: str):
    lines = text.splitlines()
    return lambda numbers: {n: lines[n - 1] for n in numbers if 0 < n <= len(lines)}


def lines_from_file(path: Path, numbers: set[int], width: int = 2000) -> dict[int, str]:
    """The lines `numbers` of the file (each cut at `width`), read once, in pieces: a 1 GiB
    single-line log costs no more memory than a small one. Unreadable -> what was read."""
    out: dict[int, str] = {}
    last = max(numbers, default=0)
    number, piece_of_line = 1, b""
    try:
        with open(path, "rb") as handle:
            while number <= last:
                piece = handle.readline(1 << 16)
                if not piece:
                    break
                if number in numbers and len(piece_of_line) < width:
                    piece_of_line += piece[: width - len(piece_of_line)]
                if piece.endswith(b"\n"):
                    if number in numbers:
                        out[number] = piece_of_line.decode("utf-8", "replace")
                    number, piece_of_line = number + 1, b""
            if piece_of_line and number in numbers:
                out[number] = piece_of_line.decode("utf-8", "replace")
    except OSError:
        pass
    return out


def evidence_lines(result, radius: int = CONTEXT_RADIUS) -> set[int]:
    """Every line context_blocks may show, for every match."""
    wanted: set[int] = set()
    for diagnosis in result.matches:
        for number in [e.line for e in diagnosis.evidence][:MAX_EVIDENCE_BLOCKS * 2]:
            wanted.update(range(max(1, number - radius), number + radius + 1))
    return wanted


class DiagnoseScreen(OpsScreen):
    MODE = "diagnose"
    BINDINGS = [
        Binding("ctrl+r", "diagnose", "Diagnose", priority=True),
        Binding("ctrl+o", "open_file", "Open file", priority=True),
        Binding("ctrl+g", "run_playbook", "Run playbook", priority=True),
        Binding("ctrl+l", "clear", "Clear", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.source_path: Path | None = None
        self.result = None

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal():
            with Vertical(classes="main", id="diag-input"):
                yield Input(placeholder="log file path — Enter opens it (ctrl+o)", id="log-path", compact=True)
                yield TextArea(id="log-text", soft_wrap=False, show_line_numbers=False)
            with Vertical(classes="main", id="diag-output"):
                yield OptionList(id="matches")
                with TabbedContent(id="diag-tabs"):
                    with TabPane("Evidence", id="tab-evidence"):
                        with VerticalScroll():
                            yield Static("paste a log here (it is diagnosed at once), or type it on the left and press ctrl+r",
                                         id="evidence", markup=False)
                    with TabPane("KB entry", id="tab-entry"):
                        yield KbEntryView(id="diag-entry")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#diag-input").border_title = "Log (paste, or a path above)"
        self.query_one("#diag-output").border_title = "Matches"
        self.query_one("#matches").styles.height = 8
        # Focus starts outside the text area so the screen keys (1-6, ?) keep working;
        # a paste anywhere on this screen lands in the log and is diagnosed at once.
        self.query_one("#matches").focus()

    def on_paste(self, event: Paste) -> None:
        area = self.query_one("#log-text", TextArea)
        if area.has_focus or self.query_one("#log-path", Input).has_focus:
            return
        event.stop()
        self.source_path = None
        area.load_text(event.text.replace("\r\n", "\n").replace("\r", "\n"))
        self.action_diagnose()

    # -- input -------------------------------------------------------------
    def action_open_file(self) -> None:
        self.query_one("#log-path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-path":
            self.open_path(event.value.strip())

    def open_path(self, value: str) -> None:
        from ...kb.matcher import log_file_problem

        path = Path(os.path.expanduser(value)) if value else None
        problem = log_file_problem(path) if path is not None else "no file given: type the path of a log"
        if problem:
            self.notify(problem, severity="error")
            return
        try:  # the preview is the first 200 kB only: the file itself is streamed by the matcher
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                head = handle.read(PREVIEW_BYTES)
        except OSError as exc:
            self.notify(f"{path}: cannot read it ({exc.strerror or exc})", severity="error")
            return
        self.source_path = path
        preview = redact_text(head.decode("utf-8", errors="replace"))
        area = self.query_one("#log-text", TextArea)
        area.load_text(preview + ("\n… (preview; the whole file is diagnosed)" if size > PREVIEW_BYTES else ""))
        self.query_one("#diag-input").border_title = f"Log: {escape_markup(path)} ({size} bytes)"
        self.action_diagnose()

    def action_clear(self) -> None:
        self.source_path = None
        self.query_one("#log-text", TextArea).load_text("")
        self.query_one("#log-path", Input).value = ""
        self.query_one("#diag-input").border_title = "Log (paste, or a path above)"
        self.query_one("#matches", OptionList).clear_options()
        self.query_one("#evidence", Static).update("")
        self.result = None

    # -- diagnosis -----------------------------------------------------------
    def action_diagnose(self) -> None:
        # A terminal paste ends lines with \r (and TextArea keeps what it was given): one convention.
        text = self.query_one("#log-text", TextArea).text.replace("\r\n", "\n").replace("\r", "\n")
        if self.source_path is None and not text.strip():
            self.notify("nothing to diagnose: paste a log or give a file path", severity="warning")
            return
        self.run_diagnosis(self.source_path, text)

    @work(exclusive=True, group="diagnose")
    async def run_diagnosis(self, path: Path | None, text: str) -> None:
        from ...kb import LogMatcher, match_log
        from ...kb.matcher import LogReadError

        output = self.query_one("#diag-output")
        output.border_title = "Matches (diagnosing…)"
        kb = await asyncio.to_thread(lambda: self.ops.kb)

        def progress(done: int, total: int) -> None:  # on the worker thread: hand the title to the UI
            shown = f"{100 * done / total:.0f}%" if total else f"{done >> 20} MiB"
            self.app.call_from_thread(setattr, output, "border_title", f"Matches (diagnosing… {shown})")

        def diagnose_file(source: Path):
            matcher = LogMatcher(kb)
            try:
                matcher.feed_file(source, progress)
            except LogReadError as exc:
                self.app.call_from_thread(self.notify, f"{exc}; the part read so far is diagnosed", severity="warning")
            return matcher.result(5)

        if path is not None:
            result = await asyncio.to_thread(diagnose_file, path)
            shown = await asyncio.to_thread(lines_from_file, path, evidence_lines(result))  # off the UI thread
            self.lines_of = lambda numbers: {n: shown[n] for n in numbers if n in shown}
        else:
            result = await asyncio.to_thread(match_log, text, kb, 5)
            self.lines_of = lines_from_text(text)
        self.result = result
        self.show_result(result)

    def show_result(self, result) -> None:
        matches = self.query_one("#matches", OptionList)
        matches.clear_options()
        title = f"Matches ({len(result.matches)} of {result.lines_scanned} lines)"
        self.query_one("#diag-output").border_title = title
        if not result.matches:
            matches.add_option(Option(Text("no known cause found in this log", style="yellow"), disabled=True))
            self.query_one("#evidence", Static).update("no KB entry matched; try the KB screen's search")
            return
        for rank, diagnosis in enumerate(result.matches, 1):
            label = Text.assemble((f"{rank}. ", "bold"), (f"{diagnosis.score:5.1f} ", "cyan"), diagnosis.title,
                                  (f"  {diagnosis.id}", "dim"))
            matches.add_option(Option(label, id=diagnosis.id))
        matches.highlighted = 0
        matches.focus()
        self.show_diagnosis(0)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "matches":
            self.show_diagnosis(event.option_index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "matches":
            self.show_diagnosis(event.option_index)
            self.query_one("#diag-tabs", TabbedContent).active = "tab-entry"

    def selected_diagnosis(self, index: int | None = None):
        if not self.result or not self.result.matches:
            return None
        index = self.query_one("#matches", OptionList).highlighted if index is None else index
        if index is None or index >= len(self.result.matches):
            return None
        return self.result.matches[index]

    def show_diagnosis(self, index: int) -> None:
        diagnosis = self.selected_diagnosis(index)
        if diagnosis is None:
            return
        lines = [e.line for e in diagnosis.evidence]
        self.query_one("#evidence", Static).update(context_blocks(self.lines_of, lines) if lines else "no evidence lines")
        entry = self.ops.kb.get(diagnosis.id)
        self.query_one("#diag-entry", KbEntryView).show(entry, missing_id=diagnosis.id)

    def action_run_playbook(self) -> None:
        diagnosis = self.selected_diagnosis()
        if diagnosis is None:
            self.notify("diagnose a log first (ctrl+r)", severity="warning")
            return
        if not diagnosis.playbook:
            self.notify(f"{diagnosis.id} has no playbook", severity="warning")
            return
        log_path = self.source_path
        if log_path is None:
            handle = tempfile.NamedTemporaryFile("w", suffix=".log", prefix="opsconsole-paste-", delete=False)
            with handle:
                handle.write(self.query_one("#log-text", TextArea).text)
            log_path = Path(handle.name)
        self.ops.open_playbook(diagnosis.playbook, log_file=str(log_path), run=True)
