"""TelemetrySource: GPU collector + host + CUDA probe -> one Snapshot with findings.

`sample()` never raises and never blocks longer than `nvml_timeout` (plus the
cheap host read): the GPU collector runs in one long-lived worker thread
(DeadlineWorker). When NVML does not answer in time the snapshot says
`nvml.status == "not_responding"` and keeps the last good GPU readings with
`state == "stale"` (values as of the last answer), so the user still sees which
processes held which GPU. The next answer from NVML replaces them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from .collector import GpuCollector, GpuReading
from .cuda_probe import probe_cuda_env
from .deadline import DeadlineWorker
from .findings import evaluate
from .snapshot import CudaEnv, GpuSnapshot, HostSnapshot, NvmlState, Snapshot


class TelemetrySource:
    def __init__(self, collector: GpuCollector, host: Callable[[], HostSnapshot],
                 cuda_env: Callable[[], CudaEnv] | None, nvml_timeout: float = 2.0,
                 viewer: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.collector = collector
        self.name = collector.name
        self.nvml_timeout = nvml_timeout
        self.viewer = viewer
        self._host = host
        self._clock = clock
        self._worker: DeadlineWorker[GpuReading] = DeadlineWorker(collector.collect)
        self._last_good: GpuReading | None = None
        self._last_good_time: float | None = None
        self._env = CudaEnv(status="not_probed", message="probing…" if cuda_env else "probe disabled")
        self._env_ready = threading.Event()
        self._env_fn = cuda_env
        if cuda_env is None:
            self._env_ready.set()
        else:
            self.refresh_cuda_env()

    # -- CUDA env (probe runs in the background) ---------------------------
    def refresh_cuda_env(self) -> None:
        """Start a fresh probe in the background; samples show it when it lands."""
        if self._env_fn is None:
            return
        self._env_ready.clear()
        fn = self._env_fn

        def run() -> None:
            try:
                self._env = fn()
            except Exception as exc:  # noqa: BLE001 - sample() must never raise
                self._env = CudaEnv(status="error", message=f"probe failed: {exc}")
            self._env_ready.set()

        threading.Thread(target=run, name="opsconsole-cuda-probe", daemon=True).start()

    def wait_cuda_env(self, timeout: float | None = None) -> CudaEnv:
        """Block until the probe has finished (or `timeout`), then return what is known."""
        self._env_ready.wait(timeout)
        return self._env

    @property
    def cuda_env(self) -> CudaEnv:
        return self._env

    # -- sampling ----------------------------------------------------------
    def _gpu_reading(self) -> GpuReading:
        try:
            answered, reading = self._worker.call(self.nvml_timeout)
        except Exception as exc:  # noqa: BLE001 - a collector bug must not kill the console
            return GpuReading(nvml=NvmlState(status="error", message=f"GPU collector failed: {exc}"))
        if answered and reading is not None:
            self._last_good, self._last_good_time = reading, self._clock()
            return reading
        return self._not_responding()

    def _not_responding(self) -> GpuReading:
        last = self._last_good
        message = f"NVML did not answer within {self.nvml_timeout:g} s"
        if last is None or self._last_good_time is None:
            return GpuReading(nvml=NvmlState(status="not_responding", message=message))
        age = self._clock() - self._last_good_time
        note = f"no answer from NVML for {age:.0f} s; values are from the last answer"
        stale: tuple[GpuSnapshot, ...] = tuple(
            dataclasses.replace(g, state="stale", error=note) if g.state == "ok" else g for g in last.gpus)
        return GpuReading(
            nvml=dataclasses.replace(last.nvml, status="not_responding", message=f"{message}; showing values from {age:.0f} s ago"),
            gpus=stale, xid_events=last.xid_events)

    def sample(self) -> Snapshot:
        """One snapshot with findings. Never raises; bounded by the NVML deadline."""
        start = time.perf_counter()
        reading = self._gpu_reading()
        try:
            host = self._host()
        except Exception:  # noqa: BLE001
            host = HostSnapshot()
        snapshot = Snapshot(time=self._clock(), source=self.name, nvml=reading.nvml, gpus=reading.gpus,
                            host=host, cuda_env=self._env, xid_events=reading.xid_events)
        try:
            findings = evaluate(snapshot, user=self.viewer)
        except Exception:  # noqa: BLE001 - a rule bug must not break sampling
            findings = ()
        return dataclasses.replace(snapshot, findings=findings, sample_ms=(time.perf_counter() - start) * 1000)

    def close(self, timeout: float = 1.0) -> None:
        """Stop sampling. NVML shutdown runs in a daemon thread waited on for at most
        `timeout` s: with a wedged GPU it may never return, and Ctrl-C must still exit."""
        self._worker.close()

        def shut() -> None:
            try:
                self.collector.close()
            except Exception:  # noqa: BLE001
                pass

        closer = threading.Thread(target=shut, name="opsconsole-close", daemon=True)
        closer.start()
        closer.join(timeout)

    def __enter__(self) -> "TelemetrySource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(simulate: str | None = None, python: str | None = None, nvml_timeout: float = 2.0,
                probe_env: bool = True, frozen: bool = False, probe_timeout: float = 30.0) -> TelemetrySource:
    """A source for the real machine (NVML + psutil + probe) or a simulated scenario.

    Raises UnknownScenarioError (a UsageError, exit 3) for an unknown scenario;
    everything else is reported inside the snapshots.
    """
    if simulate:
        from .simulator import SimulatedMachine

        machine = SimulatedMachine(simulate, frozen=frozen)
        clock = machine.now
        return TelemetrySource(machine, machine.host, machine.cuda_env if probe_env else None,
                               nvml_timeout=nvml_timeout, viewer=machine.viewer, clock=clock)
    from .host import HostCollector
    from .nvml import NvmlCollector

    env = (lambda: probe_cuda_env(python, timeout=probe_timeout)) if probe_env else None
    return TelemetrySource(NvmlCollector(), HostCollector().collect, env, nvml_timeout=nvml_timeout)
