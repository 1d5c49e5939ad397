"""Dashboard: GPU cards for every GPU, processes, findings, banners, layouts from 80×24 up, tiny sizes."""

from __future__ import annotations

import threading

import pytest

from opsconsole.config import Settings
from opsconsole.telemetry import open_source
from opsconsole.tui.app import create_app
from opsconsole.tui.widgets.gpu_card import GpuCard
from opsconsole.tui.widgets.processes import ProcessTable

from tui_helpers import screen_text, wait_until


async def test_healthy_8_gpus_full_cards_at_160x48(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None, what="first frame")
        await pilot.pause()
        cards = app.screen.query(GpuCard)
        assert len(cards) == 8
        assert not any(card.has_class("compact") for card in cards)
        text = screen_text(app)
        assert "GPU 7 · H100 80GB HBM3" in text
        assert "util" in text and "vram" in text and "/87" in text  # temperature vs slowdown threshold
        assert "[ECC ✓]" in text and "PCIe 5x16" in text
        table = app.screen.query_one(ProcessTable)
        expected = sum(len(g.processes) for g in app.snapshot.gpus)
        assert table.row_count == expected > 0
        assert "no findings" in text


async def test_80x24_is_compact_and_shows_every_gpu(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        assert all(card.has_class("compact") for card in app.screen.query(GpuCard))
        lines = screen_text(app).splitlines()
        assert len(lines) == 24
        for index in range(8):
            assert any(line.startswith(f" {index} H100") for line in lines), index
        assert "Processes" in "\n".join(lines) and "Kill process" in lines[-1]


@pytest.mark.parametrize("size", [(20, 6), (10, 3), (40, 10)])
async def test_tiny_terminals_do_not_crash(make_app, size):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        for key in ("2", "3", "4", "5", "6", "question_mark", "1"):
            await pilot.press(key)
        await pilot.pause()
        assert app.is_running


async def test_thermal_finding_opens_its_kb_entry(make_app):
    app = make_app("thermal-throttle")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "thermal" in text.lower()
        assert any(f.kb == "gpu-thermal-throttle" for f in app.snapshot.findings)
        await pilot.press("f")
        findings = app.screen.query_one("#findings")
        index = next(i for i, f in enumerate(findings.findings) if f.kb == "gpu-thermal-throttle")
        findings.highlighted = index
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.current_mode == "kb" and "gpu-thermal-throttle" in screen_text(app),
                         what="KB entry shown")


async def test_no_driver_banner_and_host_still_shown(make_app):
    app = make_app("no-driver")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "no NVIDIA driver found" in text
        assert "CPU" in text and "RAM" in text


async def test_xid79_card_shows_lost_gpu(make_app):
    app = make_app("xid79-fell-off-bus")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "XID 79" in text or "LOST" in text.upper()


async def test_sort_and_filter_processes(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        table = app.screen.query_one(ProcessTable)
        await pilot.press("s")  # vram -> pid
        pids = [int(table.row_cells(i)[0]) for i in range(table.row_count)]
        assert pids == sorted(pids)
        user = app.snapshot.gpus[0].processes[0].user
        await pilot.press("slash")
        for ch in f"user:{user}":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        users = {table.row_cells(i)[1] for i in range(table.row_count)}
        assert users == {user}
        assert f"filter: user:{user}" in screen_text(app)


class HangingSource:
    """Like NVML stuck in the driver: the first sample answers, the next ones block."""

    def __init__(self) -> None:
        self.inner = open_source(simulate="healthy-8xh100", frozen=True)
        self.release = threading.Event()
        self.calls = 0

    def sample(self):
        self.calls += 1
        if self.calls > 1:
            self.release.wait(30)
        return self.inner.sample()

    def close(self) -> None:
        self.release.set()
        self.inner.close()


async def test_hung_sampler_shows_banner_and_ui_stays_responsive():
    source = HangingSource()
    app = create_app(Settings(refresh=0.1, nvml_timeout=0.2), source_factory=lambda: source, static=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: "NVML not responding" in screen_text(app), timeout=8, what="stall banner")
        await pilot.press("3")  # the UI still answers keys while the sampler is stuck
        await wait_until(pilot, lambda: app.current_mode == "kb")
        await pilot.press("1")
        await wait_until(pilot, lambda: app.current_mode == "dashboard")
    source.release.set()


async def test_hidden_screens_skip_rendering_but_keep_history(make_app):
    app = make_app("healthy-8xh100", refresh=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        dashboard = app.screen
        await pilot.press("3")
        await pilot.pause()
        before = len(app.history.util[0])
        shown = dashboard.query_one(GpuCard).gpu
        await wait_until(pilot, lambda: len(app.history.util[0]) >= before + 3, what="history grows while hidden")
        assert dashboard.query_one(GpuCard).gpu is shown  # the hidden dashboard was not re-rendered
        await pilot.press("1")
        await pilot.pause()
        assert dashboard.query_one(GpuCard).gpu is not shown  # back in view: it shows the newest frame


async def test_no_driver_dashboard_says_so_instead_of_waiting_forever(make_app):
    """With zero GPUs, `[] != []` was false: the no-GPU text never replaced "waiting for telemetry…"."""
    app = make_app("no-driver")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None, what="first frame")
        await wait_until(pilot, lambda: "no NVIDIA driver found" in screen_text(app), what="the no-GPU text")
        assert "waiting for telemetry" not in screen_text(app)
