"""bench/gpu_check.sh: the plan contract (--plan), its arguments, the step runner's verdicts
(ok / failed / timeout / unreadable), the hardware references, and the --device cpu rehearsal
that CI runs end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import gpu_check, gpu_references  # noqa: E402
from bench.gpu_check import Command, Context, Step  # noqa: E402

SCRIPT = REPO / "bench" / "gpu_check.sh"
PLAN_LINE = re.compile(r"^(?P<id>[a-z0-9-]+) +(?:(?P<budget>\d+)s|-)  (?P<what>\S.*)$")
STATUSES = {"ok", "failed", "timeout", "skipped"}


def script(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ, PYTHON=sys.executable))


def parse_plan(stdout: str) -> tuple[list[tuple[str, int | None]], int]:
    *lines, last = stdout.strip().splitlines()
    rows = []
    for line in lines:
        match = PLAN_LINE.match(line)
        assert match, f"plan line does not follow `ID  budget  what`: {line!r}"
        rows.append((match["id"], int(match["budget"]) if match["budget"] else None))
    total = re.fullmatch(r"total (\d+) s", last)
    assert total, f"last plan line is not `total N s`: {last!r}"
    return rows, int(total[1])


def ctx_for(tmp_path: Path, device: str = "cpu") -> Context:
    (tmp_path / "state").mkdir(exist_ok=True)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), **{gpu_check.TOKEN_ENV: f"test-{time.time_ns()}"})
    return Context(device, tmp_path, tmp_path, sys.executable, env)


def py(code: str) -> Command:
    return Command(lambda ctx: [ctx.python, "-c", code], lambda ctx, text, rc: json.loads(text))


# --- arguments and the plan ----------------------------------------------------------------------

def test_script_parses_and_refuses_bad_arguments_with_exit_3(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    cases = [
        (["--device", "tpu", "--out", str(tmp_path)], "invalid choice"),
        (["--only", "nvml,warp-drive", "--plan"], "unknown step 'warp-drive'"),
        (["--skip", "bogus", "--plan"], "unknown step 'bogus'"),
        (["--step-timeout", "bogus=3", "--plan"], "unknown step 'bogus'"),
        (["--step-timeout", "0", "--plan"], "more than 0"),
        (["--step-timeout", "nvml=-2", "--plan"], "more than 0"),
        (["--step-timeout", "soon", "--plan"], "give seconds"),
    ]
    for args, message in cases:
        proc = script(*args)
        assert proc.returncode == 3 and message in proc.stderr, (args, proc.returncode, proc.stderr)
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    no_out = script("--device", "cpu", env=dict(env, PYTHON=sys.executable))
    assert no_out.returncode == 3
    assert "no output directory: pass --out DIR or set $OUT" in no_out.stderr


def test_plan_lists_every_step_with_its_budget_and_fits_eight_minutes_on_the_gpu() -> None:
    proc = script("--plan")
    assert proc.returncode == 0, proc.stderr
    rows, total = parse_plan(proc.stdout)
    assert tuple(step_id for step_id, _ in rows) == gpu_check.STEP_IDS
    budgets = {s.id: s.budget["cuda"] for s in gpu_check.PLAN}
    planned = [step_id for step_id, budget in rows if budget is not None]
    for step_id, budget in rows:
        if budget is not None:
            assert budget == budgets[step_id]
    assert total == sum(budgets[s] for s in planned)
    assert total <= gpu_check.TOTAL_BUDGET_S == 480  # 8 minutes of the 15 a lent machine gives


def test_plan_marks_a_step_whose_command_does_not_exist_skipped_and_leaves_it_out_of_the_total() -> None:
    proc = script("--plan")
    diag_line = next(line for line in proc.stdout.splitlines() if line.startswith("diag "))
    rows, total = parse_plan(proc.stdout)
    if (REPO / "opsconsole" / "cli" / "diag.py").is_file():
        assert "[skipped" not in diag_line
    else:
        assert "[skipped: `opsconsole diag` does not exist yet" in diag_line
        assert dict(rows)["diag"] is None
        assert total == sum(b for _, b in rows if b is not None)


def test_plan_follows_only_skip_and_step_timeouts() -> None:
    rows, total = parse_plan(script("--plan", "--only", "nvml,status,probe", "--skip", "probe").stdout)
    assert [r[0] for r in rows] == ["nvml", "status"] and total == 25 + 15
    rows, total = parse_plan(script("--plan", "--device", "cpu", "--only", "nvml,status",
                                    "--step-timeout", "nvml=7").stdout)
    assert rows == [("nvml", 7), ("status", 20)] and total == 27
    rows, total = parse_plan(script("--plan", "--only", "nvml,sd-infer", "--step-timeout", "4").stdout)
    assert rows == [("nvml", 4), ("sd-infer", 4)] and total == 8


# --- the references ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "bandwidth"), [
    ("NVIDIA H200", 4.8e12), ("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H100 NVL", 3.9e12),
    ("NVIDIA H100 PCIe", 2.0e12), ("NVIDIA A100-SXM4-80GB", 2.0e12), ("NVIDIA A100-SXM4-40GB", 1.555e12),
    ("NVIDIA GeForce RTX 4090", None), (None, None),
])
def test_hbm_spec_matches_the_specific_name_first(name: str | None, bandwidth: float | None) -> None:
    spec = gpu_references.hbm_spec(name)
    assert (spec[0] if spec else None) == bandwidth


def test_decode_ceiling_is_bandwidth_over_weight_bytes() -> None:
    # gemma-2-2b: 2.61e9 params in bf16 = 5.22 GB; 4.0e12 B/s copy -> 766.3 tok/s ceiling
    ref = gpu_references.decode_reference(383.0, 2_610_000_000, 2, 4.0e12, "NVIDIA H200")
    assert ref["weight_bytes"] == 5_220_000_000
    assert ref["ceiling_tokens_per_s"] == pytest.approx(766.3, abs=0.1)
    assert ref["fraction_of_ceiling"] == pytest.approx(0.4998, abs=1e-4)
    assert ref["spec_ceiling_tokens_per_s"] == pytest.approx(919.5, abs=0.1)  # 4.8e12 / 5.22e9
    assert ref["spec_gpu"] == "H200 (HBM3e)"
    assert gpu_references.decode_reference(383.0, None, 2, 4.0e12, "NVIDIA H200") == {}
    no_spec = gpu_references.decode_reference(10.0, 1000, 4, None, "some CPU")
    assert no_spec == {"weight_bytes": 4000}


def test_sd_reference_scales_the_published_h100_figure_by_bandwidth() -> None:
    h200 = gpu_references.sd_reference(50.0, "plain", "NVIDIA H200", None)
    assert h200["expected_it_per_s"] == pytest.approx(54.5 * 4.8 / 3.35, abs=0.1)
    assert h200["ratio_to_expected"] == pytest.approx(50.0 / (54.5 * 4.8 / 3.35), abs=1e-3)
    assert h200["within_tolerance"] is True
    slow = gpu_references.sd_reference(20.0, "compiled", "NVIDIA H100 80GB HBM3", None)
    assert slow["expected_it_per_s"] == 66.0 and slow["within_tolerance"] is False  # 20 < 66 / 3
    measured = gpu_references.sd_reference(30.0, "plain", "unknown GPU", 1.675e12)
    assert measured["scale"] == 0.5 and measured["scaled_by"].startswith("measured copy bandwidth")
    assert "expected_it_per_s" not in gpu_references.sd_reference(30.0, "plain", None, None)


# --- what the steps read -------------------------------------------------------------------------

def test_status_step_reads_the_real_status_json_keys(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "opsconsole", "status", "--json", "--simulate", "healthy-8xh100"],
                          capture_output=True, text=True, timeout=120)
    ctx = ctx_for(tmp_path, "cuda")
    record = gpu_check.read_status(ctx, proc.stdout, proc.returncode)
    snap = json.loads(proc.stdout)
    first = snap["gpus"][0]
    assert len(record["gpus"]) == 8 and "status" not in record
    assert record["gpus"][0]["memory_total"] == first["memory"]["total"] > 0
    assert record["gpus"][0]["power_limit"] == first["power"]["limit"] > 0
    assert record["nvml"]["driver_version"] == snap["nvml"]["driver_version"]
    assert ctx.facts["gpu_name"] == first["name"] and ctx.env[gpu_check.GPU_NAME_ENV] == first["name"]
    assert f"driver {snap['nvml']['driver_version']}" in record["summary"]
    no_driver = subprocess.run([sys.executable, "-m", "opsconsole", "status", "--json", "--simulate", "no-driver"],
                               capture_output=True, text=True, timeout=120)
    on_gpu = gpu_check.read_status(ctx_for(tmp_path, "cuda"), no_driver.stdout, no_driver.returncode)
    assert on_gpu["status"] == "failed" and on_gpu["reason"].startswith("NVML ")
    assert "status" not in gpu_check.read_status(ctx_for(tmp_path, "cpu"), no_driver.stdout, no_driver.returncode)


def test_a_pytest_step_whose_tests_all_skipped_failed_on_the_gpu_and_is_skipped_on_cpu(tmp_path: Path) -> None:
    tests = [{"test": "t", "outcome": "skipped", "message": "needs a CUDA GPU"}]
    assert gpu_check._pytest_status(ctx_for(tmp_path, "cuda"), {"tests": tests}, 0, "") == "failed"
    assert gpu_check._pytest_status(ctx_for(tmp_path, "cpu"), {"tests": tests}, 0, "") == "skipped"
    record = {"tests": tests + [{"test": "u", "outcome": "failed", "message": "assert 1 == 2"}]}
    assert gpu_check._pytest_status(ctx_for(tmp_path, "cpu"), record, 1, "") == "failed"
    assert "u: assert 1 == 2" in record["reason"]
    assert gpu_check._pytest_status(ctx_for(tmp_path, "cpu"), {"tests": []}, 4, "ERROR: not found") == "failed"


def test_junit_outcomes_messages_and_figures_are_read(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text("""<testsuites><testsuite>
      <testcase name="a" time="1.26"><properties><property name="gpu_check" value='{"it_per_s": 3.5}'/></properties></testcase>
      <testcase name="b" time="0"><skipped message="needs a CUDA GPU"/></testcase>
      <testcase name="c" time="2"><failure message="AssertionError: too slow">trace</failure></testcase>
    </testsuite></testsuites>""")
    tests = gpu_check.read_junit(ctx_for(tmp_path), xml)["tests"]
    assert tests == [{"test": "a", "seconds": 1.3, "outcome": "passed", "figures": {"it_per_s": 3.5}},
                     {"test": "b", "seconds": 0.0, "outcome": "skipped", "message": "needs a CUDA GPU"},
                     {"test": "c", "seconds": 2.0, "outcome": "failed", "message": "AssertionError: too slow"}]


# --- the step runner -----------------------------------------------------------------------------

def test_run_step_ok_failed_unreadable_and_timeout(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path)
    with open(tmp_path / "log", "w") as log:
        ok = gpu_check.run_step(Step("s", "ok", {"cpu": 10}, commands=(py("print('{\"summary\": \"fine\"}')"),)),
                                10, ctx, log)
        assert (ok["status"], ok["summary"]) == ("ok", "fine")
        failed = gpu_check.run_step(
            Step("s", "exit", {"cpu": 10}, commands=(py("import sys; print('{}'); sys.exit('disk on fire')"),)),
            10, ctx, log)
        assert failed["status"] == "failed" and failed["reason"] == "exit 1: disk on fire"
        garbled = gpu_check.run_step(Step("s", "garbled", {"cpu": 10}, commands=(py("print('not json')"),)),
                                     10, ctx, log)
        assert garbled["status"] == "failed" and garbled["reason"].startswith("unreadable output (")
        started = time.monotonic()
        slow = gpu_check.run_step(
            Step("s", "hangs", {"cpu": 1}, commands=(py("import subprocess, time; "
                                                         "subprocess.Popen(['sleep', '300']); time.sleep(300)"),)),
            1.0, ctx, log)
        assert time.monotonic() - started < 30
    assert slow["status"] == "timeout"
    assert slow["reason"] == "no result within 1 s (the step's budget): its process group was killed"
    time.sleep(0.5)
    assert gpu_check.our_processes(ctx.env[gpu_check.TOKEN_ENV]) == []  # the grandchild sleep died with its group


def test_a_step_over_its_budget_is_killed_and_the_next_step_still_runs(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    proc = script("--device", "cpu", "--only", "nvml,status", "--step-timeout", "nvml=1,status=60",
                  "--out", str(out), "--work", str(work), timeout=300)
    report = json.loads((out / "results.json").read_text())
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["nvml"]["status"] == "timeout", steps["nvml"]  # pytest alone takes more than 1 s to start
    assert steps["status"]["status"] == "ok", steps["status"]
    assert steps["status"]["nvml"]["status"] == "no_driver"
    assert report["leftovers"] == [] and report["leftovers_line"].startswith("nothing of ours is left running")
    assert proc.returncode == 1  # a timed-out step is not a pass
    summary = (out / "summary.md").read_text()
    assert "| nvml | timeout |" in summary and "| status | ok |" in summary
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _state_of(p) and
                _state_of(p).startswith(str(work))]


def _state_of(proc_dir: Path) -> str | None:
    try:
        for item in (proc_dir / "environ").read_bytes().split(b"\0"):
            if item.startswith(b"XDG_STATE_HOME="):
                return item.split(b"=", 1)[1].decode("utf-8", "replace")
    except OSError:
        return None
    return None


@pytest.mark.slow  # ~2.5 min alone on 2 cores: the whole plan on tiny models, as a GPU machine would run it
def test_cpu_rehearsal_runs_every_step_and_writes_results_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # budgets are the GPU plan's; here the suite shares 2 cores with this run (sd-lora: 10 s alone,
    # over 35 s beside the other tests), so every step gets 240 s: this test is about results, not time
    proc = script("--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work"), "--step-timeout", "240",
                  timeout=1500)
    report = json.loads((out / "results.json").read_text())
    steps = {s["id"]: s for s in report["steps"]}
    assert tuple(steps) == gpu_check.STEP_IDS
    assert all(s["status"] in STATUSES for s in steps.values())
    assert steps["status"]["nvml"]["status"] == "no_driver" and steps["status"]["status"] == "ok"
    for step_id in ("gemma-infer", "sd-infer", "gemma-lora", "sd-lora", "gemma-compile", "sd-compile", "nccl"):
        assert steps[step_id]["status"] == "ok", steps[step_id]
        assert steps[step_id]["counts"]["passed"] >= 1
    assert any("tok/s" in t.get("figures", {}) or "decode_tokens_per_s" in t.get("figures", {})
               for t in steps["gemma-infer"]["tests"])
    assert report["leftovers"] == []
    summary = (out / "summary.md").read_text()
    for step_id in gpu_check.STEP_IDS:
        assert f"| {step_id} | {steps[step_id]['status']} |" in summary
    assert proc.returncode == (0 if all(s["status"] in ("ok", "skipped") for s in steps.values()) else 1)
