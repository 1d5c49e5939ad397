"""Errors a user can cause. They carry the exit code and a message fit to print."""

from __future__ import annotations

EXIT_OK = 0
EXIT_WARN = 1
EXIT_CRITICAL = 2
EXIT_USAGE = 3


class OpsconsoleError(Exception):
    """Base for errors shown to the user as one clear line (never a traceback)."""

    exit_code = EXIT_USAGE


class UsageError(OpsconsoleError):
    """Bad flag, bad path, bad file: the user can fix it. Exit code 3."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config, KB or playbook file that cannot be used; message names file:line."""

    def __init__(self, path: str, line: int | None, what: str, fix: str = "") -> None:
        self.path, self.line, self.what, self.fix = str(path), line, what, fix
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {what}" + (f" — {fix}" if fix else ""))
