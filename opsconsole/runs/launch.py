"""Validate a launch request and plan the child command — before anything is registered.

Everything here is cheap and torch-free in the console process: the job's flags
are parsed with the job module's own build_parser(), its optional validate()
runs, `--model` is resolved offline, and CUDA is checked with a probe of the
user's interpreter only when `--device cuda` is asked for.
"""

from __future__ import annotations

import argparse
import importlib
import os
import secrets
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import PACKAGE_DIR, ensure_private_dir, state_dir

CUDA_CHECK_TIMEOUT_S = 60.0


@dataclass
class LaunchPlan:
    kind: str
    job_argv: list[str]
    python: str
    device: str
    gpus: list[str]          # lock keys: GPU UUIDs where NVML knows them, else CUDA_VISIBLE_DEVICES names/indexes
    world_size: int
    child_argv: list[str]
    env: dict[str, str]
    cwd: str
    job_args: dict[str, Any] = field(default_factory=dict)
    gpu_labels: dict[str, str] = field(default_factory=dict)  # lock key -> what the user calls it ("0")


class _ParseError(Exception):
    pass


def _raise_instead_of_exit(parser: argparse.ArgumentParser) -> None:
    """argparse prints usage and exits on bad flags; we want one line and exit code 3."""

    def error(message: str) -> None:
        raise _ParseError(message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _raise_instead_of_exit(sub)


def job_module(kind: str) -> Any:
    from ..jobs import JOB_KINDS

    if kind not in JOB_KINDS:
        raise UsageError(f"unknown run kind {kind!r}; known kinds: {', '.join(JOB_KINDS)}")
    name = f"opsconsole.jobs.{JOB_KINDS[kind]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise UsageError(f"run kind {kind!r} is not available in this install ({name} is missing)") from None
        raise UsageError(f"run kind {kind!r} cannot be loaded: {exc} (reinstall opsconsole)") from None
    except ImportError as exc:
        raise UsageError(f"run kind {kind!r} cannot be loaded: {exc} (reinstall opsconsole)") from None


def job_parser(kind: str, prog: str | None = None) -> argparse.ArgumentParser:
    parser = job_module(kind).build_parser()
    if prog:
        parser.prog = prog
    return parser


def parse_job_args(kind: str, argv: list[str]) -> argparse.Namespace:
    parser = job_parser(kind, prog=f"opsconsole run {kind}")
    _raise_instead_of_exit(parser)
    try:
        return parser.parse_args(argv)
    except _ParseError as exc:
        raise UsageError(f"run {kind}: {exc}") from None
    except SystemExit:  # a job parser that exits on its own (e.g. a custom action)
        raise UsageError(f"run {kind}: invalid arguments {' '.join(argv)!r}") from None


def resolve_python(python: str | None) -> str:
    candidate = python or sys.executable
    found = shutil.which(candidate) if os.sep not in candidate else candidate
    path = Path(os.path.expanduser(found or candidate))
    if not path.exists():
        raise UsageError(f"interpreter {candidate} (from --python, `python` in the config or OPSCONSOLE_PYTHON): "
                         "no such interpreter; give the python of your ML environment")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UsageError(f"interpreter {candidate} (from --python, `python` in the config or OPSCONSOLE_PYTHON): "
                         "not an executable file")
    return str(path if path.is_absolute() else path.absolute())


def check_cuda(python: str, device: str) -> None:
    """Raise UsageError when `device` (cuda / cuda:N) is not usable by torch in `python`."""
    index = None
    if ":" in device:
        try:
            index = int(device.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"--device {device}: use cuda or cuda:N") from None
    available, count, detail = cuda_status(python)
    if not available:
        raise UsageError(f"--device {device} requested but CUDA is not available to torch in {python}"
                         + (f" ({detail})" if detail else "") + "; use --device cpu or fix the environment "
                         "(`opsconsole diagnose`, playbook torch-cpu-only)")
    if index is not None and count is not None and index >= count:
        raise UsageError(f"--device {device}: only {count} CUDA device(s) visible to {python}")


def cuda_status(python: str) -> tuple[bool, int | None, str]:
    """(available, device_count, detail) from the telemetry probe, else a quick subprocess."""
    try:
        from ..telemetry import probe_cuda_env  # type: ignore[attr-defined]
    except ImportError:
        probe_cuda_env = None
    if probe_cuda_env is not None:
        env = probe_cuda_env(python)
        if env.status == "no_torch":
            return False, None, "torch is not installed there"
        if env.status != "ok":
            return False, None, env.message or env.status
        detail = env.cuda_error or (f"torch {env.torch_version} is a CPU-only build" if env.torch_cuda is None else "")
        return bool(env.cuda_available), env.device_count, detail
    code = ("import sys\ntry:\n import torch\nexcept ImportError:\n print('no-torch'); sys.exit(0)\n"
            "print(int(torch.cuda.is_available()), torch.cuda.device_count() if torch.cuda.is_available() else 0,"
            " torch.__version__, torch.version.cuda)")
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=CUDA_CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, None, f"probe failed: {exc}"
    fields = done.stdout.split()
    if not fields or fields[0] == "no-torch":
        return False, None, "torch is not installed there" if fields else (done.stderr.strip().splitlines() or ["probe failed"])[-1]
    available = fields[0] == "1"
    detail = "" if available else f"torch {fields[2]}" + (" is a CPU-only build" if fields[3] == "None" else "")
    return available, int(fields[1]), detail


def check_torch_installed(python: str, world_size: int) -> None:
    """`--gpus N` launches torch.distributed.run: torch must be importable by `python` (cheap: no import)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    try:
        missing = subprocess.run([python, "-c", code], capture_output=True, timeout=CUDA_CHECK_TIMEOUT_S).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--python {python}: cannot run it ({exc})") from None
    if missing:
        raise UsageError(f"--gpus {world_size} launches torch.distributed.run, but torch is not installed in {python}")


def host_has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def nvml_gpu_uuids(timeout: float = 3.0) -> list[str] | None:
    """This machine's GPU UUIDs in NVML order (CUDA's order too on a box of identical GPUs,
    or with CUDA_DEVICE_ORDER=PCI_BUS_ID); None without NVML. Bounded: NVML can hang."""
    found: dict[str, list[str]] = {}

    def read() -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                found["uuids"] = [_text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)))
                                  for i in range(pynvml.nvmlDeviceGetCount())]
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - no driver, no library, a GPU that does not answer: no UUIDs
            pass

    worker = threading.Thread(target=read, name="nvml-uuids", daemon=True)
    worker.start()
    worker.join(timeout)
    return found.get("uuids")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpus_for(device: str, world_size: int, env: dict[str, str], uuids: list[str] | None = None) -> list[str]:
    """The GPUs a run will use, as lock keys: their UUIDs when `uuids` (NVML) is known, so that
    `CUDA_VISIBLE_DEVICES=GPU-<uuid>`, `=3` and `--device cuda:3` all lock the same card; [] for
    CPU and for `CUDA_VISIBLE_DEVICES=""` (no GPU visible to the run)."""
    if device == "cpu" or (device == "auto" and not host_has_nvidia_gpu()) or not (
            device == "auto" or device.startswith("cuda")):
        return []
    if ":" in device and world_size == 1:
        indexes = [int(device.split(":", 1)[1])]
    else:
        indexes = list(range(world_size))
    if "CUDA_VISIBLE_DEVICES" in env:
        visible = _visible_devices(env["CUDA_VISIBLE_DEVICES"], uuids)
    else:
        visible = list(uuids) if uuids else [str(i) for i in range(max(indexes) + 1)]
    return [visible[i] for i in indexes if i < len(visible)]


def _visible_devices(value: str, uuids: list[str] | None) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it (stops at the first invalid entry), each entry
    as a UUID where NVML can tell: an index, a full UUID or a unique UUID prefix."""
    out: list[str] = []
    for entry in (e.strip() for e in value.split(",")):
        if entry.isdigit():
            if uuids is None:
                out.append(entry)
            elif int(entry) < len(uuids):
                out.append(uuids[int(entry)])
            else:
                break
        elif entry.upper().startswith(("GPU-", "MIG-")):
            matches = [u for u in uuids or [] if u.lower().startswith(entry.lower())]
            out.append(matches[0] if len(matches) == 1 else entry)
        else:
            break
    return out


def gpu_labels(keys: list[str], uuids: list[str] | None) -> dict[str, str]:
    """How to name each lock key to the user: the NVML index of a UUID ("0"), else the key."""
    return {key: str(uuids.index(key)) if uuids and key in uuids else key for key in keys}


def shim_dir() -> Path:
    """A dir holding only a symlink `opsconsole` -> this package, for the child's PYTHONPATH.

    The user's interpreter can then import opsconsole without seeing the console's
    site-packages (their torch, not ours).
    """
    shim = ensure_private_dir(state_dir() / "pyshim")
    link = shim / "opsconsole"
    if not (link.is_symlink() and os.readlink(link) == str(PACKAGE_DIR)):
        tmp = shim / f".opsconsole.{os.getpid()}.{secrets.token_hex(4)}"  # unique per launcher and thread
        tmp.symlink_to(PACKAGE_DIR, target_is_directory=True)
        os.replace(tmp, link)
    return shim


def child_env(run_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    from ..jobs.common import RUN_DIR_ENV

    env = dict(os.environ if base is None else base)
    shim = str(shim_dir())
    env["PYTHONPATH"] = shim + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[RUN_DIR_ENV] = str(run_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_command(python: str, kind: str, job_argv: list[str], world_size: int) -> list[str]:
    if world_size > 1:
        return [python, "-m", "torch.distributed.run", "--nproc-per-node", str(world_size), "--standalone",
                "-m", "opsconsole.jobs", kind, *job_argv]
    return [python, "-m", "opsconsole.jobs", kind, *job_argv]


def plan_launch(kind: str, job_argv: list[str], python: str | None = None, gpus: int | None = None) -> LaunchPlan:
    """Validate everything the user can get wrong; raise UsageError (exit 3) with one line."""
    from ..jobs.common import JobError, check_range
    from ..jobs.model_source import resolve_model

    module = job_module(kind)
    args = parse_job_args(kind, list(job_argv))
    world_size = 1 if gpus is None else gpus
    cpus = os.cpu_count() or 1
    if not 1 <= world_size <= cpus:
        raise UsageError(f"--gpus {gpus}: must be 1 to {cpus} (one process per rank, at most one per CPU)")
    try:
        check_range("--seed", getattr(args, "seed", None), 0, 2**32 - 1)  # torch and numpy seeds are 32-bit
        validate = getattr(module, "validate", None)
        if validate is not None:  # the job knows its model names (e.g. architecture presets); it resolves itself
            validate(args)
        elif getattr(args, "model", None) is not None:
            resolve_model(str(args.model), getattr(args, "weights", "pretrained"))
    except JobError as exc:
        raise UsageError(f"run {kind}: {exc}") from None
    interpreter = resolve_python(python)
    device = str(getattr(args, "device", "cpu") or "cpu")
    if device.startswith("cuda"):
        check_cuda(interpreter, device)
    elif world_size > 1:
        check_torch_installed(interpreter, world_size)
    env = dict(os.environ)
    wants_gpu = device.startswith("cuda") or (device == "auto" and host_has_nvidia_gpu())
    uuids = nvml_gpu_uuids() if wants_gpu else None
    gpus = gpus_for(device, world_size, env, uuids)
    return LaunchPlan(kind=kind, job_argv=list(job_argv), python=interpreter, device=device,
                      gpus=gpus, world_size=world_size,
                      child_argv=child_command(interpreter, kind, list(job_argv), world_size),
                      env=env, cwd=os.getcwd(), job_args=vars(args), gpu_labels=gpu_labels(gpus, uuids))
