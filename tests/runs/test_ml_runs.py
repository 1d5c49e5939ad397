"""End-to-end runs through the real ML stack (torch in the child): marked `ml`, seconds each on CPU."""

from __future__ import annotations

import json

import pytest

from opsconsole.cli import main

pytestmark = pytest.mark.ml


def test_gemma_infer_tiny_on_cpu_foreground_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("opsconsole.jobs.gemma_infer")
    code = main(["run", "gemma-infer", "--model", "tiny", "--device", "cpu", "--foreground", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["status"] == "ok" and result["kind"] == "gemma-infer"
    assert result["metrics"]["ttft_s"] > 0 and result["metrics"]["decode_tokens_per_s"] > 0


def test_two_process_launch_through_torch_distributed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from opsconsole.runs import RunManager

    code = main(["run", "selftest", "--gpus", "2", "--device", "cpu", "--lines", "2", "--foreground", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["status"] == "ok"
    cmd = RunManager().get(result["id"]).run_dir.read_cmd()
    assert cmd["argv"][1:5] == ["-m", "torch.distributed.run", "--nproc-per-node", "2"]
    assert cmd["world_size"] == 2 and cmd["gpus"] == []  # CPU (gloo): no GPU lock
