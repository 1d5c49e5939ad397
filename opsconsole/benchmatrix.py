"""The model-comparison matrix behind `opsconsole bench`.

Each cell is a real smoke inference run (gemma-infer / sd-infer) launched through the
RunManager and waited for, so a cell measures exactly what `opsconsole run` would.
A cell that fails, times out or cannot start becomes a row with its status and
diagnosis; the matrix goes on. Core module: imports neither torch nor textual.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Metrics copied from a run's result into its row (the rest of result.json stays in the run dir).
ROW_METRICS = ("it_per_s", "s_per_image", "decode_tokens_per_s", "ttft_s", "peak_vram_bytes", "peak_reserved_bytes",
               "total_s", "warmup_s", "params", "weights", "device", "width", "height", "steps", "max_new_tokens",
               "attn_processor")

# Hub ids whose cached weights replace --weights random on CUDA (first one found wins).
CACHED_GEMMA = ("google/gemma-2-2b-it", "google/gemma-2-2b")
CACHED_SD15 = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")


@dataclass(frozen=True)
class BenchCell:
    """One point of the matrix: a job kind and the flags that vary."""

    kind: str
    model: str
    dtype: str
    attn: str
    compile: bool
    argv: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.model} {self.dtype} {self.attn}{' +compile' if self.compile else ''}"


def _cached(repo_ids: Iterable[str]) -> str | None:
    from .jobs.model_source import cached_snapshot  # torch-free

    return next((r for r in repo_ids if cached_snapshot(r) is not None), None)


def job_supports(kind: str, flag: str) -> bool:
    """Whether `opsconsole run KIND` accepts `flag` (read from the job's parser, no torch)."""
    from .runs.launch import job_parser

    return any(flag in action.option_strings for action in job_parser(kind)._actions)


def gemma_cell(device: str, model: str, weights: str, dtype: str, attn: str, compile: bool,
               new_tokens: int, turns: int = 1) -> BenchCell:
    argv = ["--device", device, "--model", model, "--weights", weights, "--dtype", dtype, "--attn", attn,
            "--max-new-tokens", str(new_tokens), "--turns", str(turns)]
    return BenchCell("gemma-infer", model, dtype, attn, compile, tuple(argv + (["--compile"] if compile else [])))


def sd_cell(device: str, model: str, weights: str, dtype: str, attn: str, compile: bool, steps: int,
            size: int | None = None) -> BenchCell:
    argv = ["--device", device, "--model", model, "--weights", weights, "--dtype", dtype, "--attn", attn,
            "--steps", str(steps), "--warmup-steps", "2"]
    if size:
        argv += ["--width", str(size), "--height", str(size)]
    return BenchCell("sd-infer", model, dtype, attn, compile, tuple(argv + (["--compile"] if compile else [])))


def default_matrix(device: str, kinds: Iterable[str] = ("gemma-infer", "sd-infer")) -> list[BenchCell]:
    """The cells for `device`: tiny models on CPU (seconds each), full-size architectures on CUDA.

    CUDA uses the cached checkpoint when there is one, else --weights random on the same
    architecture (real compute and memory; the text / images are meaningless).
    Compile cells for a kind appear only when its job has a --compile flag.
    """
    kinds = set(kinds)
    cells: list[BenchCell] = []
    if device == "cpu":
        if "gemma-infer" in kinds:
            cells += [gemma_cell("cpu", "tiny", "pretrained", dtype, "eager", False, new_tokens=32)
                      for dtype in ("fp32", "bf16")]
        if "sd-infer" in kinds:
            cells += [sd_cell("cpu", "tiny", "pretrained", "fp32", attn, False, steps=4) for attn in ("sdpa", "eager")]
        return cells
    if "gemma-infer" in kinds:
        cached = _cached(CACHED_GEMMA)
        model, weights = (cached, "pretrained") if cached else ("gemma-2-2b", "random")
        # Gemma 2 has no sdpa under transformers 5 (it cannot soft-cap): flex_attention is its fused backend.
        for dtype, attn, compile in (("bf16", "eager", False), ("bf16", "flex_attention", False),
                                     ("fp16", "eager", False), ("bf16", "eager", True)):
            cells.append(gemma_cell(device, model, weights, dtype, attn, compile, new_tokens=128))
    if "sd-infer" in kinds:
        cached = _cached(CACHED_SD15)
        model, weights = (cached, "pretrained") if cached else ("sd15", "random")
        modes = [("sdpa", False), ("eager", False)] + ([("sdpa", True)] if job_supports("sd-infer", "--compile") else [])
        cells += [sd_cell(device, model, weights, "fp16", attn, compile, steps=20, size=512) for attn, compile in modes]
    return cells


def _row(cell: BenchCell, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"kind": cell.kind, "model": cell.model, "dtype": cell.dtype, "attn": cell.attn, "compile": cell.compile,
            "metrics": metrics}


def row_from_result(cell: BenchCell, result: dict[str, Any]) -> dict[str, Any]:
    """A matrix row from a run's result.json: its status, headline metrics and, on failure, diagnosis."""
    found = result.get("metrics") or {}
    metrics: dict[str, Any] = {"status": result.get("status"), "run_id": result.get("id")}
    metrics.update({k: found[k] for k in ROW_METRICS if k in found})
    if result.get("status") != "ok":
        metrics["error"] = result.get("error") or f"exit {result.get('exit_code')} signal {result.get('signal_name')}"
        diagnoses = result.get("diagnoses") or []
        if diagnoses:
            top = diagnoses[0]
            metrics["diagnosis"] = {"id": top.get("id"), "title": top.get("title")}
    return _row(cell, metrics)


def failed_row(cell: BenchCell, status: str, error: str, run_id: str | None = None) -> dict[str, Any]:
    return _row(cell, {"status": status, "run_id": run_id, "error": error})


def run_cell(manager: Any, cell: BenchCell, timeout: float, python: str | None = None) -> dict[str, Any]:
    """Launch one cell in the foreground, wait (stop it after `timeout` s), return its row."""
    from .errors import OpsconsoleError

    try:
        record = manager.launch(cell.kind, list(cell.argv), python=python, foreground=True)
    except OpsconsoleError as exc:  # bad flags, busy GPU: the cell could not start
        return failed_row(cell, "not-started", str(exc))
    try:
        result = manager.wait(record.id, timeout=timeout)
    except TimeoutError:
        manager.stop(record.id, grace=5.0)
        result = manager.wait(record.id, timeout=30.0)
        row = row_from_result(cell, result)
        row["metrics"].update(status="timeout", error=f"stopped after the {timeout:g} s cell timeout")
        return row
    except BaseException:  # Ctrl-C: do not leave the run going behind the user's back
        manager.stop(record.id, grace=5.0)
        raise
    return row_from_result(cell, result)


def run_matrix(manager: Any, cells: list[BenchCell], timeout: float, python: str | None = None,
               on_start: Callable[[int, BenchCell], None] | None = None,
               on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    rows = []
    for index, cell in enumerate(cells):
        if on_start:
            on_start(index, cell)
        started = time.monotonic()
        row = run_cell(manager, cell, timeout, python)
        row["metrics"].setdefault("wall_s", round(time.monotonic() - started, 2))
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


# --- presentation (shared by the terminal table and Markdown) ----------------------------

COLUMNS = (("kind", "kind"), ("model", "model"), ("dtype", "dtype"), ("attn", "attn"), ("compile", "compile"),
           ("status", "status"), ("it/s", "it_per_s"), ("s/image", "s_per_image"), ("tok/s", "decode_tokens_per_s"),
           ("TTFT ms", "ttft_s"), ("peak VRAM MiB", "peak_vram_bytes"), ("note", "note"))


def format_cell(key: str, row: dict[str, Any]) -> str:
    metrics = row["metrics"]
    if key in ("kind", "model", "dtype", "attn"):
        return str(row[key])
    if key == "compile":
        return "on" if row["compile"] else "off"
    if key == "note":
        if metrics.get("status") == "ok":
            return ""
        diagnosis = metrics.get("diagnosis")
        text = f"{metrics.get('error') or ''}" + (f" [kb: {diagnosis['id']}]" if diagnosis else "")
        return text.replace("\n", " ").replace("|", "/")[:160]
    value = metrics.get(key)
    if value is None:
        return "-"
    if key == "ttft_s":
        return f"{value * 1000:.1f}"
    if key == "peak_vram_bytes":
        return f"{value / 2**20:.0f}" if value else "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    return str(value)


def to_markdown(rows: list[dict[str, Any]], title: str = "opsconsole bench") -> str:
    lines = [f"# {title}", "", "| " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(format_cell(key, row) or " " for _, key in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"
