"""`selftest`: a torch-free job for testing the run machinery in seconds.

    opsconsole run selftest --lines 5                 # 5 lines, progress events, finish ok
    opsconsole run selftest --lines 50 --interval 0.2 # slow: for attach / stop tests
    opsconsole run selftest --raise "CUDA out of memory. Tried to allocate 2.00 GiB"   # failed + diagnosed
    opsconsole run selftest --flood                   # 1,000,000 log lines as fast as possible
    opsconsole run selftest --ignore-sigterm          # only SIGKILL ends it (stop escalation)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from .common import JobContext, JobError, add_common_job_options, check_range

FLOOD_LINES = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selftest", description="Torch-free job that exercises the run machinery.")
    add_common_job_options(parser)
    parser.add_argument("--lines", type=int, default=5, help="log lines (and progress steps) to print")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between lines")
    parser.add_argument("--progress-bar", action="store_true",
                        help="draw a \\r progress bar with ANSI colour instead of lines (no final newline)")
    parser.add_argument("--raise", dest="raise_message", metavar="MESSAGE",
                        help="raise RuntimeError(MESSAGE) after the lines (a failed run)")
    parser.add_argument("--job-error", metavar="MESSAGE", help="fail with a one-line JobError(MESSAGE)")
    parser.add_argument("--sleep", type=float, default=0.0, help="sleep this long after the lines")
    parser.add_argument("--flood", action="store_true", help=f"print {FLOOD_LINES:,} lines as fast as possible")
    parser.add_argument("--artifact", action="store_true", help="write artifacts/selftest.txt and report it")
    parser.add_argument("--ignore-sigterm", action="store_true", help="ignore SIGTERM (tests SIGKILL escalation)")
    parser.add_argument("--orphan", action="store_true",
                        help="leave a `sleep 300` behind in its own session (tests that runs clean up)")
    parser.add_argument("--echo-env", metavar="NAME,...", default="",
                        help="print these variables' values without their names (tests value redaction)")
    return parser


MAX_LINES, MAX_SECONDS = 1_000_000, 86_400


def validate(args: argparse.Namespace) -> None:
    """Cheap checks before launch (JobError exit 3), including `--model` resolved offline."""
    from .model_source import resolve_model

    check_range("--lines", args.lines, 0, MAX_LINES)
    check_range("--interval", args.interval, 0, MAX_SECONDS, " s")
    check_range("--sleep", args.sleep, 0, MAX_SECONDS, " s")
    resolve_model(args.model, args.weights)


def _sleep(ctx: JobContext, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not ctx.stop_requested and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = time.perf_counter()
    if args.orphan:
        import subprocess

        orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
        ctx.log(f"orphan pid {orphan.pid}")
    if args.flood:
        write = sys.stdout.write
        for i in range(FLOOD_LINES):
            write(f"flood line {i}\n")
        sys.stdout.flush()
        ctx.progress(FLOOD_LINES, FLOOD_LINES, unit="line")
    for number, name in enumerate(filter(None, args.echo_env.split(",")), 1):
        print(f"value #{number} is {os.environ.get(name, '(unset)')}", flush=True)  # raw, as a library would
    done = 0
    for i in range(1, args.lines + 1):
        if ctx.stop_requested:
            break
        if args.progress_bar:  # redrawn in place, and left without a final newline (like an unclosed tqdm)
            sys.stdout.write(f"\r\x1b[32m{i * 100 // max(args.lines, 1):3d}%\x1b[0m |{'#' * i}")
            sys.stdout.flush()
        else:
            ctx.log(f"selftest line {i}/{args.lines}")
        ctx.progress(i, args.lines, unit="line", value=i * 0.5)
        done = i
        _sleep(ctx, args.interval)
    if args.artifact:
        path = ctx.artifacts_dir / "selftest.txt"
        path.write_text(f"{done} lines\n", encoding="utf-8")
        ctx.artifact(path, "file")
    _sleep(ctx, args.sleep)
    if args.job_error:
        raise JobError(args.job_error)
    if args.raise_message:
        raise RuntimeError(args.raise_message)
    elapsed = time.perf_counter() - started
    ctx.metric("lines", done)
    return {"lines": done, "elapsed_s": round(elapsed, 4)}
