"""Stable Diffusion pipelines without a network: tiny models, random full-size ones, local ones.

- `--model tiny` (SD 1.5 layout) / `--model tiny-sdxl`: a small random-weight UNet, VAE
  and CLIP text encoder(s) with an offline CLIP BPE tokenizer, assembled into the real
  diffusers pipeline, saved with `save_pretrained` under $XDG_CACHE_HOME/opsconsole/tiny/
  and loaded back with `from_pretrained` (the real loading path).
- `--weights random`: the full SD 1.5 / SDXL architecture from the configs shipped in
  jobs/configs/{sd15,sdxl}/, random weights, for speed and memory measurement.
- anything else: a local diffusers pipeline directory or a Hugging Face id in the local
  cache (resolved by jobs/model_source.py), loaded with `local_files_only=True`.

The safety checker is off for tiny and random pipelines (random weights make noise,
not content); a real checkpoint keeps whatever it ships with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .common import JobError
from .model_source import resolve_model
from .sd_data import vocabulary_text

TINY_NAMES = {"tiny": "sd15", "tiny-sd15": "sd15", "tiny-sdxl": "sdxl"}
RANDOM_NAMES = {"sd15": "sd15", "sd1.5": "sd15", "sdxl": "sdxl"}
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Bump when the tiny configs or tokenizer change: a stale cached build is rebuilt.
TINY_VERSION = "3"
VERSION_FILE = "opsconsole-tiny-version"
MAX_TOKENS = 77
TOKENIZER_MERGES = 200


@dataclass
class LoadedPipeline:
    """A diffusers pipeline and what the job reports about where it came from."""

    pipe: Any
    family: str  # "sd15" | "sdxl"
    source: str  # "tiny" | "random" | "local" | "cache"
    path: str | None = None


# --- offline CLIP tokenizer -------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table (byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def learn_bpe_merges(words: list[str], max_merges: int) -> list[tuple[str, str]]:
    """Greedy byte-pair merges over `words` (each word ends with CLIP's `</w>` marker)."""
    table = _bytes_to_unicode()
    corpus = [[table[b] for b in word.encode("utf-8")] for word in words]
    for symbols in corpus:
        symbols[-1] += "</w>"
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        counts: dict[tuple[str, str], int] = {}
        for symbols in corpus:
            for pair in zip(symbols, symbols[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = max(sorted(counts), key=lambda pair: counts[pair])
        merges.append(best)
        for symbols in corpus:
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
                else:
                    i += 1
    return merges


def write_clip_tokenizer_files(directory: Path) -> int:
    """Write vocab.json + merges.txt of a small byte-level CLIP BPE; returns the vocab size.

    Vocabulary order follows CLIP: bytes, bytes + `</w>`, merges, then
    <|startoftext|> and <|endoftext|> last, so the end token has the highest id
    (CLIPTextModel pools the hidden state at argmax(input_ids)).
    """
    alphabet = list(_bytes_to_unicode().values())
    merges = learn_bpe_merges(vocabulary_text(), TOKENIZER_MERGES)
    tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["".join(pair) for pair in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}, ensure_ascii=False))
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (directory / "merges.txt").write_text(merges_text, encoding="utf-8")
    return len(tokens)


def build_clip_tokenizer(work_dir: Path) -> Any:
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(work_dir)
    return CLIPTokenizer.from_pretrained(str(work_dir), model_max_length=MAX_TOKENS, pad_token="<|endoftext|>")


# --- tiny model configs -------------------------------------------------------------------

def _tiny_text_config(vocab_size: int, eos_id: int, bos_id: int) -> dict[str, Any]:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=MAX_TOKENS, projection_dim=32, hidden_act="quick_gelu",
                bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    # Four blocks, like the real VAE: 8x spatial downsampling, so --width/--height behave as in SD.
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32, 32),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.18215)


def _tiny_unet(family: str) -> Any:
    from diffusers import UNet2DConditionModel

    if family == "sd15":
        return UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    # SDXL: micro-conditioning ("text_time"), linear projections, both text encoders concatenated (32 + 32).
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids x 8 + pooled text embedding (32)
        cross_attention_dim=64, norm_num_groups=8)


def _scheduler(family: str) -> Any:
    import diffusers

    config = json.loads((CONFIG_DIR / family / "scheduler.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_config(config)


def _assemble_tiny(family: str, work_dir: Path) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer(work_dir / "tokenizer-src")
    text_config = CLIPTextConfig(**_tiny_text_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id))
    common = dict(vae=_tiny_vae(), unet=_tiny_unet(family), scheduler=_scheduler(family), tokenizer=tokenizer)
    if family == "sd15":
        return StableDiffusionPipeline(text_encoder=CLIPTextModel(text_config), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False, **common)
    return StableDiffusionXLPipeline(text_encoder=CLIPTextModel(text_config),
                                     text_encoder_2=CLIPTextModelWithProjection(text_config), tokenizer_2=tokenizer,
                                     add_watermarker=False, **common)


def tiny_dir(family: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "opsconsole" / "tiny" / family


def ensure_tiny(family: str, seed: int = 0) -> Path:
    """Build and save the tiny pipeline once; concurrent jobs (DDP ranks) wait on a file lock."""
    import torch

    target = tiny_dir(family)
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f".{family}.lock"):
        if _is_current(target):  # built by another process while this one waited
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{family}-build-") as tmp:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                pipe = _assemble_tiny(family, Path(tmp))
            out = Path(tmp) / "pipeline"
            pipe.save_pretrained(out)
            (out / VERSION_FILE).write_text(TINY_VERSION)
            if target.exists():  # an older TINY_VERSION
                shutil.rmtree(target)
            os.replace(out, target)
    return target


def prebuild_tiny(model: str, weights: str) -> None:
    """Build a tiny pipeline before torch.distributed starts: once a process group exists,
    transformers' save_pretrained writes weights on rank 0 only, so a build by another rank
    would lack its text encoder."""
    if weights != "random" and model in TINY_NAMES:
        ensure_tiny(TINY_NAMES[model])


def _is_current(target: Path) -> bool:
    marker = target / VERSION_FILE
    return marker.is_file() and marker.read_text().strip() == TINY_VERSION


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (builds are atomic renames anyway)
        yield
        return
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- random full-size -------------------------------------------------------------------

def _read_config(family: str, name: str) -> dict[str, Any]:
    return json.loads((CONFIG_DIR / family / f"{name}.json").read_text())


def build_random(family: str, dtype: Any, device: str = "cpu") -> Any:
    """Full-size SD 1.5 / SDXL with random weights from the shipped configs (no download).

    The networks are built directly on `device` in `dtype` (SDXL has 3.5B parameters: no
    fp32 copy in host RAM); the scheduler stays outside that (its tables are float64/fp32).
    The tokenizer is the offline tiny one: token ids differ from real CLIP, but every
    prompt is padded to 77 tokens, so compute and memory are those of the real model.
    """
    import diffusers
    import torch

    with tempfile.TemporaryDirectory(prefix="opsconsole-tok-") as tmp:
        tokenizer = build_clip_tokenizer(Path(tmp))
    scheduler = _scheduler(family)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            parts = _random_networks(family)
    finally:
        torch.set_default_dtype(previous)
    if family == "sd15":
        pipe = diffusers.StableDiffusionPipeline(tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False, **parts)
    else:
        pipe = diffusers.StableDiffusionXLPipeline(tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler,
                                                   add_watermarker=False, **parts)
    return pipe.to(dtype=dtype)  # a few weights (token embeddings) ignore the default dtype


def _random_networks(family: str) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    parts = {"unet": UNet2DConditionModel.from_config(_read_config(family, "unet")),
             "vae": AutoencoderKL.from_config(_read_config(family, "vae")),
             "text_encoder": CLIPTextModel(CLIPTextConfig(**_read_config(family, "text_encoder")))}
    if family == "sdxl":
        parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**_read_config(family, "text_encoder_2")))
    return parts


# --- entry point ------------------------------------------------------------------------

def family_of(pipe: Any) -> str:
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"


def _from_pretrained(path: str, dtype: Any) -> Any:
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(path, dtype=dtype, local_files_only=True)


def check_model(model: str, weights: str) -> None:
    """Cheap (torch-free) check of --model/--weights for the SD jobs; bad input -> JobError(exit 3)."""
    if weights == "random":
        if model.lower() not in RANDOM_NAMES:
            raise JobError(f"--weights random builds a shipped architecture: use --model sd15 or --model sdxl "
                           f"(got {model!r})", exit_code=3)
        return
    if model not in TINY_NAMES:
        resolve_model(model, weights)


def _quiet_progress_bars() -> None:
    """Loading bars are noise in a run log (the console shows progress from events)."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(model: str, weights: str, dtype: Any, device: str = "cpu") -> LoadedPipeline:
    """The pipeline for --model/--weights in `dtype`; on CPU, except random ones, built on `device`
    (the caller moves the pipeline to its device either way)."""
    _quiet_progress_bars()
    check_model(model, weights)
    if weights == "random":
        family = RANDOM_NAMES[model.lower()]
        return LoadedPipeline(build_random(family, dtype, device), family, "random")
    if model in TINY_NAMES:
        family = TINY_NAMES[model]
        path = ensure_tiny(family)
        return LoadedPipeline(_from_pretrained(str(path), dtype), family, "tiny", str(path))
    ref = resolve_model(model, weights)
    if ref.path is not None and ref.path.is_dir() and not (ref.path / "model_index.json").is_file():
        raise JobError(f"--model {model}: {ref.path} has no model_index.json (not a diffusers pipeline)",
                       exit_code=3, kb="model-load-failure")
    try:
        pipe = _from_pretrained(ref.load_from, dtype)
    except (OSError, ValueError) as exc:
        raise JobError(f"--model {model}: could not load the pipeline: {exc}", kb="model-load-failure") from exc
    return LoadedPipeline(pipe, family_of(pipe), ref.source, ref.load_from)
