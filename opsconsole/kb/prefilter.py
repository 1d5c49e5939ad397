"""Find the lines of a chunk that hold any entry's literal, fast on long noisy logs.

Most literals are represented by an *anchor*: a piece of the literal (up to 8
characters) that starts with a character rare in logs. All anchors form one
trie-shaped regex; the regex engine skips every position whose character
cannot start an anchor, so noise is crossed quickly. An anchor hit is
confirmed by comparing the whole literal at its offset (cheap), so a common
anchor never costs a full line scan. The few literals made only of common
characters are searched with `bytes.find` (fast for multi-byte needles).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters allowed to start an anchor, rarest in logs first (lower-case).
# Digits, spaces, most punctuation and the most frequent letters never start one.
ANCHOR_START = "zqjx`!~^$@&#+<>{}|;?%kvwybgfpmhudcl"
ANCHOR_MAX = 8
ANCHOR_MIN = 3


def anchor_of(literal: str) -> tuple[str, int] | None:
    """(anchor, offset in literal), or None when the literal has no rare enough character."""
    best = None
    for start, char in enumerate(literal):
        rank = ANCHOR_START.find(char)
        length = min(len(literal) - start, ANCHOR_MAX)
        if rank < 0 or length < min(ANCHOR_MIN, len(literal)):
            continue
        key = (length < 5, rank, -length)  # selective (5+ chars) first, then the rarest start
        if best is None or key < best[0]:
            best = (key, start)
    if best is None:
        return None
    start = best[1]
    return literal[start : start + ANCHOR_MAX], start


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of `words`, shaped as a trie (shared prefixes once)."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:
        ends = "" in node
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return build(trie)


class Prefilter:
    """Maps lower-cased bytes to the positions / literals (of `literals`) present in them."""

    def __init__(self, literals: Iterable[str]) -> None:
        self.literals = sorted(set(literals))
        by_anchor: dict[bytes, list[tuple[bytes, int]]] = {}
        plain: list[bytes] = []
        for literal in self.literals:
            found = anchor_of(literal)
            if found is None:
                plain.append(literal.encode())
            else:
                anchor, offset = found
                # Offsets are in characters; literals are compared as UTF-8 bytes.
                by_anchor.setdefault(anchor.encode(), []).append((literal.encode(), len(literal[:offset].encode())))
        # The trie matches the longest anchor at a position; anchors that are
        # prefixes of it are present there too.
        self.by_anchor = {
            anchor: [item for other, items in by_anchor.items() if anchor.startswith(other) for item in items]
            for anchor in by_anchor
        }
        # A plain literal containing a shorter plain literal is found through it.
        plain.sort(key=len)
        self.plain = [lit for i, lit in enumerate(plain) if not any(shorter in lit for shorter in plain[:i])]
        self.plain_all = plain
        pattern = trie_regex(a.decode() for a in by_anchor).encode() if by_anchor else rb"(?!x)x"
        self._search = re.compile(pattern).search
        self._overlapping = re.compile(b"(?=(" + pattern + b"))").finditer

    def line_hits(self, low: bytes) -> list[int]:
        """Sorted positions in `low`, at most one per line, where a literal starts or lies."""
        positions: list[int] = []
        search, by_anchor, size, pos = self._search, self.by_anchor, len(low), 0
        while pos < size:
            found = search(low, pos)
            if found is None:
                break
            at = found.start()
            if any(at >= off and low.startswith(lit, at - off) for lit, off in by_anchor[found.group()]):
                positions.append(at)
                end = low.find(b"\n", at)
                if end < 0:
                    break
                pos = end + 1
            else:
                pos = at + 1
        for literal in self.plain:
            at = low.find(literal)
            while at >= 0:
                positions.append(at)
                end = low.find(b"\n", at)
                if end < 0:
                    break
                at = low.find(literal, end + 1)
        if self.plain:
            positions.sort()
        return positions

    def literals_in(self, low_line: bytes) -> set[bytes]:
        """Every literal present in one lower-cased line."""
        found: set[bytes] = set()
        for match in self._overlapping(low_line):
            at = match.start()
            for literal, off in self.by_anchor.get(match.group(1), ()):
                if at >= off and low_line.startswith(literal, at - off):
                    found.add(literal)
        found.update(lit for lit in self.plain_all if lit in low_line)
        return found
