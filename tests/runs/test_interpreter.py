"""`--python`: the job runs with the user's interpreter and imports opsconsole through the shim only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from opsconsole.cli import main
from opsconsole.runs import RunManager, RunStore


def _foreign_python() -> str:
    """A system interpreter outside the console's venv (no torch), or skip."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import importlib.util as u, sys; "
                                    "sys.exit(u.find_spec('torch') is not None or u.find_spec('psutil') is not None)"],
                                   cwd="/", capture_output=True)
            if probe.returncode == 0:
                return candidate
    pytest.skip("no interpreter without torch/psutil outside the venv")


def test_job_runs_with_another_interpreter_through_the_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _foreign_python()
    monkeypatch.chdir(tmp_path)  # nothing importable from the cwd
    manager = RunManager()
    record = manager.launch("selftest", ["--lines", "2"], python=python)
    result = manager.wait(record.id, timeout=30)
    assert result["status"] == "ok", (Path(record.dir) / "output.log").read_text()
    cmd = record.run_dir.read_cmd()
    assert cmd["python"] == python and cmd["argv"][0] == python
    shim = Path(cmd["env"]["PYTHONPATH"].split(os.pathsep)[0])
    assert [p.name for p in shim.iterdir()] == ["opsconsole"]  # only the package, none of the console's deps


def test_gpus_without_torch_in_the_interpreter_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    python = _foreign_python()
    assert main(["run", "selftest", "--gpus", "2", "--device", "cpu", "--python", python]) == 3
    assert "torch is not installed" in capsys.readouterr().err
    assert RunStore().list() == []
