"""Runs tests/tui/tmux_check.sh: the installed `opsconsole` in a real terminal (tmux), 120×40 and 80×24."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("tmux_check.sh")


@pytest.mark.slow
def test_real_terminal_in_tmux():
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): the real-terminal check cannot run")
    opsconsole = Path(sys.executable).with_name("opsconsole")
    if not opsconsole.exists():
        pytest.skip(f"no installed `opsconsole` next to {sys.executable} (pip install -e .)")
    proc = subprocess.run(["bash", str(SCRIPT), str(opsconsole)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("q exited 0") == 2
