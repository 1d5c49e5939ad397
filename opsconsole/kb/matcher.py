"""Diagnose a log: find the KB entries whose signals it holds and rank them.

How it stays fast and bounded on huge, noisy logs:
- input is consumed as bytes in chunks; only complete lines are scanned and a
  partial line waits for the next chunk (a line longer than MAX_PENDING is
  scanned in pieces), so memory does not grow with the file;
- one combined pre-filter search (see prefilter.py) finds the few lines that
  hold any entry's literal; only those lines are decoded and only the regexes
  of the literals found there are run;
- per pattern it keeps a count and the first and last matching line, so the
  evidence kept is bounded whatever the log.

How it ranks (root cause, not surface message):
- each entry's score sums its signals: per log line (where a pattern last
  matched) the heaviest pattern's weight plus SAME_LINE_FACTOR of the others
  on that line — several signals on different lines beat one line, so a specific signal
  (weight 8–10) outranks generic ones; an entry is only reported when at
  least one pattern of weight >= INDICATIVE matched (lighter patterns only
  support: a cause-specific OOM entry lists the generic OOM line at weight 3),
  or when light signals on two or more lines add up to CO_OCCURRING (a
  traceback pasted without its last line still shows where it failed);
- a pattern matching in the final error region (the last lines around the
  final exception) counts FINAL_BONUS more: that is what killed the program;
- an entry whose `excludes` matched anywhere counts EXCLUDED_FACTOR of its
  score (e.g. a NCCL error whose log also says 'out of memory').
"""

from __future__ import annotations

import bisect
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .model import Diagnosis, Evidence, KbEntry, KnowledgeBase, MatchResult
from .prefilter import Prefilter

CHUNK_BYTES = 1 << 20
MAX_PENDING = 1 << 20  # a line longer than this is scanned in pieces
PIECE_OVERLAP = 512  # bytes kept from a scanned piece, so a literal split across pieces is still found
MAX_SEGMENT = 4096  # bytes of a (\r-separated) line segment a regex sees, around the literal
MAX_EVIDENCE_TEXT = 400
MAX_EVIDENCE = 8
FINAL_WINDOW = 40  # lines before the last error marker that make up the final error region
FINAL_BONUS = 0.5
EXCLUDED_FACTOR = 0.3
SAME_LINE_FACTOR = 0.25  # extra patterns matching the line of a stronger one add this share
MIN_SCORE = 2.0
INDICATIVE = 4.0  # an entry needs at least one pattern this heavy; lighter ones only support
CO_OCCURRING = 5.0  # ... or light signals on at least two lines summing to this (a log cut off before its message)

_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_ERROR_MARKERS = (b"error", b"exception", b"traceback", b"killed", b"fatal", b"abort", b"segmentation fault")


@dataclass(frozen=True)
class _Target:
    entry: int  # index into _Index.entries
    pattern: int  # index into the entry's patterns or excludes
    exclude: bool


class _Index:
    """Everything the matcher needs from a KB, built once per KnowledgeBase."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.entries: list[KbEntry] = list(kb.entries.values())
        self.targets: dict[bytes, list[tuple[_Target, re.Pattern[str]]]] = {}
        literals = []
        for e_index, entry in enumerate(self.entries):
            for exclude, patterns in ((False, entry.patterns), (True, entry.excludes)):
                for p_index, pattern in enumerate(patterns):
                    for literal in pattern.literals:
                        literals.append(literal)
                        self.targets.setdefault(literal.encode(), []).append(
                            (_Target(e_index, p_index, exclude), pattern.regex))
        self.prefilter = Prefilter(literals)

    @classmethod
    def of(cls, kb: KnowledgeBase) -> "_Index":
        if kb._matcher_index is None:
            kb._matcher_index = cls(kb)
        return kb._matcher_index


@dataclass
class _Hits:
    """What one pattern matched so far: bounded whatever the log size."""

    count: int = 0
    first: Evidence | None = None
    last: Evidence | None = None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clip(text: str, start: int, end: int) -> str:
    """The evidence text: printable, and at most MAX_EVIDENCE_TEXT around the match."""
    text = _CONTROL.sub(" ", text).strip()
    if len(text) <= MAX_EVIDENCE_TEXT:
        return text
    half = MAX_EVIDENCE_TEXT // 2
    middle = (start + end) // 2
    lo = max(0, min(middle - half, len(text) - MAX_EVIDENCE_TEXT))
    return ("…" if lo else "") + text[lo : lo + MAX_EVIDENCE_TEXT] + ("…" if lo + MAX_EVIDENCE_TEXT < len(text) else "")


class LogReadError(OSError):
    """The log could not be read to its end; `bytes_read` bytes were fed before the error."""

    def __init__(self, message: str, bytes_read: int) -> None:
        super().__init__(message)
        self.bytes_read = bytes_read


def log_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be diagnosed as a log (one line for the user), or None if it can.
    A regular file, a FIFO or a terminal is fine; /dev/zero and other devices never end."""
    target = Path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return f"{path}: no such file — give the path of a log file"
    except OSError as exc:
        return f"{path}: cannot read it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"{path} is a directory — give a log file (a run's log is runs/<id>/output.log)"
    if stat.S_ISFIFO(mode):  # opening a FIFO blocks until a writer comes: only check access
        return None if os.access(target, os.R_OK) else f"{path}: cannot read it (permission denied)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        try:
            with open(target, "rb") as handle:
                if os.isatty(handle.fileno()):
                    return None
        except OSError:
            pass
        kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"{path} is {kind}, not a log file (a device like /dev/zero never ends); pipe its output in instead"
    try:
        with open(target, "rb"):
            pass
    except OSError as exc:
        return f"{path}: cannot read it ({exc.strerror or exc})"
    return None


class LogMatcher:
    """Incremental matcher: `feed()` chunks of a growing log, `result()` any time.

    Nothing fed is scanned twice except the unfinished last line, which
    `result()` looks at provisionally (it is scanned again once complete).
    """

    def __init__(self, kb: KnowledgeBase | None = None) -> None:
        if kb is None:
            from .loader import load_kb

            kb = load_kb()
        self.kb = kb
        self._index = _Index.of(kb)
        self._hits: dict[_Target, _Hits] = {}
        self._pending = b""
        self._lines_done = 0  # complete lines consumed
        self._bytes = 0
        self._last_error_line = 0

    # -- input -------------------------------------------------------------
    def feed(self, chunk: str | bytes) -> None:
        data = chunk.encode("utf-8", "replace") if isinstance(chunk, str) else bytes(chunk)
        if not data:
            return
        self._bytes += len(data)
        buffer = self._pending + data if self._pending else data
        cut = buffer.rfind(b"\n")
        if cut >= 0:
            self._scan(buffer[: cut + 1], self._lines_done)
            self._lines_done += buffer.count(b"\n", 0, cut + 1)
            buffer = buffer[cut + 1 :]
        if len(buffer) > MAX_PENDING:  # an endless line (binary junk, a \r-only progress bar)
            self._scan(buffer, self._lines_done)
            buffer = buffer[-PIECE_OVERLAP:]
        self._pending = buffer

    def feed_file(self, path: str | os.PathLike[str],
                  progress: Callable[[int, int], None] | None = None) -> None:
        """Stream the file (bounded memory); `progress(bytes_done, total_or_0)` after each chunk.
        A read error (a failing disk, /proc/self/mem) keeps what was read and raises LogReadError."""
        with open(path, "rb") as handle:
            total = os.fstat(handle.fileno()).st_size
            done = 0
            while True:
                try:
                    chunk = handle.read(CHUNK_BYTES)
                except OSError as exc:
                    raise LogReadError(f"{path}: read failed after {done} bytes ({exc.strerror or exc})",
                                       done) from None
                if not chunk:
                    return
                self.feed(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    # -- scanning ----------------------------------------------------------
    def _scan(self, block: bytes, first_line: int) -> None:
        """Scan `block` whose first line is line number `first_line` + 1."""
        if b"\x1b" in block:
            block = _ANSI.sub(b"", block)
        low = block.lower()
        marker = max(low.rfind(m) for m in _ERROR_MARKERS)
        if marker >= 0:
            self._last_error_line = max(self._last_error_line, first_line + low.count(b"\n", 0, marker) + 1)
        line, counted, done_until = first_line, 0, -1
        for at in self._index.prefilter.line_hits(low):
            if at <= done_until:
                continue  # this line was already scanned
            start = low.rfind(b"\n", 0, at) + 1
            end = low.find(b"\n", at)
            if end < 0:
                end = len(low)
            line += low.count(b"\n", counted, start)
            counted = start
            self._scan_line(block[start:end], low[start:end], line + 1)
            done_until = end

    def _scan_line(self, raw: bytes, low: bytes, number: int) -> None:
        literals = self._index.prefilter.literals_in(low)
        if not literals:
            return
        starts = [0]
        if b"\r" in raw:  # a progress bar redrawn in place: each \r starts a new segment
            starts += [m.end() for m in re.finditer(rb"\r", raw)]
        for literal in literals:
            targets = self._index.targets[literal]
            # The first and the last occurrence are enough (evidence keeps first and last).
            for at in sorted({low.find(literal), low.rfind(literal)}):
                seg_start = starts[bisect.bisect_right(starts, at) - 1]
                seg_end = raw.find(b"\r", at)
                seg_end = len(raw) if seg_end < 0 else seg_end
                lo = max(seg_start, at - MAX_SEGMENT // 2)
                text = raw[lo : min(seg_end, lo + MAX_SEGMENT)].decode("utf-8", "replace")
                for target, regex in targets:
                    hit = regex.search(text)
                    if hit:
                        self._record(target, number, text, hit.start(), hit.end())

    def _record(self, target: _Target, number: int, text: str, start: int, end: int) -> None:
        hits = self._hits.get(target)
        if hits is None:
            hits = self._hits[target] = _Hits()
        evidence = Evidence(number, _clip(text, start, end))
        if hits.last is not None and hits.last.line == number:
            # The same line again (another literal, or a partial line now complete): keep the fuller text.
            if len(evidence.text) > len(hits.last.text):
                if hits.first is hits.last:
                    hits.first = evidence
                hits.last = evidence
            return
        hits.count += 1
        if hits.first is None:
            hits.first = evidence
        hits.last = evidence

    # -- results -----------------------------------------------------------
    @property
    def lines_scanned(self) -> int:
        return self._lines_done + (1 if self._pending.strip() else 0)

    def result(self, top: int = 5) -> MatchResult:
        if self._pending:
            # Look at the unfinished last line now; it is scanned again once complete.
            self._scan(self._pending, self._lines_done)
        return MatchResult(self._rank(top), self.lines_scanned, self._bytes)

    def _rank(self, top: int) -> list[Diagnosis]:
        final_start = max(1, (self._last_error_line or self.lines_scanned) - FINAL_WINDOW)
        by_entry: dict[int, list[tuple[_Target, _Hits]]] = {}
        for target, hits in self._hits.items():
            by_entry.setdefault(target.entry, []).append((target, hits))
        ranked = []
        for e_index, found in by_entry.items():
            entry = self._index.entries[e_index]
            strongest, evidence, excluded = 0.0, {}, False
            by_line: dict[int, list[float]] = {}
            for target, hits in found:
                if target.exclude:
                    excluded = True
                    continue
                weight = entry.patterns[target.pattern].weight
                by_line.setdefault(hits.last.line, []).append(weight)
                strongest = max(strongest, weight)
                for ev in (hits.first, hits.last):
                    if ev is not None:
                        evidence.setdefault(ev.line, (weight, ev))
            score = raw = 0.0
            for line, weights in by_line.items():
                # Several patterns on one line are one signal seen several ways.
                top_weight = max(weights)
                signal = top_weight + SAME_LINE_FACTOR * (sum(weights) - top_weight)
                raw += signal
                score += signal * (1 + FINAL_BONUS if line >= final_start else 1)
            if excluded:
                score *= EXCLUDED_FACTOR
            supported = strongest >= INDICATIVE or (len(by_line) >= 2 and raw >= CO_OCCURRING)
            if score < MIN_SCORE or not supported:
                continue
            # Keep the strongest evidence lines, shown in log order.
            kept = sorted(evidence.values(), key=lambda we: (-we[0], -we[1].line))[:MAX_EVIDENCE]
            lines = sorted((ev for _, ev in kept), key=lambda ev: ev.line)
            ranked.append((score, strongest, entry, lines))
        ranked.sort(key=lambda r: (-r[0], -r[1], r[2].id))
        return [
            Diagnosis(entry.id, entry.category, entry.title, round(score, 2), lines, entry.playbook)
            for score, _, entry, lines in ranked[: max(0, top)]
        ]


def match_log(
    source: str | bytes | os.PathLike[str] | Iterable[str],
    kb: KnowledgeBase | None = None,
    top: int = 5,
) -> MatchResult:
    """Rank the KB entries that explain the log `source`.

    `source`: the log text (str), its bytes, a path to a log file (streamed),
    or an iterable of lines (e.g. an open text file).
    """
    matcher = LogMatcher(kb)
    if isinstance(source, (str, bytes, bytearray)):
        for start in range(0, len(source), CHUNK_BYTES):
            matcher.feed(source[start : start + CHUNK_BYTES])
    elif isinstance(source, (os.PathLike, Path)):
        matcher.feed_file(source)
    else:
        batch: list[str] = []
        size = 0
        for line in source:
            batch.append(line if line.endswith("\n") else line + "\n")
            size += len(line)
            if size >= CHUNK_BYTES:
                matcher.feed("".join(batch))
                batch, size = [], 0
        if batch:
            matcher.feed("".join(batch))
    return matcher.result(top)
