"""Run a smoke job for real in a child process (`python -m opsconsole.jobs KIND ...`), as the run
manager would, and read back what it wrote: exit code, events.jsonl, output.log.

Shared by the job tests (import it as `from job_runner import run_job`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


@dataclass
class JobRun:
    returncode: int
    run_dir: Path
    log: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    @property
    def finish(self) -> dict[str, Any]:
        finishes = self.of_type("finish")
        assert len(finishes) == 1, f"expected one finish event, got {finishes}\n{self.log[-3000:]}"
        return finishes[0]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.finish["metrics"]


def job_env(run_dir: Path, cache_dir: Path | None = None) -> dict[str, str]:
    """The child's environment: its run dir, one BLAS thread (2 shared cores: threads only contend)."""
    env = dict(os.environ)
    env.update(OPSCONSOLE_RUN_DIR=str(run_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               TOKENIZERS_PARALLELISM="false")
    if cache_dir is not None:
        env["XDG_CACHE_HOME"] = str(cache_dir)
    return env


def read_run(run_dir: Path, returncode: int) -> JobRun:
    events_file = run_dir / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
    log_file = run_dir / "output.log"
    return JobRun(returncode, run_dir, log_file.read_text(errors="replace") if log_file.exists() else "", events)


def start_job(kind: str, argv: list[str], run_dir: Path, cache_dir: Path | None = None,
              nproc: int | None = None) -> subprocess.Popen:
    """Start the job (under torchrun when nproc is given), stdout+stderr into run_dir/output.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = [*TORCHRUN, "--nproc-per-node", str(nproc)] if nproc else [sys.executable]
    log = open(run_dir / "output.log", "wb")
    return subprocess.Popen([*prefix, "-m", "opsconsole.jobs", kind, *argv], stdout=log, stderr=subprocess.STDOUT,
                            env=job_env(run_dir, cache_dir))


def run_job(kind: str, argv: list[str], run_dir: Path, cache_dir: Path | None = None, nproc: int | None = None,
            timeout: float = 180) -> JobRun:
    proc = start_job(kind, argv, run_dir, cache_dir, nproc)
    try:
        returncode = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return read_run(run_dir, returncode)


def wait_for_progress(proc: subprocess.Popen, run_dir: Path, count: int = 1, timeout: float = 120.0) -> None:
    """Wait until the job has written `count` progress events, or ended, or `timeout` passed."""
    events = run_dir / "events.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if events.exists() and events.read_text().count('"progress"') >= count:
            return
        time.sleep(0.1)
