"""Where things live: bundled data (kb/, playbooks/, scenarios) and XDG user dirs."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def bundled_dir(name: str) -> Path:
    """Return the bundled data dir `name` ("kb" or "playbooks").

    Installed wheels carry it as opsconsole/_data/<name>; a checkout (or an
    editable install) has it at the top of the repository.
    """
    installed = PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return REPO_DIR / name


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "opsconsole"


def state_dir() -> Path:
    """Runs, the run registry and other durable state. Created 0700 by its users."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "opsconsole"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path
