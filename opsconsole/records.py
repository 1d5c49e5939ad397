"""The shapes a run's records may have, checked where they are read.

events.jsonl, result.json and registry rows are written by us, but a job, a crash, a
foreign tool or a hand edit can leave anything there (metrics as a list, `value: null`,
`started_at = 'abc'`). Readers never trust the types: an event of the wrong shape is
dropped like a torn line, and a result field of the wrong type is replaced by its empty
value and named in `record_problems`, so it is shown as bad, never a traceback.
"""

from __future__ import annotations

import math
from typing import Any

NUMBER = (int, float)


def is_number(value: Any) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool) and math.isfinite(value)


def _opt(kind: Any) -> Any:
    return lambda v: v is None or (is_number(v) if kind is NUMBER else isinstance(v, kind))


def _mapping(v: Any) -> bool:
    return isinstance(v, dict)


# per event type: field -> predicate (fields not listed pass unchecked)
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "start": {"kind": _opt(str), "params": _opt(list)},
    "progress": {"step": is_number, "total": _opt(NUMBER), "unit": _opt(str), "metrics": _opt(dict)},
    "metric": {"name": lambda v: isinstance(v, str) and bool(v), "value": is_number, "step": _opt(NUMBER)},
    "artifact": {"path": lambda v: isinstance(v, str) and bool(v), "kind": _opt(str)},
    "finding": {"severity": lambda v: isinstance(v, str), "message": lambda v: isinstance(v, str), "kb": _opt(str)},
    "finish": {"status": lambda v: isinstance(v, str), "summary": _opt(dict), "metrics": _opt(dict),
               "error": _opt(str)},
}


def valid_event(event: dict[str, Any]) -> bool:
    fields = EVENT_FIELDS.get(event.get("type"), {})
    return all(check(event.get(name)) for name, check in fields.items())


# result.json: field -> (predicate, empty value)
RESULT_FIELDS: dict[str, tuple[Any, Any]] = {
    "id": (_opt(str), None), "kind": (_opt(str), None), "status": (_opt(str), "unknown"),
    "exit_code": (_opt(int), None), "signal": (_opt(int), None), "signal_name": (_opt(str), None),
    "metrics": (_opt(dict), {}), "summary": (_opt(dict), {}), "artifacts": (_opt(list), []),
    "findings": (_opt(list), []), "diagnoses": (_opt(list), []), "error": (_opt(str), None),
    "started_at": (_opt(NUMBER), None), "ended_at": (_opt(NUMBER), None), "duration_s": (_opt(NUMBER), None),
    "diagnosis_skipped": (_opt(str), None), "diagnosis_pending": (_opt(bool), None),
}
_ITEM_KEYS = {"artifacts": "path", "findings": "message", "diagnoses": "id"}


def checked_result(data: Any, where: str = "result.json") -> dict[str, Any] | None:
    """`data` with every known field of the right type (or its empty value), list items that
    are not mappings with their key dropped, and `record_problems` naming what was wrong."""
    if not isinstance(data, dict):
        return None
    out, problems = dict(data), []
    for key, (check, empty) in RESULT_FIELDS.items():
        if key in out and not check(out[key]):
            problems.append(f"{where}: `{key}` has the wrong type ({type(out[key]).__name__})")
            out[key] = type(empty)() if isinstance(empty, (dict, list)) else empty
    for key, needed in _ITEM_KEYS.items():
        items = out.get(key) or []
        kept = [item for item in items if isinstance(item, dict) and needed in item]
        if len(kept) != len(items):
            problems.append(f"{where}: {len(items) - len(kept)} malformed `{key}` item(s) left out")
            out[key] = kept
    if out.get("status") is None and "status" in out:
        out["status"] = "unknown"
    if problems:
        out["record_problems"] = [*out.get("record_problems", []), *problems] if isinstance(
            out.get("record_problems"), list) else problems
    return out
