"""Settings: defaults < $XDG_CONFIG_HOME/opsconsole/config.toml < OPSCONSOLE_* env < flags.

Documented keys (README "Configuration"):

    python = "/opt/venvs/ml/bin/python"   # interpreter for the CUDA probe and runs
    refresh = 1.0                         # telemetry refresh interval, seconds
    readonly = false                      # forbid kill / stop / launch
    trusted_playbook_dirs = ["~/my-playbooks"]  # may contain `command` steps
    extra_kb_dirs = ["~/my-kb"]           # more KB entries, same format as kb/
    model_dirs = ["/data/models"]         # local model dirs listed by `opsconsole models`
    nvml_timeout = 2.0                    # seconds before NVML is "not responding"

    [presets.quick-gemma]                 # run presets shown in the TUI launch form
    kind = "gemma-infer"
    args = ["--model", "tiny", "--max-new-tokens", "16"]
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError
from .paths import config_dir

DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    "quick Gemma check": {"kind": "gemma-infer", "args": ["--model", "tiny", "--max-new-tokens", "16"]},
    "SD 512 check": {"kind": "sd-infer", "args": ["--model", "tiny", "--width", "512", "--height", "512", "--steps", "4"]},
    "LoRA 20 steps": {"kind": "gemma-lora", "args": ["--model", "tiny", "--steps", "20"]},
}


@dataclass(frozen=True)
class Settings:
    python: str = sys.executable
    refresh: float = 1.0
    readonly: bool = False
    trusted_playbook_dirs: tuple[str, ...] = ()
    extra_kb_dirs: tuple[str, ...] = ()
    model_dirs: tuple[str, ...] = ()
    nvml_timeout: float = 2.0
    presets: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    source: str = "defaults"

    def with_overrides(self, **values: Any) -> "Settings":
        """Return a copy with the non-None values applied (used for CLI flags)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


_TYPES = {f.name: f.type for f in fields(Settings)}

# Settings in seconds: (lowest, highest). Below the lowest the TUI spins a core (1e-9 took
# 95 % CPU); nan and inf are refused too (nan crashed the TUI and busy-looped `status --watch`).
SECONDS_RANGES = {"refresh": (0.1, 3600.0), "nvml_timeout": (0.1, 120.0)}
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def seconds_setting(key: str, value: Any) -> float:
    """`value` as seconds within SECONDS_RANGES[key]; ValueError saying the range otherwise."""
    lowest, highest = SECONDS_RANGES[key]
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not lowest <= number <= highest:
        raise ValueError(f"must be a number of seconds from {lowest:g} to {highest:g}, got {value!r}")
    return number
_LIST_KEYS = {"trusted_playbook_dirs", "extra_kb_dirs", "model_dirs"}


def config_path() -> Path:
    return Path(os.environ.get("OPSCONSOLE_CONFIG") or config_dir() / "config.toml")


def _line_of_key(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith((f"{key} ", f"{key}=", f"[{key}")):
            return number
    return None


def _coerce(path: Path, text: str, key: str, value: Any) -> Any:
    line = _line_of_key(text, key)
    if key in _LIST_KEYS:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(str(path), line, f"`{key}` must be a list of strings", f'e.g. {key} = ["/path"]')
        return tuple(os.path.expanduser(v) for v in value)
    if key in SECONDS_RANGES:
        try:
            return seconds_setting(key, value if isinstance(value, (int, float)) else None)
        except ValueError as exc:
            raise ConfigError(str(path), line, f"`{key}` {exc}", f"e.g. {key} = {getattr(Settings, key)}") from None
    if key == "readonly":
        if not isinstance(value, bool):
            raise ConfigError(str(path), line, "`readonly` must be true or false")
        return value
    if key == "python":
        if not isinstance(value, str):
            raise ConfigError(str(path), line, "`python` must be a path string")
        return os.path.expanduser(value)
    if key == "presets":
        if not isinstance(value, dict) or not all(isinstance(p, dict) and isinstance(p.get("kind"), str) for p in value.values()):
            raise ConfigError(str(path), line, "each [presets.NAME] table needs a `kind` string", 'e.g. kind = "gemma-infer"')
        merged = dict(DEFAULT_PRESETS)
        merged.update({name: {"kind": p["kind"], "args": [str(a) for a in p.get("args", [])]} for name, p in value.items()})
        return merged
    raise ConfigError(str(path), line, f"unknown key `{key}`", "known keys: " + ", ".join(sorted(k for k in _TYPES if k != "source")))


def _env_bool(value: str) -> bool:
    """A fixed set of words: anything else is refused, never read as false (read-only must not fail open)."""
    word = value.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(f"must be one of {', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}, got {value!r}")


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings from the config file and OPSCONSOLE_* variables.

    Raises ConfigError (with file:line) for a file that cannot be used.
    """
    environ = os.environ if environ is None else environ
    path = path or config_path()
    values: dict[str, Any] = {}
    source = "defaults"
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None)
            if line is None:
                import re

                found = re.search(r"line (\d+)", str(exc))
                if found:
                    line = int(found.group(1))
                elif "end of document" in str(exc):
                    line = max(1, len(text.splitlines()))
            raise ConfigError(str(path), line, f"not valid TOML ({exc})", "fix the syntax or remove the file") from None
        for key, value in data.items():
            values[key] = _coerce(path, text, key, value)
        source = str(path)
    env_map = {
        "OPSCONSOLE_PYTHON": ("python", str),
        "OPSCONSOLE_REFRESH": ("refresh", lambda v: seconds_setting("refresh", v)),
        "OPSCONSOLE_READONLY": ("readonly", _env_bool),
        "OPSCONSOLE_NVML_TIMEOUT": ("nvml_timeout", lambda v: seconds_setting("nvml_timeout", v)),
        "OPSCONSOLE_TRUSTED_PLAYBOOK_DIRS": ("trusted_playbook_dirs", lambda v: tuple(p for p in v.split(os.pathsep) if p)),
        "OPSCONSOLE_MODEL_DIRS": ("model_dirs", lambda v: tuple(p for p in v.split(os.pathsep) if p)),
    }
    for var, (key, convert) in env_map.items():
        if var in environ and environ[var] != "":
            try:
                values[key] = convert(environ[var])
            except ValueError as exc:
                raise ConfigError(var, None, str(exc), f"fix or unset {var}") from None  # it quotes the value
    return Settings(source=source, **values)
