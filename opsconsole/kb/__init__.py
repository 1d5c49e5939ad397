"""Knowledge base of GPU / ML failure causes, and the log matcher that uses it.

    from opsconsole.kb import load_kb, match_log, LogMatcher
"""

from __future__ import annotations

from .loader import load_kb, parse_entry
from .matcher import LogMatcher, match_log
from .model import AREAS, CATEGORIES, Diagnosis, Evidence, KbEntry, KbPattern, KnowledgeBase, MatchResult

__all__ = [
    "AREAS", "CATEGORIES", "Diagnosis", "Evidence", "KbEntry", "KbPattern", "KnowledgeBase",
    "LogMatcher", "MatchResult", "load_kb", "match_log", "parse_entry",
]
