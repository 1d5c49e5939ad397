"""Catastrophic-backtracking lint for KB regexes (run by the loader, so `kb check` reports it).

Python's `re` backtracks: a nested quantifier (`(\\d+\\s*)+`) or two adjacent unbounded
repeats that can match the same characters (`\\d+\\w*`) make a failing search quadratic or
worse in the text it sees. `libbitsandbytes_cuda\\d+\\w*\\.so` against a line of thousands of
`0`s took an 8 MB log 186 s to diagnose (0.43 s for a plain one). The matcher also bounds
the text a regex sees (MAX_SEGMENT); this lint keeps the per-character cost linear.
"""

from __future__ import annotations

import re

try:  # Python 3.11+
    import re._constants as sre_constants
    import re._parser as sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None)}
_UNBOUNDED = sre_constants.MAXREPEAT
_SAMPLE = [chr(c) for c in range(32, 127)] + ["\t", "\n", "é", "\u00a0"]


def regex_risk(pattern: str) -> str | None:
    """Why `pattern` may backtrack catastrophically, or None. (A pattern that does not
    compile is the compiler's business: None.)"""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    return _scan(list(parsed))


def _scan(items: list) -> str | None:
    previous = None
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            body = list(body)
            if high > 1 and _has_unbounded_repeat(body) and not _separated(body):
                return ("a nested quantifier (a repeated group that itself holds + or *, with no separator "
                        "the inner repeat cannot match): backtracking explodes")
            chars = _single_chars(body)
            if high == _UNBOUNDED and previous is not None and chars and previous & chars:
                return ("two adjacent unbounded repeats match the same characters (like \\d+\\w*): "
                        "merge them into one")
            previous = chars if high == _UNBOUNDED else None
            found = _scan(body)
        else:
            previous = None
            found = _scan_children(op, arg)
        if found:
            return found
    return None


def _scan_children(op, arg) -> str | None:
    if op == sre_constants.SUBPATTERN:
        return _scan(list(arg[-1]))
    if op == sre_constants.BRANCH:
        for branch in arg[1]:
            found = _scan(list(branch))
            if found:
                return found
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return _scan(list(arg[1]))
    return None


def _has_unbounded_repeat(items: list) -> bool:
    for op, arg in items:
        if op in _REPEATS and (arg[1] == _UNBOUNDED or _has_unbounded_repeat(list(arg[2]))):
            return True
        if op == sre_constants.SUBPATTERN and _has_unbounded_repeat(list(arg[-1])):
            return True
        if op == sre_constants.BRANCH and any(_has_unbounded_repeat(list(b)) for b in arg[1]):
            return True
    return False


def _separated(body: list) -> bool:
    r"""True when each iteration of the repeated `body` must match a character its inner repeats
    cannot (`(?:\.\d+)*`, `(?:\w+\.)+`): then the iterations cannot trade characters, and the
    nesting is linear."""
    items = list(body)
    if len(items) == 1 and items[0][0] == sre_constants.SUBPATTERN:
        items = list(items[0][1][-1])
    inner: set[str] = set()
    for op, arg in items:
        if op in _REPEATS and arg[1] == _UNBOUNDED:
            chars = _single_chars(list(arg[2]))
            if chars is None:
                return False  # a complex inner repeat: assume the worst
            inner |= chars
        elif op in _REPEATS or op in (sre_constants.SUBPATTERN, sre_constants.BRANCH):
            if _has_unbounded_repeat([(op, arg)]):
                return False
    for op, arg in items:
        if op not in _REPEATS:
            chars = _single_chars([(op, arg)])
            if chars and not chars & inner:
                return True
    return False


def _single_chars(body: list) -> set[str] | None:
    """The sample characters a one-character body (`\\d`, `[a-z]`, `.`, `x`) matches; None otherwise."""
    if len(body) != 1:
        return None
    op, _ = body[0]
    if op not in (sre_constants.LITERAL, sre_constants.NOT_LITERAL, sre_constants.IN, sre_constants.ANY,
                  sre_constants.CATEGORY):
        return None
    compiled = re.compile(_Rebuild().item(body[0]), re.S)
    return {c for c in _SAMPLE if compiled.fullmatch(c)} or None


class _Rebuild:
    """A one-character pattern rebuilt from its parsed form (enough for _single_chars)."""

    _CATEGORIES = {
        sre_constants.CATEGORY_DIGIT: r"\d", sre_constants.CATEGORY_NOT_DIGIT: r"\D",
        sre_constants.CATEGORY_SPACE: r"\s", sre_constants.CATEGORY_NOT_SPACE: r"\S",
        sre_constants.CATEGORY_WORD: r"\w", sre_constants.CATEGORY_NOT_WORD: r"\W",
    }

    def item(self, item) -> str:
        op, arg = item
        if op == sre_constants.LITERAL:
            return "\\" + chr(arg) if not chr(arg).isalnum() else chr(arg)
        if op == sre_constants.NOT_LITERAL:
            return "[^" + ("\\" + chr(arg)) + "]"
        if op == sre_constants.ANY:
            return "."
        if op == sre_constants.CATEGORY:
            return self._CATEGORIES.get(arg, ".")
        parts, negate = [], False
        for sub_op, sub_arg in arg:
            if sub_op == sre_constants.NEGATE:
                negate = True
            elif sub_op == sre_constants.LITERAL:
                parts.append("\\" + chr(sub_arg) if not chr(sub_arg).isalnum() else chr(sub_arg))
            elif sub_op == sre_constants.RANGE:
                parts.append(f"\\{chr(sub_arg[0])}-\\{chr(sub_arg[1])}" if not chr(sub_arg[0]).isalnum()
                             else f"{chr(sub_arg[0])}-{chr(sub_arg[1])}")
            elif sub_op == sre_constants.CATEGORY:
                parts.append(self._CATEGORIES.get(sub_arg, ""))
        return "[" + ("^" if negate else "") + "".join(parts) + "]"
