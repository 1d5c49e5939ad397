"""Settings: file < env < flags, and a bad file gives a file:line error (exit 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opsconsole.config import DEFAULT_PRESETS, config_path, load_settings
from opsconsole.errors import ConfigError


def write_config(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    settings = load_settings()
    assert settings.refresh == 1.0
    assert settings.readonly is False
    assert settings.python == sys.executable
    assert set(DEFAULT_PRESETS) <= set(settings.presets)
    assert settings.source == "defaults"


def test_file_values_are_read_and_env_overrides_them(monkeypatch):
    write_config(
        'python = "/opt/ml/bin/python"\nrefresh = 2.5\ntrusted_playbook_dirs = ["~/pb"]\n'
        '[presets.mine]\nkind = "sd-infer"\nargs = ["--steps", 2]\n'
    )
    settings = load_settings()
    assert settings.python == "/opt/ml/bin/python"
    assert settings.refresh == 2.5
    assert settings.trusted_playbook_dirs[0].endswith("/pb") and "~" not in settings.trusted_playbook_dirs[0]
    assert settings.presets["mine"] == {"kind": "sd-infer", "args": ["--steps", "2"]}
    assert "quick Gemma check" in settings.presets  # defaults kept beside user presets

    monkeypatch.setenv("OPSCONSOLE_REFRESH", "0.5")
    monkeypatch.setenv("OPSCONSOLE_READONLY", "1")
    settings = load_settings()
    assert settings.refresh == 0.5
    assert settings.readonly is True
    assert settings.with_overrides(refresh=3.0, python=None).refresh == 3.0


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("refresh = 1\npython = [\n", 2, "not valid TOML"),
        ("refresh = 1\n\nname = = 2\nx = 1\n", 3, "not valid TOML"),
        ("\n\nrefresh = -1\n", 3, "from 0.1 to 3600"),
        ("refresh = nan\n", 1, "from 0.1 to 3600"),
        ("refresh = 1e-9\n", 1, "from 0.1 to 3600"),
        ("refresh = inf\n", 1, "from 0.1 to 3600"),
        ("nvml_timeout = -5\n", 1, "`nvml_timeout` must be a number of seconds from 0.1 to 120"),
        ("readonly = 1\n", 1, "true or false"),
        ("colour = 'red'\n", 1, "unknown key `colour`"),
        ("model_dirs = '/data'\n", 1, "list of strings"),
    ],
)
def test_bad_config_names_file_and_line(text, line, fragment):
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message


def test_bad_config_is_one_line_and_exit_code_3():
    path = write_config("refresh = 'fast'\n")
    proc = subprocess.run([sys.executable, "-m", "opsconsole", "kb", "list"], capture_output=True, text=True)
    assert proc.returncode == 3
    assert f"{path}:1:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_env_value_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("OPSCONSOLE_REFRESH", "soon")
    with pytest.raises(ConfigError, match="OPSCONSOLE_REFRESH"):
        load_settings()


@pytest.mark.parametrize("var, value", [
    ("OPSCONSOLE_REFRESH", "nan"), ("OPSCONSOLE_REFRESH", "1e-9"), ("OPSCONSOLE_REFRESH", "-1"),
    ("OPSCONSOLE_NVML_TIMEOUT", "-5"), ("OPSCONSOLE_NVML_TIMEOUT", "nan"), ("OPSCONSOLE_NVML_TIMEOUT", "inf"),
    ("OPSCONSOLE_READONLY", "banana"), ("OPSCONSOLE_READONLY", "2"), ("OPSCONSOLE_READONLY", "y"),
    ("OPSCONSOLE_READONLY", "enabled"),
])
def test_out_of_range_or_unknown_env_values_are_refused(monkeypatch, var, value):
    """nan crashed the TUI, 1e-9 spun at 95 % CPU, a timeout of -5 gave a false critical, and
    OPSCONSOLE_READONLY=banana silently left read-only off (even over `readonly = true`)."""
    write_config("readonly = true\n")
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert var in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("on", True), (" yes ", True),
                                             ("0", False), ("false", False), ("Off", False), ("no", False)])
def test_readonly_words(monkeypatch, value, expected):
    monkeypatch.setenv("OPSCONSOLE_READONLY", value)
    assert load_settings().readonly is expected


@pytest.mark.parametrize("argv", [["status", "--refresh", "nan"], ["status", "--refresh", "1e-9"],
                                  ["status", "--watch", "nan"], ["status", "--watch", "-1"], ["status", "--watch", "inf"]])
def test_bad_numeric_flags_are_usage_errors(argv, capsys):
    from opsconsole.cli import main

    assert main([*argv, "--simulate", "healthy-8xh100", "--no-probe"]) == 3
    assert "from 0.1 to 3600" in capsys.readouterr().err
