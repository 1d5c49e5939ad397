"""Odd input never crashes the matcher, and a huge log is scanned in bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

from hypothesis import given, settings, strategies as st

from opsconsole.kb import LogMatcher, load_kb, match_log
from opsconsole.kb.loader import parse_entry
from opsconsole.errors import ConfigError

KB = load_kb()
SIGNAL = b"RuntimeError: CUDA error: an illegal memory access was encountered\n"


def test_binary_junk_and_invalid_utf8() -> None:
    junk = bytes(range(256)) * 50 + b"\xff\xfe\x00\x00garbage\n\x80\x81" + SIGNAL + os.urandom(4096)
    result = match_log(junk, kb=KB)
    assert result.matches[0].id == "illegal-memory-access"


def test_crlf_and_ansi() -> None:
    log = b"epoch 1\r\n\x1b[1;31mRuntimeError: CUDA error: \x1b[0man illegal memory access was encountered\r\n"
    best = match_log(log, kb=KB).matches[0]
    assert best.id == "illegal-memory-access"
    assert best.evidence[0].line == 2 and best.evidence[0].text.endswith("encountered")


def test_empty_input_says_so() -> None:
    for empty in ("", b"", []):
        result = match_log(empty, kb=KB)
        assert result.matches == [] and result.lines_scanned == 0 and result.empty_input


def test_one_enormous_line_without_newline_is_scanned_in_pieces() -> None:
    log = b"x" * (3 << 20) + b" " + SIGNAL.strip() + b" " + b"y" * (2 << 20)
    result = match_log(log, kb=KB)
    assert result.matches[0].id == "illegal-memory-access" and result.lines_scanned == 1
    assert len(result.matches[0].evidence[0].text) <= 402


def test_memory_stays_bounded_while_streaming_a_large_log(tmp_path) -> None:
    block = b"".join(b"INFO step %d loss=0.31 lr=1e-4 |##########| 12.3it/s\n" % i for i in range(20000))
    path = tmp_path / "big.log"
    with path.open("wb") as handle:
        for _ in range(max(1, (12 << 20) // len(block))):  # ~12 MB, 10x the matcher's buffers
            handle.write(block)
        handle.write(SIGNAL)
    matcher = LogMatcher(KB)
    tracemalloc.start()
    try:
        matcher.feed_file(path)
        result = matcher.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.matches[0].id == "illegal-memory-access"
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB while scanning {path.stat().st_size / 2**20:.0f} MiB"


def test_cli_on_a_file_larger_than_its_memory_budget(tmp_path) -> None:
    """A subprocess reads a 40 MB log; its peak RSS grows far less than the file."""
    path = tmp_path / "big.log"
    with path.open("wb") as handle:
        line = b"2024-05-01 12:00:00 INFO worker heartbeat ok queue=17 latency_ms=3\n"
        handle.write(line * ((40 << 20) // len(line)))
        handle.write(SIGNAL)
    code = textwrap.dedent(f"""
        import resource, sys
        from opsconsole.kb import load_kb, match_log
        kb = load_kb()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = match_log(__import__("pathlib").Path({str(path)!r}), kb=kb)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(result.matches[0].id, (after - before) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entry_id, grown_mib = done.stdout.split()
    assert entry_id == "illegal-memory-access"
    assert int(grown_mib) < 20, f"RSS grew by {grown_mib} MiB for a 40 MiB file"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=300)), max_size=12))
def test_matcher_never_crashes_on_arbitrary_chunks(chunks) -> None:
    matcher = LogMatcher(KB)
    for chunk in chunks:
        matcher.feed(chunk)
    result = matcher.result()
    assert result.lines_scanned >= 0
    for diagnosis in result.matches:
        assert diagnosis.score > 0 and diagnosis.evidence


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=400))
def test_front_matter_parser_raises_only_config_errors(body) -> None:
    from pathlib import Path

    for text in (body, "---\n" + body + "\n---\nbody\n", "---\nid: x\n" + body + "\n---\n"):
        try:
            parse_entry(Path("fuzz.md"), text, None)
        except ConfigError:
            pass


def test_a_huge_search_query_is_cut_not_scored_whole(capsys, monkeypatch) -> None:
    """`kb search` with a 100,000-character query took > 20 s; the start of a pasted error still finds it."""
    import opsconsole.kb.search as search
    from opsconsole.cli import main

    seen = []
    real = search._field_scores
    monkeypatch.setattr(search, "_field_scores", lambda q, entry: (seen.append(len(q)), real(q, entry))[1])
    assert main(["kb", "search", "CUDA out of memory" + " x" * 50_000, "--json"]) in (0, 1)
    assert seen and max(seen) <= search.MAX_QUERY
