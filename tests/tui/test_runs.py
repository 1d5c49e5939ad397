"""Runs: launch from the form and watch it finish; failed runs are diagnosed; CLI runs are listed."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from opsconsole.config import Settings
from opsconsole.runs import RunManager
from opsconsole.tui.screens.launch import LaunchDialog, build_argv, split_preset
from opsconsole.tui.widgets.run_detail import FollowLog, RunDetail

from tui_helpers import screen_text, wait_until


def log_text(app) -> str:
    return "\n".join(app.screen.query_one(FollowLog).lines)


async def launch_from_form(pilot, options: str) -> None:
    app = pilot.app
    await pilot.press("5")
    await wait_until(pilot, lambda: app.current_mode == "runs")
    await pilot.press("n")
    await wait_until(pilot, lambda: isinstance(app.screen, LaunchDialog), what="launch form")
    form = app.screen
    form.query_one("#kind").value = "selftest"
    form.query_one("#model").value = ""
    form.query_one("#options").value = options
    await pilot.press("ctrl+s")


async def test_launch_selftest_and_see_it_finish(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await launch_from_form(pilot, "--lines 8 --interval 0.02")
        detail = None
        await wait_until(pilot, lambda: app.current_mode == "runs" and app.screen.query_one(RunDetail).record is not None,
                         what="run opened")
        detail = app.screen.query_one(RunDetail)
        await wait_until(pilot, lambda: detail.state.finish is not None, timeout=30, what="run finished")
        await wait_until(pilot, lambda: "selftest line 8/8" in log_text(app), what="last log line")
        text = screen_text(app)
        assert " ok " in text and "100%" in text
        table = app.screen.query_one("#runs-table", DataTable)
        assert table.row_count == 1
        await wait_until(pilot, lambda: "ok" in str(table.get_row_at(0)[2]), what="list shows ok")


async def test_progress_bar_redraws_are_normalised(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await launch_from_form(pilot, "--lines 6 --interval 0.02 --progress-bar")
        await wait_until(pilot, lambda: app.screen.query_one(RunDetail).record is not None)
        detail = app.screen.query_one(RunDetail)
        await wait_until(pilot, lambda: detail.state.finish is not None, timeout=30, what="run finished")
        # the unterminated tqdm-style line shows once, as a terminal would: last \r segment, no ANSI
        await wait_until(pilot, lambda: "100% |######" in screen_text(app), what="final bar")
        assert "\x1b" not in screen_text(app) and "12% |" not in screen_text(app)


async def test_failed_run_is_diagnosed(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await launch_from_form(pilot, "--lines 2 --raise 'CUDA out of memory. Tried to allocate 2.00 GiB'")
        await wait_until(pilot, lambda: app.screen.query_one(RunDetail).record is not None)
        await wait_until(pilot, lambda: "cuda-oom" in screen_text(app), timeout=30, what="diagnosis shown")
        assert "failed" in screen_text(app)


async def test_runs_from_the_cli_and_earlier_sessions_are_listed(make_app):
    manager = RunManager(Settings())
    record = manager.launch("selftest", ["--lines", "3"])
    manager.wait(record.id, timeout=30)
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        table = app.screen.query_one("#runs-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="earlier run listed")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "selftest line 3/3" in log_text(app), what="its log")


def test_presets_fill_the_form_fields():
    fields, rest = split_preset(["--model", "tiny", "--width", "512", "--dtype=fp16"])
    assert fields == {"model": "tiny", "dtype": "fp16"} and rest == ["--width", "512"]
    assert build_argv("tiny", "cpu", "auto", "--steps 20") == ["--model", "tiny", "--device", "cpu", "--steps", "20"]


async def test_preset_selection_in_the_form(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        form = app.screen
        form.query_one("#preset").value = "LoRA 20 steps"
        await pilot.pause()
        request = form.request()
        assert request.kind == "gemma-lora" and request.argv == ["--model", "tiny", "--steps", "20"]


async def test_quitting_the_console_leaves_runs_running(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        await launch_from_form(pilot, "--lines 20 --interval 0.1")
        await wait_until(pilot, lambda: app.screen.query_one(RunDetail).record is not None)
        run_id = app.screen.query_one(RunDetail).record.id
        await pilot.press("ctrl+q")
    manager = RunManager(Settings())
    assert manager.get(run_id).status in ("starting", "running")  # the console is gone, the run is not
    result = manager.wait(run_id, timeout=30)
    assert result["status"] == "ok"


@pytest.mark.slow
@pytest.mark.ml
async def test_gemma_infer_tiny_from_the_quick_preset(make_app):
    pytest.importorskip("transformers")
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#preset").value = "quick Gemma check"
        await pilot.pause()
        app.screen.query_one("#device").value = "cpu"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen.query_one(RunDetail).record is not None)
        detail = app.screen.query_one(RunDetail)
        await wait_until(pilot, lambda: detail.state.finish is not None, timeout=180, what="gemma run finished")
        assert detail.state.finish["status"] == "ok", detail.state.finish
        await wait_until(pilot, lambda: "decode_tokens_per_s" in screen_text(app) or "ttft_s" in screen_text(app),
                         what="metrics shown")


async def test_follow_toggle_and_scrolling_up_pauses_the_log(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        await launch_from_form(pilot, "--lines 300")
        await wait_until(pilot, lambda: app.screen.query_one(RunDetail).record is not None)
        detail = app.screen.query_one(RunDetail)
        await wait_until(pilot, lambda: "selftest line 300/300" in log_text(app), timeout=30, what="all lines")
        log = app.screen.query_one(FollowLog)
        assert log.auto_scroll and "follow" in screen_text(app)
        await pilot.press("f")
        await wait_until(pilot, lambda: "paused (f: follow)" in screen_text(app), what="paused")
        await pilot.press("f")
        await wait_until(pilot, lambda: log.auto_scroll and "paused" not in screen_text(app).splitlines()[2])
        log.focus()
        await pilot.press("pageup")  # the user scrolls back: following stops
        assert not log.auto_scroll
        assert detail.total_lines == 300


async def test_a_model_name_with_markup_is_quoted_not_parsed(make_app):
    """The launch-form model `my[/model]` exited the TUI with MarkupError; now the refusal
    names it as typed and the console stays up."""
    from tui_helpers import notified

    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("5")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        form = app.screen
        form.query_one("#kind").value = "gemma-infer"
        form.query_one("#model").value = "my[/model]"
        form.query_one("#device").value = "cpu"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "cannot launch" in notified(app), what="the refusal")
        await pilot.pause()
        assert app.is_running
        assert "my[/model]" in notified(app), notified(app)
