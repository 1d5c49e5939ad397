"""Moving around: the tab bar with the mouse, keys from every screen, ctrl+q anywhere, help lists keys."""

from __future__ import annotations

from opsconsole.tui.screens.base import TabBar

from tui_helpers import screen_text, wait_until


async def test_clicking_a_tab_switches_screen(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        line = screen_text(app).splitlines()[0]
        await pilot.click(TabBar, offset=(line.index("4 Playbooks") + 2, 0))
        await wait_until(pilot, lambda: app.current_mode == "playbooks", what="playbooks after click")
        line = screen_text(app).splitlines()[0]
        await pilot.click(TabBar, offset=(line.index("1 Dashboard") + 2, 0))
        await wait_until(pilot, lambda: app.current_mode == "dashboard")


async def test_every_screen_key_and_ctrl_q_from_anywhere(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        for key, mode in (("2", "diagnose"), ("3", "kb"), ("4", "playbooks"), ("5", "runs"),
                          ("6", "environment"), ("question_mark", "help"), ("escape", "dashboard"),
                          ("f3", "diagnose"), ("f1", "help"), ("q", "dashboard"), ("f7", "environment"),
                          ("1", "dashboard")):
            await pilot.press(key)
            await wait_until(pilot, lambda: app.current_mode == mode, what=mode)
        await pilot.press("4")
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert not app.is_running


async def test_help_lists_the_keys_of_every_screen(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: "Kill process" in screen_text(app), what="help text")
        text = screen_text(app)
        for expected in ("Diagnose", "Run playbook", "New run", "Stop run", "Search", "Dry run"):
            assert expected in text, expected


async def test_light_terminal_gets_the_light_theme_and_ctrl_t_toggles(make_app, monkeypatch):
    monkeypatch.setenv("COLORFGBG", "0;15")  # dark text on a white background
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "textual-light"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-dark"
