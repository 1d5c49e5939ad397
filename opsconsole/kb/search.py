"""Fuzzy search over KB entries (titles, patterns, ids and body text)."""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, utils

from .model import KbEntry, KnowledgeBase


@dataclass(frozen=True)
class SearchHit:
    entry: KbEntry
    score: float  # 0..100
    field: str  # where it matched best: title | id | pattern | body


def _field_scores(query: str, entry: KbEntry) -> dict[str, float]:
    q = utils.default_process(query)
    patterns = " ".join(p.source for p in entry.patterns)
    return {
        "title": fuzz.WRatio(q, utils.default_process(entry.title)),
        "id": 0.9 * fuzz.partial_ratio(q, entry.id.replace("-", " ")),
        "pattern": 0.95 * fuzz.partial_ratio(q, utils.default_process(patterns)),
        # token_set_ratio is fair to a short query against a long body.
        "body": 0.85 * fuzz.token_set_ratio(q, utils.default_process(entry.body)),
    }


MAX_QUERY = 200  # characters: a fuzzy score over a 100,000-character query took > 20 s


def search_kb(kb: KnowledgeBase, query: str, limit: int = 10, min_score: float = 70.0) -> list[SearchHit]:
    """Entries ranked by how well `query` matches, best first (the query cut at MAX_QUERY:
    an error message pasted whole is still found by its start)."""
    query = query[:MAX_QUERY]
    hits = []
    for entry in kb.entries.values():
        scores = _field_scores(query, entry)
        field = max(scores, key=scores.__getitem__)
        if scores[field] >= min_score:
            hits.append(SearchHit(entry, round(scores[field], 1), field))
    hits.sort(key=lambda h: (-h.score, h.entry.id))
    return hits[:limit]


def closest_ids(kb: KnowledgeBase, wrong_id: str, limit: int = 3) -> list[str]:
    """Ids that look like `wrong_id` (for 'did you mean' messages)."""
    ranked = sorted(kb.entries, key=lambda i: -fuzz.ratio(wrong_id, i))
    return [i for i in ranked[:limit] if fuzz.ratio(wrong_id, i) >= 50]
