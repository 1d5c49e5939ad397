"""Kill with confirmation (a real child process), and read-only mode refusing kill/stop/launch."""

from __future__ import annotations

import dataclasses
import getpass
import signal
import subprocess

import psutil
import pytest

from opsconsole.config import Settings
from opsconsole.telemetry import open_source
from opsconsole.telemetry.snapshot import GpuProcess
from opsconsole.tui.app import create_app
from opsconsole.tui.screens.confirm import ConfirmDialog
from opsconsole.tui.screens.launch import LaunchDialog
from opsconsole.tui.widgets.processes import ProcessTable

from tui_helpers import notified, screen_text, wait_until


class WithChildSource:
    """This machine's live telemetry as NVML would give it (source "nvml"), with our real `sleep`
    child holding 90 GiB on GPU 0 (so it sorts first); the rest of the machine is simulated.
    `shown` overrides what the snapshot says of the child (a stale start time, another owner)."""

    def __init__(self, pid: int, source: str = "nvml", **shown) -> None:
        self.inner = open_source(simulate="healthy-8xh100", frozen=True)
        self.pid, self.source, self.shown = pid, source, shown

    def sample(self):
        snap = self.inner.sample()
        facts = {"user": getpass.getuser(), "start_time": psutil.Process(self.pid).create_time(), **self.shown}
        child = GpuProcess(pid=self.pid, gpu=0, used_memory=90 * 2**30, command="sleep 60", **facts)
        gpu0 = dataclasses.replace(snap.gpus[0], processes=(child, *snap.gpus[0].processes))
        return dataclasses.replace(snap, source=self.source, gpus=(gpu0, *snap.gpus[1:]))

    def close(self) -> None:
        self.inner.close()


def app_with_child(pid: int, readonly: bool = False, **source):
    return create_app(Settings(refresh=3600, readonly=readonly),
                      source_factory=lambda: WithChildSource(pid, **source), static=True)


async def test_kill_asks_then_sends_sigterm():
    child = subprocess.Popen(["sleep", "60"])
    try:
        app = app_with_child(child.pid)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.snapshot is not None)
            table = app.screen.query_one(ProcessTable)
            await wait_until(pilot, lambda: table.selected_process() is not None)
            assert table.selected_process().pid == child.pid
            await pilot.press("k")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm dialog")
            assert f"Send SIGTERM to pid {child.pid}?" in screen_text(app)
            await pilot.press("n")  # No: nothing happens
            await pilot.pause()
            assert child.poll() is None
            await pilot.press("k")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()


async def test_readonly_hides_and_refuses_kill_stop_launch():
    child = subprocess.Popen(["sleep", "60"])
    try:
        app = app_with_child(child.pid, readonly=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.snapshot is not None)
            assert "Kill process" not in screen_text(app).splitlines()[-1]
            await pilot.press("k")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog)
            app.screen.action_kill()  # even when called directly (command palette, mouse)
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog) and child.poll() is None
            await pilot.press("5")
            await wait_until(pilot, lambda: app.current_mode == "runs")
            footer = screen_text(app).splitlines()[-1]
            assert "New run" not in footer and "Stop run" not in footer
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, LaunchDialog)
            commands = [c.title for c in app.get_system_commands(app.screen)]
            assert "New run" not in commands and "Go to Dashboard" in commands
    finally:
        child.kill()


async def test_command_palette_lists_screen_actions(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Kill process", "Sort", "Filter", "Go to Runs", "Go to Diagnose", "Toggle light/dark theme"):
            assert title in titles


async def test_q_quits_from_dashboard_only(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and app.current_mode == "kb"
        await pilot.press("1")
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def _press_kill_and_answer_yes(app, pilot, child) -> None:
    await wait_until(pilot, lambda: app.snapshot is not None)
    table = app.screen.query_one(ProcessTable)
    await wait_until(pilot, lambda: table.selected_process() is not None)
    assert table.selected_process().pid == child.pid
    await pilot.press("k")
    await pilot.pause()
    if isinstance(app.screen, ConfirmDialog):
        await pilot.press("y")
        await pilot.pause()


async def test_kill_on_simulated_data_is_refused_even_when_the_pid_is_a_real_process():
    """--simulate: the pid on screen belongs to an imagined machine. Our real child sits at that
    pid here; k must neither show a dialog nor signal it."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        app = app_with_child(child.pid, source="simulated:healthy-8xh100")
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await _press_kill_and_answer_yes(app, pilot, child)
            assert not isinstance(app.screen, ConfirmDialog)
            await wait_until(pilot, lambda: "not this machine's live telemetry" in notified(app),
                             what="the refusal")
            assert child.poll() is None
    finally:
        child.kill()


@pytest.mark.parametrize(("shown", "says"), [
    ({"start_time": 1_000_000.0}, "the pid was reused"),            # the process shown started long ago
    ({"user": "someone-else"}, "now owned by"),                      # the process shown had another owner
    ({"start_time": None}, "cannot be told apart from a reused pid"),
])
async def test_kill_refuses_a_pid_that_is_no_longer_the_process_shown(shown, says):
    child = subprocess.Popen(["sleep", "60"])
    try:
        app = app_with_child(child.pid, **shown)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await _press_kill_and_answer_yes(app, pilot, child)
            await wait_until(pilot, lambda: says in notified(app), what=says)
            assert child.poll() is None
    finally:
        child.kill()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_header_says_simulated_at_every_width(make_app, size):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        for key in ("1", "2", "5", "6"):
            await pilot.press(key)
            await wait_until(pilot, lambda: "SIMULATED" in screen_text(app).splitlines()[0],
                             what=f"SIMULATED on screen {key}")
