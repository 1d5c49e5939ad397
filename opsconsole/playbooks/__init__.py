"""Diagnostic playbooks: YAML in playbooks/, checks that read this machine, an engine with a verdict.

Core layer: imports neither Textual nor torch.
"""

from .checks import all_checks, get_check
from .context import PlaybookContext
from .loader import PlaybookSet, load_playbook_file, load_playbooks
from .model import Condition, ConclusionRule, Playbook, Step
from .results import CheckResult
from .runner import PlannedStep, PlaybookOutcome, PlaybookRunner, StepEvent, StepOutcome

__all__ = [
    "CheckResult", "Condition", "ConclusionRule", "PlannedStep", "Playbook", "PlaybookContext", "PlaybookOutcome",
    "PlaybookRunner", "PlaybookSet", "Step", "StepEvent", "StepOutcome", "all_checks", "get_check",
    "load_playbook_file", "load_playbooks",
]
