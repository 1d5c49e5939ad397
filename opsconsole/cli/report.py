"""`opsconsole report [--out DIR] [--runs N]`: a redacted support bundle (Markdown + JSON + tar.gz).

Global --simulate / --python apply (the snapshot of a simulated box; the CUDA env of your ML Python).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import UsageError
from .common import out, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "report", parents=[common], help="write a support bundle for a ticket (secrets redacted)",
        description="Write report.json, report.md and a .tar.gz of both: status snapshot and findings, CUDA env "
                    "and versions, recent XIDs, the last runs with their diagnoses and log tails. Every secret "
                    "(tokens, keys, URL passwords) is redacted.")
    p.add_argument("--out", metavar="DIR", default=".", help="where to write the bundle (default: current directory)")
    p.add_argument("--runs", type=int, default=10, metavar="N", help="how many recent runs to include (default 10)")
    p.add_argument("--log-lines", type=int, default=40, metavar="N", help="log tail lines per run (default 40)")
    p.add_argument("--json", action="store_true", help="print the paths written as JSON")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from ..report import build_report, write_bundle

    if args.runs < 0 or args.log_lines < 0:
        raise UsageError("--runs and --log-lines must be 0 or more")
    python = getattr(args, "python", None)
    if python and shutil.which(python) is None:
        raise UsageError(f"--python {python}: no such executable interpreter")
    out_dir = Path(args.out).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create the directory ({exc.strerror})") from None
    report = build_report(settings, simulate=getattr(args, "simulate", None), runs=args.runs, log_lines=args.log_lines)
    try:
        paths = write_bundle(report, out_dir)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write the report ({exc.strerror}: {exc.filename})") from None
    if args.json:
        print_json({key: str(path) for key, path in paths.items()})
    else:
        for key in ("markdown", "json", "tar"):
            out().print(str(paths[key]), markup=False, highlight=False, soft_wrap=True)
    return 0
