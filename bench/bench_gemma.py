"""Gemma smoke-job speed on this machine: `python bench/bench_gemma.py [--quick]`.

Runs the real jobs in child processes (as `opsconsole run` does): the tiny Gemma 2 on CPU,
the full-size random-weight Gemma-2-2B in bf16 when a GPU is present.
- gemma-infer decode tokens/s (GPU: flex attention, baseline eager; Gemma 2 has no SDPA path in transformers 5);
- gemma-infer TTFT (prefill) and the wall time of a whole child (imports + load + warm-up + generate);
- gemma-lora optimizer steps/s, baseline the same run with gradient checkpointing (its cost);
- nccl-check peak bus bandwidth (gloo between 2 CPU processes, or nccl over the visible GPUs).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sd import _gpu, _job, _row  # noqa: E402  (one child-job runner for the job benches)


def run(quick: bool = False) -> list[dict]:
    gpu = _gpu()
    model = ["--model", "gemma-2-2b", "--weights", "random", "--dtype", "bf16"] if gpu else ["--model", "tiny"]
    label = "gemma-2-2b random bf16" if gpu else "gemma tiny"
    tokens = ["--max-new-tokens", "32" if quick else "128"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gemma-cache-") as tmp:
        cache = Path(tmp)
        _job("gemma-infer", ["--max-new-tokens", "2"], cache)  # builds the tiny model once
        eager, wall = _job("gemma-infer", [*model, *tokens, "--attn", "eager"], cache)
        if gpu:  # Gemma 2 has no SDPA path in transformers 5; flex attention is the fused one (compiles: GPU only here)
            flex, _ = _job("gemma-infer", [*model, *tokens, "--attn", "flex_attention"], cache)
            rows.append(_row(f"gemma-infer {label} flex decode", flex["decode_tokens_per_s"], "tok/s",
                             eager["decode_tokens_per_s"], "ratio vs eager attention >= 1"))
            rows.append(_row(f"gemma-infer {label} flex TTFT", flex["ttft_s"] * 1000, "ms", eager["ttft_s"] * 1000,
                             "ratio vs eager <= 1"))
            rows.append(_row(f"gemma-infer {label} peak VRAM", eager["peak_vram_bytes"] / 2**30, "GiB",
                             goal="~5.2 GiB of bf16 weights + KV cache"))
        else:
            rows.append(_row(f"gemma-infer {label} eager decode", eager["decode_tokens_per_s"], "tok/s"))
            rows.append(_row(f"gemma-infer {label} eager TTFT", eager["ttft_s"] * 1000, "ms"))
        rows.append(_row("gemma-infer child wall time", wall, "s", goal="imports + load + warm-up + generate"))
        steps = "10" if quick else "30"
        lora_model = model[:2] if not gpu else model
        plain, _ = _job("gemma-lora", [*lora_model, "--steps", steps], cache)
        ckpt, _ = _job("gemma-lora", [*lora_model, "--steps", steps, "--grad-checkpointing"], cache)
        rows.append(_row(f"gemma-lora {label}", plain["steps_per_s"], "steps/s", ckpt["steps_per_s"],
                         "ratio vs grad checkpointing >= 1"))
        nccl, _ = _job("nccl-check", ["--max-size", "32M" if quick or not gpu else "1G"], cache)
        rows.append(_row(f"nccl-check {nccl['backend']} x{nccl['world_size']} busbw max", nccl["busbw_gbps_max"] or 0.0,
                         "GB/s", goal="NVLink: hundreds of GB/s; PCIe: tens"))
    return rows


def main() -> int:
    from bench.__main__ import main as bench_main  # the shared table printer

    return bench_main(["--only", "gemma", *(["--quick"] if "--quick" in sys.argv else [])])


if __name__ == "__main__":
    sys.exit(main())
