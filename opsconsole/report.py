"""The support bundle behind `opsconsole report`: one snapshot of the box to attach to a ticket.

    report.json   status snapshot + findings, CUDA env and versions, recent XIDs,
                  the last N runs with their diagnoses and log tails
    report.md     the same for people
    <name>.tar.gz both files

Every string goes through opsconsole.redact before it is written (redact_tree), so a
secret in an environment variable, a command line or a log line never reaches the bundle.
Core module: imports neither torch nor textual.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tarfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from . import __version__
from .redact import redact_tree

LOG_TAIL_BYTES = 64 * 1024


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log, ANSI stripped, reading at most the last 64 KiB."""
    from .runs.tail import normalize_line

    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace")
    if size > LOG_TAIL_BYTES:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return list(deque((normalize_line(line) for line in text.splitlines()), maxlen=lines))


def collect_runs(settings: Any, limit: int, log_lines: int) -> tuple[list[dict[str, Any]], str | None]:
    """The newest `limit` runs with status, error, diagnoses and log tail; plus the registry's recovery note."""
    from .runs import RunManager

    manager = RunManager(settings)
    runs = []
    for record in manager.list()[:limit]:
        record.run_dir.remember_secrets()
        result = record.run_dir.read_result() or {}
        runs.append({
            "id": record.id, "kind": record.kind, "status": record.status, "params": record.params,
            "device": record.device, "gpus": record.gpus, "started_at": record.started_at,
            "ended_at": record.ended_at, "exit_code": record.exit_code, "signal": record.signal,
            "error": result.get("error"), "metrics": record.metrics or result.get("metrics") or {},
            "findings": result.get("findings") or [],
            "diagnoses": [{k: d.get(k) for k in ("id", "title", "score", "playbook", "evidence")}
                          for d in result.get("diagnoses") or []],
            "log_tail": log_tail(record.run_dir.log, log_lines),
        })
    return runs, manager.store.recovery_note


def collect_snapshot(simulate: str | None, python: str | None, nvml_timeout: float, probe_timeout: float) -> Any:
    from .telemetry import open_source

    source = open_source(simulate=simulate, python=python, nvml_timeout=nvml_timeout, probe_timeout=probe_timeout)
    try:
        source.wait_cuda_env(timeout=probe_timeout + 5)
        return source.sample()
    finally:
        source.close()


def build_report(settings: Any, simulate: str | None = None, runs: int = 10, log_lines: int = 40,
                 probe_timeout: float = 30.0) -> dict[str, Any]:
    snapshot = collect_snapshot(simulate, settings.python, settings.nvml_timeout, probe_timeout)
    data = snapshot.to_dict()
    run_list, recovery = collect_runs(settings, runs, log_lines)
    env = data.get("cuda_env") or {}
    report = {
        "report_version": 1,
        "generated_at": time.time(),
        "opsconsole_version": __version__,
        "host": {"hostname": platform.node(), "platform": platform.platform(), "console_python": sys.version.split()[0],
                 "console_executable": sys.executable},
        "versions": {
            "driver": (data.get("nvml") or {}).get("driver_version"),
            "nvml": (data.get("nvml") or {}).get("nvml_version"),
            "cuda_driver": (data.get("nvml") or {}).get("cuda_driver_version"),
            "torch": env.get("torch_version"), "torch_cuda": env.get("torch_cuda"),
            "cudnn": env.get("cudnn_version"),
            "libraries": {lib["name"]: lib.get("version") for lib in env.get("libraries") or []},
        },
        "snapshot": data,
        "findings": data.get("findings") or [],
        "xid_events": data.get("xid_events") or [],
        "runs": run_list,
        "registry_note": recovery,
    }
    return redact_tree(report)


# --- Markdown ------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value).replace("|", "/").replace("\n", " ")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def to_markdown(report: dict[str, Any]) -> str:
    snap = report["snapshot"]
    nvml = snap.get("nvml") or {}
    env = snap.get("cuda_env") or {}
    v = report["versions"]
    md = [f"# opsconsole report — {report['host']['hostname']}", "",
          f"Generated {_when(report['generated_at'])} by opsconsole {report['opsconsole_version']} "
          f"(source: {snap.get('source')}).", "",
          "## Findings", ""]
    if report["findings"]:
        md += ["| severity | finding | GPU | message | KB |", "|---|---|---|---|---|"]
        md += [f"| {_cell(f['severity'])} | {_cell(f['id'])} | {_cell(f.get('gpu'))} | {_cell(f['message'])} | "
               f"{_cell(f.get('kb'))} |" for f in report["findings"]]
    else:
        md.append("No findings.")
    md += ["", "## GPUs", "", f"NVML: {_cell(nvml.get('status'))} {_cell(nvml.get('message'))}", ""]
    if snap.get("gpus"):
        md += ["| # | name | state | VRAM used / total (MiB) | temp °C | power W | processes |", "|---|---|---|---|---|---|---|"]
        for g in snap["gpus"]:
            mem, temp, power = g.get("memory") or {}, g.get("temperature") or {}, g.get("power") or {}
            used = f"{(mem.get('used') or 0) / 2**20:.0f} / {(mem.get('total') or 0) / 2**20:.0f}" if mem.get("total") else "-"
            md.append(f"| {g['index']} | {_cell(g.get('name'))} | {_cell(g.get('state'))} | {used} | "
                      f"{_cell(temp.get('current'))} | {_cell(power.get('draw'))} | "
                      f"{len(g.get('processes') or [])} |")
    md += ["", "## CUDA environment and versions", "",
           f"- driver {_cell(v['driver'])}, NVML {_cell(v['nvml'])}, max CUDA {_cell(v['cuda_driver'])}",
           f"- probe ({_cell(env.get('python'))}): {_cell(env.get('status'))} {_cell(env.get('message'))}",
           f"- torch {_cell(v['torch'])} (CUDA {_cell(v['torch_cuda'])}, cuDNN {_cell(v['cudnn'])}), "
           f"cuda available: {_cell(env.get('cuda_available'))}, arch list: {', '.join(env.get('arch_list') or []) or '-'}"]
    md += [f"- {name} {_cell(ver)}" for name, ver in sorted(v["libraries"].items())]
    md += ["", "## Recent XIDs", ""]
    if report["xid_events"]:
        md += ["| time | GPU | XID | meaning |", "|---|---|---|---|"]
        md += [f"| {_when(x.get('time'))} | {_cell(x.get('gpu'))} | {x.get('xid')} | {_cell(x.get('meaning') or x.get('message'))} |"
               for x in report["xid_events"]]
    else:
        md.append("None seen.")
    md += ["", f"## Last {len(report['runs'])} runs", ""]
    if report.get("registry_note"):
        md += [f"Registry: {report['registry_note']}", ""]
    for run in report["runs"]:
        md += [f"### {run['id']} — {run['status']}", "",
               f"`{run['kind']} {' '.join(run['params'] or [])}` on {_cell(run['device'])}, started {_when(run['started_at'])}, "
               f"exit {_cell(run['exit_code'])}" + (f", signal {run['signal']}" if run.get("signal") else "")]
        if run.get("error"):
            md.append(f"\nError: {run['error']}")
        for d in run["diagnoses"]:
            md.append(f"\n- diagnosis **{d['id']}**: {d.get('title')} (playbook: {_cell(d.get('playbook'))})")
        if run["log_tail"]:
            md += ["", "```", *run["log_tail"], "```"]
        md.append("")
    return "\n".join(md) + "\n"


def write_bundle(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json + report.md in a new private folder under out_dir, and a .tar.gz of both.

    out_dir may be shared (/tmp): the folder is created exclusively with an unpredictable
    suffix (mkdtemp: 0700, ours), every file with O_EXCL|O_NOFOLLOW, so a planted symlink or a
    folder pre-created by someone else is never written through. A failure removes what was
    written: no half bundle is left behind.
    """
    import json
    import shutil
    import tempfile

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(report["generated_at"]))
    host = re.sub(r"[^A-Za-z0-9._-]", "_", str(report["host"]["hostname"] or "host"))
    folder = Path(tempfile.mkdtemp(prefix=f"opsconsole-report-{host}-{stamp}-", dir=out_dir))
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "tar": out_dir / f"{folder.name}.tar.gz"}
    texts = {"json": json.dumps(report, indent=2, default=str, ensure_ascii=False) + "\n", "markdown": to_markdown(report)}
    try:
        for key, text in texts.items():
            with _create_private(paths[key]) as fh:
                fh.write(printable_utf8(text).encode("utf-8"))
        with _create_private(paths["tar"]) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for key in ("json", "markdown"):
                tar.add(paths[key], arcname=f"{folder.name}/{paths[key].name}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if paths["tar"].is_file() and not paths["tar"].is_symlink():
            paths["tar"].unlink(missing_ok=True)
        raise
    return paths


def _create_private(path: Path):
    """A new file (never an existing one, never through a symlink), mode 0600, for writing bytes."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")


def printable_utf8(text: str) -> str:
    """`text` with undecodable bytes (argv or logs held as surrogate escapes, e.g. `$'\\xff'`)
    as U+FFFD: they made every later report fail with UnicodeEncodeError."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _has_surrogates(text) else text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
