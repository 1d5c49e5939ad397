"""RunTail reads only what was appended, survives torn lines and truncation, and cleans lines for display."""

from __future__ import annotations

import json
import os
from pathlib import Path

from opsconsole.runs.tail import MAX_LINE_BYTES, PARTIAL_TRIM_BYTES, RunTail, normalize_line, strip_ansi


def _append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def _event(type_: str, **fields: object) -> str:
    return json.dumps({"t": 1.0, "type": type_, **fields}) + "\n"


def test_reads_only_new_bytes_and_waits_for_torn_lines(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("one\ntw")
    tail = RunTail(tmp_path)
    assert tail.poll_log() == ["one"]
    assert tail.partial_line == "tw"
    assert tail.poll_log() == []  # nothing new: nothing re-read
    _append(log, "o\nthree\n")
    assert tail.poll_log() == ["two", "three"]
    # the reader moved on by offset: rewriting old bytes in place is not seen again
    with open(log, "r+b") as fh:
        fh.write(b"XXX")
    _append(log, "four\n")
    assert tail.poll_log() == ["four"]


def test_truncated_log_is_read_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("a\nb\nc\n")
    tail = RunTail(tmp_path)
    assert tail.poll_log() == ["a", "b", "c"]
    log.write_text("new\n")  # truncated and rewritten (shorter than the old offset)
    assert tail.poll_log() == ["new"]


def test_carriage_return_progress_keeps_the_last_segment_and_strips_ansi(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    raw = "\r\x1b[32m 10%\x1b[0m|#   |\r\x1b[32m 50%\x1b[0m|##  |\r\x1b[32m100%\x1b[0m|####|\nnext line\r\n"
    log.write_bytes(raw.encode())
    assert RunTail(tmp_path).poll_log() == ["100%|####|", "next line"]
    assert log.read_bytes() == raw.encode()  # the raw file is untouched


def test_live_progress_bar_shows_as_partial_line_and_stays_small(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"")
    tail = RunTail(tmp_path)
    for i in range(20000):  # a bar redrawn 20k times without a newline
        _append(log, f"\rstep {i}".encode())
        if i % 5000 == 0:
            tail.poll_log()
    assert tail.poll_log() == []
    assert tail.partial_line == "step 19999"
    assert len(tail._log.partial) <= PARTIAL_TRIM_BYTES  # overwritten segments are dropped


def test_an_endless_line_is_cut_so_memory_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"x" * (MAX_LINE_BYTES * 3))
    tail = RunTail(tmp_path)
    lines = tail.poll_log()
    assert lines and all(len(line) <= MAX_LINE_BYTES for line in lines)


def test_ansi_and_control_sequences_are_removed() -> None:
    assert strip_ansi("\x1b[1;31mError\x1b[0m: \x1b]0;title\x07bad\x1b[K") == "Error: bad"
    assert normalize_line("half\r\x1b[2K") == "half"  # a redraw that only erased the line shows the text before
    assert normalize_line("tab\tkept\x07") == "tab\tkept"


def test_events_are_parsed_incrementally_with_torn_json(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    first = _event("start", kind="selftest")
    progress = _event("progress", step=2, total=10, unit="step", metrics={"loss": 1.5})
    events.write_text(first + progress[:20])
    tail = RunTail(tmp_path)
    assert [e["type"] for e in tail.poll_events()] == ["start"]
    assert tail.progress is None
    _append(events, progress[20:] + "not json\n" + _event("metric", name="ttft_s", value=0.25))
    assert [e["type"] for e in tail.poll_events()] == ["progress", "metric"]
    assert tail.progress["step"] == 2 and tail.metrics == {"loss": 1.5, "ttft_s": 0.25}
    _append(events, _event("artifact", path="artifacts/a.png", kind="image")
            + _event("finish", status="ok", metrics={"loss": 1.0}))
    update = tail.poll()
    assert [e["type"] for e in update.events] == ["artifact", "finish"]
    assert tail.finish["status"] == "ok" and tail.metrics["loss"] == 1.0
    assert tail.artifacts[0]["path"] == "artifacts/a.png"


def test_from_end_starts_near_the_end_on_a_line_boundary(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("".join(f"line {i}\n" for i in range(10000)))
    tail = RunTail(tmp_path, from_end=True, backlog_bytes=100)
    lines = tail.poll_log()
    assert lines[-1] == "line 9999" and all(line.startswith("line ") for line in lines)
    assert len(lines) < 20
    assert os.path.getsize(log) > 50000


def test_follow_shows_a_last_line_without_newline(tmp_path: Path) -> None:
    from opsconsole.runs import RunManager

    manager = RunManager()
    record = manager.launch("selftest", ["--lines", "3", "--progress-bar"])
    lines = [line for update in manager.follow(record.id) for line in update.lines]
    assert lines[-1] == "100% |###"  # the bar's final state, without its ANSI colour


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = st.sampled_from(["a", "b", "é", "\n", "\r", "\r\n", "\x1b[31m", "\x1b[0m", "100%", " ", "x" * 1000])  # up to 60 kB: past the trim size, under MAX_LINE_BYTES


@settings(max_examples=60, deadline=None)
@given(text=st.lists(_PIECES, max_size=60).map("".join), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_any_write_chunking_yields_the_same_lines_as_one_read(tmp_path_factory, text: str, cuts: list[int]) -> None:
    run_dir = tmp_path_factory.mktemp("tail")
    log = run_dir / "output.log"
    data = text.encode()
    log.write_bytes(b"")
    tail = RunTail(run_dir)
    got: list[str] = []
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        _append(log, data[previous:cut])  # a writer flushing at arbitrary byte boundaries (even mid-character)
        previous = cut
        got += tail.poll_log()
    expected = [normalize_line(line) for line in text.split("\n")[:-1]]
    assert got == expected
    assert tail.partial_line == normalize_line(text.split("\n")[-1])
