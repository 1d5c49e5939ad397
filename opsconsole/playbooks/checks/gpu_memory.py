"""GPU memory checks: free VRAM, and who holds it."""

from __future__ import annotations

from typing import Any

from ...telemetry.snapshot import GpuProcess, GpuSnapshot
from ..context import PlaybookContext
from ..results import PASS, WARN, CheckResult, gib
from .common import gpu_label, select_gpus
from .registry import Param, check


def memory_advice(total_bytes: int | None) -> str:
    """What to try after an out-of-memory error, sized to a GPU of `total_bytes`."""
    total = gib(total_bytes)
    if total is None:
        return ("Halve the batch size (keep the effective batch with gradient accumulation), load weights in "
                "bf16/fp16, and enable gradient checkpointing.")
    common = (f"This GPU has {total:g} GiB. Weights alone take 2 bytes/parameter in bf16/fp16 "
              f"(a 7B model ≈ 14 GiB); full fine-tuning with AdamW needs ≈ 16 bytes/parameter. ")
    if total <= 12:
        return common + ("Load in 4-bit/8-bit (bitsandbytes) or use a ≤3B model, batch size 1 with gradient "
                         "accumulation, gradient checkpointing, LoRA/QLoRA instead of full fine-tuning; for diffusers "
                         "use `pipe.enable_model_cpu_offload()`, `enable_attention_slicing()` and VAE tiling, and keep "
                         "SD 1.5 at 512² (SDXL at 1024² needs ≈ 12 GiB in fp16).")
    if total <= 24:
        return common + ("7B models fit for inference in bf16 or for QLoRA training; full fine-tuning does not. "
                         "Use gradient checkpointing, batch 1–4 with accumulation, `enable_model_cpu_offload()` for "
                         "SDXL/Flux, and sequence length ≤ 2048 for training.")
    if total <= 48:
        return common + ("LoRA on 7–13B models fits in bf16 with gradient checkpointing; full fine-tuning beyond ≈ 2B "
                         "parameters needs DeepSpeed ZeRO/FSDP with CPU offload or more GPUs. Lower batch size or "
                         "sequence length first; activations grow linearly with both.")
    return common + ("Full fine-tuning of 7B in bf16 with AdamW (≈ 112 GiB) needs ZeRO-3/FSDP across GPUs or an "
                     "8-bit optimizer; LoRA fits easily. If a job that used to fit now fails, look for other "
                     "processes or fragmentation (`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`) before "
                     "shrinking the batch.")


def _process_dict(p: GpuProcess) -> dict[str, Any]:
    return {"pid": p.pid, "gpu": p.gpu, "user": p.user, "command": p.command,
            "used_gib": gib(p.used_memory), "visible": p.visible}


def _describe(p: GpuProcess) -> str:
    size = gib(p.used_memory)
    who = p.user or "unknown user"
    cmd = p.command or "(command not visible)"
    return f"pid {p.pid} ({who}: {cmd}) holds {size:g} GiB on GPU {p.gpu}" if size is not None else \
        f"pid {p.pid} ({who}: {cmd}) uses GPU {p.gpu}"


def _holders(gpu: GpuSnapshot) -> list[GpuProcess]:
    return sorted(gpu.processes, key=lambda p: -(p.used_memory or 0))


@check(
    "vram_free",
    "Free VRAM on the GPU(s) is at least `min_gib` and at least `min_free_fraction` of the total.",
    "NVML memory info per GPU",
    min_gib=Param("number", 0, "free GiB needed on each selected GPU"),
    min_free_fraction=Param("number", 0.1, "free share of total VRAM needed (0-1)"),
    gpu=Param("gpu", "all", 'GPU index or "all" (every GPU must pass)'),
    severity=Param("str", "fail", "status when a GPU is short of memory", choices=("warn", "fail")),
)
def vram_free(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    gpus, early = select_gpus(ctx, p["gpu"])
    if early:
        return early
    rows, short = [], []
    for gpu in gpus:
        total, free = gpu.memory.total, gpu.memory.free
        rows.append({"gpu": gpu.index, "name": gpu.name, "total_gib": gib(total), "used_gib": gib(gpu.memory.used),
                     "free_gib": gib(free)})
        if total is None or free is None:
            continue
        if free < p["min_gib"] * 2**30 or free < p["min_free_fraction"] * total:
            short.append(gpu)
    evidence = {"gpus": rows, "min_gib": p["min_gib"], "min_free_fraction": p["min_free_fraction"]}
    if not short:
        return CheckResult(PASS, "enough free VRAM on " + ", ".join(f"GPU {g.index}" for g in gpus), evidence)
    worst = min(short, key=lambda g: (g.memory.free or 0))
    holders = [h for h in _holders(worst) if h.used_memory]
    summary = "; ".join(f"{gpu_label(g)}: {gib(g.memory.free):g} GiB free" for g in short)
    remedy = ""
    if holders:
        remedy = "Who holds it: " + "; ".join(_describe(h) for h in holders[:3]) + ". Stop what is not needed or use " \
                 "another GPU (`CUDA_VISIBLE_DEVICES=<free GPU>`). "
    remedy += memory_advice(worst.memory.total)
    return CheckResult(p["severity"], "low free VRAM — " + summary, evidence, remedy)


@check(
    "vram_holders",
    "Which processes hold VRAM, and whose: other users' (or invisible) processes holding ≥ `min_gib` fail, "
    "your own warn (often a leftover of the crashed job).",
    "NVML compute/graphics processes, process owner and command line (psutil)",
    min_gib=Param("number", 1.0, "ignore processes holding less than this"),
    gpu=Param("gpu", "all", 'GPU index or "all"'),
    severity=Param("str", "fail", "status when other users' processes hold VRAM", choices=("warn", "fail")),
)
def vram_holders(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    gpus, early = select_gpus(ctx, p["gpu"])
    if early:
        return early
    floor = p["min_gib"] * 2**30
    others: list[GpuProcess] = []
    own: list[GpuProcess] = []
    unseen: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    for gpu in gpus:
        for proc in _holders(gpu):
            listed.append(_process_dict(proc))
            if (proc.used_memory or 0) < floor:
                continue
            (own if proc.user == ctx.user and proc.visible else others).append(proc)
        accounted = sum(proc.used_memory or 0 for proc in gpu.processes)
        if gpu.memory.used is not None and gpu.memory.used - accounted > max(floor, 2 * 2**30) and not gpu.processes:
            unseen.append({"gpu": gpu.index, "unaccounted_gib": gib(gpu.memory.used - accounted)})
    evidence: dict[str, Any] = {"you": ctx.user, "processes": listed}
    if unseen:
        evidence["unaccounted"] = unseen
    others.sort(key=lambda proc: -(proc.used_memory or 0))
    if others or unseen:
        parts = [_describe(proc) for proc in others[:5]]
        parts += [f"{u['unaccounted_gib']:g} GiB on GPU {u['gpu']} is held by processes this host cannot see" for u in unseen]
        remedy = ("Ask the owner to stop it, or move to a GPU with free memory (`CUDA_VISIBLE_DEVICES=N`). "
                  "Processes you cannot see belong to another container or VM sharing the GPU; check with the "
                  "node's administrator.")
        if any(not proc.visible for proc in others) or unseen:
            remedy += " As root, `nvidia-smi --query-compute-apps=pid,used_memory --format=csv` lists them."
        return CheckResult(p["severity"], "; ".join(parts), evidence, remedy)
    if own:
        return CheckResult(WARN, "; ".join(_describe(proc) for proc in own[:5]), evidence,
                           "These are your own processes: if one is a leftover of a crashed run (a zombie DataLoader "
                           "worker or a notebook kernel), stop it (`kill PID`) to free its memory.")
    return CheckResult(PASS, "no process holds significant VRAM" if not listed else
                       f"{len(listed)} process(es), none above {p['min_gib']:g} GiB", evidence)
