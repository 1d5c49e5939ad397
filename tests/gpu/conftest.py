"""tests/gpu on the CPU: bench/gpu_check.sh --device cpu rehearses its plan with these tests on tiny models.

The root conftest skips every test under tests/gpu without CUDA. When the check runs with
GPU_CHECK_DEVICE=cpu, a module that declares REHEARSE_ON_CPU = True is run anyway (its
tests pick tiny models and leave out the hardware references). Nothing changes otherwise.
"""

from __future__ import annotations

import os

import pytest

CPU_REHEARSAL = os.environ.get("GPU_CHECK_DEVICE") == "cpu"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CPU_REHEARSAL:
        return
    for item in items:
        if getattr(getattr(item, "module", None), "REHEARSE_ON_CPU", False):
            item.own_markers = [m for m in item.own_markers
                                if not (m.name == "skip" and "needs a CUDA GPU" in str(m.kwargs.get("reason")))]
