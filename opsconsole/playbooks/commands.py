"""`command` steps: which argvs may run, and running them (argv, no shell, fixed PATH, timeout).

Commands are diagnostics only. Besides the trust rule (only bundled playbooks and
Settings.trusted_playbook_dirs may contain commands), each argv must match one of the
read-only shapes below *exactly*: a known program name (never a path: it is looked up in
SYSTEM_PATH only), then per tool its subcommand, its listed flags (no abbreviations, no
bundled short flags that are not listed) and values that match the flag's pattern.
Anything else is refused at load time and again just before it would run. An allow-list
of shapes, not a deny-list: `dmesg --read-cl`, `ip -batch FILE` or `nvidia-smi -q -f FILE`
are refused because nobody listed them, not because someone remembered them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..children import run_child
from ..redact import redact_argv, redact_text
from .results import ERROR, PASS, SKIP, CheckResult

# Programs are resolved here only: a playbook (or the console's own PATH) cannot point `df` elsewhere.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PATH_ARG = r"[^\x00-\x1f]{1,4096}"   # a file-system path (df, du): reading one changes nothing
NAME = r"[A-Za-z0-9_.:@-]{1,64}"    # an interface, module, unit or device name
NUMBER = r"\d{1,6}"
GPU_ID = r"[0-9A-Za-z:.,-]{1,128}"   # index, UUID or PCI bus id (lists allowed)


@dataclass(frozen=True)
class Shape:
    """A tool's read-only argv: flags allowed alone, flags taking one value (a full-match
    regex; `--flag=value` or `--flag value`), positional words, and subcommands (first
    positional) with shapes of their own."""

    flags: frozenset[str] = frozenset()
    valued: Mapping[str, str] = field(default_factory=dict)
    positional: str | None = None
    subcommands: Mapping[str, Shape] = field(default_factory=dict)


def shape(flags: str = "", valued: Mapping[str, str] | None = None, positional: str | None = None,
          subcommands: Mapping[str, Shape] | None = None) -> Shape:
    return Shape(frozenset(flags.split()), dict(valued or {}), positional, dict(subcommands or {}))


def _both(short: str, long: str, pattern: str) -> dict[str, str]:
    return {short: pattern, long: pattern}


_NVSMI_QUERY = r"[a-z_.,]{1,512}"
_IP_SHOW = shape(positional=NAME)  # `ip link show dev eth0`: filter words and names only
SHAPES: dict[str, Shape] = {
    "nvidia-smi": shape(
        "-L --list-gpus -q --query -x --xml-format -B --list-excluded-gpus",
        {**_both("-i", "--id", GPU_ID), **_both("-d", "--display", r"[A-Z_,]{1,256}"),
         "--query-gpu": _NVSMI_QUERY, "--query-compute-apps": _NVSMI_QUERY,
         "--query-retired-pages": _NVSMI_QUERY, "--query-remapped-rows": _NVSMI_QUERY,
         "--query-supported-clocks": _NVSMI_QUERY, "--format": r"csv(,\s*(noheader|nounits))*"},
        subcommands={
            "topo": shape("-m --matrix", {"-p2p": r"[rwnpa]", **_both("-i", "--id", GPU_ID)}),
            "nvlink": shape("-s --status -c --capabilities -e --errorcounters",
                            {**_both("-i", "--id", GPU_ID)}),
            "mig": shape("-lgi --list-gpu-instances -lgip --list-gpu-instance-profiles "
                         "-lci --list-compute-instances -lcip --list-compute-instance-profiles",
                         {**_both("-i", "--id", GPU_ID)}),
        }),
    "dcgmi": shape("--version", subcommands={
        "discovery": shape("-l --list"),
        "health": shape("-c --check", {**_both("-g", "--group", NUMBER)}),
        "diag": shape("", {**_both("-r", "--run", r"1|quick|short")}),  # level 1: software checks, no load
        "group": shape("-l --list"),
    }),
    "nvcc": shape("--version -V"),
    "nvidia-debugdump": shape("-l --list"),
    "df": shape("-h -H -T -i -P -k -a -l --human-readable --si --print-type --inodes --portability --local --all",
                {"--output": r"[a-z,]{1,128}", **_both("-t", "--type", r"[a-z0-9]{1,16}")}, PATH_ARG),
    "du": shape("-s -h -x -c -a --summarize --human-readable --one-file-system --total --all",
                {**_both("-d", "--max-depth", r"\d{1,2}")}, PATH_ARG),
    "free": shape("-h -b -k -m -g -w -t -l --human --bytes --kibi --mebi --gibi --wide --total --lohi"),
    "uptime": shape("-p --pretty -s --since"),
    "nproc": shape("--all"),
    "uname": shape("-a -s -n -r -v -m -p -i -o --all --kernel-name --nodename --kernel-release "
                   "--kernel-version --machine --processor --hardware-platform --operating-system"),
    "lscpu": shape("-J --json -e --extended -a --all"),
    "lspci": shape("-v -vv -vvv -n -nn -k -t -D -m -mm",
                   {"-d": r"[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4})?", "-s": r"[0-9a-fA-F:.]{1,32}"}),
    "lsmod": shape(),
    "modinfo": shape("", {**_both("-F", "--field", r"[a-z_]{1,32}")}, r"[A-Za-z0-9_-]{1,64}"),
    "dmesg": shape("-T --ctime -t --notime -k --kernel -x --decode",
                   {**_both("-l", "--level", r"[a-z,]{1,64}"), **_both("-f", "--facility", r"[a-z,]{1,64}"),
                    "--time-format": r"ctime|reltime|delta|iso|notime"}),
    "journalctl": shape("-k --dmesg -b --boot --no-pager -q --quiet --utc -x --catalog -r --reverse --no-hostname",
                        {"--lines": NUMBER, **_both("-p", "--priority", r"[0-7a-z.]{1,16}"),
                         **_both("-u", "--unit", NAME), **_both("-t", "--identifier", NAME),
                         "--since": r"[0-9A-Za-z :.+-]{1,64}", "--until": r"[0-9A-Za-z :.+-]{1,64}",
                         **_both("-o", "--output", r"short|short-iso|short-precise|short-monotonic|cat|json|verbose"),
                         **_both("-g", "--grep", r"[^\x00-\x1f]{1,256}")}),
    "ibstat": shape("-l --list_of_cas -s --short -p --port_list", positional=NAME),
    "ibv_devinfo": shape("-v --verbose -l --list", {**_both("-d", "--ib-dev", NAME), **_both("-i", "--ib-port", NUMBER)}),
    "ip": shape("-s -d -j -br -4 -6 -o --brief --json --details --stats --oneline", subcommands={
        "link": shape(subcommands={"show": _IP_SHOW, "list": _IP_SHOW}),
        "addr": shape(subcommands={"show": _IP_SHOW, "list": _IP_SHOW}),
        "address": shape(subcommands={"show": _IP_SHOW, "list": _IP_SHOW}),
        "route": shape(subcommands={"show": _IP_SHOW, "list": _IP_SHOW, "get": shape(positional=r"[0-9a-fA-F.:/]{1,64}|" + NAME)}),
        "neigh": shape(subcommands={"show": _IP_SHOW, "list": _IP_SHOW}),
        "netns": shape(subcommands={"list": shape()}),
    }),
}
PROGRAMS = tuple(sorted(SHAPES))


def command_problem(argv: list[Any] | tuple[Any, ...]) -> str | None:
    """Why this argv may not be a playbook command, or None."""
    if not argv or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in argv):
        return "`command` must be a non-empty list of strings (an argv; no shell)"
    words = [str(a) for a in argv]
    program = words[0]
    if "/" in program:
        return (f"`{program}`: give the program's name, not a path: commands are looked up in the "
                f"system PATH ({SYSTEM_PATH}) only")
    if program not in SHAPES:
        return (f"program `{program}` is not on the allow-list of read-only diagnostics "
                f"({', '.join(PROGRAMS)})")
    return _args_problem(program, words[1:], SHAPES[program])


def _args_problem(where: str, args: list[str], allowed: Shape) -> str | None:
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if name in allowed.valued:
                if not eq:
                    index += 1
                    if index == len(args):
                        return f"`{where} {name}` needs a value"
                    value = args[index]
                # a value never starts with "-": some tools' parsers would read `-i -r` as two flags
                if value.startswith("-") or not re.fullmatch(allowed.valued[name], value):
                    return f"`{where} {name} {value}`: that value is not allowed (it must match {allowed.valued[name]})"
            elif eq or name not in allowed.flags:
                listed = " ".join(sorted(allowed.flags | set(allowed.valued))) or "none"
                return (f"`{where} {arg}` is not an allowed read-only argument (allowed flags: {listed}; "
                        "no abbreviations or bundled short flags)")
        elif allowed.subcommands:
            if arg not in allowed.subcommands:
                return (f"`{where} {arg}`: subcommand not allowed; read-only subcommands are "
                        f"{', '.join(sorted(allowed.subcommands))}")
            return _args_problem(f"{where} {arg}", args[index + 1:], allowed.subcommands[arg])
        elif allowed.positional is None or not re.fullmatch(allowed.positional, arg):
            return f"`{where} {arg}`: unexpected argument (only the listed read-only shapes may run)"
        index += 1
    return None


def run_command(argv: tuple[str, ...], timeout: float, failure_status: str) -> CheckResult:
    """Run argv (no shell, the program from SYSTEM_PATH, with PATH=SYSTEM_PATH); exit 0
    passes, non-zero gives `failure_status`; output goes to the evidence."""
    shown = redact_argv(argv)
    evidence: dict[str, Any] = {"argv": shown}
    problem = command_problem(list(argv))  # checked at load time too: a Step can be built by hand
    if problem:
        return CheckResult(ERROR, f"refused: {problem}", evidence)
    executable = shutil.which(argv[0], path=SYSTEM_PATH)
    if executable is None:
        return CheckResult(SKIP, f"{argv[0]} is not installed (looked in {SYSTEM_PATH})", evidence)
    evidence["executable"] = executable
    try:  # its own process group: a timeout kills the command's children too
        proc = run_child([executable, *argv[1:]], timeout, env={**os.environ, "PATH": SYSTEM_PATH})
    except FileNotFoundError:
        return CheckResult(SKIP, f"{argv[0]} is not installed", evidence)
    except PermissionError as exc:
        return CheckResult(ERROR, f"cannot run {argv[0]}: {exc}", evidence)
    if proc.timed_out:
        evidence["stdout"] = redact_text(_tail(proc.stdout))
        return CheckResult(ERROR, f"timed out after {timeout:g} s (its process group was killed)", evidence)
    evidence.update({"exit_code": proc.returncode, "seconds": round(proc.seconds, 2),
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
