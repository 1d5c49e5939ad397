"""A fake NVML at the pynvml function level, for tests and bench/bench_sampling.py.

It replaces the `pynvml.nvml*` functions NvmlCollector calls, so the real
collector code runs unchanged without a GPU. Failures are real pynvml errors:
`fake.fail(gpu, "nvmlDeviceGetFanSpeed", pynvml.NVML_ERROR_NOT_SUPPORTED)`
makes that call raise `pynvml.NVMLError(NVML_ERROR_NOT_SUPPORTED)` (the
NVMLError_NotSupported subclass, exactly as the binding does). `hang()` makes
every call block until `release()`.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

GIB = 1024 ** 3


@dataclass(frozen=True)
class Raises:
    """A field value meaning: this call raises pynvml.NVMLError(code)."""

    code: int


@dataclass(frozen=True)
class FakeHandle:
    index: int
    mig: int | None = None


def h100(index: int, **overrides: Any) -> dict[str, Any]:
    """Field values of one healthy, busy H100 (keys: pynvml function names)."""
    values: dict[str, Any] = {
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": f"GPU-00000000-0000-0000-0000-{index:012x}",
        "nvmlDeviceGetPciInfo": SimpleNamespace(busId=f"00000000:{0x18 + 0x10 * index:02X}:00.0"),
        "nvmlDeviceGetCudaComputeCapability": (9, 0),
        "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=80 * GIB, used=61 * GIB, free=19 * GIB, reserved=GIB // 2),
        "nvmlDeviceGetBAR1MemoryInfo": SimpleNamespace(bar1Total=128 * GIB, bar1Used=2 * GIB, bar1Free=126 * GIB),
        "nvmlDeviceGetUtilizationRates": SimpleNamespace(gpu=97, memory=48),
        "nvmlDeviceGetTemperature": 61,
        "nvmlDeviceGetTemperatureThreshold": {pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 87,
                                              pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92,
                                              pynvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: 85},
        "nvmlDeviceGetFanSpeed": Raises(pynvml.NVML_ERROR_NOT_SUPPORTED),  # passively cooled SXM
        "nvmlDeviceGetPowerUsage": 612_000,
        "nvmlDeviceGetEnforcedPowerLimit": 700_000,
        "nvmlDeviceGetPowerManagementDefaultLimit": 700_000,
        "nvmlDeviceGetClockInfo": {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619, pynvml.NVML_CLOCK_GRAPHICS: 1980},
        "nvmlDeviceGetMaxClockInfo": {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619},
        "nvmlDeviceGetPerformanceState": 0,
        "nvmlDeviceGetCurrentClocksEventReasons": 0,
        "nvmlDeviceGetEccMode": [1, 1],
        "nvmlDeviceGetTotalEccErrors": 0,
        "nvmlDeviceGetRetiredPages": Raises(pynvml.NVML_ERROR_NOT_SUPPORTED),  # Hopper uses row remapping
        "nvmlDeviceGetRetiredPagesPendingStatus": Raises(pynvml.NVML_ERROR_NOT_SUPPORTED),
        "nvmlDeviceGetRemappedRows": (0, 0, 0, 0),
        "nvmlDeviceGetCurrPcieLinkGeneration": 5,
        "nvmlDeviceGetMaxPcieLinkGeneration": 5,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
        "nvmlDeviceGetPcieReplayCounter": 0,
        "nvmlDeviceGetPersistenceMode": 1,
        "nvmlDeviceGetComputeMode": pynvml.NVML_COMPUTEMODE_DEFAULT,
        "nvmlDeviceGetMigMode": [0, 0],
        "nvmlDeviceGetMaxMigDeviceCount": 7,
        "nvmlDeviceGetComputeRunningProcesses": [SimpleNamespace(pid=4_000_000 + index, usedGpuMemory=60 * GIB)],
        "nvmlDeviceGetGraphicsRunningProcesses": [],
        "nvmlDeviceGetIndex": index,
        "nvmlDeviceGetFieldValues": [SimpleNamespace(fieldId=pynvml.NVML_FI_DEV_MEMORY_TEMP, nvmlReturn=pynvml.NVML_SUCCESS,
                                                     value=SimpleNamespace(uiVal=58))],
    }
    values.update(overrides)
    return values


class FakeNvml:
    """State of a fake machine. `install()` patches pynvml; `uninstall()` restores it."""

    SYSTEM = {"nvmlSystemGetDriverVersion": "550.90.07", "nvmlSystemGetNVMLVersion": "12.550.90.07",
              "nvmlSystemGetCudaDriverVersion": 12040}

    def __init__(self, gpus: list[dict[str, Any]] | int = 1, init_error: int | None = None) -> None:
        self.gpus = [h100(i) for i in range(gpus)] if isinstance(gpus, int) else [copy.deepcopy(g) for g in gpus]
        self.system = dict(self.SYSTEM)
        self.init_error = init_error
        self.lost: set[int] = set()
        self.handle_errors: dict[int, int] = {}  # index -> NVML error code of nvmlDeviceGetHandleByIndex
        self.calls = 0
        self.calls_by_name: dict[str, int] = {}
        self.init_calls = 0
        self.mig: dict[int, list[dict[str, Any]]] = {}
        self._gate = threading.Event()
        self._gate.set()
        self._saved: dict[str, Any] = {}
        self.events_supported = True
        self._events: queue.Queue[tuple[int, int]] = queue.Queue()

    # -- scripting -------------------------------------------------------------
    def fail(self, index: int, function: str, code: int) -> None:
        self.gpus[index][function] = Raises(code)

    def lose(self, index: int) -> None:
        """Every call on this GPU raises NVMLError_GPUIsLost from now on."""
        self.lost.add(index)

    def emit_xid(self, index: int, xid: int) -> None:
        """Deliver an XID critical-error event for GPU `index` through the NVML event set."""
        self._events.put((index, xid))

    def hang(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    # -- the fake functions ------------------------------------------------------
    def _enter(self, name: str = "") -> None:
        self.calls += 1
        self.calls_by_name[name] = self.calls_by_name.get(name, 0) + 1
        self._gate.wait()

    def _device(self, name: str, handle: FakeHandle, *args: Any) -> Any:
        self._enter(name)
        if handle.mig is not None:
            return self._mig(name, handle)
        if handle.index in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if name not in self.gpus[handle.index]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        value = self.gpus[handle.index][name]
        if isinstance(value, Raises):
            raise pynvml.NVMLError(value.code)
        if isinstance(value, dict) and args:
            if args[0] not in value:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            value = value[args[0]]
        if name == "nvmlDeviceGetRetiredPages" and isinstance(value, dict):
            value = value.get(args[0], [])
        return copy.copy(value)

    def _mig(self, name: str, handle: FakeHandle) -> Any:
        spec = self.mig[handle.index][handle.mig]
        if name == "nvmlDeviceGetMemoryInfo":
            return SimpleNamespace(total=spec["total"], used=spec["used"], free=spec["total"] - spec["used"])
        return {"nvmlDeviceGetUUID": spec.get("uuid"), "nvmlDeviceGetName": spec.get("name"),
                "nvmlDeviceGetGpuInstanceId": spec.get("gi"), "nvmlDeviceGetComputeInstanceId": 0}[name]

    def functions(self) -> dict[str, Any]:
        def system(name: str):  # noqa: ANN202
            def fn(*_: Any) -> Any:
                self._enter(name)
                return self.system[name]
            return fn

        def device(name: str):  # noqa: ANN202
            return lambda handle, *args: self._device(name, handle, *args)

        def init(*_: Any) -> None:
            self._enter("nvmlInit")
            self.init_calls += 1
            if self.init_error is not None:
                raise pynvml.NVMLError(self.init_error)

        def count() -> int:
            self._enter()
            return len(self.gpus)

        def handle(index: int) -> FakeHandle:
            self._enter("nvmlDeviceGetHandleByIndex")
            if index in self.lost:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
            if index in self.handle_errors:
                raise pynvml.NVMLError(self.handle_errors[index])
            return FakeHandle(index)

        def mig_handle(parent: FakeHandle, i: int) -> FakeHandle:
            self._enter()
            if i >= len(self.mig.get(parent.index, ())):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return FakeHandle(parent.index, mig=i)

        def memory(handle: FakeHandle, version: int | None = None) -> Any:
            return self._device("nvmlDeviceGetMemoryInfo", handle)

        def event_set_create() -> object:
            return object()

        def register(handle: FakeHandle, kinds: int, event_set: object) -> None:
            if not self.events_supported:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def event_wait(event_set: object, timeout_ms: int) -> Any:
            try:
                index, xid = self._events.get(timeout=min(timeout_ms / 1000, 0.05))
            except queue.Empty:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT) from None
            return SimpleNamespace(device=FakeHandle(index), eventType=pynvml.nvmlEventTypeXidCriticalError,
                                   eventData=xid, gpuInstanceId=0, computeInstanceId=0)

        fns: dict[str, Any] = {name: device(name) for name in _DEVICE_FUNCTIONS}
        fns.update({name: system(name) for name in self.SYSTEM})
        fns.update({
            "nvmlInit": init, "nvmlShutdown": lambda: self._enter("nvmlShutdown"), "nvmlDeviceGetCount": count,
            "nvmlDeviceGetHandleByIndex": handle, "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
            "nvmlDeviceGetMemoryInfo": memory, "nvmlEventSetCreate": event_set_create,
            "nvmlDeviceRegisterEvents": register, "nvmlEventSetFree": lambda _s: None,
            "nvmlEventSetWait_v2": event_wait,
        })
        for name in ("nvmlDeviceGetGpuInstanceId", "nvmlDeviceGetComputeInstanceId"):
            fns[name] = device(name)
        return fns

    def install(self) -> "FakeNvml":
        for name, fn in self.functions().items():
            self._saved.setdefault(name, getattr(pynvml, name))
            setattr(pynvml, name, fn)
        return self

    def uninstall(self) -> None:
        self.release()
        for name, fn in self._saved.items():
            setattr(pynvml, name, fn)
        self._saved.clear()


_DEVICE_FUNCTIONS = tuple(sorted(set(h100(0)) | {"nvmlDeviceGetCurrentClocksThrottleReasons"}))


@contextlib.contextmanager
def fake_nvml(fake: FakeNvml | None = None) -> Iterator[FakeNvml]:
    """`with fake_nvml(FakeNvml(8)) as fake:` — pynvml is patched inside the block."""
    fake = (fake or FakeNvml()).install()
    try:
        yield fake
    finally:
        fake.uninstall()
