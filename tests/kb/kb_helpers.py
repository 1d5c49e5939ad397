"""Helpers for KB tests: write entry files into a temporary KB directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_ENTRY = """\
---
id: {id}
title: "Widget overheated"
category: gpu_hardware_xid
area: hardware
patterns:
  - {{regex: 'widget temperature critical', weight: 9}}
  - {{regex: 'fan speed \\d+ rpm', weight: 2}}
excludes: []
telemetry: [thermal_throttle]
playbook: gpu-health
links: [https://example.org/widget]
---
## What it means

The widget is hot.

## Fix

Cool it: `widgetctl cool`.
"""


def write_entry(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path
