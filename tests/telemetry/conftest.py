"""Fixtures for telemetry tests: a fake NVML at the pynvml function level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsconsole.telemetry.fake_nvml import FakeNvml


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeNvml]:
    machine = FakeNvml(3).install()
    yield machine
    machine.uninstall()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
