"""Find the literal text every match of a regex must contain.

The matcher scans logs for these literals first (one combined search over a
whole chunk) and runs an entry's regexes only on the lines that hold one of
them, so the cost of a scan barely grows with the number of entries.
"""

from __future__ import annotations

try:  # Python >= 3.11
    from re import _constants as sre_constants, _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MIN_LITERAL = 3

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)


def _fold(text: str) -> str:
    """Lower-case ASCII only, the way bytes.lower() does (lengths never change)."""
    return "".join(c.lower() if c.isascii() else c for c in text)


# Words on nearly every line of a training log: a poor literal to pre-filter on
# (every line would become a candidate), used only when nothing better exists.
COMMON_WORDS = frozenset("""
loss error errors info warn warning step steps epoch model process memory failed for with the version
cuda torch file line import from python train training data worker workers device time true false none
found found: value values type size shape input output batch rank node true,
grad_norm learning_rate checkpoint shards loading
""".split())


def _weak(literal: str) -> bool:
    return literal.strip(" :=,.'\"()[]").lower() in COMMON_WORDS


def _strength(option: frozenset[str]) -> tuple[bool, int, int]:
    return (not any(_weak(s) for s in option), min(len(s) for s in option), -len(option))


def _best(options: list[frozenset[str]]) -> frozenset[str] | None:
    options = [o for o in options if o and all(o)]
    usable = [o for o in options if min(len(s) for s in o) >= MIN_LITERAL] or options
    return max(usable, key=_strength) if usable else None


MAX_EXPANSIONS = 32


def _pure(items) -> frozenset[str] | None:  # noqa: ANN001
    """All strings `items` can match when it is only literals and alternations of them."""
    results = frozenset({""})
    for op, av in items:
        if op is sre_constants.LITERAL:
            choices = frozenset({chr(av)})
        elif op is sre_constants.SUBPATTERN:
            choices = _pure(av[-1])
        elif op is sre_constants.BRANCH:
            alternatives = [_pure(alt) for alt in av[1]]
            choices = None if any(a is None for a in alternatives) else frozenset().union(*alternatives)
        else:
            return None
        if choices is None or len(results) * len(choices) > MAX_EXPANSIONS:
            return None
        results = frozenset(r + c for r in results for c in choices)
    return results


def _sequence(items) -> frozenset[str] | None:  # noqa: ANN001 - sre_parse.SubPattern
    """A set of strings one of which every match of `items` contains (best guess), or None.

    Adjacent literals and alternations of literals are expanded together
    (`loss(?:: nan|=nan)` gives {"loss: nan", "loss=nan"}), so the parser's
    factoring of common prefixes does not leave only short fragments.
    """
    options: list[frozenset[str]] = []
    run: frozenset[str] = frozenset({""})

    def flush() -> None:
        nonlocal run
        if run != frozenset({""}):
            options.append(run)
        run = frozenset({""})

    for op, av in items:
        expansion = _pure([(op, av)]) if op in (sre_constants.LITERAL, sre_constants.SUBPATTERN, sre_constants.BRANCH) else None
        if expansion is not None and len(run) * len(expansion) <= MAX_EXPANSIONS:
            run = frozenset(r + e for r in run for e in expansion)
            continue
        flush()
        if op is sre_constants.SUBPATTERN:
            found = _sequence(av[-1])
        elif op is sre_constants.BRANCH:
            alternatives = [_sequence(alt) for alt in av[1]]
            found = frozenset().union(*alternatives) if all(alternatives) else None  # type: ignore[arg-type]
        elif op in _REPEATS and av[0] >= 1:
            found = _sequence(av[2])
        else:
            found = None
        if found:
            options.append(found)
    flush()
    return _best(options)


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Lower-cased literals, one of which appears in every match of `pattern`.

    Returns None when the pattern has no literal of at least MIN_LITERAL
    characters in every alternative (such a pattern cannot be pre-filtered).
    """
    parsed = sre_parse.parse(pattern)
    found = _sequence(parsed)
    if not found or min(len(s) for s in found) < MIN_LITERAL:
        return None
    return tuple(sorted({_fold(s) for s in found}))
