"""One combined search for every entry's literals, fast on long noisy logs.

Each literal is represented by an *anchor*: a short piece of it that starts with
a character rare in logs. The anchors are compiled into one trie-shaped regex;
the regex engine skips every position whose character cannot start an anchor,
so a chunk of noise is crossed at close to memchr speed. Only the lines holding
an anchor are looked at further.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Lower-case characters from rarest to most common in logs and English text;
# anything else (digits, spaces, punctuation) counts as common.
_RARITY = "zqjxkvwyfgbpmhucdlrsnoiate"
ANCHOR_MAX = 8


def _rarity(char: str) -> int:
    index = _RARITY.find(char)
    return index if index >= 0 else len(_RARITY) + 10


def anchor_of(literal: str) -> str:
    """The piece of `literal` the pre-filter searches for."""
    want = min(6, len(literal))  # long enough to be selective
    best_key, best_start = None, 0
    for start, char in enumerate(literal):
        if len(literal) - start < want:
            break
        key = (_rarity(char), -min(len(literal) - start, ANCHOR_MAX))
        if best_key is None or key < best_key:
            best_key, best_start = key, start
    return literal[best_start : best_start + ANCHOR_MAX]


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
    """Maps lower-cased bytes to the literals (of `literals`) present in them."""

    def __init__(self, literals: Iterable[str]) -> None:
        self.literals = sorted(set(literals))
        by_anchor: dict[bytes, list[bytes]] = {}
        for literal in self.literals:
            by_anchor.setdefault(anchor_of(literal).encode(), []).append(literal.encode())
        # The trie matches the longest anchor at a position; anchors that are
        # prefixes of it are present too.
        self.by_anchor = {
            anchor: [lit for other, lits in by_anchor.items() if anchor.startswith(other) for lit in lits]
            for anchor in by_anchor
        }
        pattern = trie_regex(a.decode() for a in by_anchor).encode() if by_anchor else rb"(?!x)x"
        self.search = re.compile(pattern).search
        # Overlapping search inside one candidate line (anchors may overlap).
        self._all = re.compile(b"(?=(" + pattern + b"))").finditer

    def literals_in(self, low_line: bytes) -> set[bytes]:
        found: set[bytes] = set()
        for match in self._all(low_line):
            for literal in self.by_anchor.get(match.group(1), ()):
                if literal not in found and literal in low_line:
                    found.add(literal)
        return found
