"""Playbooks on this real machine (no --simulate): real statvfs, real probe, real NVML where present."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from opsconsole.cli import main


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["playbook", "run", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_disk_space_reads_this_machine(capsys):
    code, report = run_json(capsys, "disk-space")
    cwd = next(s for s in report["steps"] if s["id"] == "cwd")
    assert cwd["evidence"]["free_gib"] == pytest.approx(shutil.disk_usage(os.getcwd()).free / 2**30, abs=1.0)
    assert code == {"pass": 0, "warn": 1, "fail": 2, "error": 2}[report["verdict"]]
    df = next(s for s in report["steps"] if s["id"] == "df")
    assert df["status"] in ("pass", "skip") and ("Filesystem" in df["evidence"].get("stdout", "") or df["status"] == "skip")


@pytest.mark.gpu
@pytest.mark.slow
def test_first_time_box_check_on_a_gpu_machine(capsys):
    code, report = run_json(capsys, "first-time-box-check")
    status = {s["id"]: s["status"] for s in report["steps"]}
    assert status["driver"] == "pass" and status["gpus"] == "pass"
    assert status["torch"] == "pass" and status["arch"] == "pass"
    assert status["nvidia-smi"] == "pass"
    assert status["smoke"] == "pass", next(s for s in report["steps"] if s["id"] == "smoke")


@pytest.mark.gpu
def test_gpu_health_on_a_gpu_machine_reads_nvml(capsys):
    _, report = run_json(capsys, "gpu-health")
    driver = next(s for s in report["steps"] if s["id"] == "driver")
    assert driver["status"] == "pass" and driver["evidence"]["driver_version"]
    throttle = next(s for s in report["steps"] if s["id"] == "throttle")
    assert throttle["status"] in ("pass", "warn") and throttle["evidence"]
