"""Multi-process training: gemma-lora under torchrun with gloo on CPU (what `--gpus 2 --device cpu` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from job_runner import run_job, wait_for_progress

pytestmark = pytest.mark.ml


def test_two_process_gloo_ddp_ranks_agree(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("gemma-lora", ["--device", "cpu", "--steps", "5", "--batch", "2"], tmp_path / "run",
                  tmp_path / "cache", nproc=2)
    assert run.returncode == 0, run.log
    assert run.finish["status"] == "ok" and run.metrics["world_size"] == 2
    assert [e["step"] for e in run.of_type("progress")] == [1, 2, 3, 4, 5]  # rank 0 alone writes events
    assert len(run.of_type("start")) == 1 and len(run.of_type("artifact")) == 1
    ranks = [json.loads((run.run_dir / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["losses"] == ranks[1]["losses"] == [e["metrics"]["loss"] for e in run.of_type("progress")]
    assert ranks[0]["params_checksum"] == pytest.approx(ranks[1]["params_checksum"], rel=0, abs=1e-9)
    assert "world size 2 (gloo)" in run.log


@pytest.mark.slow
def test_run_manager_launches_gpus_2_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    runs = pytest.importorskip("opsconsole.runs")
    from opsconsole.config import Settings

    manager = runs.RunManager(Settings())
    record = manager.launch("gemma-lora", ["--device", "cpu", "--steps", "3", "--batch", "2"], gpus=2)
    result = manager.wait(record.id, timeout=180)
    log = (Path(record.dir) / "output.log").read_text(errors="replace")
    assert result["status"] == "ok", log
    assert result["metrics"]["world_size"] == 2 and result["metrics"]["steps"] == 3
    assert any(Path(a["path"] if isinstance(a, dict) else a).name == "adapter" for a in result["artifacts"])


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_ranks_at_the_same_step(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import signal

    from job_runner import read_run, start_job

    run_dir = tmp_path / "run"
    proc = start_job("gemma-lora", ["--device", "cpu", "--steps", "100000", "--batch", "2"], run_dir,
                     tmp_path / "cache", nproc=2)
    try:
        wait_for_progress(proc, run_dir, count=3)
        assert proc.poll() is None, "the job ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers
        returncode = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = read_run(run_dir, returncode)
    assert run.finish["status"] == "stopped"
    ranks = [json.loads((run_dir / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["losses"]) == len(ranks[1]["losses"]) == run.metrics["steps"] >= 3
    [artifact] = run.of_type("artifact")
    assert (Path(artifact["path"]) / "adapter_model.safetensors").is_file()
