"""`command` steps: which programs may run, and running them (argv, no shell, with a timeout).

Commands are diagnostics only. Besides the trust rule (only bundled playbooks and
Settings.trusted_playbook_dirs may contain commands), each argv must start with a
program on this allow-list, and programs that can change state must not be given
arguments that do so.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from ..redact import redact_argv, redact_text
from .results import ERROR, PASS, SKIP, CheckResult

# program -> arguments that would change the machine (refused at load time)
ALLOWED_PROGRAMS: dict[str, tuple[str, ...]] = {
    "nvidia-smi": ("-r", "--gpu-reset", "-pm", "--persistence-mode", "-pl", "--power-limit", "-e", "--ecc-config",
                   "-c", "--compute-mode", "-ac", "--applications-clocks", "-rac", "--reset-applications-clocks",
                   "-lgc", "--lock-gpu-clocks", "-rgc", "--reset-gpu-clocks", "-lmc", "--lock-memory-clocks",
                   "-rmc", "--reset-memory-clocks", "-mig", "--multi-instance-gpu", "-p", "--reset-ecc-errors",
                   "-am", "--accounting-mode", "-caa", "--clear-accounted-apps", "-dm", "--driver-model",
                   "-cgi", "-dgi", "-cci", "-dci", "--auto-boost-default", "--auto-boost-permission", "-gtt"),
    "dcgmi": ("config", "policy", "-r 3", "-r 4"),
    "nvcc": (),
    "nvidia-debugdump": ("-D", "--dumpall"),
    "df": (),
    "du": (),
    "free": (),
    "uptime": (),
    "nproc": (),
    "uname": (),
    "lscpu": (),
    "lspci": (),
    "lsmod": (),
    "modinfo": (),
    "dmesg": ("-c", "--read-clear", "-C", "--clear", "-D", "--console-off", "-E", "--console-on", "-n", "--console-level"),
    "journalctl": ("--vacuum-size", "--vacuum-time", "--vacuum-files", "--rotate", "--flush", "--sync", "--relinquish-var"),
    "ibstat": (),
    "ibv_devinfo": (),
    "ip": ("add", "del", "delete", "set", "change", "replace", "flush"),
}


def command_problem(argv: list[Any]) -> str | None:
    """Why this argv may not be a playbook command, or None."""
    if not argv or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in argv):
        return "`command` must be a non-empty list of strings (an argv; no shell)"
    program = os.path.basename(str(argv[0]))
    if program not in ALLOWED_PROGRAMS:
        return (f"program `{program}` is not on the allow-list of read-only diagnostics "
                f"({', '.join(sorted(ALLOWED_PROGRAMS))})")
    joined = " ".join(str(a) for a in argv[1:])
    for bad in ALLOWED_PROGRAMS[program]:
        for arg in (str(a) for a in argv[1:]):
            if arg == bad or arg.startswith(bad + "=") or (" " in bad and bad in joined):
                return f"`{program} {bad}` changes the machine; playbook commands must be read-only"
    return None


def run_command(argv: tuple[str, ...], timeout: float, failure_status: str) -> CheckResult:
    """Run argv (no shell); exit 0 passes, non-zero gives `failure_status`; output goes to the evidence."""
    shown = redact_argv(argv)
    evidence: dict[str, Any] = {"argv": shown}
    start = time.monotonic()
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except FileNotFoundError:
        return CheckResult(SKIP, f"{argv[0]} is not installed", evidence)
    except PermissionError as exc:
        return CheckResult(ERROR, f"cannot run {argv[0]}: {exc}", evidence)
    except subprocess.TimeoutExpired as exc:
        evidence["stdout"] = redact_text(_tail(exc.stdout))
        return CheckResult(ERROR, f"timed out after {timeout:g} s", evidence)
    evidence.update({"exit_code": proc.returncode, "seconds": round(time.monotonic() - start, 2),
                     "stdout": redact_text(_tail(proc.stdout)), "stderr": redact_text(_tail(proc.stderr))})
    first = next((line for line in (proc.stdout or proc.stderr).splitlines() if line.strip()), "")
    if proc.returncode == 0:
        return CheckResult(PASS, f"exit 0{': ' + first.strip()[:120] if first else ''}", evidence)
    return CheckResult(failure_status, f"exit {proc.returncode}{': ' + first.strip()[:160] if first else ''}", evidence,
                       "Read the command's output in the evidence.")


def _tail(text: str | bytes | None, limit: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else "…" + text[-limit:]
