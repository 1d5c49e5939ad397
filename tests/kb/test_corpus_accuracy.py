"""Accuracy of log diagnosis on the dev corpus of real, messy error logs.

The label of each file is the root cause established in its upstream thread,
not the surface message, so this measures what a user would get from
`opsconsole diagnose` on logs like theirs.
"""

from __future__ import annotations

from collections import Counter

import pytest

# tests/kb is on sys.path under pytest's default (prepend) import mode.
from corpus import LABELS, load_corpus

MIN_FILES = 60
MIN_PER_LABEL = 2
TOP1_GOAL = 0.85
TOP3_GOAL = 0.95

CORPUS = load_corpus()


def test_corpus_is_large_and_well_formed() -> None:
    assert len(CORPUS) >= MIN_FILES, f"only {len(CORPUS)} logs in tests/data/logs"
    problems = []
    for log in CORPUS:
        if not log.source.startswith(("https://", "http://")):
            problems.append(f"{log.path.name}: source is not a URL: {log.source!r}")
        if log.label not in LABELS:
            problems.append(f"{log.path.name}: unknown label {log.label!r}")
        if not log.path.name.startswith(f"{log.label}__"):
            problems.append(f"{log.path.name}: file name does not start with '{log.label}__'")
        if len(log.text.strip().splitlines()) < 2:
            problems.append(f"{log.path.name}: log body is a one-liner; use the log as pasted")
    assert not problems, "\n".join(problems)
    counts = Counter(log.label for log in CORPUS)
    thin = {label: counts.get(label, 0) for label in sorted(LABELS) if counts.get(label, 0) < MIN_PER_LABEL}
    assert not thin, f"labels with fewer than {MIN_PER_LABEL} logs: {thin}"


def test_corpus_sources_are_distinct() -> None:
    """Each log comes from its own thread turn; duplicates would inflate accuracy."""
    bodies = Counter(log.text.strip() for log in CORPUS)
    dupes = [log.path.name for log in CORPUS if bodies[log.text.strip()] > 1]
    assert not dupes, f"identical log bodies: {dupes}"


def test_match_log_accuracy_on_corpus() -> None:
    kb_module = pytest.importorskip("opsconsole.kb")
    match_log = getattr(kb_module, "match_log", None)
    if match_log is None:
        pytest.skip("opsconsole.kb.match_log is not written yet")
    kb = kb_module.load_kb()

    top1 = top3 = 0
    confusion = []
    per_label: dict[str, list[int]] = {}
    for log in CORPUS:
        result = match_log(log.text, kb=kb, top=3)
        got = [d.category for d in result.matches]
        got_ids = [d.id for d in result.matches]
        hits = per_label.setdefault(log.label, [0, 0])
        hits[1] += 1
        if got[:1] == [log.label]:
            top1 += 1
            hits[0] += 1
        if log.label in got[:3]:
            top3 += 1
        if got[:1] != [log.label]:
            confusion.append(f"  {log.path.name}: expected {log.label} -> got {list(zip(got, got_ids))}")

    n = len(CORPUS)
    print(f"\ncorpus: {n} logs; top-1 {top1}/{n} = {top1 / n:.1%}; top-3 {top3}/{n} = {top3 / n:.1%}")
    print("per label (top-1 hits/logs): " + ", ".join(f"{k} {h}/{t}" for k, (h, t) in sorted(per_label.items())))
    print("confusion (top-1 misses):\n" + ("\n".join(confusion) if confusion else "  none"))
    assert top1 / n >= TOP1_GOAL, f"top-1 accuracy {top1 / n:.1%} < {TOP1_GOAL:.0%}; see the confusion list above"
    assert top3 / n >= TOP3_GOAL, f"top-3 accuracy {top3 / n:.1%} < {TOP3_GOAL:.0%}; see the confusion list above"
