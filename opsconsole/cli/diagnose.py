"""`opsconsole diagnose [FILE|-]`: name the root cause of an error log.

Exit codes (a contract): 0 something matched, 1 nothing did (also for an
empty log), 3 usage error (missing file, bad flag).
"""

from __future__ import annotations

import argparse
import sys

from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from ..config import Settings
from ..errors import EXIT_OK, EXIT_WARN, UsageError
from ..kb import KnowledgeBase, LogMatcher, MatchResult, load_kb
from ..kb.matcher import CHUNK_BYTES, LogReadError, log_file_problem
from .common import err, out, print_json


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "diagnose", parents=[common], help="name the root cause of an error log (exit 0 match, 1 none)",
        description="Match a log (a file, or - for stdin) against the knowledge base and show the most likely "
        "root causes, the lines that prove them and the fix. Exit codes: 0 a cause matched, 1 nothing matched, "
        "3 usage error.",
    )
    parser.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="log file to diagnose; - (default) reads stdin")
    parser.add_argument("--json", action="store_true", help='print {"matches": [...], "lines_scanned": N}')
    parser.add_argument("--top", type=int, default=3, metavar="N", help="how many causes to show (default 3)")
    parser.add_argument("--run-playbook", action="store_true", help="then run the playbook of the top match")
    parser.set_defaults(handler=run_diagnose)


def load_kb_reporting(settings: Settings) -> KnowledgeBase:
    """Load the KB; report unusable entry files on stderr (the rest still works)."""
    kb = load_kb(settings.extra_kb_dirs)
    for problem in kb.errors:
        err().print(f"[yellow]opsconsole: warning:[/] {escape(str(problem))} (entry skipped)", soft_wrap=True)
    return kb


def diagnose_source(path: str, kb: KnowledgeBase, top: int) -> MatchResult:
    """Stream `path` (or stdin for '-') through the matcher."""
    matcher = LogMatcher(kb)
    if path == "-":
        stream = sys.stdin.buffer
        while chunk := stream.read(CHUNK_BYTES):
            matcher.feed(chunk)
    else:
        try:
            matcher.feed_file(path)
        except LogReadError as exc:
            if not exc.bytes_read:
                raise UsageError(str(exc)) from None
            err().print(f"opsconsole: warning: {exc}; the part read so far is diagnosed", markup=False, soft_wrap=True,
                        highlight=False)
    return matcher.result(top)


def _check_input(path: str) -> None:
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no log given: pass a FILE, or pipe one in (`… 2>&1 | opsconsole diagnose -`)")
        return
    problem = log_file_problem(path)
    if problem:
        raise UsageError(problem)


def run_diagnose(args: argparse.Namespace, settings: Settings) -> int:
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.run_playbook and args.json:
        raise UsageError("--run-playbook cannot be combined with --json; run `opsconsole playbook run ID --json` instead")
    _check_input(args.file)
    kb = load_kb_reporting(settings)
    result = diagnose_source(args.file, kb, args.top)
    if args.json:
        print_json(result.to_dict())
        if result.empty_input:
            err().print("opsconsole: the log is empty: nothing to diagnose", highlight=False)
        return EXIT_OK if result.matches else EXIT_WARN
    _render(result, kb, args.file)
    if not result.matches:
        return EXIT_WARN
    if args.run_playbook:
        return _run_playbook(result.matches[0].playbook, args, settings)
    return EXIT_OK


def _run_playbook(playbook_id: str, args: argparse.Namespace, settings: Settings) -> int:
    from .playbook import run_playbook_command  # owned by the playbook command; imported only when asked

    out().rule(f"playbook {playbook_id}")
    args.log = None if args.file == "-" else args.file
    return int(run_playbook_command(playbook_id, args, settings))


def highlighted(text: str, entry_patterns) -> Text:  # noqa: ANN001 - tuple[KbPattern, ...]
    """`text` with the parts matched by the entry's patterns in bold."""
    rendered = Text(text)
    for pattern in entry_patterns:
        for hit in pattern.regex.finditer(text):
            if hit.end() > hit.start():
                rendered.stylize("bold yellow", hit.start(), hit.end())
    return rendered


def _render(result: MatchResult, kb: KnowledgeBase, source: str) -> None:
    console = out()
    name = "stdin" if source == "-" else source
    if result.empty_input:
        console.print(f"[yellow]The log is empty[/] ({escape(name)}): nothing to diagnose.")
        return
    if not result.matches:
        console.print(f"No known cause found in {escape(name)} ({result.lines_scanned} lines scanned).")
        console.print("[dim]Search the knowledge base by words from the error: opsconsole kb search \"...\"[/]")
        return
    console.print(f"[bold]{escape(name)}[/]: {result.lines_scanned} lines scanned, "
                  f"{len(result.matches)} likely cause{'s' if len(result.matches) > 1 else ''}\n")
    for rank, diagnosis in enumerate(result.matches, 1):
        entry = kb.get(diagnosis.id)
        head = Text.assemble(
            (f"{rank}. ", "bold"), (diagnosis.title, "bold cyan" if rank == 1 else "cyan"),
            (f"  [{diagnosis.id} · {diagnosis.category} · score {diagnosis.score:g}]", "dim"))
        console.print(head)
        for ev in diagnosis.evidence:
            line = Text(f"   {ev.line:>7} │ ", style="dim")
            line.append_text(highlighted(ev.text, entry.patterns if entry else ()))
            console.print(line, overflow="fold")
        if rank == 1 and entry is not None and entry.fix_summary:
            console.print(Panel(Markdown(entry.fix_summary), title="fix", title_align="left", border_style="green"))
        log_flag = "" if source == "-" else f" --log {escape(source)}"
        console.print(f"   playbook: [green]opsconsole playbook run {diagnosis.playbook}{log_flag}[/]")
        console.print(f"   details:  [green]opsconsole kb show {diagnosis.id}[/]\n")
