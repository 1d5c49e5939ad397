"""Layer boundaries, checked in fresh interpreters (harlequin-style).

- The core packages (telemetry, kb, playbooks, runs) import neither textual nor torch.
- The console process never imports torch / transformers / diffusers: not when it
  builds its CLI parser, not while `status --simulate ... --json` runs.
- The import-linter contracts in pyproject.toml hold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ML = ("torch", "transformers", "diffusers", "peft", "accelerate")


def loaded_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    script = code + "\nimport sys, json\nprint('\\n' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_core_packages_import_neither_textual_nor_torch() -> None:
    loaded = loaded_after("import opsconsole.telemetry, opsconsole.kb, opsconsole.playbooks, opsconsole.runs\n"
                          "import opsconsole.telemetry.findings, opsconsole.telemetry.nvml, opsconsole.telemetry.simulator")
    assert "opsconsole" in loaded
    assert not loaded & {"textual", *ML}, loaded & {"textual", *ML}


def test_cli_parser_does_not_import_ml_libraries() -> None:
    loaded = loaded_after("from opsconsole.cli import build_parser\nbuild_parser()")
    assert not loaded & set(ML)


def test_status_command_run_end_to_end_never_imports_ml_libraries() -> None:
    loaded = loaded_after(
        "import contextlib, io\n"
        "from opsconsole.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    code = main(['status', '--simulate', 'healthy-8xh100', '--json'])\n"
        "assert code == 0 and '\"gpus\"' in out.getvalue(), code\n")
    assert not loaded & set(ML)


def test_real_status_with_the_probe_keeps_torch_in_the_subprocess() -> None:
    # The CUDA probe imports torch, but in its own interpreter, never in the console.
    loaded = loaded_after(
        "import contextlib, io\n"
        "from opsconsole.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['status', '--json'])\n")
    assert not loaded & set(ML)


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (the [dev] extra)")
    proc = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout
