"""`opsconsole playbook list|show|run`: diagnostic playbooks from the command line.

`run --json` prints {"id", "verdict", "steps": [{"id", "kind", "status", "evidence", "remedy"}, ...]}
(plus "title", "summary", "conclusion"). Exit codes: 0 pass, 1 warn, 2 fail or error, 3 usage/validation error.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from rich.markup import escape

from ..config import Settings
from ..errors import ConfigError, UsageError
from ..playbooks import Playbook, PlaybookContext, PlaybookRunner, PlaybookSet, load_playbooks
from ..playbooks.runner import PlaybookOutcome, StepEvent
from ..redact import redact_argv
from .common import out, print_json

ICONS = {"pass": "[green]✔[/]", "warn": "[yellow]⚠[/]", "fail": "[red]✖[/]", "skip": "[dim]○[/]",
         "error": "[magenta]![/]", "manual": "[cyan]☐[/]"}
VERDICT_STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "error": "bold magenta"}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("playbook", parents=[common], help="list, show and run diagnostic playbooks",
                                   description="Playbooks check this machine and say what to do here.")
    sub = parser.add_subparsers(dest="playbook_command", metavar="ACTION", parser_class=type(parser))
    parser.set_defaults(handler=cmd_list, json=False)

    p = sub.add_parser("list", parents=[common], help="every playbook, and files that could not be loaded")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", parents=[common], help="a playbook's steps and conclusion rules")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true",
                   help='print {"id", "title", "description", "path", "trusted", "applies_to", "steps", "conclusion"}')
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("run", parents=[common], help="run a playbook on this machine (or a simulated one)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help='print {"id", "verdict", "steps": [...]}')
    p.add_argument("--log", metavar="FILE", help="a log file for the log checks (matched against the KB)")
    p.add_argument("--dry-run", action="store_true", help="list what would run (checks, commands with argv) and stop")
    p.set_defaults(handler=cmd_run)


def _load(settings: Settings) -> PlaybookSet:
    return load_playbooks(settings)


def _find(playbooks: PlaybookSet, playbook_id: str) -> Playbook:
    playbook = playbooks.get(playbook_id)
    if playbook is not None:
        return playbook
    broken = playbooks.error_for(playbook_id)
    if broken is not None:
        raise ConfigError(broken.path, broken.line, broken.what, broken.fix)
    known = ", ".join(playbooks.playbooks) or "none"
    raise UsageError(f"unknown playbook `{playbook_id}` (known: {known})")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    playbooks = _load(settings)
    if getattr(args, "json", False):
        print_json({
            "playbooks": [p.summary_dict() for p in playbooks.playbooks.values()],
            "errors": [{"id": Path(e.path).stem, "path": e.path, "line": e.line, "error": e.what, "fix": e.fix}
                       for e in playbooks.errors],
        })
        return 0
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", style="cyan", no_wrap=True)
    table.add_column("TITLE")
    table.add_column("STEPS", justify="right")
    for playbook in playbooks.playbooks.values():
        table.add_row(playbook.id, escape(playbook.title), str(len(playbook.steps)))
    console = out()
    console.print(table)
    for error in playbooks.errors:
        console.print(f"[red]✖ {escape(Path(error.path).stem)}[/] disabled: {escape(str(error))}", soft_wrap=True)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    playbook = _find(_load(settings), args.id)
    if getattr(args, "json", False):
        print_json({
            "id": playbook.id, "title": playbook.title, "description": playbook.description,
            "path": str(playbook.path), "trusted": playbook.trusted, "applies_to": list(playbook.applies_to),
            "steps": [{"id": s.id, "title": s.title, "kind": s.kind, "action": s.describe(),
                       "when": s.when.describe() if s.when else None} for s in playbook.steps],
            "conclusion": [{"when": r.when.describe() if r.when else None, "message": r.message, "verdict": r.verdict}
                           for r in playbook.conclusion]})
        return 0
    console = out()
    console.print(f"[bold]{escape(playbook.title)}[/] [dim]({playbook.id}, {escape(str(playbook.path))})[/]")
    if playbook.description:
        console.print(escape(playbook.description))
    if playbook.applies_to:
        console.print("[dim]applies to:[/] " + ", ".join(playbook.applies_to))
    console.print()
    for number, step in enumerate(playbook.steps, 1):
        when = f"  [dim]when {escape(step.when.describe())}[/]" if step.when else ""
        console.print(f"{number:>2}. [cyan]{step.id}[/] {escape(step.title)}{when}", soft_wrap=True)
        console.print(f"      [dim]{escape(step.describe())}[/]", soft_wrap=True)
    if playbook.conclusion:
        console.print("\n[bold]Conclusion[/]")
        for rule in playbook.conclusion:
            cond = f"when {rule.when.describe()}" if rule.when else "otherwise"
            console.print(f"  [dim]{escape(cond)}:[/] {escape(rule.message)}", soft_wrap=True)
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    return run_playbook_command(args.id, args, settings)


def run_playbook_command(playbook_id: str, args: argparse.Namespace, settings: Settings) -> int:
    """Run one playbook as `playbook run` does and return its exit code.

    Reads these optional attributes of `args`: json, simulate, log, dry_run.
    Used by `playbook run` and by `diagnose FILE --run-playbook` (which sets `log`).
    """
    playbook = _find(_load(settings), playbook_id)
    as_json = bool(getattr(args, "json", False))
    log = getattr(args, "log", None)
    if log and not Path(log).is_file():
        raise UsageError(f"--log {log}: no such file")
    python = getattr(args, "python", None)
    if python and shutil.which(python) is None:
        raise UsageError(f"--python {python}: no such executable interpreter (give the python of your ML environment)")
    context = PlaybookContext(settings, simulate=getattr(args, "simulate", None), log_file=log)
    runner = PlaybookRunner(playbook, context)
    if getattr(args, "dry_run", False):
        plan = runner.plan()
        if as_json:
            print_json({"id": playbook.id, "dry_run": True, "steps": [p.to_dict() for p in plan]})
        else:
            console = out()
            console.print(f"[bold]{escape(playbook.title)}[/] — dry run, nothing is executed")
            for number, planned in enumerate(plan, 1):
                when = f" [dim](when {escape(planned.condition)})[/]" if planned.condition else ""
                console.print(f"{number:>2}. [cyan]{planned.step.id}[/] {escape(planned.action)}{when}", soft_wrap=True)
        return 0
    context.load()  # an unknown --simulate scenario is a usage error, before any output
    if as_json:
        outcome = runner.run()
        print_json(outcome.to_dict())
        return outcome.exit_code
    return _run_live(runner)


def _run_live(runner: PlaybookRunner) -> int:
    console = out()
    playbook = runner.playbook
    source = runner.context.snapshot.source
    console.print(f"[bold]{escape(playbook.title)}[/] [dim]({playbook.id} on {escape(source)})[/]")
    status = None
    for event in runner.events():
        if event.type == "start":
            if event.step.kind == "command" and event.will_run and not runner.context.simulated:
                console.print(f"    [dim]$ {escape(' '.join(redact_argv(event.step.argv)))}[/]")
            if console.is_terminal:
                status = console.status(f"{escape(event.step.title)}…")
                status.start()
            continue
        if status is not None:
            status.stop()
            status = None
        _print_step(console, event)
    assert runner.outcome is not None
    _print_verdict(console, runner.outcome)
    return runner.outcome.exit_code


def _print_step(console: Any, event: StepEvent) -> None:
    outcome = event.outcome
    assert outcome is not None
    icon = ICONS.get(outcome.status, outcome.status)
    line = f"{icon} [bold]{outcome.step.id}[/] {escape(outcome.summary)}"
    console.print(line, soft_wrap=True)
    if outcome.remedy:
        console.print(f"    [dim]→[/] {escape(outcome.remedy)}", soft_wrap=True)


def _print_verdict(console: Any, outcome: PlaybookOutcome) -> None:
    style = VERDICT_STYLE[outcome.verdict]
    console.print(f"\n[{style}]Verdict: {outcome.verdict.upper()}[/]")
    if outcome.conclusion:
        console.print(escape(outcome.conclusion), soft_wrap=True)
