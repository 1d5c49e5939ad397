"""Run manager: launch / attach / stop smoke runs, the run store and the tail reader.

    from opsconsole.runs import RunManager, RunStore
    manager = RunManager(settings)
    record = manager.launch("gemma-infer", ["--model", "tiny", "--device", "cpu"])
    result = manager.wait(record.id)          # result.json as a dict

Imports neither torch nor textual (core layer).
"""

from .manager import DEFAULT_GRACE_S, RunManager
from .store import ACTIVE_STATUSES, FINAL_STATUSES, RunRecord, RunStore
from .tail import RunTail, TailUpdate

__all__ = ["RunManager", "RunStore", "RunRecord", "RunTail", "TailUpdate", "ACTIVE_STATUSES", "FINAL_STATUSES",
           "DEFAULT_GRACE_S"]
