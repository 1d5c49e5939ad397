"""sd-infer on the tiny SD 1.5 / SDXL pipelines, run for real in a child process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from job_runner import run_job
from sd_job_helpers import png_size, shared_sd_cache, write_mask_png, write_shape_png

pytestmark = pytest.mark.ml

FAST = ["--device", "cpu", "--steps", "4", "--warmup-steps", "1"]


@pytest.fixture
def sd_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_sd_cache(tmp_path_factory)


def sd_infer(argv: list[str], tmp_path: Path, cache: Path, name: str = "run"):
    return run_job("sd-infer", [*FAST, *argv], tmp_path / name, cache)


def assert_generated(run, mode: str, images: int, scheduler: str | None = None) -> dict:
    assert run.returncode == 0, run.log
    assert run.finish["status"] == "ok"
    m = run.metrics
    assert m["mode"] == mode and m["images"] == images
    assert m["it_per_s"] > 0 and m["s_per_image"] > 0 and m["peak_vram_bytes"] == 0  # CPU: no VRAM
    assert "peak VRAM n/a (cpu)" in run.log
    assert m["attn"] == "sdpa" and m["attn_processor"] == "AttnProcessor2_0" and m["dtype"] == "fp32"
    assert m["nan_images"] == 0 and m["black_images"] == 0 and not run.of_type("finding")
    if scheduler:
        assert m["scheduler"] == scheduler
    artifacts = run.of_type("artifact")
    assert [a["kind"] for a in artifacts] == ["image"] * images
    for artifact in artifacts:
        assert png_size(Path(artifact["path"])) == (m["width"], m["height"])
    steps = [e["step"] for e in run.of_type("progress")]
    assert steps == list(range(1, m["steps"] + 1))
    assert {e["name"] for e in run.of_type("metric")} >= {"it_per_s", "s_per_image", "peak_vram_bytes"}
    assert "Traceback" not in run.log and "safety checker off" in run.log
    return m


def test_txt2img_with_two_schedulers(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("diffusers")
    ddim = sd_infer(["--scheduler", "ddim", "--batch", "2"], tmp_path, sd_cache, "ddim")
    m = assert_generated(ddim, "txt2img", 2, "DDIMScheduler")
    assert (m["width"], m["height"], m["family"], m["model_source"]) == (64, 64, "sd15", "tiny")
    dpm = sd_infer(["--scheduler", "dpmpp-2m-karras", "--width", "80", "--height", "48"], tmp_path, sd_cache, "dpm")
    m = assert_generated(dpm, "txt2img", 1, "DPMSolverMultistepScheduler")
    assert (m["width"], m["height"]) == (80, 48)
    first = lambda run: Path(run.of_type("artifact")[0]["path"]).read_bytes()  # noqa: E731
    assert first(ddim) != first(dpm)
    # the tiny model was saved with save_pretrained and loaded back from the cache
    assert (sd_cache / "opsconsole" / "tiny" / "sd15" / "model_index.json").is_file()


def test_img2img(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("diffusers")
    image = write_shape_png(tmp_path / "in.png")
    run = sd_infer(["--init-image", str(image), "--strength", "0.5", "--scheduler", "euler-a"], tmp_path, sd_cache)
    m = assert_generated(run, "img2img", 1, "EulerAncestralDiscreteScheduler")
    assert m["steps"] == 2  # strength 0.5 of 4 steps


def test_inpaint(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("diffusers")
    image, mask = write_shape_png(tmp_path / "in.png"), write_mask_png(tmp_path / "mask.png")
    run = sd_infer(["--init-image", str(image), "--mask", str(mask), "--strength", "1.0"], tmp_path, sd_cache)
    m = assert_generated(run, "inpaint", 1)
    assert m["unet_in_channels"] == 4  # the tiny txt2img UNet: diffusers blends the known region each step


def test_inpainting_checkpoint_with_a_9_channel_unet(tmp_path: Path, sd_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A real inpainting layout (latents + mask + masked-image latents in): inpaints, refuses txt2img."""
    pytest.importorskip("torch")
    from diffusers import UNet2DConditionModel

    from opsconsole.jobs import tiny_sd

    monkeypatch.setenv("XDG_CACHE_HOME", str(sd_cache))
    inpaint_model = tmp_path / "tiny-inpaint"
    shutil.copytree(tiny_sd.ensure_tiny("sd15"), inpaint_model)
    config = dict(UNet2DConditionModel.load_config(inpaint_model / "unet"), in_channels=9)
    UNet2DConditionModel.from_config(config).save_pretrained(inpaint_model / "unet")
    image, mask = write_shape_png(tmp_path / "in.png"), write_mask_png(tmp_path / "mask.png")
    run = sd_infer(["--model", str(inpaint_model), "--init-image", str(image), "--mask", str(mask)], tmp_path,
                   sd_cache, "inpaint")
    assert run.returncode == 0, run.log
    assert run.metrics["mode"] == "inpaint" and run.metrics["unet_in_channels"] == 9
    run = sd_infer(["--model", str(inpaint_model)], tmp_path, sd_cache, "txt2img")
    assert run.returncode == 3 and "inpainting checkpoint" in run.finish["error"] and "Traceback" not in run.log


def test_sdxl_tiny(tmp_path: Path, sd_cache: Path) -> None:
    pytest.importorskip("diffusers")
    run = sd_infer(["--model", "tiny-sdxl", "--scheduler", "euler", "--negative-prompt", "blurry"], tmp_path, sd_cache)
    m = assert_generated(run, "txt2img", 1, "EulerDiscreteScheduler")
    assert m["family"] == "sdxl"


def test_all_nan_images_fail_with_a_finding(tmp_path: Path, sd_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local pipeline whose VAE decoder emits NaN (what an fp16 overflow looks like)."""
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL

    from opsconsole.jobs import tiny_sd

    monkeypatch.setenv("XDG_CACHE_HOME", str(sd_cache))
    broken = tmp_path / "broken-sd"
    shutil.copytree(tiny_sd.ensure_tiny("sd15"), broken)
    vae = AutoencoderKL.from_pretrained(broken / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(float("nan"))
    vae.save_pretrained(broken / "vae")
    run = sd_infer(["--model", str(broken)], tmp_path, sd_cache)
    assert run.returncode == 1 and run.finish["status"] == "failed"
    assert run.finish["kb"] == "sd-black-images-vae-fp16" and "--vae-fp32" in run.finish["error"]
    findings = run.of_type("finding")
    assert findings and findings[0]["kb"] == "sd-black-images-vae-fp16" and findings[0]["severity"] == "error"
    assert run.finish["metrics"]["nan_images"] == 1 and run.finish["metrics"]["model_source"] == "local"
    assert len(run.of_type("artifact")) == 1  # the (black) image is still saved for inspection


@pytest.mark.parametrize("argv, words", [
    (["--scheduler", "turbo"], "unknown --scheduler 'turbo'"),
    (["--init-image", "NOT_AN_IMAGE"], "not an image"),
])
def test_bad_input_exits_3_before_loading_anything(tmp_path: Path, sd_cache: Path, argv: list[str],
                                                   words: str) -> None:
    fake = tmp_path / "photo.png"
    fake.write_text("plain text, not a PNG")
    argv = [str(fake) if a == "NOT_AN_IMAGE" else a for a in argv]
    run = sd_infer(argv, tmp_path, sd_cache)
    assert run.returncode == 3, run.log
    assert run.finish["status"] == "failed" and words in run.finish["error"]
    assert words in run.log and "Traceback" not in run.log
    assert not run.of_type("artifact") and not run.of_type("progress")


def test_through_the_run_manager(tmp_path: Path, sd_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("diffusers")
    runs = pytest.importorskip("opsconsole.runs")
    from opsconsole.config import Settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(sd_cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    manager = runs.RunManager(Settings())
    record = manager.launch("sd-infer", [*FAST, "--scheduler", "pndm"])
    result = manager.wait(record.id, timeout=180)
    log = (Path(record.dir) / "output.log").read_text(errors="replace")
    assert result["status"] == "ok" and result["exit_code"] == 0, log
    assert result["metrics"]["it_per_s"] > 0 and result["metrics"]["s_per_image"] > 0
    assert "peak_vram_bytes" in result["metrics"]
    paths = [Path(a["path"] if isinstance(a, dict) else a) for a in result["artifacts"]]
    assert [p.suffix for p in paths] == [".png"] and all(p.is_file() for p in paths)
