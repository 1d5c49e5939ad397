"""`make mutate`: mutmut over the core modules where a wrong answer is costly (not part of CI).

Each module is mutated in its own scratch copy of the working tree (so a run never
writes into the shared checkout and other people's edits in progress don't disturb it),
with only the fast tests that are about that module. Per module it prints killed /
survived / timeout / other counts and writes the surviving mutants' diffs to
OUT/<module>.survivors.txt and the counts to OUT/results.json (default OUT:
/tmp/opsconsole-mutation, outside the checkout).

    .venv/bin/python tests/mutation/mutate.py [--only throttle,matcher] [--timeout 900] [--out DIR]

How to read the survivors: docs/bench.md ("Mutation testing").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# module id -> (file to mutate, the fast tests that are about it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "throttle": ("opsconsole/telemetry/throttle.py",
                 ["tests/telemetry/test_small_parts.py", "tests/telemetry/test_throttle_reasons.py"]),
    "matcher": ("opsconsole/kb/matcher.py",
                ["tests/kb/test_matcher.py", "tests/kb/test_known_messages.py"]),
    "store": ("opsconsole/runs/store.py", ["tests/runs/test_store.py"]),
    "findings": ("opsconsole/telemetry/findings.py", ["tests/telemetry/test_findings.py"]),
    "redact": ("opsconsole/redact.py", ["tests/core/test_redact.py"]),
    "commands": ("opsconsole/playbooks/commands.py",
                 ["tests/playbooks/test_runner.py", "tests/security/test_hardening.py"]),
}
STATUS_WORDS = ("killed", "survived", "timeout", "suspicious", "skipped", "no tests", "not checked",
                "segfault", "check was interrupted by user", "caught by type check")


def scratch_copy(dest: Path) -> None:
    """The working tree as it is now (tracked + untracked-not-ignored files), without .git."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def write_config(work: Path, source: str, tests: list[str]) -> None:
    existing = [t for t in tests if (work / t).exists()]
    selection = "\n    ".join(existing)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = opsconsole\n"
        "also_copy =\n    kb\n    playbooks\n"  # data the code finds next to the package (paths.py)
        f"only_mutate = {source}\n"
        f"pytest_add_cli_args_test_selection =\n    {selection}\n"
        "pytest_add_cli_args =\n    -p no:randomly\n    -p no:cacheprovider\n    -x\n    -q\n"
        "    -o\n    addopts=\n",
        encoding="utf-8")


def run_module(name: str, timeout: float, out: Path) -> dict[str, object]:
    source, tests = MODULES[name]
    work = Path(tempfile.mkdtemp(prefix=f"mutate-{name}-"))
    started = time.monotonic()
    try:
        scratch_copy(work)
        write_config(work, source, tests)
        env = dict(os.environ, PYTHONPATH="", MUTANT_UNDER_TEST="")
        env.pop("MUTANT_UNDER_TEST")
        mutmut = [sys.executable, "-m", "mutmut"]
        try:
            proc = subprocess.run([*mutmut, "run", "--max-children", "1"], cwd=work, env=env, timeout=timeout,
                                  capture_output=True, text=True)
            run_tail = (proc.stdout + proc.stderr)[-2000:]
            timed_out = False
        except subprocess.TimeoutExpired as exc:
            run_tail = str(exc.stdout or "")[-2000:]
            timed_out = True
        results = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=120).stdout
        counts: dict[str, int] = {}
        survivors = []
        for line in results.splitlines():
            match = re.match(r"\s*(\S+): (.+)$", line)
            if not match or match.group(2) not in STATUS_WORDS:
                continue
            counts[match.group(2)] = counts.get(match.group(2), 0) + 1
            if match.group(2) == "survived":
                survivors.append(match.group(1))
        diffs = []
        for mutant in survivors:
            shown = subprocess.run([*mutmut, "show", mutant], cwd=work, env=env, capture_output=True, text=True,
                                   timeout=60).stdout
            diffs.append(f"### {mutant}\n{shown}")
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.survivors.txt").write_text("\n".join(diffs), encoding="utf-8")
        tested = sum(v for k, v in counts.items() if k not in ("not checked", "skipped"))
        return {"module": source, "counts": counts, "survived": len(survivors), "tested": tested,
                "survivor_rate": round(len(survivors) / tested, 3) if tested else None,
                "complete": not timed_out and "not checked" not in counts,
                "seconds": round(time.monotonic() - started), "tail": "" if counts.get("killed") else run_tail}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MODULES), help="comma-separated: " + ", ".join(MODULES))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per module (default 1200)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "opsconsole-mutation"), help="where survivors and results.json go")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        print(f"mutate: unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}", file=sys.stderr)
        return 3
    if subprocess.run([sys.executable, "-c", "import mutmut"], capture_output=True).returncode != 0:
        print(f"mutate: mutmut is not installed in {sys.executable} (make mutate installs it)", file=sys.stderr)
        return 3
    out = Path(args.out)
    summary = {}
    for name in names:
        print(f"[mutate] {name}: {MODULES[name][0]} (timeout {args.timeout:.0f} s)", flush=True)
        summary[name] = run_module(name, args.timeout, out)
        row = summary[name]
        print(f"[mutate]   {row['counts']} -> {row['survived']} survived of {row['tested']} tested"
              f"{'' if row['complete'] else ' (INCOMPLETE: timeout)'} in {row['seconds']} s", flush=True)
        if row.get("tail"):
            print(row["tail"], flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
