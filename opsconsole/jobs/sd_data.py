"""A procedural image-caption set for the SD trainers: coloured shapes with captions.

Drawn with PIL on the fly, so nothing is downloaded and nothing large ships in
the package. The same seed gives the same images and captions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("white", "black", "blue", "yellow")

# DreamBooth: the subject is one fixed object, named with a rare token.
INSTANCE_TOKEN = "sks"
INSTANCE_PROMPT = f"a photo of {INSTANCE_TOKEN} shape"
CLASS_PROMPT = "a photo of a shape"


@dataclass(frozen=True)
class ShapeSample:
    """One drawn image and the caption that describes it."""

    image: Any  # PIL.Image.Image (RGB)
    caption: str


def draw_shape(shape: str, colour: str, background: str, size: int, rng: random.Random) -> Any:
    """An RGB image of one filled shape at a slightly random place and scale."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), COLOURS[background])
    draw = ImageDraw.Draw(image)
    extent = rng.uniform(0.45, 0.7) * size
    cx = rng.uniform(extent / 2, size - extent / 2)
    cy = rng.uniform(extent / 2, size - extent / 2)
    box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image


def caption_for(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def shape_dataset(count: int, size: int, seed: int = 0) -> list[ShapeSample]:
    """`count` captioned images of coloured shapes (colour never equals the background)."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        background = rng.choice(BACKGROUNDS)
        colour = rng.choice([c for c in COLOURS if c != background])
        shape = rng.choice(SHAPES)
        image = draw_shape(shape, colour, background, size, rng)
        samples.append(ShapeSample(image, caption_for(shape, colour, background)))
    return samples


def instance_dataset(count: int, size: int, seed: int = 0) -> list[ShapeSample]:
    """DreamBooth instance images: always the same subject (an orange triangle), captioned with the rare token."""
    rng = random.Random(seed)
    return [ShapeSample(draw_shape("triangle", "orange", rng.choice(("white", "blue")), size, rng), INSTANCE_PROMPT)
            for _ in range(count)]


def vocabulary_text() -> list[str]:
    """Every word the captions and prompts use (the tiny tokenizer learns its merges from these)."""
    words = {"a", "an", "of", "on", "photo", "shape", "background", INSTANCE_TOKEN}
    words.update(COLOURS, SHAPES, BACKGROUNDS)
    return sorted(words)


def to_tensor_batch(images: list[Any]) -> Any:
    """PIL images -> float tensor (N, 3, H, W) in [-1, 1], the range the SD VAE expects."""
    import numpy as np
    import torch

    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
