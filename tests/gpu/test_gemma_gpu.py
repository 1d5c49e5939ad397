"""Gemma jobs and nccl-check on a real GPU, launched through the run manager (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.ml]


def _run(kind: str, argv: list[str], gpus: int | None = None, timeout: float = 300) -> dict[str, Any]:
    from opsconsole.config import Settings
    from opsconsole.runs import RunManager

    manager = RunManager(Settings())
    record = manager.launch(kind, argv, gpus=gpus, force=True)
    result = manager.wait(record.id, timeout=timeout)
    result["log"] = (Path(record.dir) / "output.log").read_text(errors="replace")
    return result


def test_gemma_infer_tiny_on_cuda_measures_vram() -> None:
    result = _run("gemma-infer", ["--model", "tiny", "--device", "cuda", "--turns", "2", "--max-new-tokens", "16"])
    assert result["status"] == "ok", result["log"]
    m = result["metrics"]
    assert m["peak_vram_bytes"] > 0 and m["ttft_s"] > 0 and m["decode_tokens_per_s"] > 0
    assert m["device"].startswith("cuda") and m["dtype"] in ("bf16", "fp16")


# The attention modes gpu_check and `opsconsole bench` measure for Gemma 2: eager, flex_attention
# (fused, keeps soft-capping) and eager + static cache + torch.compile. Not sdpa: transformers 5
# sets `_supports_sdpa = False` for Gemma 2 (sdpa cannot soft-cap), and the job refuses it with exit 3.

def test_gemma_infer_eager_static_cache_compile_on_cuda() -> None:
    result = _run("gemma-infer", ["--model", "tiny", "--device", "cuda", "--attn", "eager", "--compile", "--turns", "2",
                                  "--max-new-tokens", "16"])
    assert result["status"] == "ok", result["log"]
    m = result["metrics"]
    assert m["compile"] is True and m["attn"] == "eager" and m["peak_vram_bytes"] > 0
    assert m["decode_tokens_per_s"] > 0


def test_gemma_infer_flex_attention_on_cuda() -> None:
    result = _run("gemma-infer", ["--model", "tiny", "--device", "cuda", "--attn", "flex_attention",
                                  "--max-new-tokens", "16"])
    assert result["status"] == "ok", result["log"]
    assert result["metrics"]["attn"] == "flex_attention" and result["metrics"]["peak_vram_bytes"] > 0


def test_gemma_2_2b_random_weights_fill_real_memory() -> None:
    result = _run("gemma-infer", ["--model", "gemma-2-2b", "--weights", "random", "--device", "cuda",
                                  "--dtype", "bf16", "--max-new-tokens", "16"])
    assert result["status"] == "ok", result["log"]
    m = result["metrics"]
    assert m["params"] > 2.5e9 and m["peak_vram_bytes"] > 5e9  # 2.6B bf16 weights alone are 5.2 GB


def test_gemma_lora_on_cuda_trains_and_reports_vram() -> None:
    result = _run("gemma-lora", ["--model", "tiny", "--device", "cuda", "--steps", "15"])
    assert result["status"] == "ok", result["log"]
    m = result["metrics"]
    assert m["loss_trend"] == "decreasing" and m["peak_vram_bytes"] > 0
    assert m["adapter_reload_max_abs_diff"] < 0.5  # bf16 logits (soft-capped at 30)


def test_fp16_divergence_on_cuda_points_at_fp16_overflow() -> None:
    result = _run("gemma-lora", ["--model", "tiny", "--device", "cuda", "--dtype", "fp16", "--steps", "5",
                                 "--inject-nan-at", "2"])
    assert result["status"] == "failed"
    assert "NaN/inf loss at step 2" in result["log"] and "fp16 overflow" in result["log"]


def test_nccl_check_on_the_visible_gpus() -> None:
    import torch

    result = _run("nccl-check", ["--device", "cuda", "--max-size", "64M"])
    assert result["status"] == "ok", result["log"]
    m = result["metrics"]
    assert m["backend"] == "nccl" and m["world_size"] == torch.cuda.device_count()
    assert set(m["algbw_gbps"]) == {"8MB", "16MB", "32MB", "64MB"} and all(v > 0 for v in m["algbw_gbps"].values())
    if m["world_size"] > 1:
        assert all(v > 0 for v in m["busbw_gbps"].values())


def test_two_gpu_ddp_uses_nccl() -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    result = _run("gemma-lora", ["--model", "tiny", "--device", "cuda", "--steps", "5"], gpus=2)
    assert result["status"] == "ok", result["log"]
    assert result["metrics"]["world_size"] == 2 and "(nccl)" in result["log"]
