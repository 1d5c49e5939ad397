"""Playbooks: run one on a scenario, steps appear with status and remedies; manual steps ask."""

from __future__ import annotations

from opsconsole.tui.screens.confirm import ConfirmDialog

from tui_helpers import screen_text, wait_until


async def open_playbooks(pilot):
    await pilot.press("4")
    await wait_until(pilot, lambda: pilot.app.current_mode == "playbooks")


async def test_gpu_health_fails_on_hw_thermal_slowdown_like_status(make_app):
    app = make_app("thermal-throttle")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await open_playbooks(pilot)
        screen = app.screen
        screen.select_playbook("gpu-health")
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.outcome is not None, timeout=20, what="verdict")
        assert screen.outcome.verdict == "fail"  # status calls HW thermal slowdown critical: the same verdict
        steps = "\n".join(str(w.render()) for w in screen.query("#pb-steps Static"))
        assert "✓" in steps and "✖" in steps and "thermal" in steps.lower()
        assert "→" in steps  # a remedy is shown for the failed step
        assert "verdict: FAIL" in screen_text(app)


async def test_gpu_health_fails_on_xid79(make_app):
    app = make_app("xid79-fell-off-bus")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await open_playbooks(pilot)
        screen = app.screen
        screen.select_playbook("gpu-health", run=True)
        await wait_until(pilot, lambda: screen.outcome is not None, timeout=20, what="verdict")
        assert screen.outcome.verdict == "fail"
        assert "verdict: FAIL" in screen_text(app)


async def test_manual_step_asks_for_confirmation(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await open_playbooks(pilot)
        screen = app.screen
        screen.select_playbook("dataloader-shm", run=True)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=20, what="manual step dialog")
        await wait_until(pilot, lambda: "Manual step" in screen_text(app) and "num_workers" in screen_text(app))
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.outcome is not None, timeout=20, what="verdict")
        manual = [s for s in screen.outcome.steps if s.step.kind == "manual"]
        assert manual and manual[0].status == "pass" and manual[0].summary == "confirmed"


async def test_dry_run_lists_steps_without_running(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_playbooks(pilot)
        screen = app.screen
        screen.select_playbook("cuda-oom")
        await pilot.press("d")
        await pilot.pause()
        assert "dry run: nothing was executed" in screen_text(app)
        assert len(screen.query("#pb-steps Static")) > 1
        assert screen.outcome is None


def test_evidence_reads_as_text_not_python_reprs():
    """`gpus={'gpu': 0, ...}` was shown as a dict repr."""
    from opsconsole.tui.screens.playbooks import evidence_text

    text = evidence_text({"you": "alice", "processes": [{"pid": 20778, "gpu": 0, "user": "bob", "used_gib": 38.1}],
                          "gpu0": {"temperature_c": 61.0, "slowdown_c": None}})
    assert "{" not in text and "'" not in text
    assert "processes=(pid=20778 gpu=0 user=bob used_gib=38.1)" in text and "gpu0=(temperature_c=61 slowdown_c=—)" in text
