"""The telemetry feed: one sampling thread, latest frame wins, never overlapping samples."""

from __future__ import annotations

import threading
import time

from opsconsole.config import Settings
from opsconsole.telemetry import open_source
from opsconsole.tui.app import create_app
from opsconsole.tui.feed import SnapshotArrived, TelemetryFeed

from tui_helpers import wait_until


async def test_queued_frames_collapse_to_the_newest():
    source = open_source(simulate="healthy-8xh100", frozen=True)
    frames = [source.sample() for _ in range(5)]
    app = create_app(Settings(refresh=3600), source_factory=lambda: open_source(simulate="healthy-8xh100", frozen=True),
                     static=True)
    handled = []
    recording = threading.Event()

    def hook(message) -> None:  # every message the app dispatches (after queued frames were merged)
        if recording.is_set() and isinstance(message, SnapshotArrived):
            handled.append(message.snapshot)

    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(pilot, lambda: app.snapshot is not None)
        recording.set()
        posted = threading.Event()

        def post_all() -> None:
            for frame in frames:
                app.post_message(SnapshotArrived(frame))
            posted.set()

        def busy_ui() -> None:  # the UI thread is busy while five frames arrive
            threading.Thread(target=post_all).start()
            posted.wait(5)
            time.sleep(0.05)

        app.call_later(busy_ui)
        await wait_until(pilot, lambda: app.snapshot is frames[-1], what="newest frame shown")
        await pilot.pause(0.2)
    assert handled[-1] is frames[-1]
    assert len(handled) < len(frames)  # older queued frames were dropped, not rendered
    source.close()


def test_next_sample_starts_only_after_the_previous_finished():
    active = []
    overlaps = []

    class SlowSource:
        def sample(self):
            active.append(1)
            if len(active) > 1:
                overlaps.append(len(active))
            time.sleep(0.05)
            active.pop()
            return open_source(simulate="healthy-8xh100", frozen=True, probe_env=False).sample()

        def close(self):
            pass

    posted = []
    feed = TelemetryFeed(SlowSource, posted.append, refresh=0.0)
    feed.start()
    time.sleep(0.5)
    feed.stop()
    assert len(posted) >= 3 and not overlaps
