"""The findings panel: live telemetry findings, worst first; Enter opens the KB entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..format import SEVERITY_ICON, SEVERITY_STYLE

if TYPE_CHECKING:  # the telemetry package is imported by the sampling thread, off the first frame's path
    from ...telemetry.snapshot import SEVERITIES, Finding


def finding_label(finding: Finding) -> Text:
    text = Text()
    text.append(f"{SEVERITY_ICON.get(finding.severity, '?')} ", style=SEVERITY_STYLE.get(finding.severity, ""))
    if finding.gpu is not None and f"GPU {finding.gpu}" not in finding.message:
        text.append(f"GPU{finding.gpu} ", style="bold")
    text.append(finding.message)
    if finding.kb:
        text.append(f"  → {finding.kb}", style="dim")
    return text


def sorted_findings(findings: tuple[Finding, ...]) -> list[Finding]:
    from ...telemetry.snapshot import SEVERITIES

    return sorted(findings, key=lambda f: (-SEVERITIES.index(f.severity), f.gpu if f.gpu is not None else -1, f.id))


class FindingsList(OptionList):
    """`show(findings)` rebuilds only when the set of findings changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.findings: list[Finding] = []
        self._shown: list[Finding] | None = None

    def show(self, findings: tuple[Finding, ...]) -> None:
        ordered = sorted_findings(findings)
        if ordered == self._shown:
            return
        self._shown = ordered
        highlighted = self.highlighted
        self.findings = ordered
        self.clear_options()
        if not ordered:
            self.add_option(Option(Text("✓ no findings", style="green"), disabled=True))
            return
        self.add_options(Option(finding_label(f), id=str(i)) for i, f in enumerate(ordered))
        if highlighted is not None and highlighted < len(ordered):
            self.highlighted = highlighted

    def selected_finding(self, index: int | None = None) -> Finding | None:
        index = self.highlighted if index is None else index
        if index is None or index >= len(self.findings):
            return None
        return self.findings[index]
