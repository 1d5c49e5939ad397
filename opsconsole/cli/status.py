"""`opsconsole status`: GPUs, processes, host, CUDA env and findings; `--json` for scripts.

Exit codes (documented, for cron): 0 nothing above info, 1 a warning,
2 a critical finding, 3 usage error (e.g. unknown scenario).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import time
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..config import Settings, seconds_setting
from ..errors import UsageError
from ..telemetry import open_source
from ..telemetry.findings import exit_code_for
from ..telemetry.simulator import scenario_descriptions
from ..telemetry.snapshot import CudaEnv, GpuSnapshot, HostSnapshot, Snapshot
from .common import out, print_json

GIB = 1024 ** 3
SEVERITY_STYLE = {"info": "cyan", "warn": "yellow", "critical": "bold red"}
JSON_SCHEMA_VERSION = 1


WATCH_AT_REFRESH = "refresh"  # `--watch` without a value (argparse does not pass a const through `type`)

def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common], help="GPUs, processes, host, CUDA env and findings (exit 0/1/2 by severity)",
        description="Show every GPU, its processes, the host, the CUDA/torch environment of --python, and "
        "findings. Exit codes: 0 nothing above info, 1 warning, 2 critical, 3 usage error.",
    )
    parser.add_argument("--json", action="store_true", help="print the snapshot and findings as JSON")
    parser.add_argument("--list-scenarios", action="store_true", help="list the simulator's scenarios and exit")
    parser.add_argument("--watch", nargs="?", const=WATCH_AT_REFRESH, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default: the refresh setting) until Ctrl-C; with --json, one JSON object per line")
    parser.add_argument("--no-probe", action="store_true", help="skip the CUDA/torch environment probe (faster)")
    parser.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    if args.list_scenarios:
        return _list_scenarios(args.json)
    if args.watch == WATCH_AT_REFRESH:  # the bare flag
        args.watch = settings.refresh
    elif args.watch is not None:  # an explicit 0 is an error, not "the default"
        try:
            args.watch = seconds_setting("refresh", args.watch)
        except ValueError as exc:
            raise UsageError(f"--watch {exc}") from None
    explicit_python = getattr(args, "python", None)
    if explicit_python and not args.no_probe and shutil.which(explicit_python) is None:
        raise UsageError(f"--python {explicit_python}: no such executable interpreter "
                         "(give the path of your ML environment's python, e.g. ~/venvs/ml/bin/python)")
    source = open_source(simulate=getattr(args, "simulate", None), python=settings.python,
                         nvml_timeout=settings.nvml_timeout, probe_env=not args.no_probe)
    try:
        if args.watch is not None:
            return _watch(source, args.watch, args.json)
        source.wait_cuda_env(timeout=35)
        snapshot = source.sample()
        if args.json:
            print_json(snapshot_json(snapshot))
        else:
            out().print(render_snapshot(snapshot))
        return exit_code_for(snapshot.findings)
    finally:
        source.close()


def _list_scenarios(as_json: bool) -> int:
    descriptions = scenario_descriptions()
    if as_json:
        print_json([{"name": n, "description": d} for n, d in descriptions.items()])
        return 0
    table = Table("scenario", "description", box=None, show_header=True, header_style="bold")
    for name, description in descriptions.items():
        table.add_row(name, description)
    out().print(table)
    out().print("Use: opsconsole status --simulate SCENARIO", style="dim")
    return 0


def _watch(source: Any, interval: float, as_json: bool) -> int:
    """Refresh until Ctrl-C. Each sample is bounded by the NVML deadline, so a hung GPU
    cannot freeze the loop; the sleep is an Event wait so Ctrl-C lands immediately."""
    stop = threading.Event()
    code = 0
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `kill` ends the loop cleanly, exit code kept
    try:
        if as_json:
            while not stop.is_set():
                snapshot = source.sample()
                code = exit_code_for(snapshot.findings)
                sys.stdout.write(json.dumps(snapshot_json(snapshot), default=str) + "\n")
                sys.stdout.flush()
                stop.wait(interval)
        elif not out().is_terminal:  # piped or redirected: Rich Live draws nothing there; plain frames
            while not stop.is_set():
                snapshot = source.sample()
                code = exit_code_for(snapshot.findings)
                out().print(render_snapshot(snapshot, footer=f"refresh {interval:g} s"))
                out().print("")
                out().file.flush()
                stop.wait(interval)
        else:
            from rich.live import Live

            with Live(console=out(), auto_refresh=False, screen=False) as live:
                while not stop.is_set():
                    snapshot = source.sample()
                    code = exit_code_for(snapshot.findings)
                    live.update(render_snapshot(snapshot, footer=f"refresh {interval:g} s — Ctrl-C to quit"),
                                refresh=True)
                    stop.wait(interval)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code


# --- JSON -------------------------------------------------------------------

def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """The `status --json` document: the whole snapshot plus a few summary keys."""
    data = snapshot.to_dict()
    data["schema_version"] = JSON_SCHEMA_VERSION
    data["worst_severity"] = snapshot.worst_severity
    data["exit_code"] = exit_code_for(snapshot.findings)
    return data


# --- Rich rendering -----------------------------------------------------------

def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / GIB:.1f}"


def _num(value: float | None, unit: str = "", fmt: str = ".0f") -> str:
    return "—" if value is None else f"{value:{fmt}}{unit}"


def _nvml_line(snapshot: Snapshot) -> Text:
    n = snapshot.nvml
    if n.status == "ok":
        text = Text(f"NVIDIA driver {n.driver_version or '?'} · CUDA {n.cuda_driver_version or '?'} · "
                    f"{len(snapshot.gpus)} GPU(s) · source {snapshot.source}", style="bold")
    else:
        style = "yellow" if n.status in ("no_driver", "library_not_found") else "bold red"
        text = Text(f"NVML: {n.message or n.status}", style=style)
    return text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(name: str | None) -> str:
    return (name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")


def _gpu_notes(g: GpuSnapshot) -> str:
    """Only what deserves attention: throttling, memory health, a degraded link, MIG."""
    notes = [r for r in g.throttle_reasons if r != "gpu_idle"]
    if g.ecc.volatile_uncorrected:
        notes.append(f"ECC uncorrected {g.ecc.volatile_uncorrected}")
    if g.ecc.remapped_rows_failure:
        notes.append("row remap FAILED")
    elif g.ecc.remapped_rows_pending:
        notes.append("row remap pending")
    if g.ecc.retired_pages_pending:
        notes.append("page retirement pending")
    p = g.pcie
    if (p.gen, p.width) != (p.max_gen, p.max_width) and p.gen is not None:
        notes.append(f"PCIe Gen{p.gen} x{p.width} (max Gen{p.max_gen} x{p.max_width})")
    if g.mig_mode:
        notes.append(f"MIG: {len(g.mig_devices)} instance(s)")
    if g.persistence_mode is False:
        notes.append("persistence off")
    return ", ".join(notes)


def _gpu_table(gpus: tuple[GpuSnapshot, ...], width: int) -> Table:
    wide = width >= 120  # clocks and P-state only where they fit
    columns = ["#", "name", "util %", "mem GiB", "°C", "W"] + (["SM MHz", "P"] if wide else []) + ["notes"]
    table = Table(title="GPUs", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column != "notes", overflow="fold" if column == "notes" else "ellipsis",
                         max_width=18 if column == "name" else None)
    for g in gpus:
        if g.state not in ("ok", "stale"):
            table.add_row(str(g.index), _short(g.name), *[""] * (len(columns) - 3),
                          Text(f"{g.state.upper()}: {g.error or ''}",
                               style="dim" if g.state == "not_accessible" else "bold red"))
            continue
        row = [str(g.index), _short(g.name), f"{_num(g.utilization.gpu)}/{_num(g.utilization.memory)}",
               f"{_gib(g.memory.used)}/{_gib(g.memory.total)}",
               f"{_num(g.temperature.current)}/{_num(g.temperature.slowdown)}",
               f"{_num(g.power.draw)}/{_num(g.power.limit)}"]
        if wide:
            row += [f"{_num(g.clocks.sm)}/{_num(g.clocks.sm_max)}",
                    "—" if g.performance_state is None else str(g.performance_state)]
        if g.state == "stale":  # NVML not responding: the last values, dimmed
            table.add_row(*row, Text("STALE: NVML not answering", style="bold red"), style="dim")
        else:
            table.add_row(*row, Text(_gpu_notes(g), style="yellow"))
    table.caption = ("util %: gpu/memory · °C: now/slowdown · W: draw/limit"
                     + (" · SM MHz: now/max · P: performance state" if wide else ""))
    table.caption_justify = "left"
    return table


def _process_table(gpus: tuple[GpuSnapshot, ...], width: int, limit: int = 60) -> Table | None:
    procs = sorted((p for g in gpus for p in g.processes), key=lambda p: (p.gpu, -(p.used_memory or 0)))
    if not procs:
        return None
    table = Table(title=f"GPU processes ({len(procs)})", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("gpu", "pid", "user", "VRAM GiB", "CPU %", "RSS GiB", "command"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    command_width = max(16, width - 56)
    for p in procs[:limit]:
        table.add_row(str(p.gpu), str(p.pid), p.user or ("(hidden)" if not p.visible else "?"),
                      _gib(p.used_memory), _num(p.cpu_percent), _gib(p.rss),
                      _clip(p.command or ("pid not on this host (container?)" if not p.visible else ""), command_width))
    if len(procs) > limit:
        table.caption = f"{len(procs) - limit} more not shown (see --json)"
    return table


def _host_table(h: HostSnapshot) -> Table:
    table = Table(title=f"Host {h.hostname}", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    load = " ".join(f"{x:.2f}" for x in h.load_avg) if h.load_avg else "—"
    table.add_row("CPU", f"{_num(h.cpu_percent, ' %')} of {h.cpu_count or '?'} cores · load {load}")
    table.add_row("RAM", f"{_gib(h.memory_used)} / {_gib(h.memory_total)} GiB · swap {_gib(h.swap_used)} / {_gib(h.swap_total)} GiB")
    for d in h.disks:
        table.add_row(f"disk {d.label}", f"{_gib(d.free)} GiB free of {_gib(d.total)} GiB · {d.path}")
    if h.uptime_s is not None:
        table.add_row("uptime", f"{h.uptime_s / 86400:.1f} days")
    return table


def _env_table(e: CudaEnv) -> Table:
    table = Table(title=f"CUDA environment ({e.python or 'python'})", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    if e.status != "ok":
        table.add_row("status", Text(f"{e.status}: {e.message}", style="yellow"))
    else:
        table.add_row("torch", f"{e.torch_version} · CUDA build {e.torch_cuda or 'none (CPU-only)'} · cuDNN {e.cudnn_version or '—'}")
        available = "yes" if e.cuda_available else f"no ({e.cuda_error or 'unknown'})"
        table.add_row("cuda available", available)
        for label, text in _device_rows(e):
            table.add_row(label, text)
        if e.arch_list:
            covered = {True: "covers every GPU", False: "MISSING a GPU's arch", None: ""}[e.arch_covered]
            table.add_row("arch list", f"{' '.join(e.arch_list)} {covered}")
        table.add_row("bf16 / SDPA", f"{_yn(e.bf16_supported)} / {_yn(e.sdpa_available)}")
    if e.libraries:
        table.add_row("libraries", " · ".join(f"{lib.name} {lib.version}" if not lib.error else f"{lib.name} ✗"
                                              for lib in e.libraries))
    set_env = [f"{k}={v}" for k, v in e.env if v is not None]
    if set_env:
        table.add_row("env", " ".join(set_env))
    return table


def _device_rows(e: CudaEnv) -> list[tuple[str, str]]:
    """One row per run of identical devices: "devices 0-7" rather than eight lines."""
    rows: list[tuple[str, str]] = []
    devices = list(e.devices)
    i = 0
    while i < len(devices):
        j = i
        while j + 1 < len(devices) and (devices[j + 1].name, devices[j + 1].capability) == (devices[i].name, devices[i].capability):
            j += 1
        d = devices[i]
        label = f"device {d.index}" if i == j else f"devices {d.index}-{devices[j].index}"
        rows.append((label, f"{d.name} (sm_{(d.capability or '?').replace('.', '')})"))
        i = j + 1
    return rows


def _yn(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "—"}[value]


def _findings_table(snapshot: Snapshot) -> RenderableType:
    """Findings as a list (a message needs the full width), most severe first."""
    if not snapshot.findings:
        return Text("Findings: none.", style="green")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for f in snapshot.findings:
        meta = f"id {f.id}" + (f" · GPU {f.gpu}" if f.gpu is not None else "") + (f" · kb {f.kb}" if f.kb else "")
        message = Text(f.message)
        message.append(f"  [{meta}]", style="dim")
        grid.add_row(Text(f"  {f.severity.upper():<8}", style=SEVERITY_STYLE[f.severity]), message)
    return Group(Text(f"Findings ({len(snapshot.findings)})", style="bold"), grid)


def render_snapshot(snapshot: Snapshot, footer: str = "") -> RenderableType:
    parts: list[RenderableType] = [_nvml_line(snapshot)]
    width = out().width
    if snapshot.gpus:
        parts.append(_gpu_table(snapshot.gpus, width))
        procs = _process_table(snapshot.gpus, width)
        if procs is not None:
            parts.append(procs)
    parts += [_host_table(snapshot.host), _env_table(snapshot.cuda_env), _findings_table(snapshot)]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.time))
    parts.append(Text(f"{stamp} · sampled in {snapshot.sample_ms or 0:.1f} ms" + (f" · {footer}" if footer else ""),
                      style="dim"))
    return Group(*parts)
