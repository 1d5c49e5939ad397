"""Broken files a user dir may hold: what the KB and playbook loaders must skip, not crash on."""

from __future__ import annotations

from pathlib import Path

KINDS = ("dangling symlink", "directory", "symlink loop")


def make_broken(path: Path, kind: str) -> Path:
    """Create `path` as one of KINDS (a dangling symlink points at a missing sibling)."""
    if kind == "dangling symlink":
        path.symlink_to(path.with_name("gone-" + path.name))
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink loop":
        path.symlink_to(path)
    else:
        raise ValueError(kind)
    return path
