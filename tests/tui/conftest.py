"""Fixtures of the TUI tests: an app on a frozen simulated machine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from opsconsole.config import Settings
from opsconsole.tui.app import OpsConsoleApp, create_app


@pytest.fixture
def make_app() -> Callable[..., OpsConsoleApp]:
    """create_app on a frozen scenario with a slow refresh: one sample, deterministic screens."""

    def make(scenario: str | None = "healthy-8xh100", refresh: float = 3600.0, readonly: bool = False,
             **kwargs) -> OpsConsoleApp:
        settings = Settings(refresh=refresh, readonly=readonly)
        return create_app(settings, simulate=scenario, frozen=True, static=True, **kwargs)

    return make
