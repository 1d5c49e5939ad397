"""NvmlCollector: every GPU through pynvml (nvidia-ml-py), failures as values.

- NVML is initialised once and device handles are kept (re-fetched only for a
  GPU whose handle could not be obtained).
- Every field is read on its own through `_read`: NOT_SUPPORTED, NO_PERMISSION
  and the like become None. GPU_IS_LOST marks that GPU "lost"; the others keep
  working. UNKNOWN from one field is not enough: the GPU is lost only when a canary
  read on the same handle (UUID, then temperature) fails too. A handle refused with
  NO_PERMISSION (cgroup/Slurm-restricted nodes) is "not_accessible", not lost. No driver, missing library or a driver/library mismatch
  become an NvmlState, never an exception.
- Slow-changing fields (identity, thresholds, ECC, max clocks, PCIe max, modes)
  are cached for SLOW_TTL_S; the per-sample cost is the fast fields only.
- XIDs come from an NVML event set and the kernel log, watched by one daemon thread.
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from .collector import GpuReading
from .processes import ProcessEnricher, merge_process_lists
from .snapshot import (
    Clocks, Ecc, GpuSnapshot, MemoryInfo, MigDevice, NvmlState, Pcie, Power, Temperature, Utilization,
)
from .throttle import decode_throttle_reasons
from .xid import KernelXidReader, XidLog, kernel_events, make_event, pci_key

SLOW_TTL_S = 10.0        # identity never changes; thresholds/ECC/modes: at most this old
INIT_RETRY_S = 10.0      # how often to retry nvmlInit after it failed
HANDLE_RETRY_S = 10.0    # how often to retry a GPU whose handle could not be obtained
KERNEL_POLL_S = 2.0      # kernel log (XID lines) poll interval
EVENT_WAIT_MS = 200      # NVML event wait slice: bounds how long close() waits for the watcher

# Errors that mean "this GPU is gone" (nvml.h: GPU_IS_LOST; RESET_REQUIRED needs a reset to come back).
_LOST = {pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED, getattr(pynvml, "NVML_ERROR_GPU_NOT_FOUND", 28)}
# UNKNOWN is what a wedged/fallen-off GPU often returns, but also what one field of a healthy
# GPU returns on some drivers: it is only a suspicion, settled by the canary reads.
_SUSPECT = {pynvml.NVML_ERROR_UNKNOWN}
# Errors that mean "NVML as a whole is unusable" (driver unloaded or replaced under us).
_NVML_DOWN = {pynvml.NVML_ERROR_UNINITIALIZED, pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
              pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, pynvml.NVML_ERROR_LIBRARY_NOT_FOUND}
_COMPUTE_MODES = {pynvml.NVML_COMPUTEMODE_DEFAULT: "default", pynvml.NVML_COMPUTEMODE_EXCLUSIVE_THREAD: "exclusive_thread",
                  pynvml.NVML_COMPUTEMODE_PROHIBITED: "prohibited", pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS: "exclusive_process"}


class GpuLost(Exception):
    """Raised by `_read` when a GPU stops answering; caught per GPU."""


class _Suspicions(threading.local):
    """Fields that answered UNKNOWN during the current GPU read (None: not inside one)."""

    fields: list[str] | None = None


_SUSPICIONS = _Suspicions()


class NvmlDown(Exception):
    """Raised by `_read` when NVML as a whole stops working; caught per collection."""

    def __init__(self, error: pynvml.NVMLError) -> None:
        super().__init__(str(error))
        self.error = error


def _read(fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function: a value, or None when the GPU/driver cannot tell.

    nvitop-style "failures are values": NOT_SUPPORTED, NO_PERMISSION, NOT_FOUND,
    FUNCTION_NOT_FOUND (old driver), etc. -> None. Lost GPU -> GpuLost.
    """
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        code = getattr(exc, "value", None)
        if code in _LOST:
            raise GpuLost(str(exc)) from None
        if code in _SUSPECT and _SUSPICIONS.fields is not None:
            _SUSPICIONS.fields.append(getattr(fn, "__name__", "?").removeprefix("nvmlDevice"))
        if code in _NVML_DOWN:
            raise NvmlDown(exc) from None
        return None
    except (AttributeError, TypeError, OSError):  # function missing from an old pynvml/driver
        return None


def init_error_state(exc: pynvml.NVMLError, pci_devices: int | None) -> NvmlState:
    """NvmlState for an nvmlInit failure: never an exception for the user."""
    code = getattr(exc, "value", None)
    if code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return NvmlState(status="no_driver", pci_devices=pci_devices,
                         message=f"no NVIDIA driver found ({exc}: libnvidia-ml.so.1 is not installed or not visible)")
    if code == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return NvmlState(status="no_driver", pci_devices=pci_devices,
                         message=f"no NVIDIA driver found ({exc}: the nvidia kernel module is not loaded)")
    if code == pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return NvmlState(status="driver_mismatch", pci_devices=pci_devices,
                         message=f"Failed to initialize NVML: Driver/library version mismatch ({exc})")
    if code == pynvml.NVML_ERROR_NO_PERMISSION:
        return NvmlState(status="error", pci_devices=pci_devices,
                         message=f"no permission to use the NVIDIA device files ({exc})")
    return NvmlState(status="error", pci_devices=pci_devices, message=f"NVML failed to initialise: {exc}")


def count_nvidia_pci_devices(root: str = "/sys/bus/pci/devices") -> int | None:
    """NVIDIA display/3D controllers on the PCI bus (vendor 0x10de, class 0x03xxxx); None if sysfs is absent."""
    devices = glob.glob(f"{root}/*")
    if not devices:
        return None
    count = 0
    for device in devices:
        try:
            with open(f"{device}/vendor") as v, open(f"{device}/class") as c:
                if v.read().strip().lower() == "0x10de" and c.read().strip().lower().startswith("0x03"):
                    count += 1
        except OSError:
            continue
    return count


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _cuda_version(value: int | None) -> str | None:
    """12040 -> "12.4"."""
    return None if not value else f"{value // 1000}.{(value % 1000) // 10}"


@dataclass
class _Slow:
    """Fields cached for SLOW_TTL_S."""

    expires: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Gpu:
    index: int
    handle: Any = None
    identity: dict[str, Any] = field(default_factory=dict)
    slow: _Slow = field(default_factory=_Slow)
    handle_retry_at: float = 0.0
    not_accessible: bool = False   # the handle was refused with NO_PERMISSION
    memory_v2: bool = True
    has_memory_temperature: bool = True


class NvmlCollector:
    name = "nvml"

    def __init__(self, watch_xid: bool = True, kernel_reader: KernelXidReader | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch_xid = watch_xid
        self._clock = clock
        self._initialised = False
        self._init_state: NvmlState | None = None
        self._init_retry_at = 0.0
        self._system: dict[str, Any] = {}
        self._gpus: list[_Gpu] = []
        self._procs = ProcessEnricher()
        self.xid_log = XidLog()
        self._kernel = kernel_reader
        self._xid_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._event_set: Any = None
        self._pci_devices: int | None = None

    # -- lifecycle -------------------------------------------------------------
    def _init(self) -> NvmlState | None:
        """Initialise NVML once; returns an error state, or None when ready."""
        if self._initialised:
            return None
        now = self._clock()
        if self._init_state is not None and now < self._init_retry_at:
            return self._init_state
        if self._pci_devices is None:
            self._pci_devices = count_nvidia_pci_devices()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._init_state, self._init_retry_at = init_error_state(exc, self._pci_devices), now + INIT_RETRY_S
            return self._init_state
        except OSError as exc:  # a broken libnvidia-ml.so
            self._init_state = NvmlState(status="error", message=f"cannot load NVML: {exc}", pci_devices=self._pci_devices)
            self._init_retry_at = now + INIT_RETRY_S
            return self._init_state
        self._initialised, self._init_state = True, None
        try:
            self._system = {
                "driver_version": _decode(_read(pynvml.nvmlSystemGetDriverVersion)),
                "nvml_version": _decode(_read(pynvml.nvmlSystemGetNVMLVersion)),
                "cuda_driver_version": _cuda_version(_read(pynvml.nvmlSystemGetCudaDriverVersion)),
            }
            try:
                count = pynvml.nvmlDeviceGetCount()
            except pynvml.NVMLError as exc:  # not a field: no count, no GPUs to show
                if getattr(exc, "value", None) in _NVML_DOWN:
                    raise NvmlDown(exc) from None
                raise GpuLost(str(exc)) from None
        except NvmlDown as exc:
            self._shutdown_quietly()
            self._init_state, self._init_retry_at = init_error_state(exc.error, self._pci_devices), now + INIT_RETRY_S
            return self._init_state
        except GpuLost as exc:  # the driver answers but cannot even count its GPUs
            self._shutdown_quietly()
            self._init_state = NvmlState(status="error", message=f"NVML cannot list the GPUs: {exc}",
                                         pci_devices=self._pci_devices)
            self._init_retry_at = now + INIT_RETRY_S
            return self._init_state
        self._gpus = [_Gpu(index=i) for i in range(count)]
        for gpu in self._gpus:
            self._fetch_handle(gpu)
        if self.watch_xid:
            self._start_xid_watch()
        return None

    def _shutdown_quietly(self) -> None:
        self._initialised = False
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

    def _fetch_handle(self, gpu: _Gpu) -> None:
        try:
            gpu.handle = pynvml.nvmlDeviceGetHandleByIndex(gpu.index)
            gpu.not_accessible = False
        except pynvml.NVMLError as exc:
            gpu.handle = None
            gpu.not_accessible = getattr(exc, "value", None) == pynvml.NVML_ERROR_NO_PERMISSION
            if getattr(exc, "value", None) in _NVML_DOWN:
                raise NvmlDown(exc) from None
        if gpu.handle is None:
            gpu.handle_retry_at = self._clock() + HANDLE_RETRY_S
            return
        try:
            gpu.identity = self._identity(gpu.handle)
        except GpuLost:
            gpu.identity = {}
            gpu.handle_retry_at = self._clock() + HANDLE_RETRY_S

    def _stop_xid_watch(self) -> None:
        self._stop.set()
        if self._xid_thread is not None:
            self._xid_thread.join(timeout=2.0)
            self._xid_thread = None
        if self._event_set is not None:
            try:
                pynvml.nvmlEventSetFree(self._event_set)
            except Exception:  # noqa: BLE001
                pass
            self._event_set = None

    def close(self) -> None:
        self._stop_xid_watch()
        if self._kernel is not None:
            self._kernel.close()
        if self._initialised:
            self._shutdown_quietly()

    # -- collection -------------------------------------------------------------
    def collect(self) -> GpuReading:
        try:
            error = self._init()
            if error is not None:
                return GpuReading(nvml=error)
            gpus = tuple(self._read_gpu(gpu) for gpu in self._gpus)
        except NvmlDown as exc:  # driver unloaded/replaced under us: start over later
            self._stop_xid_watch()
            self._shutdown_quietly()
            state = init_error_state(exc.error, self._pci_devices)
            self._init_state, self._init_retry_at = state, self._clock() + INIT_RETRY_S
            return GpuReading(nvml=state)
        state = NvmlState(status="ok", driver_version=self._system.get("driver_version"),
                          nvml_version=self._system.get("nvml_version"),
                          cuda_driver_version=self._system.get("cuda_driver_version"),
                          pci_devices=self._pci_devices)
        return GpuReading(nvml=state, gpus=gpus, xid_events=self.xid_log.events())

    def _read_gpu(self, gpu: _Gpu) -> GpuSnapshot:
        if (gpu.handle is None or not gpu.identity) and self._clock() >= gpu.handle_retry_at:
            self._fetch_handle(gpu)
        identity = {"index": gpu.index, **gpu.identity}
        if gpu.handle is None and gpu.not_accessible:
            return GpuSnapshot(**identity, state="not_accessible",
                               error="NVML refused this GPU's handle (NO_PERMISSION): a cgroup or Slurm "
                                     "allocation hides it from this user")
        if gpu.handle is None:
            return GpuSnapshot(**identity, state="lost", error="NVML could not get a handle for this GPU")
        _SUSPICIONS.fields = []
        try:
            now = self._clock()
            if now >= gpu.slow.expires:
                gpu.slow = _Slow(expires=now + SLOW_TTL_S, values=self._slow_fields(gpu.handle))
            snapshot = self._fast_fields(gpu, identity, gpu.slow.values)
            suspects = _SUSPICIONS.fields
        except GpuLost as exc:
            gpu.slow = _Slow()  # re-read everything once it answers again
            return GpuSnapshot(**identity, state="lost", error=f"{exc} (NVML)")
        finally:
            _SUSPICIONS.fields = None
        if suspects and not self._answers(gpu.handle):
            gpu.slow = _Slow()
            return GpuSnapshot(**identity, state="lost",
                               error=f"NVML says Unknown Error for {', '.join(sorted(set(suspects)))} and the "
                                     "UUID and temperature canary reads fail too")
        return snapshot

    @staticmethod
    def _answers(h: Any) -> bool:
        """The canary: does the GPU answer its UUID or its temperature? Any answer but
        UNKNOWN / GPU_IS_LOST (a value, NOT_SUPPORTED...) means it is there."""
        for read in (lambda: pynvml.nvmlDeviceGetUUID(h),
                     lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)):
            try:
                read()
                return True
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) not in _LOST | _SUSPECT:
                    return True
        return False

    @staticmethod
    def _identity(h: Any) -> dict[str, Any]:
        pci = _read(pynvml.nvmlDeviceGetPciInfo, h)
        cc = _read(pynvml.nvmlDeviceGetCudaComputeCapability, h)
        return {
            "name": _decode(_read(pynvml.nvmlDeviceGetName, h)),
            "uuid": _decode(_read(pynvml.nvmlDeviceGetUUID, h)),
            "pci_bus_id": _decode(getattr(pci, "busId", None)) if pci is not None else None,
            "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        }

    def _slow_fields(self, h: Any) -> dict[str, Any]:
        T = pynvml
        ecc_mode = _read(T.nvmlDeviceGetEccMode, h)
        ecc_on = bool(ecc_mode[0]) if ecc_mode else None

        def ecc_count(kind: int, counter: int) -> int | None:
            return _read(T.nvmlDeviceGetTotalEccErrors, h, kind, counter) if ecc_on else None

        sbe = _read(T.nvmlDeviceGetRetiredPages, h, T.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
        dbe = _read(T.nvmlDeviceGetRetiredPages, h, T.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
        pending = _read(T.nvmlDeviceGetRetiredPagesPendingStatus, h)
        rows = _read(T.nvmlDeviceGetRemappedRows, h)
        mig = _read(T.nvmlDeviceGetMigMode, h)
        mig_on = bool(mig[0]) if mig else None
        persistence = _read(T.nvmlDeviceGetPersistenceMode, h)
        compute_mode = _read(T.nvmlDeviceGetComputeMode, h)
        mw = lambda v: None if v is None else v / 1000.0  # noqa: E731 - NVML reports milliwatts
        return {
            "slowdown": _read(T.nvmlDeviceGetTemperatureThreshold, h, T.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
            "shutdown": _read(T.nvmlDeviceGetTemperatureThreshold, h, T.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
            "max_operating": _read(T.nvmlDeviceGetTemperatureThreshold, h, T.NVML_TEMPERATURE_THRESHOLD_GPU_MAX),
            "power_limit": mw(_read(T.nvmlDeviceGetEnforcedPowerLimit, h)),
            "power_default_limit": mw(_read(T.nvmlDeviceGetPowerManagementDefaultLimit, h)),
            "sm_max": _read(T.nvmlDeviceGetMaxClockInfo, h, T.NVML_CLOCK_SM),
            "memory_max": _read(T.nvmlDeviceGetMaxClockInfo, h, T.NVML_CLOCK_MEM),
            "max_gen": _read(T.nvmlDeviceGetMaxPcieLinkGeneration, h),
            "max_width": _read(T.nvmlDeviceGetMaxPcieLinkWidth, h),
            "replay_counter": _read(T.nvmlDeviceGetPcieReplayCounter, h),
            "ecc": Ecc(
                mode_enabled=ecc_on,
                volatile_corrected=ecc_count(T.NVML_MEMORY_ERROR_TYPE_CORRECTED, T.NVML_VOLATILE_ECC),
                volatile_uncorrected=ecc_count(T.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, T.NVML_VOLATILE_ECC),
                aggregate_corrected=ecc_count(T.NVML_MEMORY_ERROR_TYPE_CORRECTED, T.NVML_AGGREGATE_ECC),
                aggregate_uncorrected=ecc_count(T.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, T.NVML_AGGREGATE_ECC),
                retired_pages_sbe=None if sbe is None else len(sbe),
                retired_pages_dbe=None if dbe is None else len(dbe),
                retired_pages_pending=None if pending is None else bool(pending),
                remapped_rows_correctable=rows[0] if rows else None,
                remapped_rows_uncorrectable=rows[1] if rows else None,
                remapped_rows_pending=bool(rows[2]) if rows else None,
                remapped_rows_failure=bool(rows[3]) if rows else None,
            ),
            "persistence_mode": None if persistence is None else bool(persistence),
            "compute_mode": None if compute_mode is None else _COMPUTE_MODES.get(compute_mode, str(compute_mode)),
            "mig_mode": mig_on,
            "mig_devices": self._mig_devices(h) if mig_on else (),
        }

    @staticmethod
    def _mig_devices(h: Any) -> tuple[MigDevice, ...]:
        count = _read(pynvml.nvmlDeviceGetMaxMigDeviceCount, h) or 0
        out = []
        for i in range(count):
            mh = _read(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, h, i)
            if mh is None:  # empty slot: NOT_FOUND
                continue
            mem = _read(pynvml.nvmlDeviceGetMemoryInfo, mh)
            out.append(MigDevice(
                index=i, uuid=_decode(_read(pynvml.nvmlDeviceGetUUID, mh)), name=_decode(_read(pynvml.nvmlDeviceGetName, mh)),
                memory=MemoryInfo(total=getattr(mem, "total", None), used=getattr(mem, "used", None), free=getattr(mem, "free", None)),
                gpu_instance_id=_read(pynvml.nvmlDeviceGetGpuInstanceId, mh),
                compute_instance_id=_read(pynvml.nvmlDeviceGetComputeInstanceId, mh),
            ))
        return tuple(out)

    def _memory(self, gpu: _Gpu) -> MemoryInfo:
        if gpu.memory_v2:
            mem = _read(pynvml.nvmlDeviceGetMemoryInfo, gpu.handle, pynvml.nvmlMemory_v2)
            if mem is not None:
                return MemoryInfo(total=mem.total, used=mem.used, free=mem.free, reserved=getattr(mem, "reserved", None))
            gpu.memory_v2 = False  # driver without the v2 API: use v1 from now on
        mem = _read(pynvml.nvmlDeviceGetMemoryInfo, gpu.handle)
        return MemoryInfo(total=getattr(mem, "total", None), used=getattr(mem, "used", None), free=getattr(mem, "free", None))

    @staticmethod
    def _memory_temperature(gpu: _Gpu) -> float | None:
        """HBM/GDDR temperature (field NVML_FI_DEV_MEMORY_TEMP); None where not reported."""
        if not gpu.has_memory_temperature:
            return None
        values = _read(pynvml.nvmlDeviceGetFieldValues, gpu.handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP])
        field_value = values[0] if values else None
        if field_value is None or field_value.nvmlReturn != pynvml.NVML_SUCCESS:
            gpu.has_memory_temperature = False  # not on this board: stop asking
            return None
        return float(field_value.value.uiVal)

    def _fast_fields(self, gpu: _Gpu, identity: dict[str, Any], slow: dict[str, Any]) -> GpuSnapshot:
        T, h = pynvml, gpu.handle
        util = _read(T.nvmlDeviceGetUtilizationRates, h)
        bar1 = _read(T.nvmlDeviceGetBAR1MemoryInfo, h)
        power = _read(T.nvmlDeviceGetPowerUsage, h)
        reasons = _read(T.nvmlDeviceGetCurrentClocksEventReasons, h)
        if reasons is None:
            reasons = _read(T.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        raw = merge_process_lists(_read(T.nvmlDeviceGetComputeRunningProcesses, h) or (),
                                  _read(T.nvmlDeviceGetGraphicsRunningProcesses, h) or ())
        return GpuSnapshot(
            **identity,
            memory=self._memory(gpu),
            bar1=MemoryInfo(total=getattr(bar1, "bar1Total", None), used=getattr(bar1, "bar1Used", None),
                            free=getattr(bar1, "bar1Free", None)),
            utilization=Utilization(gpu=getattr(util, "gpu", None), memory=getattr(util, "memory", None)),
            temperature=Temperature(current=_read(T.nvmlDeviceGetTemperature, h, T.NVML_TEMPERATURE_GPU),
                                    slowdown=slow["slowdown"], shutdown=slow["shutdown"],
                                    max_operating=slow["max_operating"], memory=self._memory_temperature(gpu)),
            fan_percent=_read(T.nvmlDeviceGetFanSpeed, h),
            power=Power(draw=None if power is None else power / 1000.0, limit=slow["power_limit"],
                        default_limit=slow["power_default_limit"]),
            clocks=Clocks(sm=_read(T.nvmlDeviceGetClockInfo, h, T.NVML_CLOCK_SM), sm_max=slow["sm_max"],
                          memory=_read(T.nvmlDeviceGetClockInfo, h, T.NVML_CLOCK_MEM), memory_max=slow["memory_max"],
                          graphics=_read(T.nvmlDeviceGetClockInfo, h, T.NVML_CLOCK_GRAPHICS)),
            performance_state=_read(T.nvmlDeviceGetPerformanceState, h),
            throttle_reasons=decode_throttle_reasons(reasons),
            ecc=slow["ecc"],
            pcie=Pcie(gen=_read(T.nvmlDeviceGetCurrPcieLinkGeneration, h), max_gen=slow["max_gen"],
                      width=_read(T.nvmlDeviceGetCurrPcieLinkWidth, h), max_width=slow["max_width"],
                      replay_counter=slow["replay_counter"]),
            persistence_mode=slow["persistence_mode"],
            compute_mode=slow["compute_mode"],
            mig_mode=slow["mig_mode"],
            mig_devices=slow["mig_devices"],
            processes=self._procs.enrich(gpu.index, raw),
        )

    # -- XID watching -----------------------------------------------------------
    def gpu_for_pci(self, bus_id: str) -> int | None:
        key = pci_key(bus_id)
        return next((g.index for g in self._gpus if pci_key(g.identity.get("pci_bus_id")) == key), None)

    def _start_xid_watch(self) -> None:
        event_set = None
        try:
            event_set = pynvml.nvmlEventSetCreate()
            registered = 0
            for gpu in self._gpus:
                if gpu.handle is None:
                    continue
                try:
                    pynvml.nvmlDeviceRegisterEvents(gpu.handle, pynvml.nvmlEventTypeXidCriticalError, event_set)
                    registered += 1
                except pynvml.NVMLError:
                    continue  # NOT_SUPPORTED on some boards: the kernel log still works
            if not registered:
                pynvml.nvmlEventSetFree(event_set)
                event_set = None
        except pynvml.NVMLError:
            event_set = None
        self._event_set = event_set
        if self._kernel is None:
            self._kernel = KernelXidReader()
        self._poll_kernel()  # XIDs already in the kernel log are in the very first reading
        self._stop.clear()
        self._xid_thread = threading.Thread(target=self._watch_xid, name="opsconsole-xid", daemon=True)
        self._xid_thread.start()

    def _poll_kernel(self) -> None:
        if self._kernel is not None:
            for event in kernel_events(self._kernel, self.gpu_for_pci):
                self.xid_log.add(event)

    def _watch_xid(self) -> None:
        next_kernel_poll = time.monotonic() + KERNEL_POLL_S
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_kernel_poll:
                self._poll_kernel()
                next_kernel_poll = now + KERNEL_POLL_S
            if self._event_set is None:
                self._stop.wait(EVENT_WAIT_MS / 1000)
                continue
            try:
                data = pynvml.nvmlEventSetWait_v2(self._event_set, EVENT_WAIT_MS)
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) != pynvml.NVML_ERROR_TIMEOUT:
                    self._stop.wait(1.0)
                continue
            except Exception:  # noqa: BLE001 - the watcher must not die
                self._stop.wait(1.0)
                continue
            if data.eventType & pynvml.nvmlEventTypeXidCriticalError:
                index = self._index_of(data.device)
                pci = self._gpus[index].identity.get("pci_bus_id") if index is not None else None
                self.xid_log.add(make_event(int(data.eventData), time_s=time.time(), gpu=index, pci_bus_id=pci,
                                            message=f"NVML XID event {int(data.eventData)}", source="nvml"))

    def _index_of(self, handle: Any) -> int | None:
        try:
            index = _read(pynvml.nvmlDeviceGetIndex, handle)
        except (GpuLost, NvmlDown):
            return None
        return index if index is not None and 0 <= index < len(self._gpus) else None
