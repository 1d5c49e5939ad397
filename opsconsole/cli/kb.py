"""`opsconsole kb list|show|search|check`: browse and validate the knowledge base."""

from __future__ import annotations

import argparse

from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..errors import EXIT_OK, EXIT_USAGE, EXIT_WARN, UsageError
from ..kb import CATEGORIES, KbEntry, load_kb
from ..kb.search import closest_ids, search_kb
from .common import out, print_json
from .diagnose import load_kb_reporting


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("kb", parents=[common], help="browse the knowledge base of failure causes",
                                   description="List, show and search the knowledge base (kb/ plus extra_kb_dirs).")
    sub = parser.add_subparsers(dest="kb_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", parents=[common], help="list entries")
    listing.add_argument("--category", metavar="C", help="only this category (e.g. cuda_oom)")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    listing.set_defaults(handler=run_list)
    show = sub.add_parser("show", parents=[common], help="show one entry: causes and fixes")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the entry (with its body) as JSON")
    show.set_defaults(handler=run_show)
    search = sub.add_parser("search", parents=[common], help="fuzzy search titles, patterns and text")
    search.add_argument("query", nargs="+", metavar="QUERY")
    search.add_argument("--limit", type=int, default=10, metavar="N")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=run_search)
    check = sub.add_parser("check", parents=[common], help="validate every entry (exit 3 if any is unusable)")
    check.add_argument("--json", action="store_true",
                       help='print {"entries": N, "problems": [{"path", "line", "what", "fix"}]}')
    check.set_defaults(handler=run_check)


def _row(entry: KbEntry) -> dict:
    return {"id": entry.id, "category": entry.category, "area": entry.area, "title": entry.title, "playbook": entry.playbook}


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    if args.category and args.category not in CATEGORIES:
        raise UsageError(f"--category {args.category}: unknown category — one of: {', '.join(CATEGORIES)}")
    kb = load_kb_reporting(settings)
    entries = sorted((e for e in kb.entries.values() if not args.category or e.category == args.category),
                     key=lambda e: (e.category, e.id))
    if args.json:
        print_json([_row(e) for e in entries])
        return EXIT_OK
    table = Table(title=f"{len(entries)} KB entries", title_justify="left")
    for column in ("id", "category", "area", "title", "playbook"):
        table.add_column(column, overflow="fold", style="cyan" if column == "id" else None)
    for entry in entries:
        table.add_row(*(escape(str(v)) for v in _row(entry).values()))
    out().print(table)
    return EXIT_OK


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    kb = load_kb_reporting(settings)
    entry = kb.get(args.id)
    if entry is None:
        near = closest_ids(kb, args.id)
        hint = f"did you mean {', '.join(near)}?" if near else "see `opsconsole kb list`"
        raise UsageError(f"no KB entry {args.id!r} — {hint}")
    if args.json:
        print_json({**entry.to_dict(), "body": entry.body})
        return EXIT_OK
    console = out()
    console.print(f"[bold cyan]{escape(entry.title)}[/]")
    console.print(f"[dim]{entry.id} · {entry.category} · {entry.area} · playbook[/] [green]{entry.playbook}[/]"
                  + (f" [dim]· telemetry {', '.join(entry.telemetry)}[/]" if entry.telemetry else ""))
    console.print(Markdown(entry.body))
    if entry.links:
        console.print("\n[bold]Links[/]")
        for link in entry.links:
            console.print(f"  {escape(link)}", soft_wrap=True)
    console.print(f"\n[dim]Signals: {len(entry.patterns)} patterns · file {escape(str(entry.path))}[/]")
    return EXIT_OK


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError(f"--limit {args.limit}: must be 1 to 1000")
    kb = load_kb_reporting(settings)
    query = " ".join(args.query)
    hits = search_kb(kb, query, limit=args.limit)
    if args.json:
        print_json([{**_row(h.entry), "score": h.score, "matched": h.field} for h in hits])
        return EXIT_OK if hits else EXIT_WARN
    if not hits:
        out().print(f"No entry matches {escape(repr(query))}.")
        return EXIT_WARN
    table = Table(title=f"KB entries matching {escape(repr(query))}", title_justify="left")
    for column in ("score", "id", "title", "matched"):
        table.add_column(column, overflow="fold", style="cyan" if column == "id" else None)
    for hit in hits:
        table.add_row(f"{hit.score:.0f}", hit.entry.id, escape(hit.entry.title), hit.field)
    out().print(table)
    return EXIT_OK


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    kb = load_kb(settings.extra_kb_dirs)
    if getattr(args, "json", False):
        print_json({"entries": len(kb.entries), "problems": [
            {"path": e.path, "line": e.line, "what": e.what, "fix": e.fix} for e in kb.errors]})
        return EXIT_USAGE if kb.errors else EXIT_OK
    for problem in kb.errors:
        out().print(escape(str(problem)), soft_wrap=True)
    out().print(f"{len(kb.entries)} entries loaded, {len(kb.errors)} problem(s)")
    return EXIT_USAGE if kb.errors else EXIT_OK
