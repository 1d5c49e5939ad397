"""nccl-check: all-reduce bandwidth across the visible GPUs (gloo across processes on CPU).

Reports, per message size, the algorithm bandwidth (size / time) and the bus bandwidth as
nccl-tests computes it for all-reduce: busbw = algbw x 2(n-1)/n, which is comparable with
the link's peak (NVLink, PCIe) whatever the number of ranks.

Started alone it spawns one process per GPU (or --nproc processes on CPU); under torchrun
(`opsconsole run nccl-check --gpus N`) the ranks torchrun started do the measuring.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import time
from typing import Any

from .common import JobContext, JobError, check_range
from .training import DistEnv, all_reduce_sum, setup_distributed, teardown_distributed

MB = 1 << 20
GPU_MAX_SIZE = "1G"
CPU_MAX_SIZE = "32M"
MAX_MESSAGE = 8 << 30  # 8 GiB
MAX_ITERS, MAX_WARMUP = 10_000, 1_000
_stop_flag = False


def parse_size(text: str) -> int:
    """'8M', '64MB', '1G', '4096' -> bytes (binary units, like nccl-tests)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(I?B)?\s*", text.upper())
    if not match:
        raise JobError(f"size {text!r}: use a number of bytes or e.g. 8M, 256M, 1G", exit_code=3)
    return int(match.group(1)) * {"": 1, "K": 1 << 10, "M": MB, "G": 1 << 30}[match.group(2)]


def size_label(nbytes: int) -> str:
    return f"{nbytes // (1 << 30)}GB" if nbytes >= 1 << 30 and nbytes % (1 << 30) == 0 else (
        f"{nbytes // MB}MB" if nbytes % MB == 0 else f"{nbytes}B")


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' all-reduce bus bandwidth: algbw x 2(n-1)/n."""
    return algbw * 2 * (world_size - 1) / world_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nccl-check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (all visible GPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-size", default="8M", help="smallest message (default 8M)")
    parser.add_argument("--max-size", default=None,
                        help=f"largest message (default {GPU_MAX_SIZE} on GPUs, {CPU_MAX_SIZE} on CPU); sizes double")
    parser.add_argument("--iters", type=int, default=None, help="timed all-reduces per size (default 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed all-reduces per size (default 5 GPU, 1 CPU)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes when started alone (default: every visible GPU; 2 on CPU)")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Cheap flag checks (no torch): JobError exit 3."""
    low = parse_size(args.min_size)
    if args.max_size is not None and parse_size(args.max_size) < low:
        raise JobError(f"--max-size {args.max_size} is below --min-size {args.min_size}", exit_code=3)
    high = parse_size(args.max_size) if args.max_size is not None else low
    if max(low, high) > MAX_MESSAGE:
        raise JobError(f"message size {size_label(max(low, high))}: at most {size_label(MAX_MESSAGE)} "
                       "(nccl-tests' usual top size; more only fills memory)", exit_code=3)
    check_range("--iters", args.iters, 1, MAX_ITERS)
    check_range("--warmup", args.warmup, 0, MAX_WARMUP)
    check_range("--nproc", args.nproc, 1, os.cpu_count() or 1, " (this machine's CPUs; one process per GPU needs no more)")


def message_sizes(min_size: int, max_size: int) -> list[int]:
    sizes, size = [], min_size
    while size <= max_size:
        sizes.append(size)
        size *= 2
    return sizes


def _measure(dist: DistEnv, sizes: list[int], iters: int, warmup: int) -> list[dict[str, Any]]:
    """Every rank runs this; rows are the same on all ranks (times averaged over ranks)."""
    import torch
    import torch.distributed as tdist

    rows = []
    device = dist.device if dist.backend == "nccl" else "cpu"
    for nbytes in sizes:
        if all_reduce_sum([1.0 if _stop_flag else 0.0], dist)[0] > 0:
            break
        tensor = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        for _ in range(warmup):
            tdist.all_reduce(tensor)
        _sync(device)
        tdist.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            tdist.all_reduce(tensor)
        _sync(device)
        elapsed = (time.perf_counter() - start) / iters
        elapsed = all_reduce_sum([elapsed], dist)[0] / dist.world_size
        algbw = nbytes / elapsed / 1e9
        error = _verify(tensor, dist)
        rows.append({"size": size_label(nbytes), "bytes": nbytes, "time_us": elapsed * 1e6, "algbw_gbps": algbw,
                     "busbw_gbps": bus_bandwidth(algbw, dist.world_size), "max_abs_error": error})
        del tensor
    return rows


def _verify(tensor: Any, dist: DistEnv) -> float:
    """nccl-tests' check (-c 1): rank r fills r+1, one all-reduce, every element must be n(n+1)/2.
    Small integers are exact in fp32, so any difference is a wrong reduction (worst over ranks)."""
    import torch.distributed as tdist

    tensor.fill_(float(dist.rank + 1))
    tdist.all_reduce(tensor)
    expected = dist.world_size * (dist.world_size + 1) / 2
    error = float((tensor - expected).abs().max().item())
    return max(all_reduce_max([error], dist))


def all_reduce_max(values: list[float], dist: DistEnv) -> list[float]:
    import torch
    import torch.distributed as tdist

    device = dist.device if dist.backend == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(tensor, op=tdist.ReduceOp.MAX)
    return tensor.tolist()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _stop_flag
    _stop_flag = True


def _worker(local_rank: int, world: int, port: int, device: str, sizes: list[int], iters: int, warmup: int,
            queue: Any) -> None:
    """One spawned rank (started alone: the parent spawned one process per GPU)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world))
    dist = setup_distributed(device, always=True)  # a 1-GPU box still gets a (1-rank) group
    try:
        rows = _measure(dist, sizes, iters, warmup)
    finally:
        teardown_distributed(dist)
    if local_rank == 0:
        queue.put(rows)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    import torch

    from .common import resolve_device

    validate(args)
    device = resolve_device(args.device)
    on_gpu = device.startswith("cuda")
    sizes = message_sizes(parse_size(args.min_size), parse_size(args.max_size or (GPU_MAX_SIZE if on_gpu else CPU_MAX_SIZE)))
    iters = args.iters or (20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun started us: measure in place
        signal.signal(signal.SIGTERM, _on_sigterm)
        dist = setup_distributed(device)
        world, backend = dist.world_size, dist.backend
        try:
            rows = _measure(dist, sizes, iters, warmup)
        finally:
            teardown_distributed(dist)
        ctx.stop_requested = ctx.stop_requested or _stop_flag
    else:
        world = args.nproc or (torch.cuda.device_count() if on_gpu else 2)
        if on_gpu and world > torch.cuda.device_count():
            raise JobError(f"--nproc {world}: only {torch.cuda.device_count()} GPU(s) visible", exit_code=3,
                           kb="cuda-not-visible")
        backend = "nccl" if on_gpu else "gloo"
        ctx.log(f"spawning {world} process(es), backend {backend}, sizes {size_label(sizes[0])}-{size_label(sizes[-1])}, "
                f"{iters} iters")
        rows = _spawn(world, device, sizes, iters, warmup)
    if not ctx.is_main:
        return {}
    return _report(ctx, rows, world, backend, len(sizes))


def _spawn(world: int, device: str, sizes: list[int], iters: int, warmup: int) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(world, _free_port(), "cuda" if device.startswith("cuda") else "cpu", sizes,
                                      iters, warmup, queue), nprocs=world, join=True, start_method="spawn")
    return queue.get() if not queue.empty() else []


def _report(ctx: JobContext, rows: list[dict[str, Any]], world: int, backend: str | None,
            planned: int) -> dict[str, Any]:
    ctx.log(f"all-reduce over {world} rank(s), backend {backend}")
    ctx.log(f"{'size':>8} {'time_us':>12} {'algbw GB/s':>11} {'busbw GB/s':>11}")
    for step, row in enumerate(rows, 1):
        ctx.progress(step, planned, unit="size", **row)
        ctx.log(f"{row['size']:>8} {row['time_us']:>12.1f} {row['algbw_gbps']:>11.2f} {row['busbw_gbps']:>11.2f}")
    if world < 2:
        ctx.finding("info", "only 1 rank: all-reduce moves no data between GPUs, bus bandwidth is 0 "
                            "(nccl-tests reports the same); run with 2+ GPUs", kb=None)
    busbw = {row["size"]: row["busbw_gbps"] for row in rows}
    metrics = {
        "world_size": world, "backend": backend, "busbw_gbps": busbw,
        "algbw_gbps": {row["size"]: row["algbw_gbps"] for row in rows},
        "busbw_gbps_max": max(busbw.values()) if busbw else None,
        "sizes_measured": len(rows),
    }
    if rows:
        worst = max(row["max_abs_error"] for row in rows)
        metrics["verified"] = {"sizes": len(rows), "max_abs_error": worst,
                               "check": "rank r sends r+1; every element must equal n(n+1)/2"}
        if worst != 0:
            bad = [row["size"] for row in rows if row["max_abs_error"] != 0]
            raise JobError(f"all-reduce returned wrong values (max abs error {worst:g} at {', '.join(bad)}): "
                           "a faulty GPU, link or NCCL build; do not train on this box", kb=None)
    if busbw:
        ctx.metric("busbw_gbps_max", metrics["busbw_gbps_max"])
    return metrics
