"""Telemetry core: NVML / host / CUDA-env collectors, the simulator, findings.

    from opsconsole.telemetry import open_source, list_scenarios, probe_cuda_env

Imports neither textual nor torch (enforced by tests/test_import_boundaries.py).
"""

from __future__ import annotations

from .cuda_probe import probe_cuda_env
from .simulator import UnknownScenarioError, list_scenarios
from .source import TelemetrySource, open_source

__all__ = ["open_source", "list_scenarios", "probe_cuda_env", "TelemetrySource", "UnknownScenarioError"]
