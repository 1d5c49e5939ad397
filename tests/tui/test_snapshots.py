"""Snapshot tests of the main screens at 80×24 and 160×48 (frozen scenario, no blink, no animation).

Update after an intended change: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest
from textual.widgets import TextArea

from tui_helpers import screen_text, wait_until

SIZES = [(80, 24), (160, 48)]
OOM_LOG = """\
Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.11 GiB of which 1.12 GiB is free.
"""


async def first_frame(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.snapshot is not None, what="first frame")
    await pilot.pause()


async def goto(pilot, key: str, mode: str) -> None:
    await first_frame(pilot)
    await pilot.press(key)
    await wait_until(pilot, lambda: pilot.app.current_mode == mode)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard(snap_compare, make_app, size):
    assert snap_compare(make_app("healthy-8xh100"), terminal_size=size, run_before=first_frame)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_thermal_findings(snap_compare, make_app, size):
    assert snap_compare(make_app("thermal-throttle"), terminal_size=size, run_before=first_frame)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_diagnose(snap_compare, make_app, size):
    async def diagnosed(pilot):
        await goto(pilot, "2", "diagnose")
        pilot.app.screen.query_one("#log-text", TextArea).load_text(OOM_LOG)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pilot.app.screen.result is not None)
        await pilot.pause()

    assert snap_compare(make_app("healthy-8xh100"), terminal_size=size, run_before=diagnosed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kb(snap_compare, make_app, size):
    async def entry(pilot):
        await goto(pilot, "3", "kb")
        pilot.app.screen.show_entry("gpu-thermal-throttle")
        await pilot.pause(0.2)

    assert snap_compare(make_app("healthy-8xh100"), terminal_size=size, run_before=entry)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_playbook_run(snap_compare, make_app, size):
    async def ran(pilot):
        await goto(pilot, "4", "playbooks")
        screen = pilot.app.screen
        screen.select_playbook("gpu-health", run=True)
        await wait_until(pilot, lambda: screen.outcome is not None, timeout=20)
        await wait_until(pilot, lambda: "verdict: " in screen_text(pilot.app))
        await pilot.pause(0.3)  # let the steps list settle its scroll position

    assert snap_compare(make_app("thermal-throttle"), terminal_size=size, run_before=ran)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_empty(snap_compare, make_app, size):
    assert snap_compare(make_app("healthy-8xh100"), terminal_size=size,
                        run_before=lambda pilot: goto(pilot, "5", "runs"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_environment(snap_compare, make_app, size):
    assert snap_compare(make_app("torch-arch-mismatch"), terminal_size=size,
                        run_before=lambda pilot: goto(pilot, "6", "environment"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, make_app, size):
    assert snap_compare(make_app("healthy-8xh100"), terminal_size=size,
                        run_before=lambda pilot: goto(pilot, "question_mark", "help"))
