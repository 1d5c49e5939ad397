"""Run a blocking function in one long-lived thread and wait for it with a deadline.

NVML calls can hang on a wedged GPU and cannot be interrupted. The caller never
waits longer than its timeout; while the function is stuck, later calls do not
queue more work, they wait (bounded) for the stuck call to come back. When it
does, its result is returned: that is how sampling recovers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DeadlineWorker(Generic[T]):
    def __init__(self, fn: Callable[[], T], name: str = "opsconsole-sampler") -> None:
        self._fn = fn
        self._cv = threading.Condition()
        self._requested = 0   # generation of the latest request
        self._completed = 0   # generation of the latest finished call
        self._busy = False
        self._closed = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._busy

    def call(self, timeout: float) -> tuple[bool, T | None]:
        """(True, result) if the function answered within `timeout` seconds, else (False, None)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            if self._closed:
                return False, None
            if not self._busy:
                self._busy = True
                self._requested += 1
                self._cv.notify_all()
            target = self._requested
            while self._completed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, None
                self._cv.wait(remaining)
            if self._error is not None:
                raise self._error
            return True, self._result

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._busy and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                generation = self._requested
            result: T | None = None
            error: BaseException | None = None
            try:
                result = self._fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                error = exc
            with self._cv:
                self._result, self._error = result, error
                self._completed = generation
                self._busy = False
                self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
