"""Knowledge base: browse by category or area, fuzzy search, read entries, run their playbook."""

from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from ..widgets.kb_view import KbEntryView
from .base import OpsScreen
from ...markup import escape_markup


def fuzzy_rank(entries, query: str, limit: int = 40) -> list:
    """Entries ranked by how many query words they contain, then by fuzzy similarity (typos welcome)."""
    from rapidfuzz import fuzz

    words = query.lower().split()
    scored = []
    for entry in entries:
        head = f"{entry.id} {entry.title} {entry.category} {entry.area}".lower()
        body = entry.body.lower()
        exact = sum(2 if word in head else 1 if word in body else 0 for word in words)
        similarity = fuzz.partial_ratio(query.lower(), head)
        if exact or similarity >= 70:
            scored.append((exact, similarity, entry))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2].id))
    return [entry for _, _, entry in scored[:limit]]


def _line(text: Text) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class KbScreen(OpsScreen):
    MODE = "kb"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("g", "toggle_group", "Group by area/category"),
        Binding("ctrl+g", "run_playbook", "Run playbook", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.group_by = "category"
        self.listed: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal():
            with Vertical(classes="side", id="kb-side"):
                yield Input(placeholder="fuzzy search (/)", id="kb-search", compact=True)
                yield OptionList(id="kb-list")
            with Vertical(classes="main", id="kb-main"):
                yield KbEntryView(id="kb-entry")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.refresh_list()
        listing = self.query_one("#kb-list", OptionList)
        listing.focus()
        first = next((i for i, key in enumerate(self.listed) if key), None)
        if first is not None:
            listing.highlighted = first

    def refresh_list(self, query: str = "") -> None:
        kb = self.ops.kb
        entries = sorted(kb.entries.values(), key=lambda e: e.title.lower())
        options: list[Option] = []
        self.listed = []
        if query:
            for entry in fuzzy_rank(entries, query):
                options.append(Option(_line(Text.assemble(entry.title, (f"  {entry.id}", "dim"))), id=entry.id))
                self.listed.append(entry.id)
        else:
            groups: dict[str, list] = defaultdict(list)
            for entry in entries:
                groups[getattr(entry, self.group_by)].append(entry)
            for group in sorted(groups):
                options.append(Option(_line(Text(f"{group} ({len(groups[group])})", style="bold")), disabled=True))
                self.listed.append(None)
                for entry in groups[group]:
                    options.append(Option(_line(Text("  " + entry.title)), id=entry.id))
                    self.listed.append(entry.id)
        side = self.query_one("#kb-side")
        side.border_title = f"KB: {len(kb.entries)} entries" + (f", {len(options)} match" if query else f" by {self.group_by}")
        if kb.errors:
            side.border_subtitle = f"{len(kb.errors)} broken file(s)"
            self.notify("\n".join(str(e) for e in kb.errors[:3]), title="KB files skipped", severity="warning")
        listing = self.query_one("#kb-list", OptionList)
        listing.clear_options()
        listing.add_options(options)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "kb-search":
            self.refresh_list(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        listing = self.query_one("#kb-list", OptionList)
        listing.focus()
        first = next((i for i, key in enumerate(self.listed) if key), None)
        if first is not None:
            listing.highlighted = first

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self._show(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._show(event.option.id)
            self.query_one("#kb-entry").focus()

    def _show(self, entry_id: str) -> None:
        self.query_one("#kb-entry", KbEntryView).show(self.ops.kb.get(entry_id), missing_id=entry_id)
        self.query_one("#kb-main").border_title = escape_markup(entry_id)

    def show_entry(self, entry_id: str) -> None:
        """Open an entry by id (from a finding, a diagnosis, a run)."""
        search = self.query_one("#kb-search", Input)
        if search.value:
            search.value = ""
            self.refresh_list()
        if entry_id in self.listed:
            self.query_one("#kb-list", OptionList).highlighted = self.listed.index(entry_id)
        self._show(entry_id)

    def action_search(self) -> None:
        self.query_one("#kb-search", Input).focus()

    def action_toggle_group(self) -> None:
        self.group_by = "area" if self.group_by == "category" else "category"
        self.refresh_list(self.query_one("#kb-search", Input).value.strip())

    def action_run_playbook(self) -> None:
        entry_id = self.query_one("#kb-entry", KbEntryView).entry_id
        entry = self.ops.kb.get(entry_id) if entry_id else None
        if entry is None or not entry.playbook:
            self.notify("this entry has no playbook" if entry else "select an entry first", severity="warning")
            return
        self.ops.open_playbook(entry.playbook, run=True)
