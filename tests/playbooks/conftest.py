"""Fixture running one built-in check on a hand-made snapshot (builders in pb_builders.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from opsconsole.config import Settings
from opsconsole.playbooks import PlaybookContext
from opsconsole.playbooks.checks import get_check
from opsconsole.playbooks.results import CheckResult
from opsconsole.telemetry.snapshot import Snapshot


@pytest.fixture
def run_check() -> Callable[..., CheckResult]:
    """run_check(name, snapshot, **params) -> CheckResult, with the check's defaults applied."""

    def run(check_name: str, snap: Snapshot, /, *, environ: dict[str, str] | None = None, log_file: Any = None,
            settings: Settings | None = None, user: str = "alice", **params: Any) -> CheckResult:
        spec = get_check(check_name)
        assert spec is not None, check_name
        ctx = PlaybookContext(settings or Settings(), snapshot=snap, environ=environ or {}, log_file=log_file, user=user)
        return spec.function(ctx, spec.with_defaults(params))

    return run



@pytest.fixture(autouse=True)
def no_personal_tokens(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks read ~ (HF token file, HF cache fallback): point it at an empty dir, drop token variables."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
