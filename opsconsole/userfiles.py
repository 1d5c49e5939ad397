"""Reading KB entries and playbooks from directories a user (or another user) controls.

Two guards, shared by both loaders so neither can forget one:
- `read_user_text`: a regular file, at most MAX_USER_FILE_BYTES; a dangling symlink, a
  directory or a symlink loop named `*.md`/`*.yaml` raises OSError with one clear line
  (the loaders skip that file with a warning instead of ending in a traceback).
- `first_alias_line`: YAML anchors and aliases (`&a` / `*a`) are refused before any
  conversion. A ~400-byte "billion laughs" file expands to gigabytes when converted;
  composed nodes are shared, not copied, so finding the first repeat costs one walk.
"""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

MAX_USER_FILE_BYTES = 1 << 20  # the largest bundled file is ~20 kB


def read_user_text(path: Path, limit: int = MAX_USER_FILE_BYTES) -> str:
    """The file's text (UTF-8, undecodable bytes replaced). OSError with a plain reason for
    anything that is not a readable regular file of at most `limit` bytes."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise OSError(f"cannot read it: {'a dangling symlink' if path.is_symlink() else 'it is gone'}") from None
    except OSError as exc:
        raise OSError(f"cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise OSError("not a regular file (a directory or a device is skipped)")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"larger than {limit >> 10} KiB: not a KB entry or playbook")
    return data.decode("utf-8", errors="replace")


def first_alias_line(node: yaml.Node | None) -> int | None:
    """1-based line of the first node reached twice (an anchor used by an alias), or None."""
    seen: set[int] = set()
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            return current.start_mark.line + 1
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += (key, value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return None


ALIAS_REFUSED = "YAML anchors and aliases (&name / *name) are not allowed"
