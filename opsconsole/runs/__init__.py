"""Run manager: launch / attach / stop smoke runs, the run store and the tail reader.

    from opsconsole.runs import RunManager, RunStore
    manager = RunManager(settings)
    record = manager.launch("gemma-infer", ["--model", "tiny", "--device", "cpu"])
    result = manager.wait(record.id)          # result.json as a dict

Imports neither torch nor textual (core layer). Names are loaded on first use so
the detached supervisor (`opsconsole.runs.supervisor`) starts without the manager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RunManager": "manager", "DEFAULT_GRACE_S": "manager",
    "RunStore": "store", "RunRecord": "store", "ACTIVE_STATUSES": "store", "FINAL_STATUSES": "store",
    "RunTail": "tail", "TailUpdate": "tail",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .manager import DEFAULT_GRACE_S, RunManager
    from .store import ACTIVE_STATUSES, FINAL_STATUSES, RunRecord, RunStore
    from .tail import RunTail, TailUpdate


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
