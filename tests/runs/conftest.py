"""Fixtures for run-manager tests: a RunManager on the test's private state dir, and waiting helpers."""

from __future__ import annotations

import pytest

from opsconsole.config import Settings
from opsconsole.runs import RunManager


@pytest.fixture
def manager() -> RunManager:
    return RunManager(Settings())
