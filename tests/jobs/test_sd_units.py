"""The torch-free parts of the SD jobs: input image checks, flag validation, output health, data, tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sd_job_helpers import write_shape_png

from opsconsole.jobs import sd_dreambooth, sd_infer, sd_lora
from opsconsole.jobs.common import JobError
from opsconsole.jobs.sd_data import INSTANCE_PROMPT, instance_dataset, shape_dataset
from opsconsole.jobs.sd_images import BLACK_KB, check_image_file, image_health, sniff_image_format
from opsconsole.jobs.sd_pipeline import require_packages
from opsconsole.jobs.sd_training import require_optimizer_package
from opsconsole.jobs.tiny_sd import CONFIG_DIR, learn_bpe_merges, write_clip_tokenizer_files


def infer_args(*argv: str):
    return sd_infer.build_parser().parse_args(list(argv))


def test_image_magic_bytes() -> None:
    assert sniff_image_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image_format(b"\xff\xd8\xff\xe0..JFIF") == "jpeg"
    assert sniff_image_format(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_image_format(b"GIF89a") is None
    assert sniff_image_format(b"hello world") is None


def test_a_text_file_named_png_is_not_an_image(tmp_path: Path) -> None:
    fake = tmp_path / "cat.png"
    fake.write_text("not really a picture")
    with pytest.raises(JobError) as err:
        sd_infer.validate(infer_args("--init-image", str(fake)))
    assert err.value.exit_code == 3 and "--init-image" in str(err.value) and "not an image" in str(err.value)
    with pytest.raises(JobError, match="no such file"):
        check_image_file(str(tmp_path / "missing.png"), "--mask")


def test_real_png_and_mask_pass_validation(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    image = write_shape_png(tmp_path / "in.png")
    sd_infer.validate(infer_args("--init-image", str(image), "--mask", str(image), "--scheduler", "euler-a"))


def test_compile_flag_is_accepted() -> None:
    # The compile itself takes ~1 min on CPU even for the tiny UNet: tests/gpu/test_sd_gpu.py runs it.
    args = infer_args("--compile", "--warmup-steps", "0")
    sd_infer.validate(args)
    assert args.compile and not infer_args().compile


@pytest.mark.parametrize("argv, words", [
    (["--scheduler", "dpm-fast"], "unknown --scheduler"),
    (["--width", "100"], "multiple of 8"),
    (["--height", "0"], "--height 0: must be 8 to 4,096 pixels"),
    # upper bounds (issue #12 item 13: --height 100000 and --batch 100000 were accepted)
    (["--height", "100000"], "--height 100000: must be 8 to 4,096 pixels"),
    (["--width", "4104"], "--width 4104: must be 8 to 4,096"),
    (["--batch", "100000"], "--batch 100000: must be 1 to 64"),
    (["--steps", "1000000"], "--steps 1000000: must be 1 to 1,000"),
    (["--guidance", "nan"], "--guidance nan"),
    (["--attn", "flash"], "unknown --attn"),
    (["--mask", "m.png"], "needs --init-image"),
    (["--strength", "1.5"], "--strength"),
    (["--weights", "random", "--model", "tiny"], "--model sd15 or --model sdxl"),
    (["--compile", "--cpu-offload"], "--compile and --cpu-offload do not mix"),
])
def test_bad_infer_flags_exit_3(argv: list[str], words: str) -> None:
    with pytest.raises(JobError) as err:
        sd_infer.validate(infer_args(*argv))
    assert err.value.exit_code == 3 and words in str(err.value)


def test_missing_optional_packages_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked by the job in its own interpreter, not by validate(): the console may run
    another Python than the --python the run uses."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("xformers", "scipy", "bitsandbytes") else real(name, *a))
    sd_infer.validate(infer_args("--attn", "xformers", "--scheduler", "lms"))
    sd_lora.validate(sd_lora.build_parser().parse_args(["--optim", "adamw8bit"]))
    with pytest.raises(JobError, match="pip install xformers") as err:
        require_packages("ddim", "xformers")
    assert err.value.exit_code == 3
    with pytest.raises(JobError, match="needs the scipy package"):
        require_packages("lms", "sdpa")
    with pytest.raises(JobError, match="needs bitsandbytes"):
        require_optimizer_package("adamw8bit")
    require_packages("euler-a", "eager")
    require_optimizer_package("adamw")


def test_trainer_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    args = sd_lora.build_parser().parse_args([])
    sd_lora.validate(args)
    assert args.lr == 1e-2  # tiny default: the loss visibly falls in the default 30 steps
    real = sd_lora.build_parser().parse_args(["--model", "sd15", "--weights", "random"])
    sd_lora.validate(real)
    assert real.lr == 1e-4
    for argv in (["--resolution", "60"], ["--grad-accum", "0"], ["--steps", "0"], ["--inject-nan-at", "0"],
                 ["--resolution", "8192"], ["--num-images", "10000000"], ["--rank", "4096"],
                 ["--batch", "100000"], ["--grad-accum", "100000"]):
        with pytest.raises(JobError) as err:
            sd_lora.validate(sd_lora.build_parser().parse_args(argv))
        assert err.value.exit_code == 3 and argv[0] in str(err.value)
    with pytest.raises(JobError, match="--num-class-images"):
        sd_dreambooth.validate(sd_dreambooth.build_parser().parse_args(["--num-class-images", "0"]))


def test_image_health_counts_nan_and_black_images() -> None:
    np = pytest.importorskip("numpy")
    good = np.random.default_rng(0).random((8, 8, 3))
    black = np.zeros((8, 8, 3))
    nan = np.full((8, 8, 3), np.nan)
    assert image_health([good, good]).finding() is None
    mixed = image_health([good, black, nan])
    assert (mixed.nan, mixed.black, mixed.all_nan) == (1, 1, False)
    assert "--vae-fp32" in mixed.finding()
    assert image_health([nan, nan]).all_nan
    assert BLACK_KB == "sd-black-images-vae-fp16"


def test_procedural_data_is_deterministic_and_captioned() -> None:
    pytest.importorskip("PIL")
    first, again = shape_dataset(6, 32, seed=5), shape_dataset(6, 32, seed=5)
    assert [s.caption for s in first] == [s.caption for s in again]
    assert [s.image.tobytes() for s in first] == [s.image.tobytes() for s in again]
    for sample in first:
        shape = sample.caption.split()[2]
        assert sample.image.size == (32, 32) and shape in ("circle", "square", "triangle")
        assert len(sample.image.getcolors()) >= 2  # the shape stands out from the background
    assert all(s.caption == INSTANCE_PROMPT for s in instance_dataset(3, 32))


def test_bpe_merges_build_whole_caption_words(tmp_path: Path) -> None:
    merges = learn_bpe_merges(["background", "background", "circle"], 50)
    assert ("b", "a") in merges or ("a", "c") in merges
    size = write_clip_tokenizer_files(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert len(vocab) == size and vocab["<|endoftext|>"] == size - 1  # the end token has the highest id
    assert "background</w>" in vocab and "triangle</w>" in vocab
    assert (tmp_path / "merges.txt").read_text().startswith("#version: 0.2\n")


def test_shipped_configs_are_the_real_architectures() -> None:
    sd15 = json.loads((CONFIG_DIR / "sd15" / "unet.json").read_text())
    sdxl = json.loads((CONFIG_DIR / "sdxl" / "unet.json").read_text())
    assert sd15["block_out_channels"] == [320, 640, 1280, 1280] and sd15["cross_attention_dim"] == 768
    assert sdxl["cross_attention_dim"] == 2048 and sdxl["transformer_layers_per_block"] == [1, 2, 10]
    te2 = json.loads((CONFIG_DIR / "sdxl" / "text_encoder_2.json").read_text())
    assert te2["hidden_size"] == 1280 and te2["num_hidden_layers"] == 32
    for family, names in (("sd15", ["scheduler", "text_encoder", "unet", "vae"]),
                          ("sdxl", ["scheduler", "text_encoder", "text_encoder_2", "unet", "vae"])):
        assert sorted(p.stem for p in (CONFIG_DIR / family).glob("*.json")) == names
