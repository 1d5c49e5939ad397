"""`opsconsole bench [--device cpu|cuda] [--json] [--markdown FILE]`: the model-comparison matrix.

Every cell is a real smoke inference run (see opsconsole.benchmatrix); `--json` prints
exactly {"rows": [{"kind", "model", "dtype", "attn", "compile", "metrics": {...}}]}.
Exit 0 when every cell ran ok, 2 when some cell failed (its row says why).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import UsageError
from .common import err, out, print_json, require_writable

EXIT_SOME_FAILED = 2
KINDS = ("gemma-infer", "sd-infer")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "bench", parents=[common], help="compare inference speed over models x dtype x attention x compile",
        description="Run a matrix of smoke inference runs (gemma-infer, sd-infer) and compare it/s, s/image, "
                    "tok/s, TTFT and peak VRAM. CPU: tiny models, seconds per cell. CUDA: Gemma-2-2B and SD 1.5 "
                    "(cached weights, else --weights random).")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda when NVML sees a GPU, else cpu")
    p.add_argument("--kind", action="append", choices=KINDS, help="only these job kinds (repeatable)")
    p.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of the table')
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown to FILE")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=None,
                   help="per-cell limit; the cell is stopped and recorded as timeout (default 300 CPU, 900 CUDA)")
    p.set_defaults(handler=cmd_bench)


def detect_device() -> str:
    """cuda when NVML reports at least one GPU (the console never imports torch)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return "cuda" if pynvml.nvmlDeviceGetCount() > 0 else "cpu"
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: CPU
        return "cpu"


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from .. import benchmatrix
    from ..runs import RunManager

    require_writable(settings, "bench (it launches runs)")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if args.markdown and not Path(args.markdown).expanduser().resolve().parent.is_dir():
        raise UsageError(f"--markdown {args.markdown}: the directory does not exist")
    device = detect_device() if args.device == "auto" else args.device
    cells = benchmatrix.default_matrix(device, args.kind or KINDS)
    timeout = args.timeout or (300.0 if device == "cpu" else 900.0)
    manager = RunManager(settings)

    def started(index: int, cell: benchmatrix.BenchCell) -> None:
        err().print(f"[{index + 1}/{len(cells)}] {cell.label}", markup=False, highlight=False)

    def finished(row: dict[str, Any]) -> None:
        m = row["metrics"]
        err().print(f"      {m.get('status')} ({m.get('wall_s')} s, run {m.get('run_id')})", markup=False,
                    highlight=False)

    rows = benchmatrix.run_matrix(manager, cells, timeout, python=settings.python, on_start=started, on_row=finished)
    title = f"opsconsole bench ({device})"
    if args.markdown:
        Path(args.markdown).expanduser().write_text(benchmatrix.to_markdown(rows, title), encoding="utf-8")
    if args.json:
        print_json({"rows": rows})
    else:
        _print_table(rows, title)
    return 0 if all(r["metrics"].get("status") == "ok" for r in rows) else EXIT_SOME_FAILED


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..benchmatrix import COLUMNS, format_cell

    columns = [(h, k) for h, k in COLUMNS if k != "note" or any(r["metrics"].get("status") != "ok" for r in rows)]
    table = Table(title=title)
    for header, key in columns:
        if key == "note":
            table.add_column(header, overflow="fold", ratio=1, min_width=30)
        else:
            table.add_column(header, justify="right" if key.endswith(("_s", "_bytes")) else "left", no_wrap=True)
    for row in rows:
        style = "" if row["metrics"].get("status") == "ok" else "red"
        table.add_row(*(Text(format_cell(key, row)) for _, key in columns), style=style)
    console = out()
    if not console.is_terminal:  # a pipe or a file: do not squeeze the table into 80 columns
        console = Console(file=sys.stdout, width=200, highlight=False, emoji=False)
    console.print(table)
