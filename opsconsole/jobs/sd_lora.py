"""sd-lora: a few LoRA training steps on the SD UNet with a procedural image-caption set.

Proves the box can train Stable Diffusion: loss, lr, steps/s, images/s and peak VRAM
per step; the LoRA weights saved (safetensors), loaded back, and one sample image
generated with them. A NaN/inf loss stops the run `failed` (divergence guard).
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import JobContext, add_common_job_options, check_range
from .sd_data import shape_dataset
from .sd_training import LR_HELP, add_sd_trainer_options, finish_training, make_trainer, run_steps, sample_batches, \
    validate_sd_trainer_options
from .tiny_sd import prebuild_tiny
from .training import TrainMonitor, add_trainer_options, setup_distributed, teardown_distributed

SAMPLE_PROMPT = "a red circle on a white background"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sd-lora", description=__doc__)
    add_common_job_options(parser)
    add_trainer_options(parser, steps=30, lr=None, batch=4, lr_help=LR_HELP)
    add_sd_trainer_options(parser)
    parser.add_argument("--num-images", type=int, default=32, help="size of the procedural training set")
    return parser


def validate(args: argparse.Namespace) -> None:
    validate_sd_trainer_options(args)
    check_range("--num-images", args.num_images, 1, 10_000)


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    validate(args)
    prebuild_tiny(args.model, args.weights)
    dist = setup_distributed(args.device)
    try:
        trainer = make_trainer(args, dist)
        trainer.add_lora(args.rank, args.lr, args.optim, args.grad_checkpointing)
        samples = shape_dataset(args.num_images, trainer.resolution, seed=args.seed)
        ctx.log(f"sd-lora: {trainer.family} ({trainer.loaded.source}) {trainer.resolution}px on {trainer.device}, "
                f"{len(samples)} images, LoRA rank {args.rank} on {sum(p.numel() for p in trainer.params)} params")
        monitor = TrainMonitor(ctx, args, total_steps=args.steps, device=trainer.device, dtype=trainer.dtype, dist=dist)
        run_steps(trainer, monitor, args, sample_batches(samples, args.batch, dist, args.seed), ctx)
        return finish_training(trainer, monitor, ctx, args, SAMPLE_PROMPT)
    finally:
        teardown_distributed(dist)
