"""Helpers of the SD job tests: one tiny-pipeline cache per test session, input images."""

from __future__ import annotations

from pathlib import Path

import pytest


def shared_sd_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_CACHE_HOME for the children, shared by the whole session: the tiny SD 1.5 / SDXL
    pipelines are built (save_pretrained) by the first run and loaded by every later one."""
    path = tmp_path_factory.getbasetemp() / "sd-tiny-cache"
    path.mkdir(exist_ok=True)
    return path


def write_shape_png(path: Path, size: int = 64) -> Path:
    """A real PNG input image: one of the procedural training shapes."""
    from opsconsole.jobs.sd_data import shape_dataset

    shape_dataset(1, size, seed=3)[0].image.save(path)
    return path


def write_mask_png(path: Path, size: int = 64) -> Path:
    """White square in the middle (the part to repaint) on black."""
    from PIL import Image

    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    mask.save(path)
    return path


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size
