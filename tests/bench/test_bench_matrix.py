"""`opsconsole bench`: the comparison matrix on CPU, failed cells as rows, JSON / Markdown contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opsconsole import benchmatrix
from opsconsole.config import Settings
from opsconsole.runs import RunManager

ROW_KEYS = {"kind", "model", "dtype", "attn", "compile", "metrics"}


def opsconsole(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True, timeout=timeout)


def test_cpu_matrix_runs_real_gemma_cells_and_prints_the_json_contract(tmp_path: Path) -> None:
    markdown = tmp_path / "bench.md"
    proc = opsconsole("bench", "--device", "cpu", "--kind", "gemma-infer", "--json", "--markdown", str(markdown))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["rows"]
    rows = data["rows"]
    assert [(r["dtype"], r["attn"], r["compile"]) for r in rows] == [("fp32", "eager", False), ("bf16", "eager", False)]
    for row in rows:
        assert set(row) == ROW_KEYS and row["kind"] == "gemma-infer" and row["model"] == "tiny"
        metrics = row["metrics"]
        assert metrics["status"] == "ok"
        assert metrics["decode_tokens_per_s"] > 0 and metrics["ttft_s"] > 0
        # Each cell is a real run: its result is in the registry.
        shown = json.loads(opsconsole("runs", "show", metrics["run_id"], "--json").stdout)
        assert shown["record"]["status"] == "ok" and shown["result"]["metrics"]["decode_tokens_per_s"] > 0
    table = markdown.read_text()
    assert "| kind | model | dtype | attn | compile | status | it/s | s/image | tok/s |" in table
    assert table.count("| gemma-infer | tiny |") == 2


def test_failed_cells_become_rows_with_status_and_reason() -> None:
    manager = RunManager(Settings())
    cells = [
        benchmatrix.gemma_cell("cpu", "/no/such/model", "pretrained", "fp32", "eager", False, new_tokens=4),
        benchmatrix.BenchCell("selftest", "selftest", "fp32", "none", False,
                              ("--job-error", "CUDA out of memory. Tried to allocate 2.00 GiB")),
        benchmatrix.BenchCell("selftest", "selftest", "fp32", "none", False, ("--lines", "1")),
    ]
    rows = benchmatrix.run_matrix(manager, cells, timeout=60)
    assert [r["metrics"]["status"] for r in rows] == ["not-started", "failed", "ok"]
    assert "/no/such/model" in rows[0]["metrics"]["error"]
    assert "out of memory" in rows[1]["metrics"]["error"]
    assert rows[1]["metrics"]["diagnosis"]["id"].startswith("cuda-oom")
    markdown = benchmatrix.to_markdown(rows)
    assert markdown.count("\n| ") == 4  # header + one line per cell
    assert "not-started" in markdown and "kb: cuda-oom" in markdown


def test_a_cell_over_its_timeout_is_stopped_and_recorded() -> None:
    manager = RunManager(Settings())
    cell = benchmatrix.BenchCell("selftest", "selftest", "fp32", "none", False, ("--lines", "1", "--sleep", "60"))
    [row] = benchmatrix.run_matrix(manager, [cell], timeout=2)
    assert row["metrics"]["status"] == "timeout" and "2 s" in row["metrics"]["error"]
    assert manager.get(row["metrics"]["run_id"]).status == "stopped"


def test_cuda_matrix_covers_models_dtypes_attention_and_compile() -> None:
    cells = benchmatrix.default_matrix("cuda")
    gemma = [c for c in cells if c.kind == "gemma-infer"]
    assert {c.model for c in gemma} == {"gemma-2-2b"}  # no cached checkpoint here: random weights
    assert all("--weights" in c.argv and "random" in c.argv for c in gemma)
    # Gemma 2 refuses sdpa under transformers 5 (no soft-capping): eager and flex_attention are its backends.
    assert {c.dtype for c in gemma} == {"bf16", "fp16"} and {c.attn for c in gemma} == {"eager", "flex_attention"}
    assert [c.argv[c.argv.index("--attn") + 1] for c in gemma if c.compile] == ["eager"]
    assert all("--compile" in c.argv for c in gemma if c.compile)
    sd = [c for c in cells if c.kind == "sd-infer"]
    assert sd and all(c.model == "sd15" and "512" in c.argv for c in sd)
    assert [c.attn for c in sd if c.compile and "--compile" in c.argv] == ["sdpa"]  # sd-infer has --compile


def test_bench_is_refused_in_readonly_mode() -> None:
    proc = opsconsole("--readonly", "bench", "--device", "cpu", timeout=60)
    assert proc.returncode == 3 and "read-only" in proc.stderr
