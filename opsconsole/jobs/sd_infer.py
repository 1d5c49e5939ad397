"""sd-infer: Stable Diffusion 1.5 / SDXL txt2img, img2img and inpainting smoke run.

Reports UNet steps/s (timed between step callbacks, with a device synchronize),
seconds per image, peak VRAM, attention backend and dtypes; saves PNGs as
artifacts; black or NaN images become a finding linked to the KB.
--compile wraps the UNet in torch.compile (the diffusers recipe); the untimed warm-up
then runs at the timed shapes, so compilation stays out of the figures.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from .common import (JobContext, JobError, Timer, add_common_job_options, check_image_side, check_range, dtype_name,
                     peak_memory, reset_peak_memory, resolve_device, resolve_dtype, seed_everything, synchronize,
                     vram_text)
from .sd_images import BLACK_KB, check_image_file, image_health
from .sd_pipeline import (ATTN_CHOICES, SCHEDULERS, check_attn_name, check_scheduler_name, keep_vae_fp32,
                          require_packages, set_attention, set_scheduler)

from .tiny_sd import check_model

DEFAULT_PROMPT = "a red circle on a white background"
# Compiled warm-up: CUDA-graph trees run a step eagerly, record on the next, replay from then on.
COMPILE_WARMUP_STEPS = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sd-infer", description=__doc__)
    add_common_job_options(parser)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--scheduler", default=None, help=f"{' | '.join(SCHEDULERS)} (default: the model's own)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument("--width", type=int, default=None, help="multiple of 8 (default: the model's native size)")
    parser.add_argument("--height", type=int, default=None, help="multiple of 8 (default: the model's native size)")
    parser.add_argument("--batch", type=int, default=1, help="images per prompt")
    parser.add_argument("--init-image", default=None, help="PNG/JPEG/WebP: img2img (or inpainting with --mask)")
    parser.add_argument("--strength", type=float, default=0.75, help="img2img / inpaint: how much to change the image")
    parser.add_argument("--mask", default=None, help="PNG/JPEG/WebP mask (white = repaint) for inpainting")
    parser.add_argument("--attn", default="sdpa", help=" | ".join(ATTN_CHOICES))
    parser.add_argument("--vae-fp32", action="store_true", help="keep the VAE in fp32 (fixes black/NaN fp16 images)")
    parser.add_argument("--cpu-offload", action="store_true", help="model CPU offload (accelerate); needs CUDA")
    parser.add_argument("--attention-slicing", action="store_true", help="sliced attention (less VRAM, slower)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of an untimed warm-up generation (0: none)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet (CUDA: mode reduce-overhead, fullgraph); compiled in the "
                             f"warm-up, at least {COMPILE_WARMUP_STEPS} steps")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Cheap checks of the flags (no torch): bad input exits 3 before anything loads."""
    check_model(args.model, args.weights)
    check_scheduler_name(args.scheduler)
    check_attn_name(args.attn)
    check_image_side("--width", args.width)
    check_image_side("--height", args.height)
    check_range("--steps", args.steps, 1, 1000)
    check_range("--batch", args.batch, 1, 64, " images per prompt")
    # finite and not negative; huge values stay allowed: 1e8 provokes a real fp16 overflow (the GPU check uses it)
    check_range("--guidance", args.guidance, 0, 1e9)
    check_range("--warmup-steps", args.warmup_steps, 0, 1000)
    if not 0.0 < args.strength <= 1.0:
        raise JobError(f"--strength {args.strength}: must be in (0, 1]", exit_code=3)
    if args.init_image and int(args.steps * args.strength) < 1:
        raise JobError(f"--steps {args.steps} x --strength {args.strength} leaves no denoising step; "
                       f"raise --steps or --strength", exit_code=3)
    if args.mask and not args.init_image:
        raise JobError("--mask needs --init-image (the image to inpaint)", exit_code=3)
    if args.init_image:
        check_image_file(args.init_image, "--init-image")
    if args.mask:
        check_image_file(args.mask, "--mask")
    if args.compile and args.cpu_offload:
        raise JobError("--compile and --cpu-offload do not mix (offload moves the UNet's weights every call, "
                       "which a compiled graph cannot follow): drop one of them", exit_code=3)


def _mode(args: argparse.Namespace) -> str:
    return "inpaint" if args.mask else "img2img" if args.init_image else "txt2img"


def _task_pipeline(pipe: Any, mode: str) -> Any:
    """The img2img / inpainting variant of a loaded pipeline, sharing its weights."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    if mode == "img2img":
        return AutoPipelineForImage2Image.from_pipe(pipe)
    if mode == "inpaint":
        # A real inpainting checkpoint has a 9-channel UNet (latents + mask + masked image);
        # a plain 4-channel UNet (tiny, random, txt2img checkpoints) works too: diffusers
        # then blends the known region back into the latents at every step.
        return AutoPipelineForInpainting.from_pipe(pipe)
    return pipe


def _load_image(path: str, size: tuple[int, int], mode: str = "RGB") -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert(mode).resize(size)


class StepClock:
    """step-end callback: synchronizes and records the time of each denoising step."""

    def __init__(self, device: str, ctx: JobContext | None, total: int) -> None:
        self.device, self.ctx, self.total = device, ctx, total
        self.times: list[float] = []

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        synchronize(self.device)
        self.times.append(time.perf_counter())
        if self.ctx is not None:
            self.ctx.progress(step + 1, self.total, unit="step")
            if self.ctx.stop_requested:
                pipe._interrupt = True  # diffusers checks this flag between steps
        return callback_kwargs

    def steps_per_s(self, started: float) -> float:
        """UNet steps/s between the first and last step end (excludes text encoding and VAE decode)."""
        if len(self.times) >= 2:
            return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)
        if self.times:
            return 1.0 / max(self.times[0] - started, 1e-9)
        return 0.0


def _call_kwargs(args: argparse.Namespace, mode: str, size: tuple[int, int], steps: int, batch: int) -> dict[str, Any]:
    import torch

    kwargs: dict[str, Any] = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=steps,
                                  guidance_scale=args.guidance, num_images_per_prompt=batch, output_type="np",
                                  width=size[0], height=size[1],
                                  generator=torch.Generator("cpu").manual_seed(args.seed))
    if mode != "txt2img":
        kwargs["image"] = _load_image(args.init_image, size)
        kwargs["strength"] = args.strength
    if mode == "inpaint":
        kwargs["mask_image"] = _load_image(args.mask, size, "L")
    return kwargs


def compile_unet(pipe: Any, device: str, ctx: JobContext) -> str:
    """The diffusers torch.compile recipe for the UNet; returns the mode used.

    CUDA: mode "reduce-overhead" (CUDA graphs) with fullgraph=True. CPU has no CUDA
    graphs: default mode, and Inductor's C++ build makes the first call take minutes.
    """
    import torch

    mode = "reduce-overhead" if device.startswith("cuda") else "default"
    if not device.startswith("cuda"):
        ctx.log("sd-infer: warning: --compile on CPU: the warm-up compiles the UNet with Inductor's C++ backend "
                "and can take several minutes; the timings exclude it")
    pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=True)
    return mode


def _save_images(images: Any, ctx: JobContext) -> None:
    import numpy as np
    from PIL import Image

    for index, image in enumerate(images):
        pixels = (np.nan_to_num(image, nan=0.0).clip(0, 1) * 255).round().astype("uint8")
        path = ctx.artifacts_dir / f"image-{index:02d}.png"
        Image.fromarray(pixels).save(path)
        ctx.artifact(path, "image")


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    validate(args)
    require_packages(args.scheduler, args.attn)
    from .tiny_sd import load_pipeline

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.cpu_offload and not device.startswith("cuda"):
        raise JobError("--cpu-offload moves models between CPU and GPU: it needs a CUDA device", exit_code=3)
    seed_everything(args.seed)
    mode = _mode(args)

    with Timer(device) as load_timer:
        loaded = load_pipeline(args.model, args.weights, dtype, "cpu" if args.cpu_offload else device)
        in_channels = loaded.pipe.unet.config.in_channels
        if in_channels == 9 and mode != "inpaint":
            raise JobError(f"--model {args.model} is an inpainting checkpoint (9-channel UNet): give --init-image "
                           f"and --mask, or use a txt2img model", exit_code=3)
        pipe = _task_pipeline(loaded.pipe, mode)
        scheduler = set_scheduler(pipe, args.scheduler)
        if args.vae_fp32:
            keep_vae_fp32(pipe.vae, dtype)
        attn_processor = set_attention(pipe, args.attn, args.attention_slicing)
        if args.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    compile_mode = compile_unet(pipe, device, ctx) if args.compile else None
    scale = pipe.vae_scale_factor
    size = (args.width or pipe.unet.config.sample_size * scale, args.height or pipe.unet.config.sample_size * scale)
    vae_dtype = dtype_name(next(pipe.vae.parameters()).dtype)
    ctx.log(f"sd-infer: {mode} {loaded.family} ({loaded.source}) {size[0]}x{size[1]} on {device} {dtype_name(dtype)}, "
            f"scheduler {scheduler}, attention {attn_processor}, vae {vae_dtype}, "
            f"compile {compile_mode or 'off'}, "
            f"safety checker {'on' if getattr(pipe, 'safety_checker', None) is not None else 'off'}")

    warmup_s = 0.0
    warmup_steps = max(args.warmup_steps, COMPILE_WARMUP_STEPS) if args.compile else args.warmup_steps
    if warmup_steps > 0:
        with Timer(device) as warm:
            # img2img runs only steps x strength of them: ask for enough to run at least one.
            warm_steps = warmup_steps if mode == "txt2img" else math.ceil(warmup_steps / args.strength)
            # A compiled UNet is specialised to its input shapes: warm up at the timed batch.
            pipe(**_call_kwargs(args, mode, size, warm_steps, args.batch if args.compile else 1))
        warmup_s = warm.seconds
        if args.compile:
            ctx.log(f"sd-infer: compile warm-up ({warm_steps} steps, batch {args.batch}): {warmup_s:.1f}s")

    reset_peak_memory(device)
    clock = StepClock(device, ctx, args.steps)
    synchronize(device)
    started = time.perf_counter()
    output = pipe(**_call_kwargs(args, mode, size, args.steps, args.batch), callback_on_step_end=clock)
    synchronize(device)
    total_s = time.perf_counter() - started
    images = output.images

    health = image_health(images)
    metrics: dict[str, Any] = {
        "mode": mode, "family": loaded.family, "model_source": loaded.source, "scheduler": scheduler,
        "steps": len(clock.times), "images": len(images), "width": size[0], "height": size[1],
        "it_per_s": round(clock.steps_per_s(started), 4), "s_per_image": round(total_s / max(len(images), 1), 4),
        "total_s": round(total_s, 4), "load_s": round(load_timer.seconds, 3), "warmup_s": round(warmup_s, 3),
        "attn": args.attn, "attn_processor": attn_processor, "attention_slicing": args.attention_slicing,
        "cpu_offload": args.cpu_offload, "compile": args.compile, "compile_mode": compile_mode,
        "dtype": dtype_name(dtype), "vae_dtype": vae_dtype, "device": device,
        "unet_in_channels": pipe.unet.config.in_channels, "nan_images": health.nan, "black_images": health.black,
        **peak_memory(device),
    }
    _save_images(images, ctx)
    for name in ("it_per_s", "s_per_image", "peak_vram_bytes"):
        ctx.metric(name, metrics[name])
    ctx.log(f"sd-infer: {metrics['it_per_s']} it/s, {metrics['s_per_image']} s/image, "
            f"{vram_text(device, metrics['peak_vram_bytes'])}, {len(images)} image(s) saved")

    _report_health(health, output, ctx, metrics)
    return metrics


def _report_health(health: Any, output: Any, ctx: JobContext, metrics: dict[str, Any]) -> None:
    nsfw = getattr(output, "nsfw_content_detected", None)
    if health.black and nsfw and any(nsfw):
        ctx.finding("warning", f"{sum(bool(x) for x in nsfw)} image(s) blacked out by the model's safety checker")
        return
    message = health.finding()
    if message is None:
        return
    ctx.finding("error" if health.all_nan else "warning", message, kb=BLACK_KB)
    ctx.log(f"sd-infer: {message}")
    if health.all_nan:
        error = JobError(f"every generated image is NaN ({metrics['dtype']}, vae {metrics['vae_dtype']}): "
                         f"retry with --vae-fp32", kb=BLACK_KB)
        error.metrics = metrics  # type: ignore[attr-defined]
        raise error
