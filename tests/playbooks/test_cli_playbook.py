"""`opsconsole playbook list|show|run` — the CLI contract: verdicts, JSON shape, exit codes."""

from __future__ import annotations

import argparse
import json

import pytest

from opsconsole.cli import main
from opsconsole.cli.playbook import run_playbook_command
from opsconsole.config import Settings


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out, _ = cli(capsys, "playbook", "run", *argv, "--json")
    return code, json.loads(out)


def step(report: dict, step_id: str) -> dict:
    return next(s for s in report["steps"] if s["id"] == step_id)


def test_cuda_oom_on_vram_pressure_fails_naming_the_holder(capsys):
    code, report = run_json(capsys, "cuda-oom", "--simulate", "vram-pressure")
    assert code == 2 and report["verdict"] == "fail"
    holders = step(report, "holders")
    assert holders["status"] in ("warn", "fail")
    bob = next(p for p in holders["evidence"]["processes"] if p["user"] == "bob")
    assert f"pid {bob['pid']}" in holders["summary"]
    text = json.dumps(report)
    assert "bob" in text and "serve.py" in text and str(bob["pid"]) in step(report, "vram")["remedy"]
    # the human output names the process too
    code, out, _ = cli(capsys, "playbook", "run", "cuda-oom", "--simulate", "vram-pressure")
    assert code == 2 and f"pid {bob['pid']}" in out and "bob" in out and "serve.py" in out and "Verdict: FAIL" in out


def test_gpu_health_xid79_fails_with_nvidias_action(capsys):
    code, report = run_json(capsys, "gpu-health", "--simulate", "xid79-fell-off-bus")
    assert code == 2 and report["verdict"] == "fail"
    xid = step(report, "xid")
    assert xid["status"] == "fail" and "XID 79" in xid["summary"]
    action = next(e["action"] for e in xid["evidence"]["events"] if e["xid"] == 79)
    assert action and action in xid["remedy"] and "NVIDIA's recommended action" in xid["remedy"]


def test_gpu_health_hw_thermal_slowdown_fails_like_status_is_critical(capsys):
    """status called active HW thermal slowdown critical while gpu-health called it WARN:
    the telemetry severities now drive both (critical -> fail)."""
    code, report = run_json(capsys, "gpu-health", "--simulate", "thermal-throttle")
    assert code == 2 and report["verdict"] == "fail"
    throttle = step(report, "throttle")
    assert throttle["status"] == "fail" and "hw_thermal_slowdown" in throttle["summary"]
    code, out, _ = cli(capsys, "playbook", "run", "gpu-health", "--simulate", "thermal-throttle")
    assert code == 2 and "sw_thermal_slowdown" in out
    assert cli(capsys, "status", "--simulate", "thermal-throttle", "--no-probe")[0] == 2  # the same verdict


@pytest.mark.parametrize("scenario", ["healthy-8xh100", "thermal-throttle", "vram-pressure", "ecc-row-remap",
                                      "xid79-fell-off-bus", "mig-a100"])
def test_throttle_step_and_status_agree_on_every_scenario(capsys, scenario):
    from opsconsole.telemetry import open_source

    source = open_source(simulate=scenario, probe_env=False)
    try:
        findings = source.sample().findings
    finally:
        source.close()
    worst = max((f.severity for f in findings if f.id in ("thermal_throttle", "temp_near_slowdown", "hw_slowdown",
                                                          "power_cap")), key=["info", "warn", "critical"].index,
                default="info")
    _, report = run_json(capsys, "gpu-health", "--simulate", scenario)
    assert step(report, "throttle")["status"] in ({"info": {"pass", "skip"}, "warn": {"warn"}, "critical": {"fail"}}[worst])


def test_gpu_health_healthy_box_passes(capsys):
    code, report = run_json(capsys, "gpu-health", "--simulate", "healthy-8xh100")
    assert code == 0 and report["verdict"] == "pass"
    assert {s["status"] for s in report["steps"]} <= {"pass", "skip"}


def test_json_contract(capsys):
    _, report = run_json(capsys, "no-kernel-image", "--simulate", "torch-arch-mismatch")
    assert {"id", "verdict", "steps"} <= set(report) and report["id"] == "no-kernel-image"
    assert report["verdict"] in ("pass", "warn", "fail", "error")
    for entry in report["steps"]:
        assert {"id", "kind", "status", "evidence", "remedy"} <= set(entry)
        assert entry["kind"] in ("check", "command", "manual")
        assert entry["status"] in ("pass", "warn", "fail", "skip", "error", "manual")
        assert isinstance(entry["evidence"], dict)
        assert (entry["remedy"] is not None) == (entry["status"] in ("warn", "fail") and bool(entry["remedy"]))


# Expected verdicts of a human expert on each simulated machine.
EXPECTED = [
    ("no-kernel-image", "torch-arch-mismatch", "fail"),
    ("no-kernel-image", "healthy-8xh100", "pass"),
    ("first-time-box-check", "torch-arch-mismatch", "fail"),
    ("first-time-box-check", "healthy-8xh100", "pass"),
    ("first-time-box-check", "no-driver", "fail"),
    ("first-time-box-check", "thermal-throttle", "fail"),
    ("first-time-box-check", "mig-a100", "pass"),
    ("driver-mismatch", "driver-mismatch", "fail"),
    ("driver-mismatch", "no-driver", "fail"),
    ("driver-mismatch", "healthy-8xh100", "pass"),
    ("torch-cpu-only", "driver-mismatch", "fail"),
    ("torch-cpu-only", "healthy-8xh100", "pass"),
    ("gpu-health", "ecc-row-remap", "fail"),
    ("gpu-health", "no-driver", "fail"),
    ("gpu-health", "mig-a100", "pass"),
    ("training-divergence", "ecc-row-remap", "fail"),
    ("training-divergence", "healthy-8xh100", "pass"),
    ("slow-generation", "thermal-throttle", "fail"),
    ("slow-generation", "no-driver", "fail"),
    ("multi-gpu-nccl", "xid79-fell-off-bus", "fail"),
    ("multi-gpu-nccl", "no-driver", "fail"),
    ("cuda-oom", "healthy-8xh100", "warn"),
    ("sd-black-images", "healthy-8xh100", "pass"),
    ("disk-space", "healthy-8xh100", "pass"),
    ("dataloader-shm", "healthy-8xh100", "pass"),
    ("model-load-failure", "healthy-8xh100", "pass"),
]


@pytest.mark.parametrize("playbook_id, scenario, verdict", EXPECTED)
def test_expected_verdicts_on_scenarios(capsys, playbook_id, scenario, verdict):
    code, report = run_json(capsys, playbook_id, "--simulate", scenario)
    failing = [(s["id"], s["status"], s.get("summary")) for s in report["steps"] if s["status"] not in ("pass", "skip", "manual")]
    assert report["verdict"] == verdict, failing
    assert code == {"pass": 0, "warn": 1, "fail": 2}[verdict]


def test_specific_causes_are_named(capsys):
    _, arch = run_json(capsys, "no-kernel-image", "--simulate", "torch-arch-mismatch")
    assert "sm_120" in step(arch, "arch")["summary"] and "cu128" in step(arch, "arch")["remedy"]
    _, driver = run_json(capsys, "driver-mismatch", "--simulate", "driver-mismatch")
    assert "mismatch" in step(driver, "driver")["summary"] and "reboot" in driver["conclusion"].lower()
    _, ecc = run_json(capsys, "gpu-health", "--simulate", "ecc-row-remap")
    assert "GPU 6" in step(ecc, "row-remap")["summary"] and "GPU 2" in step(ecc, "row-remap")["summary"]


def test_log_option_feeds_the_log_checks(capsys, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                   "capacity of 39.39 GiB of which 312.00 MiB is free. Process 20778 has 38.10 GiB memory in use.\n")
    _, report = run_json(capsys, "cuda-oom", "--simulate", "vram-pressure", "--log", str(log))
    assert step(report, "log")["status"] == "fail" and "line 1" in step(report, "log")["summary"]


def test_dry_run_lists_commands_and_runs_nothing(capsys):
    code, out, _ = cli(capsys, "playbook", "run", "gpu-health", "--dry-run")
    assert code == 0 and "dry run" in out and "nvidia-smi -q -d" in out and "check gpu_xid" in out
    code, out, _ = cli(capsys, "playbook", "run", "gpu-health", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["dry_run"] is True
    smi = next(s for s in plan["steps"] if s["kind"] == "command")
    assert smi["argv"][:2] == ["nvidia-smi", "-q"] and smi["when"]


def test_list_and_show(capsys):
    code, out, _ = cli(capsys, "playbook", "list", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["playbooks"]) >= 13 and data["errors"] == []
    code, out, _ = cli(capsys, "playbook", "list")
    assert code == 0 and "first-time-box-check" in out
    code, out, _ = cli(capsys, "playbook", "show", "cuda-oom")
    assert code == 0 and "vram_holders" in out and "Conclusion" in out


def test_usage_errors_exit_3(capsys, tmp_path):
    code, _, err = cli(capsys, "playbook", "run", "no-such-playbook")
    assert code == 3 and "unknown playbook" in err
    code, _, err = cli(capsys, "playbook", "run", "gpu-health", "--simulate", "no-such-scenario")
    assert code == 3 and "no-such-scenario" in err
    code, _, err = cli(capsys, "playbook", "run", "cuda-oom", "--log", str(tmp_path / "missing.log"))
    assert code == 3 and "missing.log" in err
    code, _, _ = cli(capsys, "playbook", "show", "nope")
    assert code == 3
    code, _, err = cli(capsys, "playbook", "run", "torch-cpu-only", "--python", str(tmp_path / "no-python"))
    assert code == 3 and "--python" in err


def test_broken_user_playbook_is_listed_and_refused_with_file_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    directory = tmp_path / "opsconsole" / "playbooks"
    directory.mkdir(parents=True)
    (directory / "mine.yaml").write_text("id: mine\ntitle: Mine\nsteps:\n  - id: a\n    check: vram_free\n"
                                         "    params: {min_gib: plenty}\n")
    code, out, _ = cli(capsys, "playbook", "list")
    assert code == 0 and "mine" in out and "mine.yaml:6" in out and "gpu-health" in out
    code, out, _ = cli(capsys, "playbook", "list", "--json")
    (error,) = json.loads(out)["errors"]
    assert error["id"] == "mine" and error["line"] == 6
    code, _, err = cli(capsys, "playbook", "run", "mine", "--simulate", "healthy-8xh100")
    assert code == 3 and "mine.yaml:6" in err and "Traceback" not in err


def test_run_playbook_command_for_diagnose(capsys, tmp_path):
    args = argparse.Namespace(json=True, simulate="thermal-throttle", log=None)
    code = run_playbook_command("gpu-health", args, Settings())
    assert code == 2 and json.loads(capsys.readouterr().out)["verdict"] == "fail"
    bare = argparse.Namespace(simulate="healthy-8xh100")  # attributes it does not find take defaults
    assert run_playbook_command("gpu-health", bare, Settings()) == 0
    assert "Verdict: PASS" in capsys.readouterr().out


LOGS = {
    "dataloader": "RuntimeError: DataLoader worker (pid 37) is killed by signal: Bus error. It is possible that "
                  "dataloader's workers are out of shared memory. Please try to raise your shared memory limit.\n",
    "gated": "401 Client Error.\nCannot access gated repo for url "
             "https://huggingface.co/google/gemma-2-2b-it/resolve/299a8560bedf22ed1c72a8a11e7dce4a7f9f51f8/config.json.\n"
             "Access to model google/gemma-2-2b-it is restricted. You must have access to it and be authenticated to "
             "access it. Please log in.\n",
    "vae": "modules.devices.NansException: A tensor with all NaNs was produced in VAE. This could be because there's not "
           "enough precision to represent the picture. Try adding --no-half-vae commandline argument to fix this.\n",
}


@pytest.mark.parametrize("playbook_id, log, step_id, conclusion_words", [
    ("dataloader-shm", "dataloader", "log", "num_workers=0"),
    ("model-load-failure", "gated", "log", "huggingface-cli login"),
    ("sd-black-images", "vae", "log", "bf16"),
])
def test_playbooks_confirm_the_symptom_from_the_log(capsys, tmp_path, playbook_id, log, step_id, conclusion_words):
    path = tmp_path / "job.log"
    path.write_text(LOGS[log])
    code, report = run_json(capsys, playbook_id, "--simulate", "healthy-8xh100", "--log", str(path))
    assert step(report, step_id)["status"] == "fail" and code == 2
    assert conclusion_words in report["conclusion"]


def test_model_load_failure_reads_the_model_from_the_log(capsys, tmp_path):
    path = tmp_path / "job.log"
    path.write_text(LOGS["gated"])
    _, report = run_json(capsys, "model-load-failure", "--simulate", "healthy-8xh100", "--log", str(path))
    cached = step(report, "cached")
    assert cached["evidence"]["model"] == "google/gemma-2-2b-it" and cached["status"] == "warn"
    assert step(report, "token")["status"] == "warn"
