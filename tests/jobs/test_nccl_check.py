"""nccl-check: bus bandwidth arithmetic, flags, and a real gloo all-reduce on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_runner import run_job

from opsconsole.jobs import nccl_check
from opsconsole.jobs.common import JobError


def test_bus_bandwidth_is_nccl_tests_formula() -> None:
    assert nccl_check.bus_bandwidth(100.0, 8) == pytest.approx(175.0)  # 2 * 7/8
    assert nccl_check.bus_bandwidth(10.0, 2) == pytest.approx(10.0)
    assert nccl_check.bus_bandwidth(10.0, 1) == 0.0


def test_default_gpu_sweep_is_8mb_to_1gb() -> None:
    sizes = nccl_check.message_sizes(nccl_check.parse_size("8M"), nccl_check.parse_size("1G"))
    assert [nccl_check.size_label(s) for s in sizes] == ["8MB", "16MB", "32MB", "64MB", "128MB", "256MB", "512MB", "1GB"]


@pytest.mark.parametrize("argv, text", [(["--max-size", "1M"], "below --min-size"), (["--min-size", "lots"], "lots"),
                                        (["--iters", "0"], "--iters"), (["--nproc", "1000"], "--nproc 1000: must be 1 to"),
                                        (["--nproc", "0"], "--nproc 0"), (["--iters", "100000000"], "must be 1 to 10,000"),
                                        (["--warmup", "-1"], "--warmup -1"), (["--max-size", "64G"], "at most 8GB")])
def test_bad_sizes_are_bad_input(argv: list[str], text: str) -> None:
    with pytest.raises(JobError) as info:
        nccl_check.validate(nccl_check.build_parser().parse_args(argv))
    assert info.value.exit_code == 3 and text in str(info.value)


@pytest.mark.ml
def test_cpu_gloo_all_reduce_reports_bus_bandwidth(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("nccl-check", ["--device", "cpu", "--max-size", "16M", "--iters", "2"], tmp_path / "run")
    assert run.returncode == 0, run.log
    m = run.metrics
    assert m["backend"] == "gloo" and m["world_size"] == 2
    assert set(m["busbw_gbps"]) == {"8MB", "16MB"} and all(v > 0 for v in m["busbw_gbps"].values())
    # 2 ranks: busbw = algbw * 2(n-1)/n = algbw
    assert m["busbw_gbps"]["8MB"] == pytest.approx(m["algbw_gbps"]["8MB"])
    assert m["verified"]["sizes"] == 2 and m["verified"]["max_abs_error"] == 0  # 1 + 2 == 3 everywhere
    assert [p["metrics"]["size"] for p in run.of_type("progress")] == ["8MB", "16MB"]
    assert "busbw GB/s" in run.log


@pytest.mark.ml
def test_single_rank_reports_zero_bus_bandwidth_and_says_why(tmp_path: Path) -> None:
    """A 1-GPU box: the all-reduce runs (algbw > 0) but nothing crosses a link (busbw 0, like nccl-tests)."""
    pytest.importorskip("torch")
    run = run_job("nccl-check", ["--device", "cpu", "--nproc", "1", "--max-size", "8M", "--iters", "2"],
                  tmp_path / "run")
    assert run.returncode == 0, run.log
    assert run.metrics["world_size"] == 1 and run.metrics["busbw_gbps"] == {"8MB": 0.0}
    assert run.metrics["algbw_gbps"]["8MB"] > 0
    assert any("only 1 rank" in f["message"] for f in run.of_type("finding"))


class _Ctx:
    is_main = True

    def __init__(self) -> None:
        self.said: list[str] = []

    def log(self, text: str) -> None:
        self.said.append(text)

    def progress(self, *args: object, **kw: object) -> None:
        pass

    def finding(self, *args: object, **kw: object) -> None:
        pass

    def metric(self, *args: object) -> None:
        pass


def test_a_wrong_reduction_fails_the_check_and_names_the_size() -> None:
    rows = [{"size": s, "bytes": 1, "time_us": 1.0, "algbw_gbps": 1.0, "busbw_gbps": 1.0, "max_abs_error": e}
            for s, e in (("8MB", 0.0), ("16MB", 2.0))]
    with pytest.raises(JobError) as info:
        nccl_check._report(_Ctx(), rows, 2, "nccl", 2)
    assert "wrong values" in str(info.value) and "16MB" in str(info.value) and "8MB" not in str(info.value)
    good = nccl_check._report(_Ctx(), rows[:1], 2, "nccl", 2)
    assert good["verified"] == {"sizes": 1, "max_abs_error": 0.0, "check": good["verified"]["check"]}
