"""`opsconsole models [--json]`: what can be run without a network.

Models in the local Hugging Face cache (honouring HF_HOME / HF_HUB_CACHE) and in
the config's `model_dirs`, with size, architecture and the kinds that can use each.
`--model tiny` needs nothing and is always listed first.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import Settings
from .common import out, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("models", parents=[common], help="models available offline (HF cache + model_dirs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from ..jobs.model_source import hub_cache_dir, is_offline, scan_hub_cache, scan_model_dirs

    cache = hub_cache_dir()
    models = scan_hub_cache(cache) + scan_model_dirs(settings.model_dirs)
    tiny = {"name": "tiny", "path": None, "source": "built-in", "size_bytes": 0, "architecture": "random tiny model",
            "kinds": ["gemma-infer", "sd-infer", "gemma-lora", "sd-lora", "sd-dreambooth"], "revisions": []}
    if args.json:
        print_json({"hub_cache": str(cache), "offline": is_offline(), "model_dirs": list(settings.model_dirs),
                    "models": [tiny] + [m.to_dict() for m in models]})
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("MODEL", "SOURCE", "SIZE", "ARCHITECTURE", "KINDS", "PATH"):
        table.add_column(column, no_wrap=column != "PATH", overflow="fold")
    table.add_row("tiny", "built-in", "-", "random tiny model", "all (--model tiny)", "-")
    for m in models:
        table.add_row(m.name, m.source, _size(m.size_bytes), m.architecture or "?",
                      ", ".join(m.kinds) or "-", str(m.path))
    console = out()
    if not console.is_terminal:
        from rich.console import Console

        console = Console(file=sys.stdout, width=200, highlight=False, emoji=False)
    console.print(table)
    if not models:
        console.print(f"no models in the Hugging Face cache ({cache})"
                      + (f" or in model_dirs ({', '.join(settings.model_dirs)})" if settings.model_dirs else
                         "; add local model directories with model_dirs = [...] in the config"), markup=False)
    return 0
