"""The divergence guard and SIGTERM handling, end to end through gemma-lora."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from job_runner import read_run, run_job, start_job, wait_for_progress

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemma-cache")


def test_injected_nan_fails_the_run_at_that_step(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("gemma-lora", ["--device", "cpu", "--steps", "8", "--inject-nan-at", "3"], tmp_path / "run", cache)
    assert run.returncode == 1
    finish = run.finish
    assert finish["status"] == "failed"
    assert "NaN/inf loss at step 3" in finish["error"] and "learning rate" in finish["error"]
    assert finish["kb"] == "nan-lr-too-high"  # fp32 run: not an fp16 overflow
    assert finish["metrics"]["diverged_at_step"] == 3 and finish["metrics"]["steps"] == 2
    assert [p["step"] for p in run.of_type("progress")] == [1, 2]
    assert "error: NaN/inf loss at step 3" in run.log and "Traceback" not in run.log
    kb = pytest.importorskip("opsconsole.kb")
    if not hasattr(kb, "match_log"):
        pytest.skip("KB matcher not available")
    diagnoses = kb.match_log(run.run_dir / "output.log").matches
    assert diagnoses and diagnoses[0].category == "nan_inf", [d.id for d in diagnoses]
    assert diagnoses[0].id == "nan-lr-too-high"


def test_sigterm_stops_cleanly_and_saves_the_adapter(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch")
    run_dir = tmp_path / "run"
    proc = start_job("gemma-lora", ["--device", "cpu", "--steps", "100000"], run_dir, cache)
    try:
        wait_for_progress(proc, run_dir, count=3)
        assert proc.poll() is None, "the job ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = read_run(run_dir, returncode)
    assert run.returncode == 143
    assert run.finish["status"] == "stopped"
    steps = run.metrics["steps"]
    assert 3 <= steps < 100000 and run.of_type("progress")[-1]["step"] == steps
    [artifact] = run.of_type("artifact")
    assert artifact["kind"] == "adapter" and (Path(artifact["path"]) / "adapter_model.safetensors").is_file()
    assert f"stopping after step {steps}" in run.log
