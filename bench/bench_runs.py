"""Run manager costs: `python bench/bench_runs.py [--quick]`.

- launch → result of a `selftest --lines 1` run through RunManager (supervisor,
  registry, result.json), against running the same job directly with
  `python -m opsconsole.jobs selftest` (the child alone). Goal: < 500 ms overhead
  (the supervisor is one more Python start).
- RunTail display throughput (ANSI strip + \\r normalisation, bounded chunks) on
  a generated 50 MB log (--quick: 10 MB), against a plain Python read +
  splitlines of the same file. Goal: <= 4x.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsconsole.config import Settings  # noqa: E402
from opsconsole.runs import RunManager, RunTail  # noqa: E402

MB = 1 << 20


def _launch_latency(reps: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = tmp
        manager = RunManager(Settings())
        managed, direct = [], []
        for _ in range(reps):
            start = time.perf_counter()
            record = manager.launch("selftest", ["--lines", "1", "--device", "cpu"])
            manager.wait(record.id, timeout=60)
            managed.append(time.perf_counter() - start)
            env = dict(os.environ, OPSCONSOLE_RUN_DIR=str(Path(tmp) / "direct"))
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "opsconsole.jobs", "selftest", "--lines", "1"], env=env,
                           stdout=subprocess.DEVNULL, check=True)
            direct.append(time.perf_counter() - start)
    return statistics.median(managed), statistics.median(direct)


def _write_log(path: Path, size: int) -> None:
    rng = random.Random(0)
    lines = []
    for i in range(20000):
        if i % 4 == 0:
            lines.append("".join(f"\r{p:3d}%|{'#' * (p // 10):<10}| {p}/100 [00:{p:02d}, 9.1it/s]" for p in range(0, 101, 20)))
        elif i % 4 == 1:
            lines.append(f"\x1b[32mINFO\x1b[0m step {i} loss={rng.random():.4f} grad_norm={rng.random():.3f}")
        else:
            lines.append(f"[rank0] step {i} | tokens/s {rng.randint(9000, 12000)} | mem {rng.uniform(40, 70):.1f} GiB")
    block = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as fh:
        for _ in range(max(1, size // len(block))):
            fh.write(block)


def _tail_throughput(size: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        log = run_dir / "output.log"
        _write_log(log, size)
        actual = log.stat().st_size / MB
        start = time.perf_counter()
        tail = RunTail(run_dir)
        count = 0
        while True:
            lines = tail.poll_log()
            if not lines and not tail.log_behind:
                break
            count += len(lines)
        tail_s = time.perf_counter() - start
        start = time.perf_counter()
        with open(log, "rb") as fh:
            plain = len(fh.read().decode("utf-8", "replace").splitlines())
        plain_s = time.perf_counter() - start
        assert count > 0 and plain > 0
    return actual, tail_s, plain_s


def run(quick: bool = False) -> list[dict]:
    managed, direct = _launch_latency(3 if quick else 10)
    size_mb, tail_s, plain_s = _tail_throughput((10 if quick else 50) * MB)
    return [
        {"name": "run launch→result (selftest)", "value": round(managed * 1000, 1), "unit": "ms",
         "baseline": round(direct * 1000, 1), "ratio": round(managed / direct, 2), "goal": "overhead < 500 ms (one extra Python start)"},
        {"name": f"RunTail display read ({size_mb:.0f} MB log)", "value": round(size_mb / tail_s, 1), "unit": "MB/s",
         "baseline": round(size_mb / plain_s, 1), "ratio": round(tail_s / plain_s, 2),
         "goal": "<= 4x a plain read+splitlines"},
    ]


def main() -> None:
    rows = run(quick="--quick" in sys.argv)
    print(f"{'name':42} {'value':>10} {'unit':6} {'baseline':>10} {'ratio':>6}  goal")
    for r in rows:
        print(f"{r['name']:42} {r['value']:>10} {r['unit']:6} {r['baseline']:>10} {r['ratio']:>6}  {r['goal']}")


if __name__ == "__main__":
    main()
