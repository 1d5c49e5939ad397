"""The CUDA env probe runs in a subprocess of the chosen interpreter and never raises."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from opsconsole.redact import REDACTED
from opsconsole.telemetry.cuda_probe import parse_probe_output, probe_cuda_env


def fake_torch_dir(tmp_path: Path, body: str) -> Path:
    pkg = tmp_path / "site" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    return pkg.parent


def test_missing_torch_is_a_status_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = fake_torch_dir(tmp_path, "raise ImportError(\"No module named 'torch'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    env = probe_cuda_env(sys.executable, timeout=60, refresh=True)
    assert env.status == "no_torch" and "torch" in env.message
    assert env.python == sys.executable


def test_probe_reports_a_cuda_build_and_computes_arch_coverage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in torch module shaped like a CUDA build on an RTX 5090 with an sm_90 arch list.
    site = fake_torch_dir(tmp_path, """
__version__ = "2.5.1+cu124"
class version: cuda = "12.4"
class _Cudnn:
    @staticmethod
    def is_available(): return True
    @staticmethod
    def version(): return 90100
class backends: cudnn = _Cudnn
class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 1)
    get_device_capability = staticmethod(lambda i: (12, 0))
    get_device_name = staticmethod(lambda i: "NVIDIA GeForce RTX 5090")
    get_arch_list = staticmethod(lambda: ["sm_80", "sm_86", "sm_90"])
    is_bf16_supported = staticmethod(lambda: True)
class nn:
    class functional:
        scaled_dot_product_attention = None
""")
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("HF_HOME", "https://bob:hunter2@example.com/hf")
    env = probe_cuda_env(sys.executable, timeout=60, refresh=True)
    assert env.status == "ok", env.message
    assert env.torch_cuda == "12.4" and env.cudnn_version == "90100" and env.cuda_available is True
    assert [(d.name, d.capability) for d in env.devices] == [("NVIDIA GeForce RTX 5090", "12.0")]
    assert env.arch_covered is False
    assert "hunter2" not in env.env_value("HF_HOME") and REDACTED in env.env_value("HF_HOME")
    assert {lib.name for lib in env.libraries} >= {"flash_attn", "xformers", "bitsandbytes", "transformers",
                                                   "diffusers", "peft", "accelerate"}


def test_probe_of_this_venv(python_exe: str) -> None:
    env = probe_cuda_env(python_exe, timeout=120)
    assert env.status == "ok" and env.torch_version
    if env.torch_cuda is None:
        assert env.cuda_available is False and env.cuda_error
    assert probe_cuda_env(python_exe, timeout=120) is env  # cached per interpreter


def test_timeout_is_a_status(tmp_path: Path) -> None:
    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\nsleep 20\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    env = probe_cuda_env(str(slow), timeout=0.5)
    assert env.status == "timeout" and "0.5" in env.message


def test_a_timed_out_probe_leaves_no_grandchild(tmp_path: Path) -> None:
    """A probe that timed out left its grandchild running: the probe's process group is killed."""
    import os
    import time

    pidfile = tmp_path / "grandchild.pid"
    slow = tmp_path / "python"
    slow.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {pidfile}\nwait\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    assert probe_cuda_env(str(slow), timeout=1.0, refresh=True).status == "timeout"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return
        if open(f"/proc/{grandchild}/stat").read().split()[2] == "Z":
            return  # dead, waiting to be reaped by its (also dead) parent's reaper
        time.sleep(0.05)
    raise AssertionError(f"the probe's grandchild {grandchild} outlived the timeout")


def test_missing_or_broken_interpreter(tmp_path: Path) -> None:
    assert probe_cuda_env(str(tmp_path / "nope")).status == "error"
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'boom: HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz12' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    env = probe_cuda_env(str(broken))
    assert env.status == "error" and "hf_abcdefghijklmnopqrstuvwxyz12" not in env.message


def test_garbled_output_is_an_error() -> None:
    assert parse_probe_output("no json here", "/x").status == "error"
    out = json.dumps({"status": "ok", "torch_version": "2.4", "torch_cuda": None, "devices": [], "arch_list": []})
    assert parse_probe_output("warning line\n" + out, "/x").torch_version == "2.4"
