"""Load a Gemma 2 model + tokenizer for the Gemma jobs, offline.

--model tiny                       the tiny model (built once into the cache, loaded with from_pretrained)
--model gemma-2-2b|9b|27b          a shipped architecture config; with --weights pretrained the
                                   google/<name> checkpoint from the local HF cache
--model PATH                       a local checkpoint directory (or a config.json with --weights random)
--model ORG/NAME                   a Hugging Face id already in the local cache (local_files_only)
--weights random                   the architecture with random weights (real compute/memory, meaningless text)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import JobError, check_range
from .tiny_gemma import ARCHITECTURES, CONFIGS_DIR, TINY_CONFIG, ensure_tiny_gemma

ATTN_CHOICES = ("eager", "sdpa", "flash_attention_2", "flex_attention")
QUANT_CHOICES = ("none", "int8", "int4")


@dataclass
class GemmaSource:
    """Where the config, weights and tokenizer come from."""

    kind: str  # "tiny" | "arch" | "path" | "cache"
    location: str  # directory / config file / HF id
    label: str


def resolve_source(spec: str) -> GemmaSource:
    """Map --model to a source (cheap: no torch, no loading). JobError exit 3 on a missing path / model."""
    from .model_source import resolve_model

    if spec == "tiny":
        return GemmaSource("tiny", "", "tiny")
    if spec in ARCHITECTURES:
        return GemmaSource("arch", str(CONFIGS_DIR / f"{spec}.json"), spec)
    ref = resolve_model(spec, "pretrained")  # a local dir / config .json, or a HF id in the local cache
    if ref.source == "local":
        if ref.path is not None and ref.path.is_file() and ref.path.suffix != ".json":
            raise JobError(f"--model {spec}: a single weights file; give the model directory (config.json + "
                           "weights) or a config .json with --weights random", exit_code=3, kb="model-load-failure")
        return GemmaSource("path", ref.load_from, spec)
    return GemmaSource("cache", ref.load_from, spec)


def max_positions(source: GemmaSource) -> int | None:
    """The model's `max_position_embeddings` read from its config.json (no torch), None if unknown."""
    import json

    if source.kind == "tiny":
        return int(TINY_CONFIG["max_position_embeddings"])
    path = Path(source.location)
    config = path if path.suffix == ".json" else path / "config.json"
    try:
        with open(config, encoding="utf-8") as fh:
            data = json.load(fh)
        value = data.get("max_position_embeddings") or (data.get("text_config") or {}).get("max_position_embeddings")
        return int(value) if value else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def check_tokens(flag: str, value: int, source: GemmaSource, used: int = 0) -> None:
    """`value` tokens (plus `used` already in the context) must fit the model's positions."""
    limit = max_positions(source)
    if limit is None:
        check_range(flag, value, 1, 131_072)
        return
    check_range(flag, value, 1, limit - used, f" (the model's max_position_embeddings is {limit}"
                + (f", {used} taken by the prompt" if used else "") + ")")


def validate_backends(attn: str, quant: str) -> None:
    """Fail fast (exit 3) on an attention / quantization backend this environment lacks."""
    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise JobError("--attn flash_attention_2: the flash-attn package is not installed in this Python; "
                       "pip install flash-attn (CUDA, sm_80+) or use --attn sdpa / eager", exit_code=3)
    if quant != "none" and importlib.util.find_spec("bitsandbytes") is None:
        raise JobError(f"--quant {quant}: bitsandbytes is not installed in this Python; "
                       "pip install bitsandbytes (needs CUDA) or use --quant none", exit_code=3)


def _pretrained_location(source: GemmaSource) -> str:
    if source.kind == "tiny":
        return str(ensure_tiny_gemma())
    if source.kind == "arch":  # --weights pretrained with an architecture name: google/<name> from the cache
        from .model_source import resolve_model

        return resolve_model(f"google/{source.label}", "pretrained").load_from
    return source.location


def _tokenizer_location(source: GemmaSource, weights: str) -> str:
    config_only = ((source.kind == "arch" and weights == "random")
                   or (source.kind == "path" and source.location.endswith(".json")))
    if source.kind == "tiny" or config_only:  # a bare config has no tokenizer: the tiny one (ids ⊂ the 256k vocab)
        return str(ensure_tiny_gemma())
    return _pretrained_location(source)


def _offline_error(location: str, exc: Exception) -> JobError:
    text = f"{type(exc).__name__}: {exc}"
    if "gated" in text.lower() or type(exc).__name__ == "GatedRepoError":
        return JobError(f"--model {location}: gated model not available offline ({exc.__class__.__name__}); "
                        "accept the licence and download it on a machine with access", exit_code=3, kb="gated-model")
    if Path(location).is_dir():
        return JobError(f"--model {location}: cannot load this model directory ({text.splitlines()[0][:300]})",
                        exit_code=3, kb="model-load-failure")
    return JobError(f"--model {location}: not found in the local Hugging Face cache and downloads are off "
                    f"(local_files_only); download it first (huggingface-cli download {location}) or give a local path",
                    exit_code=3, kb="model-offline-not-cached")


def load_tokenizer(source: GemmaSource, weights: str) -> Any:
    from transformers import AutoTokenizer

    location = _tokenizer_location(source, weights)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise _offline_error(location, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(source: GemmaSource, *, weights: str, device: str, dtype: Any, attn: str = "eager",
               quant: str = "none") -> Any:
    """The model on `device` in `dtype` with the asked attention backend (eval mode)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars in output.log
    if attn == "flash_attention_2" and (not device.startswith("cuda") or dtype == torch.float32):
        raise JobError("--attn flash_attention_2 needs a CUDA device and --dtype fp16/bf16", exit_code=3)
    if quant != "none" and not device.startswith("cuda"):
        raise JobError(f"--quant {quant} (bitsandbytes) needs a CUDA device", exit_code=3)
    if weights == "random":
        if quant != "none":
            raise JobError("--quant needs weights loaded from disk; use --weights pretrained (or --model tiny)",
                           exit_code=3)
        if source.kind == "arch" or (source.kind == "path" and source.location.endswith(".json")):
            from .tiny_gemma import architecture_config

            config = architecture_config(source.label) if source.kind == "arch" else _config_file(source.location)
        else:
            location = _pretrained_location(source)
            try:
                config = AutoConfig.from_pretrained(location, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise _offline_error(location, exc) from exc
        try:
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
        except ValueError as exc:
            raise _attention_error(attn, exc) or exc
        return model.eval()
    if source.kind == "path" and source.location.endswith(".json"):
        raise JobError(f"--model {source.location}: a config file has no weights; add --weights random", exit_code=3)
    location = _pretrained_location(source)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn, "local_files_only": True}
    if quant != "none":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True) if quant == "int8" else
                                         BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype,
                                                            bnb_4bit_quant_type="nf4"))
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise _attention_error(attn, exc) or _offline_error(location, exc) from exc
    if quant == "none":
        model = model.to(device)
    return model.eval()


def _attention_error(attn: str, exc: Exception) -> JobError | None:
    """One line for an attention backend the model class lacks (Gemma 2 has no SDPA path in
    transformers 5: SDPA cannot soft-cap attention logits)."""
    text = str(exc)
    if "does not support an attention implementation" in text or "attn_implementation" in text:
        import transformers

        return JobError(f"--attn {attn}: not supported for this model by transformers {transformers.__version__} "
                        f"({text.split('. ')[0]}); use --attn eager, or flex_attention (fused, keeps soft-capping)",
                        exit_code=3)
    if "flash" in text.lower() and attn == "flash_attention_2":
        return JobError(f"--attn {attn}: {text.splitlines()[0][:300]}", exit_code=3)
    return None


def _config_file(path: str) -> Any:
    import json

    from transformers import AutoConfig

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    model_type = data.pop("model_type", "gemma2")
    return AutoConfig.for_model(model_type, **data)
