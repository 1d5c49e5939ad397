"""XID events: NVIDIA's catalogue (data/xid.yaml), kernel-log parsing and a bounded event log.

Two sources feed one `XidLog`:
- NVML's event set (`nvmlEventTypeXidCriticalError`), watched by `NvmlCollector`;
- kernel log lines `NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.`
  read from /dev/kmsg (non-blocking) or, where that is not readable, from `dmesg`.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .snapshot import SEVERITIES, XidEvent

CATALOGUE_PATH = Path(__file__).resolve().parent / "data" / "xid.yaml"
MAX_EVENTS = 200          # bounded event list
DUPLICATE_WINDOW_S = 5.0  # the same XID on the same GPU from NVML and from the kernel log is one event

_KERNEL_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?)\): "
    r"(?P<xid>\d+)(?:,\s*(?P<rest>.*))?"
)


@dataclass(frozen=True)
class XidInfo:
    xid: int
    mnemonic: str
    meaning: str
    action: str
    bucket: str
    severity: str
    kb: str


@functools.lru_cache(maxsize=1)
def load_catalogue(path: Path = CATALOGUE_PATH) -> tuple[dict[int, XidInfo], XidInfo]:
    """Return ({xid: XidInfo}, default XidInfo) from the YAML catalogue."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    buckets: dict[str, str] = data["bucket_severity"]
    for bucket, severity in buckets.items():
        if severity not in SEVERITIES:
            raise ValueError(f"{path}: bucket {bucket} has bad severity {severity!r}")

    def info(xid: int, entry: dict) -> XidInfo:
        bucket = entry.get("bucket", data["default"]["bucket"])
        return XidInfo(
            xid=xid,
            mnemonic=str(entry.get("mnemonic", "")),
            meaning=str(entry.get("meaning", data["default"]["meaning"])).strip(),
            action=str(entry.get("action", data["default"]["action"])).strip(),
            bucket=bucket,
            severity=buckets[bucket],
            kb=str(entry.get("kb", "gpu-xid-errors")),
        )

    catalogue = {int(xid): info(int(xid), entry) for xid, entry in data["xids"].items()}
    return catalogue, info(0, data["default"])


def xid_info(xid: int) -> XidInfo:
    catalogue, default = load_catalogue()
    found = catalogue.get(xid)
    return found if found is not None else XidInfo(**{**default.__dict__, "xid": xid})


def make_event(xid: int, *, time_s: float, gpu: int | None = None, pci_bus_id: str | None = None,
               message: str = "", source: str = "nvml") -> XidEvent:
    """An XidEvent filled in with NVIDIA's meaning, action and severity."""
    info = xid_info(xid)
    return XidEvent(time=time_s, xid=xid, gpu=gpu, pci_bus_id=pci_bus_id, message=message,
                    meaning=info.meaning, action=info.action, severity=info.severity, source=source)


def pci_key(bus_id: str | None) -> tuple[int, int, int] | None:
    """Normalise "00000000:3B:00.0" (NVML) and "0000:3b:00" (kernel) to (domain, bus, device)."""
    if not bus_id:
        return None
    parts = bus_id.strip().split(":")
    if len(parts) < 2:
        return None
    try:
        device = int(parts[-1].split(".")[0], 16)
        bus = int(parts[-2], 16)
        domain = int(parts[-3], 16) if len(parts) >= 3 else 0
    except ValueError:
        return None
    return domain, bus, device


def parse_kernel_line(line: str) -> tuple[str, int, str] | None:
    """(pci bus id, xid, rest of the message) from an `NVRM: Xid (...)` line, else None."""
    found = _KERNEL_XID.search(line)
    if not found:
        return None
    return found["pci"], int(found["xid"]), (found["rest"] or "").strip()


class XidLog:
    """Thread-safe bounded list of XID events, oldest first; NVML/kernel duplicates folded."""

    def __init__(self, maxlen: int = MAX_EVENTS) -> None:
        self._events: deque[XidEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, event: XidEvent) -> bool:
        with self._lock:
            for seen in reversed(self._events):
                # the same XID reported by NVML and by the kernel log is one event;
                # repeats from one source are real repeats and are kept
                if (seen.source != event.source and seen.xid == event.xid and seen.gpu == event.gpu
                        and pci_key(seen.pci_bus_id) == pci_key(event.pci_bus_id)
                        and abs(seen.time - event.time) <= DUPLICATE_WINDOW_S):
                    return False
            self._events.append(event)
            return True

    def events(self) -> tuple[XidEvent, ...]:
        with self._lock:
            return tuple(sorted(self._events, key=lambda e: e.time))


def _boot_time() -> float:
    try:
        import psutil

        return float(psutil.boot_time())
    except Exception:  # noqa: BLE001 - a missing boot time only shifts timestamps
        return time.time() - time.monotonic()


class KernelXidReader:
    """Reads NVRM Xid lines from the kernel log without ever blocking.

    /dev/kmsg is read non-blocking, at most `max_records` per poll; the first
    poll replays the whole ring buffer (up to `first_max_records`, a few ms per
    thousand records) so XIDs since boot are in the first reading. Where it is not readable (dmesg_restrict,
    containers) `dmesg` is run at most every `dmesg_interval` seconds with a
    short timeout. Lines already seen are skipped.
    """

    def __init__(self, kmsg_path: str = "/dev/kmsg", dmesg: tuple[str, ...] = ("dmesg",),
                 max_records: int = 4000, dmesg_interval: float = 30.0, dmesg_timeout: float = 1.0,
                 first_max_records: int = 50_000) -> None:
        self.kmsg_path, self.dmesg = kmsg_path, dmesg
        self.max_records, self.dmesg_interval, self.dmesg_timeout = max_records, dmesg_interval, dmesg_timeout
        self._budget = first_max_records  # records the next kmsg poll may read
        self._fd: int | None = None
        self._kmsg_failed = False
        self._dmesg_failed = False
        self._last_dmesg = 0.0
        self._seen: deque[str] = deque(maxlen=2000)
        self._seen_set: set[str] = set()
        self._boot = _boot_time()
        self.source = "none"

    def poll(self) -> list[tuple[float, str, int, str]]:
        """New (time, pci, xid, line) tuples since the last poll."""
        lines = self._read_kmsg()
        if lines is None:
            lines = self._read_dmesg()
        found = []
        for when, text in lines:
            parsed = parse_kernel_line(text)
            if parsed and self._first_time(f"{when:.6f}|{text}"):
                pci, xid, _rest = parsed
                found.append((when, pci, xid, text.strip()))
        return found

    def _first_time(self, key: str) -> bool:
        if key in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(key)
        self._seen_set.add(key)
        return True

    def _read_kmsg(self) -> list[tuple[float, str]] | None:
        if self._kmsg_failed:
            return None
        if self._fd is None:
            try:
                self._fd = os.open(self.kmsg_path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                self._kmsg_failed = True
                return None
            self.source = "kmsg"
        out: list[tuple[float, str]] = []
        budget, self._budget = self._budget, self.max_records
        for _ in range(budget):
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten while we read: go on
                    continue
                self.close()
                self._kmsg_failed = True
                return out or None
            if not record:
                break
            header, _, message = record.decode("utf-8", "replace").partition(";")
            fields = header.split(",")
            try:
                when = self._boot + int(fields[2]) / 1e6
            except (IndexError, ValueError):
                when = time.time()
            out.append((when, message.split("\n", 1)[0]))
        return out

    def _read_dmesg(self) -> list[tuple[float, str]]:
        now = time.monotonic()
        if self._dmesg_failed or now - self._last_dmesg < self.dmesg_interval:
            return []
        self._last_dmesg = now
        try:
            proc = subprocess.run(list(self.dmesg), capture_output=True, text=True,
                                  timeout=self.dmesg_timeout, errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            self._dmesg_failed = True
            return []
        if proc.returncode != 0:
            self._dmesg_failed = True
            return []
        self.source = "dmesg"
        out = []
        for line in proc.stdout.splitlines()[-5000:]:
            stamp = re.match(r"\[\s*(\d+\.\d+)\]\s*", line)
            when = self._boot + float(stamp.group(1)) if stamp else time.time()
            out.append((when, line[stamp.end():] if stamp else line))
        return out

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def kernel_events(reader: KernelXidReader, gpu_for_pci: Callable[[str], int | None]) -> Iterable[XidEvent]:
    """XidEvents for the new kernel-log lines `reader` finds."""
    for when, pci, xid, text in reader.poll():
        yield make_event(xid, time_s=when, gpu=gpu_for_pci(pci), pci_bus_id=pci, message=text, source="kernel")
