"""The Stable Diffusion LoRA training step shared by sd-lora and sd-dreambooth.

Follows diffusers' examples/text_to_image/train_text_to_image_lora.py: frozen VAE, text
encoder(s) and UNet in the weight dtype; peft LoRA on the UNet attention projections
(to_q, to_k, to_v, to_out.0) kept in fp32 (master weights); VAE latents x scaling
factor, Gaussian noise, uniform random timesteps, MSE against the noise (or the
velocity when the scheduler predicts v); autocast, a GradScaler for fp16, gradient
clipping at 1.0. SD 1.5 and SDXL (micro-conditioning time ids + pooled text embeds).
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import JobContext, JobError, check_image_side, check_range, dtype_name, resolve_dtype, seed_everything
from .sd_pipeline import keep_vae_fp32
from .tiny_sd import TINY_NAMES, LoadedPipeline, check_model, load_pipeline
from .training import DistEnv, TrainMonitor, validate_trainer_options, wrap_ddp

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
LORA_FILE = "pytorch_lora_weights.safetensors"
MAX_GRAD_NORM = 1.0
# Default learning rates: the random tiny UNet needs a large one for its loss to fall
# clearly within 30 steps (about 8-10% over seeds 0-4); real checkpoints use the usual LoRA rate.
TINY_LR = 1e-2
REAL_LR = 1e-4
LR_HELP = f"AdamW learning rate (default {TINY_LR:g} for the tiny models, {REAL_LR:g} otherwise)"


def add_sd_trainer_options(parser: argparse.ArgumentParser) -> None:
    """Flags of both SD trainers, on top of add_common_job_options / add_trainer_options."""
    parser.add_argument("--resolution", type=int, default=None, help="training image size, multiple of 8 "
                        "(default: the model's native size; 64 for tiny)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (alpha = rank)")
    parser.add_argument("--optim", default="adamw", help="adamw | adamw8bit (needs bitsandbytes)")
    parser.add_argument("--sample-steps", type=int, default=10, help="denoising steps of the sample image")


def resolve_default_lr(args: argparse.Namespace) -> None:
    """--lr left out: TINY_LR for the tiny models (loss visibly falls in 30 steps), REAL_LR otherwise."""
    if args.lr is None:
        args.lr = TINY_LR if args.model in TINY_NAMES else REAL_LR


def validate_sd_trainer_options(args: argparse.Namespace) -> None:
    resolve_default_lr(args)
    validate_trainer_options(args)
    check_model(args.model, args.weights)
    check_image_side("--resolution", args.resolution)
    check_range("--grad-accum", args.grad_accum, 1, 1024)
    check_range("--rank", args.rank, 1, 256)
    check_range("--sample-steps", args.sample_steps, 1, 1000)
    if args.optim not in ("adamw", "adamw8bit"):
        raise JobError(f"unknown --optim {args.optim!r}; choose adamw or adamw8bit", exit_code=3)


def require_optimizer_package(optim: str) -> None:
    """bitsandbytes for --optim adamw8bit, checked in the job's own interpreter."""
    if optim == "adamw8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise JobError("--optim adamw8bit needs bitsandbytes, which this Python lacks: pip install bitsandbytes "
                       "(CUDA only), or use --optim adamw", exit_code=3)


@dataclass
class SdLoraTrainer:
    """A loaded pipeline with a trainable LoRA on its UNet, and one optimizer step at a time."""

    loaded: LoadedPipeline
    device: str
    dtype: Any
    resolution: int
    dist: DistEnv
    generator: Any
    unet: Any = None  # the UNet as trained (DDP-wrapped when distributed)
    params: list[Any] = field(default_factory=list)
    optimizer: Any = None
    scaler: Any = None
    noise_scheduler: Any = None
    images_seen: int = 0

    @property
    def pipe(self) -> Any:
        return self.loaded.pipe

    @property
    def family(self) -> str:
        return self.loaded.family

    # -- set-up ---------------------------------------------------------------------------

    def add_lora(self, rank: int, lr: float, optim: str, grad_checkpointing: bool) -> None:
        import torch
        from diffusers import DDPMScheduler
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        pipe = self.pipe
        for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
            if module is not None:
                module.requires_grad_(False)
        pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                         target_modules=LORA_TARGETS))
        cast_training_params(pipe.unet, dtype=torch.float32)  # fp32 master weights for the LoRA params
        if grad_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        pipe.unet.train()
        self.params = [p for p in pipe.unet.parameters() if p.requires_grad]
        self.unet = wrap_ddp(pipe.unet, self.dist)
        self.optimizer = _optimizer(optim, self.params, lr)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        self.scaler = torch.amp.GradScaler(device_type, enabled=self.dtype == torch.float16)
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    # -- one step -------------------------------------------------------------------------

    def per_sample_loss(self, pixels: Any, captions: list[str]) -> Any:
        """Diffusion loss of each sample (shape [batch]) in fp32, under autocast."""
        import torch
        import torch.nn.functional as F

        pipe, device = self.pipe, self.device
        device_type = "cuda" if device.startswith("cuda") else "cpu"
        with torch.no_grad():
            vae_dtype = next(pipe.vae.parameters()).dtype
            latents = pipe.vae.encode(pixels.to(device, vae_dtype)).latent_dist.sample(generator=None)
            latents = (latents * pipe.vae.config.scaling_factor).to(self.dtype)
            conditioning = self._encode_text(captions)
        noise = torch.randn(latents.shape, generator=self.generator).to(device, latents.dtype)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=self.generator).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with torch.autocast(device_type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            prediction = self.unet(noisy, timesteps, return_dict=False, **conditioning)[0]
        loss = F.mse_loss(prediction.float(), target.float(), reduction="none")
        return loss.mean(dim=list(range(1, loss.ndim)))

    def _encode_text(self, captions: list[str]) -> dict[str, Any]:
        pipe = self.pipe
        if self.family == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(captions, device=self.device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
            size = (self.resolution, self.resolution)
            time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=embeds.dtype,
                                              text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
            time_ids = time_ids.to(self.device).repeat(len(captions), 1)
            return {"encoder_hidden_states": embeds,
                    "added_cond_kwargs": {"text_embeds": pooled.to(embeds.dtype), "time_ids": time_ids}}
        embeds, _ = pipe.encode_prompt(captions, self.device, 1, False)
        return {"encoder_hidden_states": embeds}

    def backward(self, loss: Any) -> None:
        self.scaler.scale(loss).backward()

    def optimizer_step(self) -> float:
        """Unscale, clip, step (skipped by the scaler on inf grads); returns the grad norm."""
        import torch

        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    # -- results --------------------------------------------------------------------------

    def save_lora(self, out_dir: Path) -> Path:
        """pytorch_lora_weights.safetensors in diffusers' format (loadable with load_lora_weights)."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.pipe.unet))
        type(self.pipe).save_lora_weights(save_directory=str(out_dir), unet_lora_layers=state, safe_serialization=True)
        return out_dir / LORA_FILE

    def sample_with_saved_lora(self, lora_dir: Path, prompt: str, steps: int, seed: int) -> Any:
        """Drop the in-training adapter, load the saved file back (the round trip), generate one image."""
        import torch
        from diffusers.utils import logging as diffusers_logging

        pipe = self.pipe
        pipe.unet.eval()
        pipe.unet.delete_adapters("default")
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # "no LoRA keys for the text encoder": expected, UNet-only LoRA
        try:
            pipe.load_lora_weights(str(lora_dir), adapter_name="trained")
        finally:
            diffusers_logging.set_verbosity(verbosity)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            image = pipe(prompt, num_inference_steps=steps, height=self.resolution, width=self.resolution,
                         generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        return image


def _optimizer(name: str, params: list[Any], lr: float) -> Any:
    import torch

    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)


def make_trainer(args: argparse.Namespace, dist: DistEnv) -> SdLoraTrainer:
    """Load the pipeline on the training device (VAE in fp32 where the model asks for it)."""
    import torch

    require_optimizer_package(args.optim)
    dtype = resolve_dtype(args.dtype, dist.device)
    seed_everything(args.seed + dist.rank)
    loaded = load_pipeline(args.model, args.weights, dtype, dist.device)
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    pipe.to(dist.device)
    if getattr(pipe.vae.config, "force_upcast", False) and dtype != torch.float32:
        keep_vae_fp32(pipe.vae, dtype)  # the model says its VAE overflows in fp16 (SDXL)
    resolution = args.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(args.seed + 1000 * dist.rank)
    return SdLoraTrainer(loaded, dist.device, dtype, resolution, dist, generator)


def sample_batches(samples: list[Any], batch: int, dist: DistEnv, seed: int) -> Any:
    """Endless (pixels [-1, 1], captions) batches over this rank's shard of `samples` (ShapeSample)."""
    from .sd_data import to_tensor_batch
    from .training import batch_indices

    for indices in batch_indices(len(samples), batch, dist, seed=seed):
        chosen = [samples[i] for i in indices]
        yield to_tensor_batch([s.image for s in chosen]), [s.caption for s in chosen]


def run_steps(trainer: SdLoraTrainer, monitor: TrainMonitor, args: argparse.Namespace, batches: Any,
              ctx: JobContext, loss_fn: Any = None) -> None:
    """The optimizer loop: grad-accum micro-batches, divergence guard, progress, SIGTERM.

    `batches` yields (pixels, captions); `loss_fn(trainer, pixels, captions)` -> scalar loss
    (default: the mean diffusion loss).
    """
    loss_fn = loss_fn or (lambda tr, pixels, captions: tr.per_sample_loss(pixels, captions).mean())
    for step in range(1, args.steps + 1):
        total = None
        images = 0
        for _ in range(args.grad_accum):
            pixels, captions = next(batches)
            loss = loss_fn(trainer, pixels, captions)
            trainer.backward(loss / args.grad_accum)
            total = loss.detach() if total is None else total + loss.detach()
            images += len(captions)
        trainer.images_seen += images * trainer.dist.world_size
        monitor.check_loss(step, total / args.grad_accum)
        grad_norm = trainer.optimizer_step()
        monitor.report(step, lr=args.lr, grad_norm=grad_norm, samples=images)
        if monitor.should_stop():
            ctx.log(f"stop requested: saving what exists after step {step}")
            break


def finish_training(trainer: SdLoraTrainer, monitor: TrainMonitor, ctx: JobContext, args: argparse.Namespace,
                    sample_prompt: str) -> dict[str, Any]:
    """Rank 0 saves the LoRA (artifact "adapter"), reloads it and saves a sample image; returns metrics."""
    metrics = monitor.finish()
    steps_per_s = metrics.get("steps_per_s")
    images_per_step = trainer.images_seen / max(metrics["steps"], 1)
    metrics.update(images_per_s=steps_per_s * images_per_step if steps_per_s else None, resolution=trainer.resolution,
                   family=trainer.family, model_source=trainer.loaded.source, rank=args.rank, optim=args.optim,
                   trainable_params=sum(p.numel() for p in trainer.params), dtype=dtype_name(trainer.dtype))
    if not ctx.is_main:
        return metrics
    out_dir = ctx.artifacts_dir / "lora"
    weights = trainer.save_lora(out_dir)
    ctx.artifact(weights, "adapter")
    ctx.log(f"saved LoRA weights: {weights}")
    if ctx.stop_requested:
        return metrics  # stopped: keep what exists, skip the sample
    image = trainer.sample_with_saved_lora(out_dir, sample_prompt, args.sample_steps, args.seed)
    sample = ctx.artifacts_dir / "sample.png"
    image.save(sample)
    ctx.artifact(sample, "image")
    ctx.log(f"sample image with the LoRA applied: {sample}")
    return metrics
