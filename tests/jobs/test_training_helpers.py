"""The shared trainer helpers: loss trend, divergence guard, step reports, SIGTERM stop."""

from __future__ import annotations

import argparse
import json

import pytest

from opsconsole.jobs.common import JobError, make_context
from opsconsole.jobs.training import DivergenceError, add_trainer_options, loss_trend, validate_trainer_options


def test_loss_trend_compares_first_and_last_window() -> None:
    down = loss_trend([5.0, 4.0, 3.5, 3.0, 2.0, 1.0])
    assert down["trend"] == "decreasing" and down["window"] == 2
    assert down["first_mean"] == pytest.approx(4.5) and down["last_mean"] == pytest.approx(1.5)
    assert loss_trend([1.0, 1.2, 1.1, 1.5])["trend"] == "not_decreasing"
    assert loss_trend([1.0])["trend"] == "too_few_steps"


def test_a_flat_loss_or_dead_gradients_is_stalled_not_decreasing() -> None:
    """`gemma-lora --lr 1e4`: 7.287 -> 7.282 with grad norm 0 was reported "decreasing", status ok."""
    flat = [7.287, 7.286, 7.285, 7.284, 7.283, 7.282]
    assert loss_trend(flat)["trend"] == "stalled"
    falling = [5.0, 4.0, 3.5, 3.0, 2.0, 1.0]
    assert loss_trend(falling, grad_norms=[0.0] * 6)["trend"] == "stalled"  # no gradient: not learning
    assert loss_trend(falling, grad_norms=[float("nan")] * 6)["dead_gradients"] is True
    assert loss_trend(falling, grad_norms=[0.0, 0.5, 0.2])["trend"] == "decreasing"


def test_divergence_error_names_step_cause_and_kb() -> None:
    fp16 = DivergenceError(3, float("nan"), "fp16", 1e-4)
    assert "step 3" in str(fp16) and fp16.cause == "fp16 overflow" and fp16.kb == "nan-fp16-overflow"
    fp32 = DivergenceError(7, float("inf"), "fp32", 0.5, injected=True)
    assert fp32.kb == "nan-lr-too-high" and "--inject-nan-at 7" in str(fp32)
    assert fp32.metrics["diverged_at_step"] == 7 and fp32.exit_code == 1


def test_bad_trainer_flags_are_bad_input() -> None:
    parser = argparse.ArgumentParser()
    add_trainer_options(parser)
    with pytest.raises(JobError) as info:
        validate_trainer_options(parser.parse_args(["--steps", "0"]))
    assert info.value.exit_code == 3 and "--steps" in str(info.value)


@pytest.mark.ml
def test_monitor_reports_steps_and_stops_on_injected_nan(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from opsconsole.jobs.training import TrainMonitor

    parser = argparse.ArgumentParser()
    add_trainer_options(parser, steps=5, lr=0.1)
    args = parser.parse_args(["--inject-nan-at", "4"])
    ctx = make_context(tmp_path)
    monitor = TrainMonitor(ctx, args, total_steps=5, device="cpu", dtype=torch.float32)
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    optimizer = torch.optim.SGD([weight], lr=args.lr)
    with pytest.raises(DivergenceError) as info:
        for step in range(1, 6):
            loss = (weight ** 2).sum()
            monitor.check_loss(step, loss)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            monitor.report(step, grad_norm=weight.grad, samples=1)
    assert info.value.step == 4
    ctx.events.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["type"] == "progress"]
    assert [e["step"] for e in progress] == [1, 2, 3]
    losses = [e["metrics"]["loss"] for e in progress]
    assert losses == sorted(losses, reverse=True)  # x^2 under gradient descent goes down
    assert info.value.metrics["steps"] == 3 and info.value.metrics["loss_trend"] == "decreasing"


@pytest.mark.ml
def test_monitor_should_stop_after_sigterm_flag(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from opsconsole.jobs.training import TrainMonitor

    parser = argparse.ArgumentParser()
    add_trainer_options(parser)
    ctx = make_context(tmp_path)
    monitor = TrainMonitor(ctx, parser.parse_args([]), total_steps=10, device="cpu", dtype=torch.float32)
    monitor.check_loss(1, torch.tensor(1.0))
    assert not monitor.should_stop()
    ctx.stop_requested = True
    monitor.check_loss(2, torch.tensor(0.5))
    assert monitor.should_stop()


def test_job_parsers_and_validation_do_not_import_torch() -> None:
    """The console validates flags before launching: that must not pull in torch."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from opsconsole.jobs import gemma_infer, gemma_lora, nccl_check, training\n"
            "for m in (gemma_infer, gemma_lora, nccl_check):\n"
            "    m.validate(m.build_parser().parse_args([]))\n"
            "print(sorted(n for n in ('torch', 'transformers', 'peft') if n in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.ml
def test_a_dead_run_finishes_with_a_stalled_warning(tmp_path) -> None:
    """Zero gradients and a flat loss: the monitor says `stalled` and warns, never "decreasing"."""
    torch = pytest.importorskip("torch")
    from opsconsole.jobs.training import TrainMonitor

    parser = argparse.ArgumentParser()
    add_trainer_options(parser, steps=6, lr=0.1)
    ctx = make_context(tmp_path)
    monitor = TrainMonitor(ctx, parser.parse_args([]), total_steps=6, device="cpu", dtype=torch.float32)
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    for step in range(1, 7):
        loss = 7.287 - 0.001 * step + 0.0 * weight.sum()  # the parameter does not move the loss
        monitor.check_loss(step, loss)
        loss.backward()
        monitor.report(step, grad_norm=torch.nn.utils.clip_grad_norm_([weight], 1.0))
        weight.grad = None
    metrics = monitor.finish()
    ctx.events.close()
    assert metrics["loss_trend"] == "stalled"
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    warnings = [e["message"] for e in events if e["type"] == "finding"]
    assert any("training stalled" in m and "every gradient norm was 0" in m for m in warnings), warnings
