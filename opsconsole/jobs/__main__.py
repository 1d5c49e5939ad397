"""Child entry point: `python -m opsconsole.jobs KIND [job flags]`.

Writes `start` and `finish` events around the job's `main()`. Exit codes:
0 ok, 1 failed (traceback in the log, diagnosed by the console), 3 bad input,
143 stopped by SIGTERM (after saving what exists).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

from . import JOB_KINDS
from .common import JobError, install_sigterm_handler, make_context

EXIT_STOPPED = 143


def run_job(kind: str, argv: list[str]) -> int:
    if kind not in JOB_KINDS:
        print(f"error: unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}", file=sys.stderr)
        return 3
    module = importlib.import_module(f"{__package__}.{JOB_KINDS[kind]}")
    args = module.build_parser().parse_args(argv)
    ctx = make_context()
    install_sigterm_handler(ctx)
    ctx.events.emit("start", kind=kind, params=vars(args), pid=os.getpid(), rank=ctx.rank, world_size=ctx.world_size)
    try:
        metrics = module.main(args, ctx) or {}
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        ctx.events.emit("finish", status="failed", metrics=getattr(exc, "metrics", {}), error=str(exc), kb=exc.kb)
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.events.emit("finish", status="stopped", metrics={}, error="interrupted")
        return 130
    except BaseException as exc:  # the traceback goes to output.log, where the KB diagnoses it
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except OSError:  # the log itself cannot be written (disk full): still report the finish
            pass
        ctx.events.emit("finish", status="failed", metrics={}, error=_error_text(exc))
        return 1
    finally:
        try:
            sys.stdout.flush()
        except OSError:
            pass
    status = "stopped" if ctx.stop_requested else "ok"
    ctx.events.emit("finish", status=status, metrics=metrics)
    ctx.events.close()
    return EXIT_STOPPED if status == "stopped" else 0


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file size limit was reached",
                errno.EDQUOT: "the disk quota is exceeded"}


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return f"{_DISK_ERRNOS[exc.errno]} while the job was writing ({text}); free space in the run directory or " \
               "the output path and run it again"
    return text


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(f"usage: python -m opsconsole.jobs KIND [flags]\nkinds: {', '.join(JOB_KINDS)}")
        return 0 if len(sys.argv) >= 2 else 3
    return run_job(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
