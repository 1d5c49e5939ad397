"""Loader for the dev corpus of real error logs in tests/data/logs/.

Each file starts with a header of ``# key: value`` lines closed by ``# ---``;
everything after that line is the log exactly as it was pasted upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "logs"

LABELS = frozenset(
    {
        "cuda_oom", "cpu_ram_oom", "disk_space",
        "driver_library_mismatch", "no_kernel_image", "torch_cpu_only", "cuda_not_visible",
        "device_mismatch", "dtype_mismatch", "nan_inf",
        "illegal_memory_access", "cudnn_error", "cublas_error",
        "nccl_error",
        "xformers_attention", "bitsandbytes", "version_incompat",
        "model_download_offline", "checkpoint_mismatch",
        "gpu_hardware_xid",
        "dataloader_workers",
    }
)

_HEADER_LINE = re.compile(rb"^#\s*([a-z_]+):\s*(.*?)\s*$")
_HEADER_END = b"# ---"


@dataclass(frozen=True)
class CorpusLog:
    path: Path
    source: str
    label: str
    kb: str | None
    text: str  # the log body, decoded leniently (the files may hold odd bytes)


def parse_corpus_file(path: Path) -> CorpusLog:
    """Split one corpus file into its header fields and the log body."""
    raw = path.read_bytes()
    fields: dict[str, str] = {}
    lines = raw.splitlines(keepends=True)
    for index, line in enumerate(lines):
        stripped = line.rstrip(b"\r\n")
        if stripped == _HEADER_END:
            body = b"".join(lines[index + 1 :])
            break
        match = _HEADER_LINE.match(stripped)
        if not match:
            raise ValueError(f"{path.name}:{index + 1}: header line is not '# key: value': {stripped!r}")
        fields[match.group(1).decode()] = match.group(2).decode("utf-8", "replace")
    else:
        raise ValueError(f"{path.name}: no '# ---' line ends the header")
    return CorpusLog(
        path=path,
        source=fields.get("source", ""),
        label=fields.get("label", ""),
        kb=fields.get("kb") or None,
        text=body.decode("utf-8", "replace"),
    )


def load_corpus(directory: Path = CORPUS_DIR) -> list[CorpusLog]:
    return [parse_corpus_file(p) for p in sorted(directory.glob("*.log"))]
