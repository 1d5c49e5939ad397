"""Command line entry point: `opsconsole [global options] [COMMAND ...]`.

With no command it starts the TUI. Each command lives in its own module in this
package and exposes `register(subparsers, common)`; its handler has the
signature `handler(args, settings) -> int` (the exit code).

Exit codes: 0 ok / nothing above info, 1 warn, 2 critical/fail, 3 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import Settings, load_settings
from ..errors import EXIT_USAGE, OpsconsoleError
from .common import add_common_options, print_error, settings_from_args

# Command modules, in the order they appear in --help.
COMMAND_MODULES = ("status", "diagnose", "kb", "playbook", "runs", "models", "report", "bench",
                   "diag", "history", "record", "exporter", "fleet")


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 3 (our usage-error code) instead of 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print_error(message)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    add_common_options(common, suppress_defaults=True)
    parser = _Parser(
        prog="opsconsole",
        description="A console for GPU boxes: live telemetry, diagnosis, playbooks and smoke runs. "
        "Run without a command to open the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"opsconsole {__version__}")
    add_common_options(parser, suppress_defaults=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.register(sub, common)
    return parser


def _tui_only_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """Fast path for plain `opsconsole [global options]` (the TUI): parse only the global
    options, without importing every command module (~0.1 s of the console's start-up).
    None when anything else is on the command line (a command, --help, --version)."""
    common = _Parser(prog="opsconsole", add_help=False)
    add_common_options(common, suppress_defaults=False)
    args, rest = common.parse_known_args(argv)
    return None if rest else args


def _tolerant_output() -> None:
    """Undecodable argv bytes reach Python as surrogates (`--model $'\\xff'`): printing them back
    in an error must not raise UnicodeEncodeError. Show them as \\udcff instead."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_output()
    args = _tui_only_args(sys.argv[1:] if argv is None else list(argv))
    if args is None:
        args = build_parser().parse_args(argv)
    try:
        settings: Settings = settings_from_args(args, load_settings())
        handler = getattr(args, "handler", None)
        if handler is None:
            from ..tui.app import run_tui  # imported late: Textual is only needed here

            return run_tui(args, settings)
        return int(handler(args, settings) or 0)
    except OpsconsoleError as exc:
        print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `opsconsole status --json | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
