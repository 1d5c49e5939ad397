"""Shared plumbing of the smoke jobs: options, device/dtype, events, measurement.

Heavy imports (torch) happen inside functions so that building a parser is cheap.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import ARTIFACTS_DIR, EVENTS_FILE, EventWriter
from ..redact import redact_text

RUN_DIR_ENV = "OPSCONSOLE_RUN_DIR"


class JobError(Exception):
    """A failure the job explains in one line (bad model path, no CUDA...).

    `exit_code` 3 means bad input (the run never really started); `kb` names
    the KB entry that explains it, when there is one.
    """

    def __init__(self, message: str, exit_code: int = 1, kb: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.kb = kb


def check_range(flag: str, value: float | None, least: float, most: float, why: str = "") -> None:
    """JobError exit 3 unless least <= value <= most (nan refused); None passes (the default
    applies). Every numeric flag has an upper bound: `--batch 100000` or `--lines 1e19` must be
    refused with the limit, not tried."""
    if value is not None and not least <= value <= most:
        raise JobError(f"{flag} {value}: must be {_number(least)} to {_number(most)}{why}", exit_code=3)


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def check_image_side(flag: str, value: int | None) -> None:
    """An image side: a multiple of 8 (the VAE downsamples by 8) from 8 to MAX_IMAGE_SIDE."""
    check_range(flag, value, 8, MAX_IMAGE_SIDE, " pixels")
    if value is not None and value % 8:
        raise JobError(f"{flag} {value}: must be a multiple of 8 (the VAE works on 8x8 blocks)", exit_code=3)


MAX_IMAGE_SIDE = 4096  # SDXL's native side is 1024; 4096 already needs ~40 GB for the VAE decode


def add_common_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--seed", type=int, default=0, help="0 to 2**32-1")
    parser.add_argument("--model", default="tiny", help="tiny | a local path | a Hugging Face id in the local cache")
    parser.add_argument("--weights", default="pretrained", choices=["pretrained", "random"],
                        help="random: build the named architecture with random weights (speed/memory measurement)")


@dataclass
class JobContext:
    """What a job needs from the run: where to write, and how to report."""

    run_dir: Path
    events: EventWriter
    rank: int = 0
    world_size: int = 1
    stop_requested: bool = False
    started: float = field(default_factory=time.perf_counter)

    @property
    def artifacts_dir(self) -> Path:
        path = self.run_dir / ARTIFACTS_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        """Human-readable line to the run's log (stdout is redirected to output.log)."""
        if self.is_main:
            print(redact_text(str(message)), flush=True)

    def progress(self, step: int, total: int, unit: str = "step", **metrics: Any) -> None:
        self.events.emit("progress", step=step, total=total, unit=unit, metrics=metrics)

    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        fields: dict[str, Any] = {"name": name, "value": value}
        if step is not None:
            fields["step"] = step
        self.events.emit("metric", **fields)

    def artifact(self, path: Path, kind: str) -> None:
        self.events.emit("artifact", path=str(path), kind=kind)

    def finding(self, severity: str, message: str, kb: str | None = None) -> None:
        self.events.emit("finding", severity=severity, message=message, kb=kb)


def make_context(run_dir: str | os.PathLike[str] | None = None) -> JobContext:
    """Context from OPSCONSOLE_RUN_DIR (set by the run manager) and torchrun's RANK."""
    path = Path(run_dir or os.environ.get(RUN_DIR_ENV) or Path.cwd() / "opsconsole-run")
    path.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return JobContext(run_dir=path, events=EventWriter(path / EVENTS_FILE, enabled=rank == 0), rank=rank, world_size=world)


def install_sigterm_handler(ctx: JobContext) -> None:
    """SIGTERM sets ctx.stop_requested; loops check it, save what exists and finish `stopped`."""

    def _handler(signum: int, frame: Any) -> None:
        ctx.stop_requested = True

    signal.signal(signal.SIGTERM, _handler)


# --- torch helpers (import torch lazily) -------------------------------------------------

def resolve_device(spec: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'. Asking for CUDA without CUDA is bad input."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise JobError(f"--device {spec} requested but CUDA is not available to this torch "
                           f"({torch.__version__}, built for CUDA {torch.version.cuda})", exit_code=3,
                           kb="torch-cpu-only")
        if ":" in spec and int(spec.split(":", 1)[1]) >= torch.cuda.device_count():
            raise JobError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible", exit_code=3,
                           kb="cuda-not-visible")
        return spec
    if spec == "cpu":
        return "cpu"
    raise JobError(f"unknown --device {spec!r}: use auto, cpu, cuda or cuda:N", exit_code=3)


def resolve_dtype(spec: str, device: str) -> Any:
    """'auto' -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if spec == "fp32":
        return torch.float32
    if spec == "fp16":
        return torch.float16
    if spec == "bf16":
        if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise JobError("--dtype bf16 requested but this GPU does not support bf16 (needs sm_80+); use fp16",
                           exit_code=3)
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_name(dtype: Any) -> str:
    return {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(dtype), str(dtype))


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> dict[str, int | None]:
    """torch's peak allocated/reserved bytes, plus this process's NVML used memory on the GPU."""
    import torch

    if not device.startswith("cuda"):
        return {"peak_vram_bytes": 0, "peak_reserved_bytes": 0, "nvml_process_bytes": None}
    return {
        "peak_vram_bytes": int(torch.cuda.max_memory_allocated(device)),
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
        "nvml_process_bytes": nvml_process_memory(device),
    }


def vram_text(device: str, peak_bytes: int | None) -> str:
    """`peak VRAM 612.0 MiB`, or `peak VRAM n/a (cpu)`: a CPU run has no VRAM to be 0 of."""
    if not device.startswith("cuda") or peak_bytes is None:
        return f"peak VRAM n/a ({device})"
    return f"peak VRAM {peak_bytes / 2**20:.1f} MiB"


def nvml_process_memory(device: str) -> int | None:
    """VRAM NVML attributes to this pid on `device` (None when NVML can't say)."""
    try:
        import pynvml

        import torch

        pynvml.nvmlInit()
        try:
            index = torch.device(device).index or 0
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid():
                    return int(proc.usedGpuMemory) if proc.usedGpuMemory is not None else None
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
    return None


class Timer:
    """Wall time of a region with a device synchronize at both ends (CUDA kernels are async)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.started


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
