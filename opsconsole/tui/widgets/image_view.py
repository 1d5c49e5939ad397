"""A generated image in the terminal: kitty/sixel through textual-image when it was set up
before the app started, otherwise half-block cells (two pixels per cell, any terminal)."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.containers import Container
from textual.widgets import Static
from ...markup import escape_markup


class HalfBlockImage:
    """Rich renderable: the image scaled to fit `width`×`height` cells, using '▀' (fg top, bg bottom)."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path, self.width, self.height = path, max(1, width), max(1, height)

    def __rich_console__(self, console, options):
        from PIL import Image

        with Image.open(self.path) as img:
            img = img.convert("RGB")
            ratio = min(self.width / img.width, (self.height * 2) / img.height)
            size = (max(1, int(img.width * ratio)), max(2, int(img.height * ratio) // 2 * 2))
            img = img.resize(size)
            pixels = img.load()
            for y in range(0, size[1], 2):
                for x in range(size[0]):
                    top = pixels[x, y]
                    bottom = pixels[x, y + 1] if y + 1 < size[1] else top
                    yield Segment("▀", Style(color=f"rgb{top}", bgcolor=f"rgb{bottom}"))
                yield Segment.line()


def graphics_image_class():
    """textual-image's best widget, only if it was imported before Textual took the terminal."""
    module = sys.modules.get("textual_image.widget")
    return getattr(module, "Image", None) if module else None


class ImageView(Container):
    DEFAULT_CSS = "ImageView { height: 1fr; } ImageView > * { width: auto; height: 1fr; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path: Path | None = None

    def compose(self):
        yield Static(Text("no image yet", style="dim"), id="image-placeholder")

    def show(self, path: Path) -> None:
        if path == self.path or not path.is_file():
            return
        self.path = path
        self.remove_children()
        graphics = graphics_image_class()
        if graphics is not None:
            self.mount(graphics(str(path)))
        else:
            size = self.content_size
            self.mount(Static(HalfBlockImage(path, size.width or 40, (size.height or 20) - 1)))
        self.border_title = escape_markup(path.name)
