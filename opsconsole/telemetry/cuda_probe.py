"""CUDA/torch environment probe: runs data/cuda_probe_script.py in the user's interpreter.

Nothing is imported into the console: the facts come from a subprocess of the
interpreter the user's ML work uses (`--python`). Results are cached per
interpreter (path + mtime) for the life of the process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

from ..children import run_child
from ..redact import REDACTED, is_secret_name, redact_text
from .cuda_arch import all_supported
from .snapshot import CudaDevice, CudaEnv, LibraryInfo

PROBE_SCRIPT = Path(__file__).resolve().parent / "data" / "cuda_probe_script.py"
_cache: dict[tuple, CudaEnv] = {}
_cache_lock = threading.Lock()


# Environment that changes what the probe sees: part of the cache key.
_KEY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
            "PYTORCH_CUDA_ALLOC_CONF", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")


def _interpreter_key(python: str) -> tuple | None:
    # abspath, not realpath: two venvs share one real binary but not their site-packages.
    try:
        stamp = os.stat(os.path.realpath(python)).st_mtime
    except OSError:
        return None
    return (os.path.abspath(python), stamp, tuple(os.environ.get(k) for k in _KEY_ENV))


def parse_probe_output(stdout: str, python: str) -> CudaEnv:
    """CudaEnv from the probe script's stdout (its last JSON line)."""
    line = next((ln for ln in reversed(stdout.strip().splitlines()) if ln.startswith("{")), None)
    if line is None:
        return CudaEnv(status="error", python=python, message="the probe printed no result")
    data = json.loads(line)
    if data.get("status") == "no_torch":
        return CudaEnv(status="no_torch", python=python, message=data.get("message", "No module named 'torch'"),
                       libraries=_libraries(data), env=_env(data))
    devices = tuple(CudaDevice(index=d.get("index", i), name=d.get("name"), capability=d.get("capability"))
                    for i, d in enumerate(data.get("devices") or ()))
    arch_list = tuple(data.get("arch_list") or ())
    return CudaEnv(
        status="ok", python=python, message=f"Python {data.get('python_version', '?')}",
        torch_version=data.get("torch_version"), torch_cuda=data.get("torch_cuda"),
        cudnn_version=data.get("cudnn_version"), cuda_available=data.get("cuda_available"),
        cuda_error=redact_text(data["cuda_error"]) if data.get("cuda_error") else None,
        device_count=data.get("device_count"), devices=devices, arch_list=arch_list,
        arch_covered=all_supported([d.capability for d in devices], arch_list) if devices else None,
        bf16_supported=data.get("bf16_supported"), sdpa_available=data.get("sdpa_available"),
        libraries=_libraries(data), env=_env(data),
    )


def _libraries(data: dict) -> tuple[LibraryInfo, ...]:
    return tuple(LibraryInfo(name=lib["name"], version=lib.get("version"), error=lib.get("error"))
                 for lib in data.get("libraries") or ())


def _env(data: dict) -> tuple[tuple[str, str | None], ...]:
    out = []
    for name, value in (data.get("env") or {}).items():
        if value is not None:
            value = REDACTED if is_secret_name(name) else redact_text(value)
        out.append((name, value))
    return tuple(out)


def probe_cuda_env(python: str | None = None, timeout: float = 30.0, refresh: bool = False) -> CudaEnv:
    """Probe `python` (default: this interpreter). Never raises; errors are in `status`/`message`.

    Run as `python -B script` rather than `-I`: the user's PYTHONPATH and user
    site-packages are part of the environment being diagnosed.
    """
    python = python or sys.executable
    python = shutil.which(python) or python  # "python3" -> /usr/bin/python3
    key = _interpreter_key(python)
    if key is None:
        return CudaEnv(status="error", python=python, message=f"interpreter not found: {python} (check --python)")
    with _cache_lock:
        if not refresh and key in _cache:
            return _cache[key]
    try:  # in its own process group: on a timeout the probe's grandchildren die with it
        proc = run_child([python, "-B", str(PROBE_SCRIPT)], timeout)
    except OSError as exc:
        return CudaEnv(status="error", python=python, message=f"cannot run {python}: {exc.strerror or exc}")
    if proc.timed_out:
        return CudaEnv(status="timeout", python=python,
                       message=f"the CUDA probe did not finish within {timeout:g} s (importing torch hangs?)")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return CudaEnv(status="error", python=python, message=redact_text(f"the probe failed: {tail[0]}"[:400]))
    try:
        env = parse_probe_output(proc.stdout, python)
    except (ValueError, KeyError, TypeError) as exc:
        return CudaEnv(status="error", python=python, message=f"unreadable probe output: {exc}")
    with _cache_lock:
        _cache[key] = env
    return env
