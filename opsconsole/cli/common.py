"""Options and helpers shared by every command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from ..config import Settings, seconds_setting
from ..errors import UsageError

_stdout: Console | None = None
_stderr: Console | None = None


def out() -> Console:
    """Rich console on stdout (created lazily so tests can capture sys.stdout)."""
    global _stdout
    if _stdout is None or _stdout.file is not sys.stdout:
        _stdout = Console(file=sys.stdout, highlight=False, emoji=False)
    return _stdout


def err() -> Console:
    global _stderr
    if _stderr is None or _stderr.file is not sys.stderr:
        _stderr = Console(file=sys.stderr, highlight=False, emoji=False)
    return _stderr


def print_error(message: str) -> None:
    from ..markup import escape_markup  # the message is plain text: "[job flags]" must not vanish as markup

    err().print(f"[bold red]opsconsole: error:[/] {escape_markup(message)}", markup=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no Rich markup, no wrapping): a contract for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def add_common_options(parser: argparse.ArgumentParser, suppress_defaults: bool) -> None:
    """Global options, accepted before or after the command.

    Sub-parsers get them with SUPPRESS defaults so a value given before the
    command is not overwritten by the sub-parser's default.
    """
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument("--simulate", metavar="SCENARIO", default=default,
                        help="replay a simulated machine instead of reading NVML (see `status --list-scenarios`)")
    parser.add_argument("--python", metavar="PATH", default=default,
                        help="interpreter of your ML environment, used by the CUDA probe and runs")
    parser.add_argument("--refresh", metavar="SECONDS", type=float, default=default,
                        help="telemetry refresh interval")
    parser.add_argument("--readonly", action="store_true", default=default if suppress_defaults else False,
                        help="forbid every action that changes anything (kill, stop, launch)")


def settings_from_args(args: argparse.Namespace, settings: Settings) -> Settings:
    refresh = getattr(args, "refresh", None)
    if refresh is not None:
        try:
            refresh = seconds_setting("refresh", refresh)
        except ValueError as exc:
            raise UsageError(f"--refresh {exc}") from None
    return settings.with_overrides(
        python=getattr(args, "python", None),
        refresh=refresh,
        readonly=True if getattr(args, "readonly", False) else None,
    )


def require_writable(settings: Settings, action: str) -> None:
    """Refuse `action` in read-only mode (flag --readonly or OPSCONSOLE_READONLY=1)."""
    if settings.readonly:
        raise UsageError(f"read-only mode: {action} is disabled (started with --readonly or OPSCONSOLE_READONLY=1)")
