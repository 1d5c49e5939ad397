"""bench/gpu_check.sh: the --device cpu path end to end (what CI runs), and its step runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import gpu_check  # noqa: E402


def test_script_parses_and_refuses_bad_arguments(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(REPO / "bench/gpu_check.sh")]).returncode == 0
    bad = subprocess.run(["bash", str(REPO / "bench/gpu_check.sh"), "--device", "tpu", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 3 and "--device must be cpu or cuda" in bad.stderr
    no_out = subprocess.run(["bash", str(REPO / "bench/gpu_check.sh"), "--device", "cpu"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin"})
    assert no_out.returncode == 3 and "--out DIR" in no_out.stderr


@pytest.mark.slow  # ~80 s on 2 busy cores: eight real smoke runs, end to end, as CI runs it
def test_cpu_path_runs_every_step_and_writes_results_and_summary(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "bench/gpu_check.sh"), "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=400)
    report = json.loads((tmp_path / "results.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == [s.name for s in gpu_check.build_steps("cpu")]
    assert report["device"] == "cpu"
    # Each step either ran (ok / failed with a reason) or says why it was skipped; none is silently lost.
    for step in report["steps"]:
        assert step["status"] in ("ok", "failed", "timeout", "skipped"), step
        if step["status"] != "ok":
            assert step.get("reason"), step
    assert steps["status --json"]["status"] == "ok"
    assert steps["status --json"]["nvml"]["status"] == "no_driver"
    assert steps["gemma-infer eager"]["status"] == "ok"
    assert steps["gemma-infer eager"]["metrics"]["decode_tokens_per_s"] > 0
    assert steps["sd-infer"]["status"] == "ok" and steps["sd-infer"]["metrics"]["it_per_s"] > 0
    assert steps["nccl-check"]["status"] == "ok"
    assert any(r["name"].startswith("simulated") for r in steps["sampling cost"]["rows"])
    summary = (tmp_path / "summary.md").read_text()
    for name in steps:
        assert f"| {name} |" in summary
    assert "gemma-infer eager" in (tmp_path / "gpu_check.log").read_text()
    assert proc.returncode == (0 if all(s["status"] in ("ok", "skipped") for s in report["steps"]) else 1)


def test_a_failing_or_hanging_step_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    with open(tmp_path / "log", "w") as log:
        hang = gpu_check.run_step(gpu_check.Step("hang", ["sleep", "30"], 30), 1.5, log, env)
        fail = gpu_check.run_step(gpu_check.Step("fail", [sys.executable, "-c", "import sys; sys.exit('boom')"], 10),
                                  10, log, env)
        garbled = gpu_check.run_step(gpu_check.Step("garbled", ["echo", "not json"], 10, gpu_check.parse_run), 10,
                                     log, env)
        late = gpu_check.run_step(gpu_check.Step("late", ["true"], 10), 0.5, log, env)
        critical = gpu_check.run_step(gpu_check.Step(
            "status", [sys.executable, "-c", "import sys; print('{\"nvml\": {}, \"gpus\": []}'); sys.exit(2)"], 10,
            gpu_check.parse_status, ok_codes=(0, 1, 2)), 10, log, env)
    assert hang["status"] == "timeout" and "2 s" in hang["reason"] and hang["seconds"] < 10
    assert fail["status"] == "failed" and "boom" in fail["reason"]
    assert garbled["status"] == "failed" and "unreadable output" in garbled["reason"]
    assert late["status"] == "skipped" and "budget" in late["reason"]
    assert critical["status"] == "ok"  # status exiting 2 (a critical finding) is a result, not a broken step


@pytest.mark.parametrize(("name", "tb_s"), [
    ("NVIDIA H100 80GB HBM3", 3.35), ("NVIDIA H100 PCIe", 2.0), ("NVIDIA H200", 4.8),
    ("NVIDIA A100-SXM4-80GB", 2.0), ("NVIDIA A100-PCIE-40GB", 1.555),
])
def test_hbm_bandwidth_table_is_keyed_on_the_nvml_name(name: str, tb_s: float) -> None:
    found = gpu_check.hbm_bandwidth(name)
    assert found is not None and found[0] == pytest.approx(tb_s * 1e12)


def test_decode_ceiling_is_bandwidth_over_weight_bytes() -> None:
    # gemma-2-2b: 2.61e9 parameters in bf16 = 5.23 GB read per token; 3.35 TB/s -> ~641 tok/s.
    roof = gpu_check.decode_ceiling(320.0, 2_614_341_888, 2, "NVIDIA H100 80GB HBM3")
    assert roof["ceiling_tokens_per_s"] == pytest.approx(3.35e12 / (2 * 2_614_341_888), rel=1e-3)
    assert roof["fraction_of_ceiling"] == pytest.approx(320.0 / roof["ceiling_tokens_per_s"], rel=1e-2)
    assert gpu_check.decode_ceiling(100.0, 1000, 2, "Tesla T4") == {}


def test_variants_are_compared_with_their_baseline_step_in_the_summary() -> None:
    def ok(name: str, **metrics: float) -> dict:
        return {"name": name, "status": "ok", "seconds": 1.0, "metrics": metrics}

    results = [ok("gemma-infer eager", decode_tokens_per_s=50.0, ttft_s=0.02, warmup_s=3.0),
               ok("gemma-infer eager+compile", decode_tokens_per_s=200.0, ttft_s=0.01, warmup_s=95.0),
               {"name": "gemma-infer flex_attention", "status": "failed", "reason": "boom"},
               ok("sd-infer", it_per_s=20.0, s_per_image=1.2, warmup_s=0.4),
               ok("sd-infer compiled", it_per_s=30.0, s_per_image=0.9, warmup_s=70.0)]
    gpu_check.add_ratios(results)
    assert results[1]["vs_baseline"] == {"baseline": "gemma-infer eager", "metric": "decode_tokens_per_s",
                                         "ratio": 4.0}
    assert results[4]["vs_baseline"]["ratio"] == 1.5 and "vs_baseline" not in results[2]
    summary = gpu_check.summary_markdown({"device": "cuda", "started": "now", "host": "h", "python": "3",
                                          "total_s": 9, "steps": results})
    assert "decode 200 tok/s, TTFT 10 ms; 4.00x gemma-infer eager; warm-up 95 s (untimed)" in summary
    assert "30 it/s, 0.9 s/image; 1.50x sd-infer; warm-up 70 s (untimed)" in summary
    assert "| gemma-infer flex_attention | failed | - | boom |" in summary
