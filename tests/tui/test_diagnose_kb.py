"""Diagnose a pasted log / a file; browse and search the KB."""

from __future__ import annotations

from textual.events import Paste
from textual.widgets import OptionList, TextArea

from tui_helpers import screen_text, wait_until

OOM_LOG = """\
epoch 3 step 120 loss 1.234
Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.11 GiB of which 1.12 GiB is free. Of the allocated memory 70.02 GiB is allocated by PyTorch, and 1.50 GiB is reserved by PyTorch but unallocated.
"""


async def test_pasted_oom_log_is_diagnosed_with_evidence_and_entry(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "diagnose")
        area = app.screen.query_one("#log-text", TextArea)
        area.load_text(OOM_LOG)
        await pilot.press("ctrl+r")
        screen = app.screen
        await wait_until(pilot, lambda: screen.result is not None, what="diagnosis")
        top = screen.result.matches[0]
        assert top.category == "cuda_oom", [m.id for m in screen.result.matches]
        text = screen_text(app)
        assert top.title[:30] in text
        assert "   5 ▶ torch.OutOfMemoryError" in text  # evidence line, highlighted, in context
        assert "loss.backward()" in text               # the context around it
        await pilot.press("enter")  # open the KB entry tab
        await wait_until(pilot, lambda: "playbook" in screen_text(app) and top.id in screen_text(app),
                         what="KB entry rendered")


async def diagnose_path(pilot, path, timeout: float = 10.0):
    """Open `path` with ctrl+o as a user types it, and wait for the diagnosis."""
    await pilot.press("2")
    await pilot.press("ctrl+o")
    for ch in str(path):
        await pilot.press(ch)
    await pilot.press("enter")
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.result is not None, timeout=timeout, what="diagnosis")
    return screen


async def test_diagnose_a_log_file_by_path(make_app, tmp_path):
    log = tmp_path / "job.log"
    log.write_text("loading model\n" * 50 + "RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await diagnose_path(pilot, log)
        assert screen.result.matches and screen.result.matches[0].category == "no_kernel_image"
        assert "51 ▶ RuntimeError: CUDA error: no kernel image" in screen_text(app)


async def test_nothing_to_diagnose_says_so(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("2")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "nothing to diagnose" in screen_text(app), what="notification")


async def test_kb_fuzzy_search_and_read(make_app):
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "kb")
        text = screen_text(app)
        assert "cuda_oom (" in text  # grouped by category
        await pilot.press("g")
        await pilot.pause()
        assert "hardware (" in screen_text(app)  # grouped by area
        await pilot.press("slash")
        for ch in "fallen bus":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        listing = app.screen.query_one("#kb-list", OptionList)
        first = listing.get_option_at_index(listing.highlighted)
        assert first.id == "gpu-fallen-off-bus"
        await wait_until(pilot, lambda: "gpu-fallen-off-bus" in screen_text(app) and "79" in screen_text(app),
                         what="entry shown")


async def test_terminal_paste_with_cr_line_ends_is_diagnosed_on_the_spot(make_app):
    app = make_app("torch-arch-mismatch")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "diagnose")
        screen = app.screen
        pasted = "Traceback (most recent call last):\r  File \"x.py\", line 3, in <module>\r" \
                 "RuntimeError: CUDA error: no kernel image is available for execution on the device\r"
        screen.post_message(Paste(pasted))
        await wait_until(pilot, lambda: screen.result is not None, what="diagnosis of the paste")
        assert screen.result.lines_scanned == 3
        assert screen.result.matches[0].category == "no_kernel_image"
        await wait_until(pilot, lambda: "3 ▶ RuntimeError: CUDA error: no kernel image" in screen_text(app))


async def test_file_evidence_is_redacted_like_the_cli(make_app, tmp_path):
    """The CLI redacted HF_TOKEN=… in evidence; the TUI showed it in the context lines."""
    secret_hf, secret_aws = "hf_" + "Q" * 34, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    log = tmp_path / "job.log"
    log.write_text(f"HF_TOKEN={secret_hf}\nAWS_SECRET_ACCESS_KEY={secret_aws}\n"
                   "RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await diagnose_path(pilot, log)
        text = screen_text(app)
        assert "3 ▶ RuntimeError: CUDA error: no kernel image" in text
        assert "HF_TOKEN=" in text and "AWS_SECRET_ACCESS_KEY=" in text  # the context is there…
        assert secret_hf not in text and secret_aws not in text        # …its values are not
        assert secret_aws not in screen.query_one("#log-text", TextArea).text  # nor in the preview


async def test_a_big_file_is_streamed_with_a_bounded_preview(make_app, tmp_path):
    """A log far larger than the preview: the match at its end is found and shown in context,
    while the text area holds the first 200 kB only (it held the whole file before)."""
    log = tmp_path / "big.log"
    filler = ("step %d loss 1.0 " + "x" * 80 + "\n")
    with open(log, "w") as handle:
        for step in range(60_000):  # ~6 MB
            handle.write(filler % step)
        handle.write("RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await diagnose_path(pilot, log, timeout=60)
        assert screen.result.matches[0].category == "no_kernel_image"
        assert "60001 ▶ RuntimeError: CUDA error: no kernel image" in screen_text(app)
        assert "step 59999 loss" in screen_text(app)  # context read back from the file
        preview = screen.query_one("#log-text", TextArea).text
        assert len(preview) < 210_000 and "(preview; the whole file is diagnosed)" in preview


async def test_markup_in_a_path_or_a_message_is_shown_as_typed(make_app):
    """`/tmp/nope[/x].log` exited the TUI with MarkupError; `[rank0]` vanished from toasts."""
    from tui_helpers import notified

    app = make_app("healthy-8xh100")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("2")
        await pilot.press("ctrl+o")
        for ch in "/tmp/nope[/x].log":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "nope[/x].log" in notified(app), what="the error toast")
        assert "no such file" in notified(app)
        app.notify("[rank0]: NCCL timeout [c10d] :smile:")
        await pilot.pause()
        assert "[rank0]: NCCL timeout [c10d] :smile:" in notified(app)
        assert app.is_running
