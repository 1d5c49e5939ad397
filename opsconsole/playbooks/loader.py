"""Load and validate playbooks from YAML with `file:line` errors.

A malformed file disables only that playbook: `load_playbooks` collects its
ConfigError in `PlaybookSet.errors` and goes on with the others.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..paths import bundled_dir, config_dir
from .checks.registry import all_checks
from .commands import command_problem
from .model import STEP_KINDS, Condition, ConclusionRule, Playbook, Step
from .results import STEP_STATUSES, VERDICTS
from ..userfiles import read_user_text
from .yaml_lines import LineDict, LineList, YamlLineError, line_of, load_with_lines

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
TOP_KEYS = {"id", "title", "description", "applies_to", "steps", "conclusion"}
STEP_KEYS = {"id", "title", "check", "params", "command", "timeout", "failure_status", "manual", "when", "remedy"}
RULE_KEYS = {"when", "message", "verdict"}
# Placeholders a conclusion message may use (filled by the runner from the snapshot).
MESSAGE_FIELDS = {"gpu_name", "gpu_total_gib", "gpu_count", "memory_advice", "python", "driver_version",
                  "driver_cuda", "torch_version", "torch_cuda", "log"}
_WHEN_STRING = re.compile(r"^\s*([A-Za-z0-9_-]+)\s+is\s+(not\s+)?([a-z|\s]+?)\s*$")


@dataclass
class PlaybookSet:
    """Loaded playbooks by id, and the files that could not be used."""

    playbooks: dict[str, Playbook] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def get(self, playbook_id: str) -> Playbook | None:
        return self.playbooks.get(playbook_id)

    def error_for(self, playbook_id: str) -> ConfigError | None:
        return next((e for e in self.errors if Path(e.path).stem == playbook_id), None)


class _Validator:
    """Turns one parsed YAML document into a Playbook, raising ConfigError at the first problem."""

    def __init__(self, path: Path, trusted: bool, kb_refs: set[str] | None) -> None:
        self.path, self.trusted, self.kb_refs = path, trusted, kb_refs
        self.checks = all_checks()

    def fail(self, line: int | None, what: str, fix: str = "") -> None:
        raise ConfigError(str(self.path), line or None, what, fix)

    def text(self, data: LineDict, key: str, required: bool = True, default: str = "") -> str:
        if key not in data:
            if required:
                self.fail(data.line, f"missing `{key}`")
            return default
        value = data[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(data.line_of(key), f"`{key}` must be a non-empty string")
        return value.strip()

    def unknown_keys(self, data: LineDict, allowed: set[str], where: str) -> None:
        for key in data:
            if key not in allowed:
                self.fail(data.line_of(key), f"unknown key `{key}` in {where}", "allowed: " + ", ".join(sorted(allowed)))

    def playbook(self, data: Any) -> Playbook:
        if not isinstance(data, LineDict):
            self.fail(line_of(data, 1), "a playbook must be a YAML mapping with id, title, steps")
        self.unknown_keys(data, TOP_KEYS, "the playbook")
        playbook_id = self.text(data, "id")
        if playbook_id != self.path.stem:
            self.fail(data.line_of("id"), f"id `{playbook_id}` differs from the file name `{self.path.name}`",
                      f"rename the file to {playbook_id}.yaml or change the id")
        applies_to = self.applies_to(data)
        steps_data = data.get("steps")
        if not isinstance(steps_data, LineList) or not steps_data:
            self.fail(data.line_of("steps"), "`steps` must be a non-empty list")
        steps: list[Step] = []
        for index, raw in enumerate(steps_data):
            steps.append(self.step(raw, steps_data.line_of(index), [s.id for s in steps]))
        return Playbook(
            id=playbook_id, title=self.text(data, "title"), description=self.text(data, "description", required=False),
            path=self.path, trusted=self.trusted, steps=tuple(steps), applies_to=applies_to,
            conclusion=self.conclusion(data, [s.id for s in steps]),
        )

    def applies_to(self, data: LineDict) -> tuple[str, ...]:
        refs = data.get("applies_to", LineList())
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            self.fail(data.line_of("applies_to"), "`applies_to` must be a list of KB ids or categories")
        for index, ref in enumerate(refs):
            self.kb_ref(ref, refs.line_of(index) if isinstance(refs, LineList) else data.line_of("applies_to"))
        return tuple(refs)

    def kb_ref(self, ref: str, line: int) -> None:
        if self.kb_refs is not None and ref not in self.kb_refs:
            self.fail(line, f"unknown KB id or category `{ref}`", "see `opsconsole kb list`")

    def step(self, raw: Any, line: int, earlier: list[str]) -> Step:
        if not isinstance(raw, LineDict):
            self.fail(line, "each step must be a mapping with `id` and one of check / command / manual")
        self.unknown_keys(raw, STEP_KEYS, "a step")
        step_id = self.text(raw, "id")
        if not ID_PATTERN.match(step_id):
            self.fail(raw.line_of("id"), f"step id `{step_id}` must be lower-case letters, digits, - or _")
        if step_id in earlier:
            self.fail(raw.line_of("id"), f"duplicate step id `{step_id}`")
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            self.fail(raw.line, f"step `{step_id}` needs exactly one of check / command / manual, found {kinds or 'none'}")
        kind = kinds[0]
        when = self.condition(raw["when"], raw.line_of("when"), earlier, allow_verdict=False) if "when" in raw else None
        remedy = self.text(raw, "remedy", required=False) or None
        common = {"id": step_id, "kind": kind, "line": raw.line, "when": when, "remedy": remedy}
        if kind != "check" and "params" in raw:
            self.fail(raw.line_of("params"), "`params` belongs to check steps")
        if kind != "command":
            for key in ("timeout", "failure_status"):
                if key in raw:
                    self.fail(raw.line_of(key), f"`{key}` belongs to command steps")
        if kind == "check":
            name, params = self.check(raw)
            title = self.text(raw, "title", required=False) or self.checks[name].summary
            return Step(title=title, check=name, params=params, **common)
        if kind == "command":
            return self.command(raw, common)
        instruction = self.text(raw, "manual")
        return Step(title=self.text(raw, "title", required=False) or instruction.split(". ")[0][:80],
                    instruction=instruction, **common)

    def check(self, raw: LineDict) -> tuple[str, dict[str, Any]]:
        name = raw["check"]
        spec = self.checks.get(name) if isinstance(name, str) else None
        if spec is None:
            close = [c for c in self.checks if isinstance(name, str) and (name in c or c in name)]
            self.fail(raw.line_of("check"), f"unknown check `{name}`",
                      ("did you mean " + ", ".join(close) + "? " if close else "") + "see docs/playbooks.md for the list")
        given = raw.get("params", LineDict())
        if not isinstance(given, dict):
            self.fail(raw.line_of("params"), "`params` must be a mapping of parameter: value")
        lines = given.lines if isinstance(given, LineDict) else {}
        for key, value in given.items():
            param = spec.params.get(key)
            line = lines.get(key, raw.line_of("params"))
            if param is None:
                known = ", ".join(spec.params) or "none"
                self.fail(line, f"check `{name}` has no parameter `{key}`", f"its parameters: {known}")
            problem = param.problem(value)
            if problem:
                self.fail(line, f"parameter `{key}` of `{name}` {problem}")
            if key in spec.kb_params:
                for ref in value:
                    self.kb_ref(ref, line)
        for key, param in spec.params.items():
            if param.required and key not in given:
                self.fail(raw.line_of("check"), f"check `{name}` needs parameter `{key}` ({param.help or param.type})")
        params = spec.with_defaults(dict(given))
        if spec.validate:
            problem = spec.validate(params)
            if problem:
                self.fail(raw.line_of("params") if "params" in raw else raw.line_of("check"), f"`{name}`: {problem}")
        return name, params

    def command(self, raw: LineDict, common: dict[str, Any]) -> Step:
        argv = raw["command"]
        line = raw.line_of("command")
        if not self.trusted:
            self.fail(line, "`command` steps are only allowed in trusted playbooks",
                      "move the file to a directory listed in trusted_playbook_dirs (config.toml), or use a check")
        if not isinstance(argv, list):
            self.fail(line, "`command` must be a list (an argv, no shell), e.g. [nvidia-smi, -q]")
        problem = command_problem(argv)
        if problem:
            self.fail(line, problem)
        timeout = raw.get("timeout", 30)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 600:
            self.fail(raw.line_of("timeout"), "`timeout` must be a number of seconds between 0 and 600")
        failure_status = raw.get("failure_status", "warn")
        if failure_status not in ("warn", "fail", "skip"):
            self.fail(raw.line_of("failure_status"), "`failure_status` must be warn, fail or skip (informational commands)")
        argv_t = tuple(str(a) for a in argv)
        return Step(title=self.text(raw, "title", required=False) or " ".join(argv_t), argv=argv_t,
                    timeout=float(timeout), failure_status=failure_status, **common)

    def condition(self, raw: Any, line: int, known: list[str], allow_verdict: bool) -> Condition:
        line = line_of(raw, line)
        if isinstance(raw, str):
            found = _WHEN_STRING.match(raw)
            if not found:
                self.fail(line, f"cannot read condition `{raw}`", 'write "STEP is STATUS", "STEP is not pass" or "STEP is fail|warn"')
            raw = LineDict({"step": found.group(1), ("not" if found.group(2) else "status"): found.group(3).replace(" ", "")})
            raw.line, raw.lines = line, {}
        if isinstance(raw, list):
            return Condition("all", children=tuple(self.condition(c, line, known, allow_verdict) for c in raw))
        if not isinstance(raw, dict):
            self.fail(line, "a condition is a string like \"vram is fail\" or a mapping {step: ID, status: fail}")
        keys = set(raw)
        if keys in ({"all"}, {"any"}):
            (op,) = keys
            children = raw[op]
            if not isinstance(children, list) or not children:
                self.fail(line, f"`{op}` needs a non-empty list of conditions")
            return Condition(op, children=tuple(self.condition(c, line, known, allow_verdict) for c in children))
        if "verdict" in keys:
            if not allow_verdict:
                self.fail(line, "`verdict` conditions are only allowed in conclusion rules")
            if keys - {"verdict"}:
                self.fail(line, "a verdict condition has only the key `verdict`")
            return Condition("verdict", statuses=self.statuses(raw["verdict"], line, VERDICTS))
        if "step" not in keys or len(keys & {"status", "not"}) != 1 or keys - {"step", "status", "not"}:
            self.fail(line, "a condition needs `step` and one of `status` / `not` (or all / any / verdict)")
        step = raw["step"]
        if step not in known:
            self.fail(line, f"condition refers to step `{step}`, which is not an earlier step",
                      "known: " + (", ".join(known) or "none"))
        negate = "not" in keys
        return Condition("status", step=step, statuses=self.statuses(raw["not" if negate else "status"], line, STEP_STATUSES),
                         negate=negate)

    def statuses(self, raw: Any, line: int, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = raw.split("|") if isinstance(raw, str) else raw
        if not isinstance(values, list) or not values or not all(v in allowed for v in values):
            self.fail(line, f"status must be one or more of {', '.join(allowed)}, got {raw!r}")
        return tuple(values)

    def conclusion(self, data: LineDict, step_ids: list[str]) -> tuple[ConclusionRule, ...]:
        raw = data.get("conclusion", LineList())
        if not isinstance(raw, list):
            self.fail(data.line_of("conclusion"), "`conclusion` must be a list of {when, message} rules")
        rules = []
        for index, item in enumerate(raw):
            line = raw.line_of(index) if isinstance(raw, LineList) else data.line
            if not isinstance(item, LineDict):
                self.fail(line, "a conclusion rule is a mapping with `message` and optional `when` / `verdict`")
            self.unknown_keys(item, RULE_KEYS, "a conclusion rule")
            message = self.text(item, "message")
            self.placeholders(message, item.line_of("message"))
            when = self.condition(item["when"], item.line_of("when"), step_ids, allow_verdict=True) if "when" in item else None
            verdict = item.get("verdict")
            if verdict is not None and verdict not in VERDICTS:
                self.fail(item.line_of("verdict"), f"`verdict` must be one of {', '.join(VERDICTS)}")
            rules.append(ConclusionRule(message=message, line=item.line, when=when, verdict=verdict))
        return tuple(rules)

    def placeholders(self, message: str, line: int) -> None:
        """Messages are str.format templates of known field names only: a conversion
        (`{gpu_name!z}`) or a format spec (`{gpu_name:d}`, `{gpu_name:>300000000}`) is refused
        here, or the run would end in a traceback (or allocate a 300 MB string)."""
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(message)
                      if name is not None]
        except ValueError as exc:
            self.fail(line, f"bad placeholder in message: {exc}", "write literal braces as {{ and }}")
        for name, spec, conversion in fields:
            if conversion or spec:
                shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                self.fail(line, f"placeholder {shown} has a conversion or format spec",
                          f"write the bare field, e.g. {{{name}}}")
            if name not in MESSAGE_FIELDS:
                self.fail(line, f"unknown placeholder {{{name}}}", "known: " + ", ".join(sorted(MESSAGE_FIELDS)))


def load_playbook_file(path: Path, trusted: bool, kb_refs: set[str] | None = None) -> Playbook:
    """Parse and validate one playbook file; raises ConfigError naming file:line."""
    try:
        text = read_user_text(path)
    except OSError as exc:
        raise ConfigError(str(path), None, str(exc)) from None
    try:
        data = load_with_lines(text)
    except YamlLineError as exc:
        raise ConfigError(str(path), exc.line, exc.what) from None
    return _Validator(path, trusted, kb_refs).playbook(data)


def kb_references(kb: Any) -> set[str] | None:
    """KB ids and categories a playbook may refer to (None: no KB to check against)."""
    entries = getattr(kb, "entries", None)
    if not entries:
        return None
    refs = set(entries)
    refs.update(getattr(e, "category", None) for e in entries.values())
    refs.discard(None)
    try:
        from ..kb.model import CATEGORIES
    except ImportError:
        CATEGORIES = ()
    refs.update(CATEGORIES)
    return refs


def playbook_dirs(settings: Settings, extra_dirs: Iterable[str | Path] = ()) -> list[tuple[Path, bool]]:
    """(directory, trusted) in load order: bundled, user config dir, trusted dirs, extra dirs.

    A later directory's playbook replaces an earlier one with the same id.
    """
    trusted = [Path(d).expanduser().resolve() for d in settings.trusted_playbook_dirs]

    def is_trusted(path: Path) -> bool:
        resolved = path.expanduser().resolve()
        return any(resolved == t or t in resolved.parents for t in trusted)

    dirs = [(bundled_dir("playbooks"), True), (config_dir() / "playbooks", is_trusted(config_dir() / "playbooks"))]
    dirs += [(t, True) for t in trusted]
    dirs += [(Path(d).expanduser(), is_trusted(Path(d))) for d in extra_dirs]
    return dirs


def load_playbooks(settings: Settings | None = None, extra_dirs: Iterable[str | Path] = (), kb: Any = None) -> PlaybookSet:
    """Load every playbook; broken files are reported in `.errors`, never raised."""
    from .context import load_kb_or_none

    settings = settings or Settings()
    refs = kb_references(kb if kb is not None else load_kb_or_none(settings))
    result = PlaybookSet()
    for directory, trusted in playbook_dirs(settings, extra_dirs):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
            result.errors = [e for e in result.errors if Path(e.path).stem != path.stem]
            try:
                playbook = load_playbook_file(path, trusted, refs)
            except ConfigError as exc:
                result.playbooks.pop(path.stem, None)
                result.errors.append(exc)
                continue
            except Exception as exc:  # a validator bug must still disable only this file
                result.playbooks.pop(path.stem, None)
                result.errors.append(ConfigError(str(path), None, f"cannot load: {type(exc).__name__}: {exc}"))
                continue
            result.playbooks[playbook.id] = playbook
    result.playbooks = dict(sorted(result.playbooks.items()))
    return result
