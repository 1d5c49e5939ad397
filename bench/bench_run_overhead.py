"""Console overhead on a smoke run: `python bench/bench_run_overhead.py [--quick]`.

The same job with the same flags (gemma-infer, tiny model, CPU), run two ways, alternating:
- bare:    `python -m opsconsole.jobs gemma-infer ...` with OPSCONSOLE_RUN_DIR set (the child alone);
- console: `opsconsole run gemma-infer ... --foreground --json` (validation, registry, detached
           supervisor, log/event tailing, result.json and KB diagnosis).
Figures: wall seconds from start to exit (what the user waits), and the job's own decode
tok/s (does tailing the run slow the job down?). Goal: the console adds <= 1.5 s of wall
time and costs the job <= 5 % of its throughput.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOB = ["gemma-infer", "--model", "tiny", "--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "256", "--turns", "2"]
GOAL_WALL_S = 1.5
GOAL_THROUGHPUT = 0.95


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), XDG_STATE_HOME=str(state / "state"), HF_HUB_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="")
    env.pop("OPSCONSOLE_READONLY", None)
    return env


def _metrics_from_events(path: Path) -> dict:
    for line in reversed(path.read_text().splitlines()):
        event = json.loads(line)
        if event.get("type") == "finish":
            return event.get("metrics") or {}
    return {}


def run_bare(state: Path, index: int) -> tuple[float, dict]:
    run_dir = state / f"bare-{index}"
    env = dict(_env(state), OPSCONSOLE_RUN_DIR=str(run_dir))
    started = time.perf_counter()
    with open(state / f"bare-{index}.log", "wb") as log:
        subprocess.run([sys.executable, "-m", "opsconsole.jobs", *JOB], env=env, stdout=log, stderr=subprocess.STDOUT,
                       check=True, cwd=REPO)
    return time.perf_counter() - started, _metrics_from_events(run_dir / "events.jsonl")


def run_console(state: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "opsconsole", "run", *JOB, "--foreground", "--json"], env=_env(state),
                          capture_output=True, text=True, check=True, cwd=REPO)
    wall = time.perf_counter() - started
    return wall, json.loads(proc.stdout)["metrics"]


def _row(name: str, value: float, unit: str, baseline: float, goal: str) -> dict:
    return {"name": name, "value": round(value, 3), "unit": unit, "baseline": round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None, "goal": goal}


def run(quick: bool = False) -> list[dict]:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        state = Path(tmp)
        run_bare(state, -1)  # warm the tiny-model cache and the page cache for both
        bare_wall, bare_tps, con_wall, con_tps = [], [], [], []
        for i in range(repeats):  # alternate so drift in machine load hits both sides
            wall, metrics = run_bare(state, i)
            bare_wall.append(wall)
            bare_tps.append(metrics["decode_tokens_per_s"])
            wall, metrics = run_console(state)
            con_wall.append(wall)
            con_tps.append(metrics["decode_tokens_per_s"])
    bare_w, con_w = statistics.median(bare_wall), statistics.median(con_wall)
    bare_t, con_t = statistics.median(bare_tps), statistics.median(con_tps)
    return [
        _row("gemma-infer tiny wall time, console vs bare", con_w, "s", bare_w, f"<= bare + {GOAL_WALL_S} s"),
        _row("console added wall time", con_w - bare_w, "s", 0.0, f"<= {GOAL_WALL_S} s"),
        _row("job decode throughput under the console", con_t, "tok/s", bare_t, f"ratio >= {GOAL_THROUGHPUT}"),
    ]


def main() -> int:
    rows = run(quick="--quick" in sys.argv)
    print(f"{'figure':<48} {'value':>10} {'unit':<6} {'baseline':>10} {'ratio':>7}  goal")
    for r in rows:
        print(f"{r['name']:<48} {r['value']:>10} {r['unit']:<6} {r['baseline']:>10} {str(r['ratio']):>7}  {r['goal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
