"""sd-lora and sd-dreambooth on the tiny SD pipelines, run for real in child processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_runner import read_run, run_job, start_job, wait_for_progress
from sd_job_helpers import png_size, shared_sd_cache

pytestmark = pytest.mark.ml


@pytest.fixture
def sd_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_sd_cache(tmp_path_factory)


def assert_trained(run, steps: int) -> dict:
    assert run.returncode == 0, run.log
    assert run.finish["status"] == "ok"
    m = run.metrics
    assert m["steps"] == steps and m["steps_per_s"] > 0 and m["images_per_s"] > 0 and m["peak_vram_bytes"] == 0
    for key in ("loss_first", "loss_last", "final_loss"):
        assert m[key] > 0
    progress = run.of_type("progress")
    train = [e for e in progress if e["unit"] == "step"]
    assert [e["step"] for e in train] == list(range(1, steps + 1))
    assert all({"loss", "lr", "samples_per_s", "peak_vram_bytes", "grad_norm"} <= e["metrics"].keys() for e in train)
    assert "Traceback" not in run.log
    return m


def artifact(run, kind: str, name: str) -> Path:
    paths = [Path(a["path"]) for a in run.of_type("artifact") if a["kind"] == kind and Path(a["path"]).name == name]
    assert len(paths) == 1, run.of_type("artifact")
    assert paths[0].is_file()
    return paths[0]


def test_sd_lora_loss_falls_and_the_saved_lora_reloads(tmp_path: Path, sd_cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    run = run_job("sd-lora", ["--device", "cpu"], tmp_path / "run", sd_cache)  # the defaults: 30 steps, seed 0
    m = assert_trained(run, 30)
    assert m["loss_trend"] == "decreasing" and m["loss_last_window_mean"] < 0.97 * m["loss_first_window_mean"]
    assert not run.of_type("finding")
    weights = artifact(run, "adapter", "pytorch_lora_weights.safetensors")
    assert png_size(artifact(run, "image", "sample.png")) == (64, 64)

    # the file loads into a fresh copy of the base pipeline and changes its UNet
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from opsconsole.jobs import tiny_sd

    monkeypatch.setenv("XDG_CACHE_HOME", str(sd_cache))
    saved = load_file(weights)
    assert saved and all(k.startswith("unet.") for k in saved)
    for target in ("to_q", "to_k", "to_v", "to_out.0"):  # the attention projections, as in diffusers' recipe
        assert any(f".{target}.lora.up.weight" in key for key in saved), target
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd.ensure_tiny("sd15"))
    pipe.load_lora_weights(str(weights.parent))
    lora_b = [p for n, p in pipe.unet.named_parameters() if "lora_B" in n]
    assert len(lora_b) == sum(1 for k in saved if k.endswith("lora.up.weight"))
    assert any(float(p.detach().abs().max()) > 0 for p in lora_b)  # trained, not the zero init
    with torch.no_grad():
        images = pipe("a red circle", num_inference_steps=2, output_type="pt").images
    assert torch.isfinite(images).all()


def test_sd_lora_sdxl_with_grad_accum_and_checkpointing(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("sd-lora", ["--device", "cpu", "--model", "tiny-sdxl", "--steps", "3", "--batch", "2",
                              "--grad-accum", "2", "--grad-checkpointing", "--sample-steps", "2"],
                  tmp_path / "run", sd_cache)
    m = assert_trained(run, 3)
    assert m["family"] == "sdxl" and m["images_per_s"] == pytest.approx(4 * m["steps_per_s"])
    artifact(run, "adapter", "pytorch_lora_weights.safetensors")


def test_sd_dreambooth_with_prior_preservation(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("sd-dreambooth", ["--device", "cpu", "--num-class-images", "3", "--class-steps", "2",
                                    "--sample-steps", "2"], tmp_path / "run", sd_cache)
    m = assert_trained(run, 20)
    assert m["loss_trend"] == "decreasing"
    assert m["class_images"] == 3 and m["instance_images"] == 5 and m["prior_loss_weight"] == 1.0
    assert [e["value"] for e in run.of_type("metric") if e["name"] == "class_images"] == [3]
    class_dir = run.run_dir / "artifacts" / "class_images"
    assert sorted(p.name for p in class_dir.iterdir()) == ["class-000.png", "class-001.png", "class-002.png"]
    assert [e["step"] for e in run.of_type("progress") if e["unit"] == "class_image"] == [1, 2, 3]
    # each step trains on instance + class images: 2 + 2
    assert m["images_per_s"] == pytest.approx(4 * m["steps_per_s"])
    artifact(run, "adapter", "pytorch_lora_weights.safetensors")
    assert "sks" in run.log


def test_injected_nan_fails_the_run_at_that_step(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("sd-lora", ["--device", "cpu", "--steps", "6", "--inject-nan-at", "3"], tmp_path / "run", sd_cache)
    assert run.returncode == 1 and run.finish["status"] == "failed"
    assert "step 3" in run.finish["error"] and run.finish["kb"] == "nan-lr-too-high"
    assert run.finish["metrics"]["diverged_at_step"] == 3 and run.finish["metrics"]["steps"] == 2
    assert [e["step"] for e in run.of_type("progress")] == [1, 2]
    assert not run.of_type("artifact")  # nothing half-trained is published


def test_sigterm_saves_the_lora_and_stops(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("torch")
    run_dir = tmp_path / "run"
    proc = start_job("sd-lora", ["--device", "cpu", "--steps", "100000"], run_dir, sd_cache)
    try:
        wait_for_progress(proc, run_dir)
        proc.terminate()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = read_run(run_dir, code)
    assert code == 143 and run.finish["status"] == "stopped", run.log
    assert 1 <= run.finish["metrics"]["steps"] < 100000
    artifact(run, "adapter", "pytorch_lora_weights.safetensors")


def test_sd_lora_two_process_gloo_ddp(tmp_path: Path, sd_cache: Path) -> None:
    """What `opsconsole run sd-lora --gpus 2 --device cpu` starts: torchrun, gloo, rank 0 reports and saves."""
    pytest.importorskip("torch")
    run = run_job("sd-lora", ["--device", "cpu", "--steps", "3", "--batch", "2", "--sample-steps", "2"],
                  tmp_path / "run", sd_cache, nproc=2)
    m = assert_trained(run, 3)
    assert m["world_size"] == 2 and m["images_per_s"] == pytest.approx(4 * m["steps_per_s"])  # 2 ranks x 2
    assert len(run.of_type("start")) == 1
    artifact(run, "adapter", "pytorch_lora_weights.safetensors")
