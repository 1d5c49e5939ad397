"""Pipeline set-up shared by sd-infer and the SD trainers: schedulers, attention, VAE precision."""

from __future__ import annotations

import importlib.util
from typing import Any

from .common import JobError

# --scheduler name -> (diffusers class, config overrides). Strings only: validate() stays torch-free.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    "lms": ("LMSDiscreteScheduler", {}),
}
# Extra modules a scheduler needs beyond diffusers itself.
SCHEDULER_NEEDS = {"lms": "scipy"}
ATTN_CHOICES = ("sdpa", "xformers", "eager")


def check_scheduler_name(name: str | None) -> None:
    if name is not None and name not in SCHEDULERS:
        raise JobError(f"unknown --scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}", exit_code=3)


def check_attn_name(name: str) -> None:
    if name not in ATTN_CHOICES:
        raise JobError(f"unknown --attn {name!r}; choose one of: {', '.join(ATTN_CHOICES)}", exit_code=3)


def require_packages(scheduler: str | None, attn: str) -> None:
    """The optional packages the chosen scheduler / attention need, checked in the job's own
    interpreter (the console may run another Python than --python): exit 3 naming the pip line."""
    needed = SCHEDULER_NEEDS.get(scheduler or "")
    if needed and importlib.util.find_spec(needed) is None:
        raise JobError(f"--scheduler {scheduler} needs the {needed} package, which this Python lacks: "
                       f"pip install {needed} (or pick another scheduler)", exit_code=3)
    if attn == "xformers" and importlib.util.find_spec("xformers") is None:
        raise JobError("--attn xformers: the xformers package is not installed in this Python; "
                       "pip install xformers (matching your torch build) or use --attn sdpa", exit_code=3)


def set_scheduler(pipe: Any, name: str | None) -> str:
    """Swap the pipeline's scheduler (keeping its noise schedule); returns the class in use."""
    import diffusers

    if name is not None:
        class_name, overrides = SCHEDULERS[name]
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **overrides)
    return type(pipe.scheduler).__name__


def set_attention(pipe: Any, attn: str, slicing: bool) -> str:
    """Apply --attn (and --attention-slicing) to the UNet and VAE; returns the UNet's processor class."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if attn == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
        except Exception as exc:  # xformers present but unusable (CPU, wrong build)
            raise JobError(f"--attn xformers failed: {exc}; use --attn sdpa", exit_code=3) from exc
    else:
        processor = AttnProcessor2_0 if attn == "sdpa" else AttnProcessor
        for module in (pipe.unet, getattr(pipe, "vae", None)):
            if module is not None and hasattr(module, "set_attn_processor"):
                module.set_attn_processor(processor())
    if slicing:
        pipe.enable_attention_slicing()
    return attn_processor_name(pipe.unet)


def attn_processor_name(unet: Any) -> str:
    processors = {type(p).__name__ for p in unet.attn_processors.values()}
    return ",".join(sorted(processors))


def keep_vae_fp32(vae: Any, compute_dtype: Any) -> None:
    """Run the VAE in fp32 inside an fp16/bf16 pipeline (the usual fix for black / NaN images).

    Forward hooks cast what enters the VAE to fp32 and what the encoder hands back
    (its latent moments) to the pipeline's dtype, so the pipelines need no change.
    """
    import torch

    vae.to(torch.float32)

    def to_fp32(module: Any, args: tuple) -> tuple:
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def to_compute(module: Any, args: tuple, output: Any) -> Any:
        return output.to(compute_dtype)

    for name in ("encoder", "decoder", "post_quant_conv"):
        module = getattr(vae, name, None)
        if module is not None:
            module.register_forward_pre_hook(to_fp32)
    moments = getattr(vae, "quant_conv", None) or vae.encoder
    moments.register_forward_hook(to_compute)
