"""Plain data of the knowledge base: entries, their patterns, and diagnoses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Root-cause labels (the dev corpus and every entry's `category` use exactly these).
CATEGORIES: tuple[str, ...] = (
    "cuda_oom", "cpu_ram_oom", "disk_space",
    "driver_library_mismatch", "no_kernel_image", "torch_cpu_only", "cuda_not_visible",
    "device_mismatch", "dtype_mismatch", "nan_inf",
    "illegal_memory_access", "cudnn_error", "cublas_error",
    "nccl_error",
    "xformers_attention", "bitsandbytes", "version_incompat",
    "model_download_offline", "checkpoint_mismatch",
    "gpu_hardware_xid",
    "dataloader_workers",
)

AREAS: tuple[str, ...] = ("installation", "training", "generation", "hardware", "multi-gpu")


@dataclass(frozen=True)
class KbPattern:
    """One signal of an entry: a compiled regex, its weight, and the literals that gate it."""

    source: str
    regex: re.Pattern[str]
    weight: float
    literals: tuple[str, ...]  # lower-case; any match of `regex` contains one of them
    line: int | None = None  # line in the entry file, for messages


@dataclass(frozen=True)
class KbEntry:
    id: str
    title: str
    category: str
    area: str
    patterns: tuple[KbPattern, ...]
    excludes: tuple[KbPattern, ...]
    telemetry: tuple[str, ...]
    playbook: str
    links: tuple[str, ...]
    body: str
    path: Path | None = None

    def section(self, name: str) -> str:
        """Text of the body's `## <name>...` section (empty if absent)."""
        match = re.search(rf"^##\s+{re.escape(name)}[^\n]*\n(.*?)(?=^##\s|\Z)", self.body, re.M | re.S | re.I)
        return match.group(1).strip() if match else ""

    @property
    def fix_summary(self) -> str:
        """The first fix of the body's `## Fix` section: what to try first."""
        fix = self.section("Fix")
        if not fix:
            return ""
        blocks = re.split(r"\n\s*\n", fix)
        summary = blocks[0]
        # A lead-in sentence ending in ':' is useless without the command under it.
        if summary.rstrip().endswith(":") and len(blocks) > 1:
            summary += "\n\n" + blocks[1]
        return summary.strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "category": self.category,
            "area": self.area,
            "patterns": [{"regex": p.source, "weight": p.weight} for p in self.patterns],
            "excludes": [p.source for p in self.excludes],
            "telemetry": list(self.telemetry),
            "playbook": self.playbook,
            "links": list(self.links),
            "path": str(self.path) if self.path else None,
        }


@dataclass(frozen=True)
class Evidence:
    line: int  # 1-based line number in the log
    text: str

    def __post_init__(self) -> None:  # evidence quotes the log, which may print secrets
        from ..redact import redact_text

        object.__setattr__(self, "text", redact_text(self.text))

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "text": self.text}


@dataclass(frozen=True)
class Diagnosis:
    id: str
    category: str
    title: str
    score: float
    evidence: list[Evidence]
    playbook: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "title": self.title,
            "score": self.score,
            "evidence": [e.to_dict() for e in self.evidence],
            "playbook": self.playbook,
        }


@dataclass(frozen=True)
class MatchResult:
    matches: list[Diagnosis]
    lines_scanned: int
    bytes_scanned: int = 0

    @property
    def empty_input(self) -> bool:
        return self.bytes_scanned == 0

    def to_dict(self) -> dict[str, Any]:
        return {"matches": [d.to_dict() for d in self.matches], "lines_scanned": self.lines_scanned}


@dataclass
class KnowledgeBase:
    entries: dict[str, KbEntry] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)
    _matcher_index: Any = field(default=None, repr=False, compare=False)

    def get(self, entry_id: str) -> KbEntry | None:
        return self.entries.get(entry_id)

    def by_category(self, category: str) -> list[KbEntry]:
        return [e for e in self.entries.values() if e.category == category]

    def __len__(self) -> int:
        return len(self.entries)
