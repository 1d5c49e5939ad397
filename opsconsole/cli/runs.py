"""`opsconsole run KIND ...` and `opsconsole runs list|show|logs|attach|stop|rm`.

`run` prints the run id (`--json`: {"id", "dir", "status"}); with `--foreground`
it streams the log, Ctrl-C stops the run, and `--json` prints the final result.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, TextIO

from ..config import Settings
from ..errors import UsageError
from .common import err, out, print_json, require_writable

EXIT_FAILED = 2
EXIT_INTERRUPTED = 130


def _add_run_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--foreground", action="store_true", default=default if suppress else False,
                        help="tie the run to this terminal: stream its log, Ctrl-C stops it")
    parser.add_argument("--json", action="store_true", default=default if suppress else False,
                        help='print {"id", "dir", "status"} (with --foreground: the final result.json)')
    parser.add_argument("--force", action="store_true", default=default if suppress else False,
                        help="start even if another active run uses the same GPU")
    parser.add_argument("--gpus", type=int, metavar="N", default=default,
                        help="launch N processes through torch.distributed.run (DDP; gloo on CPU)")
    parser.add_argument("--grace", type=float, metavar="SECONDS", default=default,
                        help="with --foreground: seconds between SIGTERM and SIGKILL on Ctrl-C (default 10)")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from ..jobs import JOB_KINDS

    run = subparsers.add_parser(
        "run", parents=[common], help="start a smoke run (prints its id)",
        description="Start a smoke run in the background (it survives logout). Job flags follow KIND; "
                    "`opsconsole run KIND --help` lists them. Kinds: " + ", ".join(JOB_KINDS),
    )
    _add_run_options(run, suppress=False)
    run.add_argument("kind", metavar="KIND", nargs="?", help="job kind: " + ", ".join(JOB_KINDS))
    run.add_argument("job_args", nargs=argparse.REMAINDER, metavar="JOB_FLAGS", help="flags of the job kind")
    run.set_defaults(handler=cmd_run)

    runs = subparsers.add_parser("runs", parents=[common], help="list, follow, stop and remove runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", parser_class=type(runs))
    runs.set_defaults(handler=lambda args, settings: (runs.print_help(), 0)[1])

    p = sub.add_parser("list", parents=[common], help="all runs, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", parents=[common], help="a run's details and result")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("logs", parents=[common], help="print a run's log (-f: follow until it ends)")
    p.add_argument("id", metavar="ID")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--json", action="store_true",
                   help='print {"id", "status", "lines": [...]}; with -f, one {"line": ...} object per line')
    p.set_defaults(handler=cmd_logs)

    p = sub.add_parser("attach", parents=[common], help="follow log and progress until the run ends (Ctrl-C detaches)")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_attach)

    p = sub.add_parser("stop", parents=[common], help="SIGTERM the run's process group, SIGKILL after a grace period")
    p.add_argument("id", metavar="ID")
    p.add_argument("--grace", type=float, default=None, metavar="SECONDS", help="default 10")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stop)

    p = sub.add_parser("rm", parents=[common], help="delete a finished run and its directory")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_rm)


def _manager(settings: Settings) -> Any:
    from ..runs import RunManager

    manager = RunManager(settings)
    if manager.store.recovery_note:
        from rich.markup import escape

        err().print(f"[yellow]opsconsole: warning:[/] {escape(manager.store.recovery_note)}", soft_wrap=True)
    return manager


def _split_run_flags(args: argparse.Namespace, settings: Settings) -> tuple[list[str], argparse.Namespace, Settings]:
    """Pull runner and global flags (--foreground, --json, --python, ...) out of the job flags."""
    from .common import add_common_options, settings_from_args

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_run_options(parser, suppress=True)
    add_common_options(parser, suppress_defaults=True)
    found, job_argv = parser.parse_known_args(args.job_args)
    for key, value in vars(found).items():
        setattr(args, key, value)
    return job_argv, args, settings_from_args(args, settings) if vars(found) else settings


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from ..runs.launch import job_parser

    job_argv, args, settings = _split_run_flags(args, settings)
    if not args.kind:
        from ..jobs import JOB_KINDS

        raise UsageError(f"which kind of run? `opsconsole run KIND [job flags]`, KIND one of: {', '.join(JOB_KINDS)}")
    if any(a in ("-h", "--help") for a in job_argv):
        sys.stdout.write(job_parser(args.kind, prog=f"opsconsole run {args.kind}").format_help())
        return 0
    require_writable(settings, "starting a run")
    manager = _manager(settings)
    record = manager.launch(args.kind, job_argv, python=settings.python, force=args.force,
                            foreground=args.foreground, gpus=args.gpus)
    if not args.foreground:
        if args.json:
            print_json({"id": record.id, "dir": record.dir, "status": record.status})
        else:
            out().print(record.id, markup=False, highlight=False)
        return 0
    return _run_foreground(manager, record, args)


def _run_foreground(manager: Any, record: Any, args: argparse.Namespace) -> int:
    from ..runs import DEFAULT_GRACE_S

    stream = sys.stderr if args.json else sys.stdout
    err().print(f"run {record.id} started in the foreground (Ctrl-C stops it)", markup=False, highlight=False)
    previous = signal.signal(signal.SIGHUP, _hangup)  # the terminal went away: stop the run like Ctrl-C
    interrupted = False
    try:
        _print_updates(manager.follow(record.id), stream)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGHUP, previous)
    if interrupted:
        grace = args.grace if args.grace is not None else DEFAULT_GRACE_S
        try:  # after a hangup the terminal may be gone: stopping the run matters more than the message
            err().print(f"stopping run {record.id} (SIGTERM, SIGKILL after {grace:g} s)...", markup=False)
        except OSError:
            pass
        manager.stop(record.id, grace=grace)
    result = manager.wait(record.id)
    if args.json:
        print_json(result)
    else:
        _print_result(result)
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if result.get("status") == "ok" else EXIT_FAILED


def _hangup(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_updates(updates: Iterable[Any], stream: TextIO, progress: bool = False) -> None:
    last_progress = 0.0
    for update in updates:
        if update.lines:
            stream.write("\n".join(update.lines) + "\n")
        if progress:
            latest = None  # a backlog of progress events shows only its newest
            for event in update.events:
                if event["type"] == "progress":
                    latest = event
                elif event["type"] in ("finding", "artifact"):
                    stream.write(f"» {event['type']}: {event.get('message') or event.get('path')}\n")
            now = time.monotonic()
            if latest and (now - last_progress >= 1.0 or latest.get("step") == latest.get("total")):
                last_progress = now
                stream.write(_progress_line(latest) + "\n")
        stream.flush()


def _progress_line(event: dict[str, Any]) -> str:
    step, total, unit = event.get("step"), event.get("total"), event.get("unit", "step")
    metrics = event.get("metrics") or {}
    shown = " ".join(f"{k}={_fmt(v)}" for k, v in list(metrics.items())[:6])
    percent = f" {100 * step / total:5.1f}%" if isinstance(step, (int, float)) and total else ""
    return f"» {unit} {step}/{total}{percent} {shown}".rstrip()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_result(result: dict[str, Any]) -> None:
    from ..runs.result import result_summary

    style = {"ok": "green", "failed": "red", "crashed": "red", "stopped": "yellow"}.get(result.get("status", ""), "")
    out().print(f"[bold {style}]{result.get('id')}[/]: {result_summary(result)}", soft_wrap=True, highlight=False)
    if result.get("error"):
        out().print(f"  error: {result['error']}", markup=False, soft_wrap=True)
    for problem in result.get("record_problems") or []:
        out().print(f"  damaged record: {problem}", markup=False, soft_wrap=True)
    for artifact in result.get("artifacts") or []:
        out().print(f"  artifact ({artifact.get('kind')}): {artifact.get('path')}", markup=False, soft_wrap=True)
    for finding in result.get("findings") or []:
        out().print(f"  finding [{finding.get('severity')}]: {finding.get('message')}"
                    + (f" (kb: {finding['kb']})" if finding.get("kb") else ""), markup=False, soft_wrap=True)
    for diag in result.get("diagnoses") or []:
        out().print(f"  diagnosis: {diag.get('title')} [{diag.get('id')}] score {_fmt(diag.get('score'))}"
                    + (f" → `opsconsole playbook run {diag['playbook']}`" if diag.get("playbook") else ""),
                    markup=False, soft_wrap=True)
        for ev in (diag.get("evidence") or [])[:3]:
            where = f"line {ev.get('line')}" if ev.get("line") else f"from the {diag.get('source') or 'job'}"
            out().print(f"      {where}: {ev.get('text')}", markup=False, soft_wrap=True)
    if result.get("diagnosis_pending"):
        out().print("  diagnosis: still running (the GPU is already free)", markup=False, soft_wrap=True)
    if result.get("diagnosis_skipped"):
        out().print(f"  diagnosis skipped: {result['diagnosis_skipped']}", markup=False, soft_wrap=True)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    records = _manager(settings).list()
    if args.json:
        print_json([r.to_dict() for r in records])
        return 0
    if not records:
        out().print("no runs yet — start one with `opsconsole run selftest` or `opsconsole run gemma-infer --model tiny`",
                    markup=False)
        return 0
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "KIND", "STATUS", "GPU", "STARTED", "DURATION", "EXIT"):
        table.add_column(column, no_wrap=True)
    for r in records:
        end = r.ended_at or time.time()
        exit_text = f"sig {r.signal}" if r.signal else ("" if r.exit_code is None else str(r.exit_code))
        table.add_row(r.id, r.kind, r.status, ",".join(r.gpus) or "-",
                      time.strftime("%m-%d %H:%M:%S", time.localtime(r.started_at)),
                      _duration(end - r.started_at), exit_text)
    console = out()
    if not console.is_terminal:  # a pipe: never cut run ids at 80 columns
        from rich.console import Console

        console = Console(file=sys.stdout, width=200, highlight=False, emoji=False)
    console.print(table)
    return 0


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    manager = _manager(settings)
    record = manager.get(args.id)
    result = record.run_dir.read_result()
    if args.json:
        print_json({"record": record.to_dict(), "result": result, "cmd": record.run_dir.read_cmd()})
        return 0
    o = out()
    o.print(f"[bold]{record.id}[/]  {record.kind}  {record.status}", highlight=False)
    o.print(f"  dir:     {record.dir}", markup=False, soft_wrap=True)
    o.print(f"  params:  {' '.join(record.params) or '-'}", markup=False, soft_wrap=True)
    o.print(f"  python:  {record.python}   device: {record.device}   GPU: {','.join(record.gpus) or '-'}",
            markup=False, soft_wrap=True)
    o.print(f"  started: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.started_at))}", markup=False)
    if record.active:
        tail = manager.tail(record.id)
        tail.poll_events()
        if tail.progress:
            o.print("  progress: " + _progress_line(tail.progress).lstrip("» "), markup=False)
        o.print(f"  pid:     {record.pid}  (follow with `opsconsole runs attach {record.id}`)", markup=False)
    if result:
        _print_result(result)
    elif not record.active:
        o.print(f"  result.json is missing or unreadable in {record.dir}; registry says: {record.status}"
                + (f", exit {record.exit_code}" if record.exit_code is not None else "")
                + (f", signal {record.signal}" if record.signal else ""), markup=False, soft_wrap=True)
    last = deque(_all_log_lines(manager, record.id), maxlen=10)
    if last:
        o.print("  last log lines:", markup=False)
        for line in last:
            o.print("    " + line, markup=False, soft_wrap=True)
    return 0


def _all_log_lines(manager: Any, run_id: str, tail: Any = None) -> Iterable[str]:
    """Every display line of the log so far, read in bounded chunks (the live partial line last)."""
    tail = tail or manager.tail(run_id)
    while True:
        lines = tail.poll_log()
        if not lines and not tail.log_behind:
            partial = tail.partial_line
            if partial:
                yield partial
            return
        yield from lines


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    manager = _manager(settings)
    record = manager.get(args.id)
    if args.lines is not None and args.lines < 0:
        raise UsageError("--lines must be 0 or more")
    as_json = getattr(args, "json", False)

    def emit(line: str) -> None:
        sys.stdout.write((json.dumps({"line": line}) if as_json else line) + "\n")

    try:
        if args.follow:
            tail = None
            if args.lines is not None:  # the last N lines, then follow with the same reader
                tail = manager.tail(record.id)
                for line in deque(_drain(tail), maxlen=args.lines):
                    emit(line)
            if as_json:
                for update in manager.follow(record.id, tail=tail):
                    for line in update.lines:
                        emit(line)
                    sys.stdout.flush()
            else:
                _print_updates(manager.follow(record.id, tail=tail), sys.stdout)
            return 0
        lines: Iterable[str] = _all_log_lines(manager, record.id)
        if args.lines is not None:
            lines = deque(lines, maxlen=args.lines)
        if as_json:
            print_json({"id": record.id, "status": manager.get(record.id).status, "lines": list(lines)})
            return 0
        for line in lines:
            emit(line)
    except KeyboardInterrupt:
        return 0
    return 0


def _drain(tail: Any) -> Iterable[str]:
    while True:
        lines = tail.poll_log()
        if not lines and not tail.log_behind:
            return
        yield from lines


def cmd_attach(args: argparse.Namespace, settings: Settings) -> int:
    manager = _manager(settings)
    record = manager.get(args.id)
    err().print(f"attached to {record.id} ({record.status}); Ctrl-C detaches, the run goes on", markup=False)
    try:
        _print_updates(manager.follow(record.id, from_end=True), sys.stdout, progress=True)
    except KeyboardInterrupt:
        err().print(f"detached; {record.id} is still running (`opsconsole runs attach {record.id}` to come back)",
                    markup=False)
        return 0
    result = manager.wait(record.id)
    _print_result(result)
    return 0 if result.get("status") == "ok" else EXIT_FAILED


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from ..runs import DEFAULT_GRACE_S

    require_writable(settings, "stopping a run")
    if args.grace is not None and args.grace < 0:
        raise UsageError("--grace must be 0 or more seconds")
    manager = _manager(settings)
    record = manager.stop(args.id, grace=DEFAULT_GRACE_S if args.grace is None else args.grace)
    if args.json:
        print_json(record.run_dir.read_result() or record.to_dict())
    else:
        out().print(f"{record.id}: {record.status}", markup=False)
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    require_writable(settings, "removing a run")
    record = _manager(settings).remove(args.id)
    out().print(f"removed {record.id}", markup=False)
    return 0
