"""Image checks shared by the SD jobs: input files that must be real images, outputs that must not be black.

Cheap on purpose (no torch): validate() runs in the console before a launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import JobError

BLACK_KB = "sd-black-images-vae-fp16"
# An image whose brightest pixel is below this (0..1 scale, about 5/255) is "black".
BLACK_MAX_VALUE = 0.02


def sniff_image_format(head: bytes) -> str | None:
    """'png' | 'jpeg' | 'webp' from a file's first bytes, None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_image_file(path: str, flag: str) -> Path:
    """The path of a readable PNG/JPEG/WebP file, or JobError(exit 3) saying what is wrong."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise JobError(f"{flag} {path}: no such file", exit_code=3)
    try:
        with open(file, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise JobError(f"{flag} {path}: cannot read it ({exc.strerror})", exit_code=3) from exc
    if sniff_image_format(head) is None:
        raise JobError(f"{flag} {path}: not an image (expected a PNG, JPEG or WebP file)", exit_code=3)
    return file


@dataclass(frozen=True)
class ImageHealth:
    """How many generated images are all-NaN, partly NaN, or black."""

    total: int
    nan: int
    black: int

    @property
    def all_nan(self) -> bool:
        return self.total > 0 and self.nan == self.total

    def finding(self) -> str | None:
        """A one-line explanation for the user, or None when every image is fine."""
        if not self.nan and not self.black:
            return None
        parts = []
        if self.nan:
            parts.append(f"{self.nan} of {self.total} image(s) contain NaN")
        if self.black:
            parts.append(f"{self.black} of {self.total} image(s) are black")
        return ("; ".join(parts) + ": usually the VAE overflowing in fp16; retry with --vae-fp32 "
                "(or --dtype bf16 / fp32)")


def image_health(images: Any) -> ImageHealth:
    """Inspect a float array (N, H, W, C) in 0..1 as returned by a pipeline with output_type='np'."""
    import numpy as np

    nan = black = 0
    for image in images:
        finite = np.isfinite(image)
        if not finite.all():
            nan += 1
        elif float(image.max()) < BLACK_MAX_VALUE:
            black += 1
    return ImageHealth(total=len(images), nan=nan, black=black)
