"""Shared trainer helpers: common flags, divergence guard, loss trend, DDP plumbing, step reports.

Every trainer (gemma-lora, sd-lora, sd-dreambooth) uses the same loop shape::

    dist = setup_distributed(args.device)           # DDP when started by torchrun, else a no-op
    monitor = TrainMonitor(ctx, args, total_steps=args.steps, device=dist.device, dtype=dtype, dist=dist)
    for step in range(1, args.steps + 1):
        loss = compute_loss(...)
        monitor.check_loss(step, loss)              # --inject-nan-at, all-reduce, isfinite -> DivergenceError
        loss.backward(); grad_norm = clip_grad_norm_(...); optimizer.step(); optimizer.zero_grad()
        monitor.report(step, lr=lr, grad_norm=grad_norm, samples=batch, tokens=n_tokens)
        if monitor.should_stop():                   # SIGTERM, agreed by all ranks
            break
    save what exists (rank 0 only); metrics = monitor.summary(); teardown_distributed(dist)

torch is imported inside functions: building a parser must stay cheap.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .common import JobContext, JobError, check_range, dtype_name, peak_memory, reset_peak_memory

KB_FP16_OVERFLOW = "nan-fp16-overflow"
KB_LR_TOO_HIGH = "nan-lr-too-high"


# --- flags ------------------------------------------------------------------------------

def add_trainer_options(parser: argparse.ArgumentParser, *, steps: int = 20, lr: float | None = 1e-3,
                        batch: int = 2, lr_help: str = "AdamW learning rate") -> None:
    """Flags common to every trainer (defaults are per trainer; lr None = the trainer picks)."""
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps to run")
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    parser.add_argument("--batch", type=int, default=batch, help="samples per step per process")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute activations in backward (less memory, ~30%% slower)")
    parser.add_argument("--inject-nan-at", type=int, default=None, metavar="STEP",
                        help="make the loss NaN at STEP (tests the divergence guard)")


def validate_trainer_options(args: argparse.Namespace) -> None:
    """Cheap checks of the common trainer flags (no torch); JobError exit 3 on bad input."""
    check_range("--steps", args.steps, 1, 100_000)
    check_range("--batch", args.batch, 1, 1024, " samples per step")
    if args.lr is not None and not 0 < args.lr <= 1:
        raise JobError(f"--lr {args.lr}: must be > 0 and at most 1", exit_code=3)
    if args.inject_nan_at is not None and args.inject_nan_at < 1:
        raise JobError(f"--inject-nan-at {args.inject_nan_at}: steps are numbered from 1", exit_code=3)


# --- divergence guard ---------------------------------------------------------------------

class DivergenceError(JobError):
    """The loss became NaN/inf: the run finishes `failed`, naming the step and the likely cause."""

    def __init__(self, step: int, loss: float, dtype: str, lr: float, injected: bool = False,
                 metrics: dict[str, Any] | None = None) -> None:
        self.step = step
        self.loss = loss
        origin = f" [injected by --inject-nan-at {step}]" if injected else ""
        head = f"NaN/inf loss at step {step} (loss={loss}, dtype {dtype}, lr={lr:g}){origin}"
        if dtype == "fp16":
            self.cause = "fp16 overflow"
            kb = KB_FP16_OVERFLOW
            message = (f"{head}: likely fp16 overflow (activations or gradients beyond 65504), else a learning "
                       f"rate too high; use --dtype bf16 (or fp32), or a lower --lr. See KB {kb}.")
        else:
            self.cause = "learning rate too high"
            kb = KB_LR_TOO_HIGH
            message = (f"{head}: the loss diverged, likely the learning rate is too high (not fp16 overflow: the "
                       f"run is {dtype}); lower --lr or add warm-up / gradient clipping. See KB {kb}.")
        super().__init__(message, exit_code=1, kb=kb)
        self.metrics = {**(metrics or {}), "diverged_at_step": step, "divergence_cause": self.cause}


FLAT_LOSS_TOLERANCE = 0.01  # a last-window mean within 1 % of the first window's is flat, not "decreasing"


def loss_trend(losses: Sequence[float], window: int | None = None,
               grad_norms: Sequence[float] = ()) -> dict[str, Any]:
    """Mean of the first window of losses vs the last one.

    window defaults to a third of the steps (at most 10). `trend` is "decreasing" when the
    last window's mean is more than FLAT_LOSS_TOLERANCE below the first's, "stalled" when it
    is within it or every gradient norm was 0 or not finite (a dead run: `gemma-lora --lr 1e4`
    went 7.287 -> 7.282 with grad norm 0 and was called decreasing), "not_decreasing" when it
    rose, "too_few_steps" under 2 steps.
    """
    n = len(losses)
    if n < 2:
        return {"trend": "too_few_steps", "window": n, "first_mean": losses[0] if n else None,
                "last_mean": losses[-1] if n else None}
    w = window or max(1, min(10, n // 3))
    w = min(w, n // 2) or 1
    first = sum(losses[:w]) / w
    last = sum(losses[-w:]) / w
    dead_gradients = bool(grad_norms) and all(not math.isfinite(g) or g == 0.0 for g in grad_norms)
    if dead_gradients or abs(last - first) <= FLAT_LOSS_TOLERANCE * abs(first):
        trend = "stalled"
    else:
        trend = "decreasing" if last < first else "not_decreasing"
    return {"trend": trend, "window": w, "first_mean": first, "last_mean": last,
            "dead_gradients": dead_gradients}


# --- distributed ------------------------------------------------------------------------------

@dataclass
class DistEnv:
    """Where this process sits in a torchrun job (world_size 1 when started alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_spec: str, always: bool = False) -> DistEnv:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group.

    nccl on CUDA (each rank takes cuda:LOCAL_RANK), gloo on CPU. `always` joins a group even
    for a world of 1 (needs MASTER_ADDR/PORT): collectives then work on a single rank too.
    """
    import torch
    import torch.distributed as tdist

    from .common import resolve_device

    device = resolve_device(device_spec)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not always:
        return DistEnv(device=device)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise JobError(f"rank {rank} needs cuda:{local_rank} but only {torch.cuda.device_count()} "
                           "GPU(s) are visible; lower --gpus", exit_code=3, kb="cuda-not-visible")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(device)
        tdist.init_process_group(**kwargs)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=device)


def teardown_distributed(dist: DistEnv) -> None:
    if dist.enabled:
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()


def all_reduce_sum(values: Sequence[float], dist: DistEnv) -> list[float]:
    """Sum of `values` over all ranks (the values themselves when not distributed)."""
    if not dist.enabled:
        return [float(v) for v in values]
    import torch
    import torch.distributed as tdist

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64,
                          device=dist.device if dist.backend == "nccl" else "cpu")
    tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def barrier(dist: DistEnv) -> None:
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()


def shard_indices(n: int, dist: DistEnv, epoch: int = 0, shuffle: bool = True, seed: int = 0) -> list[int]:
    """This rank's share of dataset indices (DistributedSampler semantics; all of them when alone)."""
    import torch
    from torch.utils.data import DistributedSampler

    if not dist.enabled:
        if not shuffle:
            return list(range(n))
        generator = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(n, generator=generator).tolist()
    sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def batch_indices(n: int, batch: int, dist: DistEnv, seed: int = 0):
    """Endless iterator of index batches over this rank's shard, reshuffled each epoch."""
    epoch = 0
    while True:
        order = shard_indices(n, dist, epoch=epoch, seed=seed)
        for start in range(0, len(order) - batch + 1, batch):
            yield order[start:start + batch]
        if len(order) < batch:  # tiny shard: repeat it to fill a batch
            yield (order * (batch // max(1, len(order)) + 1))[:batch]
        epoch += 1


def wrap_ddp(model: Any, dist: DistEnv) -> Any:
    """DistributedDataParallel around `model` when distributed, else `model` itself."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if dist.backend == "nccl":
        return DistributedDataParallel(model, device_ids=[dist.local_rank])
    return DistributedDataParallel(model)


def params_checksum(parameters: Any) -> float:
    """Sum of all trainable parameter values: identical on every rank after synced DDP steps."""
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in parameters if p.requires_grad))


# --- per-step monitoring --------------------------------------------------------------------

class TrainMonitor:
    """Divergence guard, progress events and the end-of-run training metrics.

    Only rank 0 writes events and log lines (ctx.events is disabled elsewhere), but every
    rank takes part in the all-reduces, so all ranks stop at the same step.
    """

    def __init__(self, ctx: JobContext, args: argparse.Namespace, *, total_steps: int, device: str,
                 dtype: Any, dist: DistEnv | None = None) -> None:
        self.ctx = ctx
        self.total_steps = total_steps
        self.device = device
        self.dtype = dtype_name(dtype)
        self.lr = float(getattr(args, "lr", None) or 0.0)
        self.inject_nan_at = getattr(args, "inject_nan_at", None)
        self.dist = dist or DistEnv(device=device)
        self.losses: list[float] = []
        self.last_synced_loss: float | None = None
        self.grad_norms: list[float] = []
        self._stop = False
        self._started: float | None = None
        self._first_done: float | None = None
        self._last: float | None = None
        reset_peak_memory(device)

    def check_loss(self, step: int, loss: Any) -> float:
        """Inject NaN if asked, average the loss over ranks, raise DivergenceError if not finite.

        Call before backward. Returns the rank-averaged loss (what is reported).
        """
        import torch

        if self._started is None:
            self._started = time.perf_counter()
            self._last = self._started
        injected = self.inject_nan_at == step
        if injected:
            loss = loss * float("nan")
        local = loss.detach().float()
        finite_local = bool(torch.isfinite(local).all())
        local_value = float(local.mean())  # nan or inf when not finite: reported as such
        loss_sum, stop_votes, bad_ranks = all_reduce_sum(
            [local_value if finite_local else 0.0, 1.0 if self.ctx.stop_requested else 0.0,
             0.0 if finite_local else 1.0], self.dist)
        self._stop = stop_votes > 0
        if bad_ranks > 0 or not math.isfinite(loss_sum):  # every rank raises: they all stop at this step
            value = local_value if not finite_local else float("nan")  # nan: another rank's loss went bad
            raise DivergenceError(step, value, self.dtype, self.lr, injected=injected, metrics=self.summary())
        value = loss_sum / self.dist.world_size
        self.last_synced_loss = value
        self.losses.append(value)
        return value

    def report(self, step: int, *, lr: float | None = None, grad_norm: Any = None, samples: int | None = None,
               tokens: int | None = None, **extra: Any) -> dict[str, Any]:
        """Progress event (+ a log line) for a finished step; throughput counts all ranks."""
        now = time.perf_counter()
        dt = max(now - (self._last or now), 1e-9)
        self._last = now
        if self._first_done is None:
            self._first_done = now
        metrics: dict[str, Any] = {"loss": self.losses[-1] if self.losses else None,
                                   "lr": float(lr if lr is not None else self.lr)}
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
            self.grad_norms.append(metrics["grad_norm"])
        if samples is not None:
            metrics["samples_per_s"] = samples * self.dist.world_size / dt
        if tokens is not None:
            metrics["tokens_per_s"] = tokens * self.dist.world_size / dt
        metrics["step_s"] = dt
        metrics["peak_vram_bytes"] = _peak_allocated(self.device)  # per step: no NVML query here
        metrics.update(extra)
        self.ctx.progress(step, self.total_steps, unit="step", **metrics)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if k != "peak_vram_bytes")
        self.ctx.log(f"step {step}/{self.total_steps} {shown}")
        return metrics

    def should_stop(self) -> bool:
        """True once SIGTERM reached any rank (agreed at the last check_loss, so ranks stay in step)."""
        return self._stop or (not self.dist.enabled and self.ctx.stop_requested)

    def summary(self) -> dict[str, Any]:
        """Result metrics: steps, loss_first, loss_last, final_loss (mean of the last window),
        loss_trend, steps_per_s (after the first, warm-up step), peak_vram_bytes."""
        trend = loss_trend(self.losses, grad_norms=self.grad_norms)
        steps = len(self.losses)
        metrics: dict[str, Any] = {
            "steps": steps,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "final_loss": trend["last_mean"],
            "loss_trend": trend["trend"],
            "loss_first_window_mean": trend["first_mean"],
            "loss_last_window_mean": trend["last_mean"],
            "world_size": self.dist.world_size,
            "dtype": self.dtype,
        }
        if steps > 1 and self._first_done is not None and self._last is not None and self._last > self._first_done:
            metrics["steps_per_s"] = (steps - 1) / (self._last - self._first_done)
        elif steps and self._started is not None and self._last is not None and self._last > self._started:
            metrics["steps_per_s"] = steps / (self._last - self._started)
        else:
            metrics["steps_per_s"] = None
        metrics.update(peak_memory(self.device))
        return metrics

    def finish(self) -> dict[str, Any]:
        """Summary + a warning finding when the loss did not go down."""
        metrics = self.summary()
        first, last = metrics["loss_first_window_mean"], metrics["loss_last_window_mean"]
        if metrics["loss_trend"] == "not_decreasing":
            message = (f"loss did not decrease: first-window mean {first:.4f}, "
                       f"last-window mean {last:.4f} over {metrics['steps']} steps")
        elif metrics["loss_trend"] == "stalled":
            grads = (f"every gradient norm was 0 or not finite ({len(self.grad_norms)} steps)"
                     if self.grad_norms and all(not math.isfinite(g) or g == 0.0 for g in self.grad_norms)
                     else f"the loss stayed within {FLAT_LOSS_TOLERANCE:.0%}")
            message = (f"training stalled: loss {first:.4f} -> {last:.4f} over {metrics['steps']} steps and {grads}: "
                       "the parameters are not learning (learning rate far off, frozen or detached parameters)")
        else:
            return metrics
        self.ctx.log(f"warning: {message}")
        self.ctx.finding("warning", message, kb=KB_LR_TOO_HIGH)
        return metrics


def _peak_allocated(device: str) -> int:
    if not device.startswith("cuda"):
        return 0
    import torch

    return int(torch.cuda.max_memory_allocated(device))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
