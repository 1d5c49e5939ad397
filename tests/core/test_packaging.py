"""The wheel carries kb/, playbooks/ and the other data files, and the installed copy finds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_installed_wheel_finds_bundled_kb_and_playbooks(tmp_path: Path) -> None:
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("opsconsole-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("opsconsole/_data/kb/", "opsconsole/_data/playbooks/", "opsconsole/telemetry/scenarios/",
                   "opsconsole/jobs/configs/"):
        assert any(n.startswith(folder) for n in names), folder

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a wheel is a zip laid out as site-packages
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import json, opsconsole, opsconsole.paths as p; from opsconsole.kb import load_kb; "
            "from opsconsole.playbooks import load_playbooks; kb = load_kb(); pbs = load_playbooks(); "
            "print(json.dumps({'pkg': opsconsole.__file__, 'kb_dir': str(p.bundled_dir('kb')), "
            "'entries': len(kb.entries), 'kb_errors': len(kb.errors), "
            "'playbooks': sorted(pbs.playbooks), 'pb_errors': len(pbs.errors)}))")
    # run from tmp_path so the checkout's own package cannot be imported by accident
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["pkg"].startswith(str(site))
    assert info["kb_dir"].startswith(str(site)) and info["kb_dir"].endswith("_data/kb")
    assert info["entries"] >= 35 and info["kb_errors"] == 0
    assert {"cuda-oom", "gpu-health", "first-time-box-check"} <= set(info["playbooks"]) and info["pb_errors"] == 0
