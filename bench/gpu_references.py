"""The references every GPU figure is read against, with their sources, and the copy-bandwidth probe.

Pure functions (standard library) except `measure_copy_bandwidth`, which imports torch
when called. `python bench/gpu_references.py copy-bandwidth --device cuda` prints
{"copy_bytes_per_s", "device", "bytes", "iters"} as JSON (bench/gpu_check.py's probe step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

# Peak HBM bandwidth in bytes/s, matched on the NVML name (first match wins: specific names first).
# Sources: NVIDIA H200 product page (4.8 TB/s) https://www.nvidia.com/en-us/data-center/h200/ ;
# NVIDIA H100 product page / datasheet (SXM 3.35 TB/s, PCIe 2.0 TB/s, NVL 3.9 TB/s)
#   https://www.nvidia.com/en-us/data-center/h100/ ;
# NVIDIA A100 datasheet (80GB SXM 2.039 TB/s, 80GB PCIe 1.935 TB/s, 40GB 1.555 TB/s)
#   https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
HBM_SPEC: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("H200",), 4.8e12, "H200 (HBM3e)"),
    (("H100", "NVL"), 3.9e12, "H100 NVL"),
    (("H100", "PCIE"), 2.0e12, "H100 PCIe"),
    (("H100",), 3.35e12, "H100 SXM"),
    (("A100", "80GB"), 2.0e12, "A100 80GB"),
    (("A100",), 1.555e12, "A100 40GB"),
)
H100_SXM_BYTES_PER_S = 3.35e12
SPEC_SOURCE = "NVIDIA product pages / datasheets (docs/bench.md)"

# SD 1.5, 512x512, fp16, batch 1, UNet it/s, published on an H100 (stable-fast README, "H100" table,
# https://github.com/chengzeyi/stable-fast#h100 , commit 2b9b84e): vanilla PyTorch 2.1 (diffusers,
# SDPA) 54.5 it/s; torch.compile (2.1, max-autotune) 66.0 it/s; stable-fast 104.6 it/s.
# Cross-check, out-of-the-box diffusers on an A100 80GB SXM (fal-ai/stable-diffusion-benchmarks,
# https://github.com/fal-ai/stable-diffusion-benchmarks): SDPA 31.19 it/s, SDPA + compile 36.93 it/s.
SD15_H100_IT_PER_S = {"plain": 54.5, "compiled": 66.0, "stable-fast": 104.6}
SD15_A100_80GB_IT_PER_S = {"plain": 31.19, "compiled": 36.93}
SD_SOURCE = ("stable-fast README H100 table (PyTorch 2.1 + diffusers SDPA 54.5 it/s, torch.compile 66.0, "
             "stable-fast 104.6), https://github.com/chengzeyi/stable-fast#h100 ; fal-ai/stable-diffusion-benchmarks "
             "A100 80GB SXM (SDPA 31.19, compiled 36.93)")
SD_TOLERANCE = 3.0  # the figure must lie within this factor of the scaled reference


def hbm_spec(gpu_name: str | None) -> tuple[float, str] | None:
    """(bytes/s, label) for an NVML GPU name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    upper = (gpu_name or "").upper()
    for needles, bandwidth, label in HBM_SPEC:
        if all(n in upper for n in needles):
            return bandwidth, label
    return None


def decode_reference(tokens_per_s: float | None, params: int | None, bytes_per_param: int,
                     copy_bytes_per_s: float | None, gpu_name: str | None) -> dict[str, Any]:
    """Batch-1 decode reads every weight once per token: ceiling = bandwidth / weight bytes.

    The measured ceiling uses the copy bandwidth measured on this machine (bytes read +
    written per second); the spec ceiling uses the datasheet bandwidth of the GPU's name.
    """
    if not params:
        return {}
    weight_bytes = params * bytes_per_param
    out: dict[str, Any] = {"weight_bytes": weight_bytes}
    if copy_bytes_per_s:
        out["copy_bytes_per_s"] = copy_bytes_per_s
        out["ceiling_tokens_per_s"] = round(copy_bytes_per_s / weight_bytes, 1)
        if tokens_per_s:
            out["fraction_of_ceiling"] = round(tokens_per_s / out["ceiling_tokens_per_s"], 4)
    spec = hbm_spec(gpu_name)
    if spec:
        out.update(spec_gpu=spec[1], spec_bytes_per_s=spec[0], spec_ceiling_tokens_per_s=round(spec[0] / weight_bytes, 1),
                   spec_source=SPEC_SOURCE)
        if tokens_per_s:
            out["fraction_of_spec_ceiling"] = round(tokens_per_s / out["spec_ceiling_tokens_per_s"], 4)
    return out


def sd_reference(it_per_s: float | None, variant: str, gpu_name: str | None,
                 copy_bytes_per_s: float | None) -> dict[str, Any]:
    """The published H100 SD 1.5 figure for `variant` ("plain" / "compiled"), scaled to this GPU by
    bandwidth: by the spec ratio when the GPU is known, else by measured copy bandwidth / H100 spec."""
    published = SD15_H100_IT_PER_S[variant]
    spec = hbm_spec(gpu_name)
    if spec:
        scale, scaled_by = spec[0] / H100_SXM_BYTES_PER_S, f"spec bandwidth {spec[1]} / H100 SXM"
    elif copy_bytes_per_s:
        scale, scaled_by = copy_bytes_per_s / H100_SXM_BYTES_PER_S, "measured copy bandwidth / H100 SXM spec"
    else:
        return {"published_h100_it_per_s": published, "source": SD_SOURCE}
    expected = published * scale
    out: dict[str, Any] = {"published_h100_it_per_s": published, "scale": round(scale, 3), "scaled_by": scaled_by,
                           "expected_it_per_s": round(expected, 1), "stable_fast_h100_it_per_s":
                           SD15_H100_IT_PER_S["stable-fast"], "source": SD_SOURCE}
    if it_per_s:
        out["ratio_to_expected"] = round(it_per_s / expected, 3)
        out["within_tolerance"] = 1 / SD_TOLERANCE <= it_per_s / expected <= SD_TOLERANCE
    return out


def measure_copy_bandwidth(device: str = "cuda", nbytes: int | None = None, iters: int = 10) -> dict[str, Any]:
    """Device-to-device copy bandwidth, bytes read + written per second (torch; imported here)."""
    import torch

    cuda = device.startswith("cuda")
    nbytes = nbytes or ((1 << 30) if cuda else (256 << 20))
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    if cuda:
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            dst.copy_(src)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        started = time.perf_counter()
        for _ in range(iters):
            dst.copy_(src)
        seconds = time.perf_counter() - started
    return {"copy_bytes_per_s": 2 * nbytes * iters / seconds, "device": device, "bytes": nbytes, "iters": iters}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    copy = sub.add_parser("copy-bandwidth", help="measure the device-to-device copy bandwidth")
    copy.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if args.command == "copy-bandwidth":
        print(json.dumps(measure_copy_bandwidth(args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
