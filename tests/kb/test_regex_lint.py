"""The KB regex lint: patterns that backtrack catastrophically are refused at load time."""

from __future__ import annotations

import pytest

from kb_helpers import GOOD_ENTRY, write_entry
from opsconsole.kb import load_kb
from opsconsole.kb.regex_lint import regex_risk


@pytest.mark.parametrize("pattern, why", [
    (r"libbitsandbytes_cuda\d+\w*\.so", "adjacent unbounded repeats"),  # 186 s on an 8 MB log
    (r"(\d+\s*)+ rpm", "nested quantifier"),
    (r"(a+)+b", "nested quantifier"),
    (r"(x\w+)*y", "nested quantifier"),  # the separator x is itself a \w: iterations can trade characters
    (r"error\s+\s*code", "adjacent unbounded repeats"),
    (r"failed.*.*here", "adjacent unbounded repeats"),
])
def test_risky_patterns_are_named(pattern, why):
    assert why in (regex_risk(pattern) or ""), pattern


@pytest.mark.parametrize("pattern", [
    r"libbitsandbytes_cuda\d\w*\.so", r"libcublas(?:Lt)?\.so(?:\.\d+)*: undefined symbol",
    r"module 'xformers(?:\.\w+)*' has no attribute", r"CUDA out of memory\. Tried to allocate \d+(?:\.\d+)? [GM]iB",
    r"foo.*bar", r"[a-z]+[0-9]+", r"x\S+\s+y", r"(?:\s*,\s*\w+)*;",
])
def test_linear_patterns_pass(pattern):
    assert regex_risk(pattern) is None


def test_the_bundled_kb_passes_the_lint():
    kb = load_kb()
    assert kb.errors == []
    risky = [(e.id, p.regex.pattern) for e in kb.entries.values() for p in (*e.patterns, *e.excludes)
             if regex_risk(p.regex.pattern)]
    assert risky == []


def test_kb_check_reports_a_risky_pattern_with_file_and_line(tmp_path):
    text = GOOD_ENTRY.format(id="widget-hot").replace("'fan speed \\d+ rpm'", "'fan speed (\\d+\\s*)+ rpm'")
    assert "(\\d+\\s*)+" in text
    write_entry(tmp_path / "kb", "widget-hot.md", text)
    kb = load_kb(extra_dirs=[tmp_path / "kb"])
    (error,) = [e for e in kb.errors if "widget-hot.md" in str(e)]
    assert "may backtrack catastrophically" in str(error) and "nested quantifier" in str(error)
    assert "widget-hot" not in kb.entries
