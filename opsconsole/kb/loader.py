"""Load and validate KB entries: Markdown files with YAML front matter.

A file that cannot be used is reported as a ConfigError naming
`<file>:<line>: <what> — <how to fix>` and skipped; the rest still loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..paths import bundled_dir, config_dir
from ..userfiles import ALIAS_REFUSED, first_alias_line, read_user_text
from .literals import MIN_LITERAL, required_literals
from .regex_lint import regex_risk
from .model import AREAS, CATEGORIES, KbEntry, KbPattern, KnowledgeBase

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 5x faster

REQUIRED_KEYS = ("id", "title", "category", "area", "patterns", "playbook")
OPTIONAL_KEYS = ("excludes", "telemetry", "links")
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PLAYBOOK_ID_RE = re.compile(r"^id:\s*['\"]?([A-Za-z0-9_.-]+)", re.M)


def _display(path: Path) -> str:
    """`kb/<file>` for bundled entries, the path as given for others."""
    try:
        return f"kb/{path.relative_to(bundled_dir('kb'))}"
    except ValueError:
        return str(path)


def split_front_matter(text: str, where: str) -> tuple[str, str, int]:
    """Return (yaml text, body, file line of the yaml's first line)."""
    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        raise ConfigError(where, 1, "no YAML front matter", "start the file with a line '---', the YAML fields, then '---'")
    lines = text.splitlines(keepends=True)
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), 2
    raise ConfigError(where, 1, "front matter is not closed", "end the YAML fields with a line '---'")


class _Lines:
    """Line numbers of YAML nodes, for messages that point at the right line."""

    def __init__(self, node: yaml.Node | None, first_line: int) -> None:
        self.node, self.first = node, first_line

    def of(self, *path: str | int) -> int | None:
        node = self.node
        line = node.start_mark.line if node is not None else None
        for step in path:
            child = None
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                for key, value in node.value:
                    if key.value == step:
                        child = value
                        line = key.start_mark.line
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                child = node.value[step]
                line = child.start_mark.line
            if child is None:
                break
            node = child
        return None if line is None else line + self.first


def _compile(where: str, line: int | None, source: Any, what: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    if not isinstance(source, str) or not source:
        raise ConfigError(where, line, f"{what} must be a non-empty regex string", "quote it: regex: 'CUDA out of memory'")
    try:
        compiled = re.compile(source)
    except re.error as exc:
        raise ConfigError(where, line, f"{what} {source!r} does not compile ({exc})",
                          "fix the regex; in YAML use single quotes so backslashes stay as written") from None
    risk = regex_risk(source)
    if risk:
        raise ConfigError(where, line, f"{what} {source!r} may backtrack catastrophically: {risk}",
                          "make each repeat match characters its neighbours cannot (\\d\\w* for \\d+\\w*)")
    literals = required_literals(source)
    if literals is None:
        raise ConfigError(where, line, f"{what} {source!r} has no literal text of {MIN_LITERAL}+ characters",
                          "include a plain phrase from the message (use spaces, not \\s+) so it can be pre-filtered")
    return compiled, literals


def _finding_ids() -> tuple[str, ...]:
    """Finding ids the telemetry layer can raise (empty if it is not importable)."""
    try:
        from ..telemetry.findings import FINDING_IDS
    except ImportError:  # pragma: no cover - telemetry is part of the package
        return ()
    return tuple(FINDING_IDS)


def _string_list(where: str, lines: _Lines, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, lines.of(key), f"`{key}` must be a list of strings", f"e.g. {key}: [\"...\"]")
    return tuple(value)


def parse_entry(path: Path, text: str, playbooks: frozenset[str] | None = None) -> KbEntry:
    """Parse one entry file; raise ConfigError for the first problem found."""
    where = _display(path)
    front, body, first = split_front_matter(text, where)
    try:
        loader = _Loader(front)
        try:
            node = loader.get_single_node()  # kept for line numbers in messages
            alias_line = first_alias_line(node)
            if alias_line is not None:
                raise ConfigError(where, alias_line + first - 1, ALIAS_REFUSED, "repeat the value instead of `*name`")
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + first if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(where, line, f"front matter is not valid YAML ({problem})",
                          "fix the YAML syntax (quote strings holding ':' or '#')") from None
    if not isinstance(data, dict):
        raise ConfigError(where, first, "front matter must be a mapping of fields", "write `id: ...`, `title: ...` lines")
    lines = _Lines(node, first)
    for key in REQUIRED_KEYS:
        if key not in data or data[key] in (None, "", []):
            raise ConfigError(where, first, f"missing field `{key}`", f"add `{key}:` to the front matter")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ConfigError(where, lines.of(unknown[0]), f"unknown field `{unknown[0]}`",
                          "known fields: " + ", ".join(REQUIRED_KEYS + OPTIONAL_KEYS))
    entry_id = str(data["id"])
    if not ID_RE.match(entry_id):
        raise ConfigError(where, lines.of("id"), f"id {entry_id!r} is not kebab-case", "use lower-case words joined by '-'")
    if data["category"] not in CATEGORIES:
        raise ConfigError(where, lines.of("category"), f"unknown category {data['category']!r}", "one of: " + ", ".join(CATEGORIES))
    if data["area"] not in AREAS:
        raise ConfigError(where, lines.of("area"), f"unknown area {data['area']!r}", "one of: " + ", ".join(AREAS))
    playbook = str(data["playbook"])
    if playbooks is not None and playbook not in playbooks:
        raise ConfigError(where, lines.of("playbook"), f"playbook {playbook!r} does not exist",
                          "use an id from playbooks/*.yaml: " + ", ".join(sorted(playbooks)))
    raw_patterns = data["patterns"]
    if not isinstance(raw_patterns, list):
        raise ConfigError(where, lines.of("patterns"), "`patterns` must be a list", "- {regex: '...', weight: 5}")
    patterns = []
    for index, item in enumerate(raw_patterns):
        line = lines.of("patterns", index)
        if isinstance(item, str):
            item = {"regex": item, "weight": 1.0}
        if not isinstance(item, dict) or "regex" not in item:
            raise ConfigError(where, line, f"pattern #{index + 1} needs a `regex`", "- {regex: '...', weight: 5}")
        extra = sorted(set(item) - {"regex", "weight"}, key=str)
        if extra:
            raise ConfigError(where, line, f"pattern #{index + 1} has an unknown key `{extra[0]}`", "a pattern has `regex` and `weight`")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 10:
            raise ConfigError(where, line, f"pattern #{index + 1} weight {weight!r} is not a number in (0, 10]",
                              "weight: 1 (weak hint) … 10 (conclusive)")
        compiled, literals = _compile(where, line, item["regex"], f"pattern #{index + 1}")
        patterns.append(KbPattern(item["regex"], compiled, float(weight), literals, line))
    excludes = []
    for index, source in enumerate(_string_list(where, lines, data, "excludes")):
        line = lines.of("excludes", index)
        compiled, literals = _compile(where, line, source, f"exclude #{index + 1}")
        excludes.append(KbPattern(source, compiled, 0.0, literals, line))
    telemetry = _string_list(where, lines, data, "telemetry")
    known_findings = _finding_ids()
    for index, finding in enumerate(telemetry):
        if known_findings and finding not in known_findings:
            raise ConfigError(where, lines.of("telemetry", index), f"unknown telemetry finding {finding!r}",
                              "use ids from `opsconsole status --json` findings: " + ", ".join(known_findings))
    return KbEntry(
        id=entry_id,
        title=str(data["title"]),
        category=data["category"],
        area=data["area"],
        patterns=tuple(patterns),
        excludes=tuple(excludes),
        telemetry=telemetry,
        playbook=playbook,
        links=_string_list(where, lines, data, "links"),
        body=body.strip(),
        path=path,
    )


def _line_of_field(path: Path, key: str) -> int | None:
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return None


def playbook_ids(dirs: Iterable[Path]) -> frozenset[str]:
    """Ids of the playbooks in `dirs` (their `id:` field, else the file stem)."""
    ids = set()
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.y*ml")):
            try:
                found = _PLAYBOOK_ID_RE.search(read_user_text(path))
            except OSError:
                continue  # the playbook loader reports the broken file
            ids.add(found.group(1) if found else path.stem)
    return frozenset(ids)


def default_playbook_dirs() -> list[Path]:
    """Where playbooks live: bundled, the user's config dir, and trusted_playbook_dirs."""
    dirs = [bundled_dir("playbooks"), config_dir() / "playbooks"]
    try:
        from ..config import load_settings

        dirs += [Path(d).expanduser() for d in load_settings().trusted_playbook_dirs]
    except ConfigError:
        pass  # a broken config is reported by the command that loads it
    return dirs


def load_kb(extra_dirs: Iterable[str | Path] = (), playbook_dirs: Iterable[str | Path] | None = None) -> KnowledgeBase:
    """Load the bundled KB plus `extra_dirs` (Settings.extra_kb_dirs).

    Playbook references are checked against `playbook_dirs` (default: the
    bundled ones, ~/.config/opsconsole/playbooks and trusted_playbook_dirs);
    when no playbook file exists at all the check is skipped.
    A later entry with an id already loaded is an error (first one wins).
    """
    kb = KnowledgeBase()
    pb_dirs = default_playbook_dirs() if playbook_dirs is None else [Path(d).expanduser() for d in playbook_dirs]
    known = playbook_ids(pb_dirs) or None
    dirs = [bundled_dir("kb")] + [Path(d).expanduser() for d in extra_dirs]
    for directory in dirs:
        if not directory.is_dir():
            kb.errors.append(ConfigError(str(directory), None, "KB directory does not exist", "fix extra_kb_dirs in config.toml"))
            continue
        for path in sorted(directory.glob("*.md")):
            try:
                entry = parse_entry(path, read_user_text(path), known)
            except OSError as exc:
                kb.errors.append(ConfigError(_display(path), None, str(exc), "remove or fix the file"))
                continue
            except ConfigError as exc:
                kb.errors.append(exc)
                continue
            if entry.id in kb.entries:
                first = kb.entries[entry.id].path
                kb.errors.append(ConfigError(_display(path), _line_of_field(path, "id"),
                                             f"duplicate id {entry.id!r} (also in {first and _display(first)})",
                                             "give each entry its own id"))
                continue
            kb.entries[entry.id] = entry
    return kb
