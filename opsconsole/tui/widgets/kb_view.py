"""A KB entry rendered as Markdown (shared by the KB, Diagnose and finding views)."""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll
from textual.widgets import Markdown


def entry_markdown(entry: Any) -> str:
    meta = f"*{entry.category} · {entry.area}*"
    if entry.playbook:
        meta += f" · playbook `{entry.playbook}` (ctrl+g runs it)"
    links = "\n".join(f"- <{link}>" for link in entry.links)
    return f"# {entry.title}\n\n`{entry.id}` · {meta}\n\n{entry.body}" + (f"\n\n## Links\n\n{links}\n" if links else "")


class KbEntryView(VerticalScroll):
    """Shows one entry; `show(entry)` replaces the document."""

    DEFAULT_CSS = "KbEntryView { height: 1fr; } KbEntryView Markdown { margin: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entry_id: str | None = None

    def compose(self):
        yield Markdown("_select an entry_", id="kb-markdown")

    def show(self, entry: Any | None, missing_id: str | None = None) -> None:
        markdown = self.query_one("#kb-markdown", Markdown)
        if entry is None:
            self.entry_id = None
            markdown.update(f"_no KB entry `{missing_id}`_" if missing_id else "_select an entry_")
            return
        if entry.id == self.entry_id:
            return
        self.entry_id = entry.id
        markdown.update(entry_markdown(entry))
        self.scroll_home(animate=False)
