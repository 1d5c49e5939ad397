"""Stable Diffusion smoke-job speed on this machine: `python bench/bench_sd.py [--quick]`.

Runs the real jobs in child processes (as `opsconsole run` does) on the tiny pipelines,
or on the full-size random-weight SD 1.5 when a GPU is present:
- sd-infer UNet steps/s with SDPA attention, baseline the eager (unfused) attention;
- sd-infer SDXL tiny steps/s;
- sd-lora optimizer steps/s, baseline the same run with gradient checkpointing (its cost);
- wall time of a whole sd-infer child (imports + load + warm-up + generation).
The device is the job's `auto` (CUDA when available); one BLAS thread on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _job(kind: str, argv: list[str], cache: Path) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory(prefix="bench-sd-") as run_dir:
        env = dict(os.environ, OPSCONSOLE_RUN_DIR=run_dir, XDG_CACHE_HOME=str(cache), OMP_NUM_THREADS="1",
                   HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "opsconsole.jobs", kind, *argv], env=env, capture_output=True,
                              text=True, timeout=900)
        wall = time.perf_counter() - start
        events = [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text().splitlines()]
    finish = [e for e in events if e["type"] == "finish"]
    if proc.returncode != 0 or not finish or finish[0]["status"] != "ok":
        raise RuntimeError(f"{kind} {' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return finish[0]["metrics"], wall


def _row(name: str, value: float, unit: str, baseline: float | None = None, goal: str = "") -> dict:
    return {"name": name, "value": round(value, 4), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 4),
            "ratio": None if not baseline else round(value / baseline, 3), "goal": goal}


def _gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def run(quick: bool = False) -> list[dict]:
    steps = "10" if quick else "30"
    model = ["--model", "sd15", "--weights", "random", "--dtype", "fp16"] if _gpu() else ["--model", "tiny"]
    label = "sd15 random fp16" if _gpu() else "sd15 tiny"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sd-cache-") as tmp:
        cache = Path(tmp)
        _job("sd-infer", ["--steps", "2", "--warmup-steps", "0"], cache)  # builds the tiny pipelines once
        sdpa, wall = _job("sd-infer", [*model, "--steps", steps], cache)
        eager, _ = _job("sd-infer", [*model, "--steps", steps, "--attn", "eager"], cache)
        rows.append(_row(f"sd-infer {label} sdpa", sdpa["it_per_s"], "it/s", eager["it_per_s"],
                         "ratio vs eager attention >= 1"))
        rows.append(_row(f"sd-infer {label} s/image", sdpa["s_per_image"], "s/image"))
        rows.append(_row("sd-infer child wall time", wall, "s", goal="imports + load + generate"))
        xl, _ = _job("sd-infer", ["--model", "tiny-sdxl", "--steps", steps], cache)
        rows.append(_row("sd-infer sdxl tiny", xl["it_per_s"], "it/s"))
        lora_steps = "10" if quick else "30"
        plain, _ = _job("sd-lora", ["--steps", lora_steps, "--sample-steps", "2"], cache)
        ckpt, _ = _job("sd-lora", ["--steps", lora_steps, "--sample-steps", "2", "--grad-checkpointing"], cache)
        rows.append(_row("sd-lora tiny", plain["steps_per_s"], "steps/s", ckpt["steps_per_s"],
                         "ratio vs grad checkpointing >= 1"))
        rows.append(_row("sd-lora tiny images", plain["images_per_s"], "images/s"))
    return rows


def main() -> int:
    rows = run(quick="--quick" in sys.argv)
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  {'unit':<8}  {'baseline':>10}  {'ratio':>6}  goal")
    for r in rows:
        base = "" if r["baseline"] is None else f"{r['baseline']:.4g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        print(f"{r['name']:<{width}}  {r['value']:>10.4g}  {r['unit']:<8}  {base:>10}  {ratio:>6}  {r['goal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
