"""Environment: the CUDA/torch env probe, per interpreter, with the findings it raises."""

from __future__ import annotations

import asyncio
import os

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from ...telemetry.snapshot import CudaEnv, Finding
from ..format import SEVERITY_ICON, SEVERITY_STYLE
from .base import OpsScreen

ENV_FINDINGS = ("torch_", "nvml_driver_mismatch", "no_driver")


def env_table(env: CudaEnv, findings: list[Finding]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()

    def row(label: str, value: object, style: str = "") -> None:
        table.add_row(label, Text("n/a" if value is None or value == "" else str(value), style=style))

    for finding in findings:  # what matters first
        table.add_row(Text(SEVERITY_ICON.get(finding.severity, "?") + " finding", style=SEVERITY_STYLE.get(finding.severity)),
                      Text(f"{finding.message}" + (f"  → KB {finding.kb}" if finding.kb else "")))
    status_style = "green" if env.status == "ok" else "yellow" if env.status in ("no_torch", "not_probed") else "red"
    row("interpreter", env.python)
    row("probe", f"{env.status}{' — ' + env.message if env.message else ''}", status_style)
    row("torch", env.torch_version)
    row("built for CUDA", env.torch_cuda or ("CPU-only build" if env.torch_version else None),
        "" if env.torch_cuda else "yellow")
    row("cuDNN", env.cudnn_version)
    row("CUDA available", env.cuda_available, "green" if env.cuda_available else "yellow")
    if env.cuda_error:
        row("CUDA error", env.cuda_error, "red")
    row("devices", device_summary(env) or env.device_count)
    row("arch list", " ".join(env.arch_list))
    row("arch covers GPUs", env.arch_covered, "" if env.arch_covered is not False else "bold red")
    row("bf16", env.bf16_supported)
    row("SDPA", env.sdpa_available)
    for lib in env.libraries:
        row(f"  {lib.name}", lib.version or (f"not importable: {lib.error}" if lib.error else "not installed"),
            "" if lib.version else "dim")
    for name, value in env.env:
        row(f"  ${name}", value if value is not None else "(unset)", "" if value is not None else "dim")
    return table


def device_summary(env: CudaEnv) -> str:
    """"8 × NVIDIA H100 80GB HBM3 (sm 9.0)" — identical devices grouped, in index order."""
    groups: dict[tuple, list[int]] = {}
    for device in env.devices:
        groups.setdefault((device.name, device.capability), []).append(device.index)
    return ", ".join(f"{len(ids)} × {name} (sm {cap}, #{','.join(map(str, ids))})" if len(ids) > 1 else
                     f"#{ids[0]} {name} (sm {cap})" for (name, cap), ids in groups.items())


def env_findings(env: CudaEnv, base: tuple[Finding, ...]) -> list[Finding]:
    return [f for f in base if f.id.startswith(ENV_FINDINGS)]


class EnvironmentScreen(OpsScreen):
    MODE = "environment"
    BINDINGS = [Binding("slash", "other", "Probe another interpreter"), Binding("r", "reprobe", "Probe again")]

    def __init__(self) -> None:
        super().__init__()
        self.other: dict[str, CudaEnv] = {}
        self._shown_env: CudaEnv | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Vertical(classes="main", id="env-pane"):
            yield Input(placeholder="another interpreter, e.g. /opt/venvs/ml/bin/python (Enter probes it)", id="env-python", compact=True)
            with VerticalScroll(id="env-scroll"):
                yield Static("waiting for the probe…", id="env-main")
                yield Static("", id="env-other")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#env-pane").border_title = "CUDA environment"
        self.query_one("#env-scroll").focus()

    def show_snapshot(self, snapshot) -> None:
        env = snapshot.cuda_env
        if env == self._shown_env:
            return
        self._shown_env = env
        title = f"probe of {env.python or self.ops.settings.python} (the console's --python)"
        self.query_one("#env-main", Static).update(_titled(title, env_table(env, env_findings(env, snapshot.findings))))

    def action_other(self) -> None:
        self.query_one("#env-python", Input).focus()

    def action_reprobe(self) -> None:
        for python in list(self.other) or [self.ops.settings.python]:
            self.probe(python)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        python = os.path.expanduser(event.value.strip())
        if python:
            self.probe(python)

    @work(group="probe")
    async def probe(self, python: str) -> None:
        from ...telemetry import probe_cuda_env
        from ...telemetry.findings import evaluate

        self.query_one("#env-other", Static).update(Text(f"probing {python}… (imports torch: a few seconds)", style="dim"))
        env = await asyncio.to_thread(probe_cuda_env, python)
        self.other[python] = env
        findings: list[Finding] = []
        if self.ops.snapshot is not None:
            from dataclasses import replace

            try:
                findings = env_findings(env, tuple(evaluate(replace(self.ops.snapshot, cuda_env=env, findings=()))))
            except Exception:
                findings = []
        from rich.console import Group

        self.query_one("#env-other", Static).update(
            Group(*(_titled(f"probe of {p}", env_table(e, findings if p == python else [])) for p, e in self.other.items())))


def _titled(title: str, table: Table):
    from rich.console import Group

    return Group(Text(title, style="bold underline"), table, Text(""))
