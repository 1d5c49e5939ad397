"""XID catalogue, kernel-log parsing and the bounded, de-duplicated event log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from opsconsole.telemetry.xid import (
    KernelXidReader, XidLog, kernel_events, load_catalogue, make_event, parse_kernel_line, pci_key, xid_info,
)

REQUIRED = (13, 31, 43, 45, 48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120)


def test_catalogue_covers_the_required_xids_with_meaning_and_action() -> None:
    catalogue, _default = load_catalogue()
    for xid in REQUIRED:
        info = catalogue[xid]
        assert info.meaning and info.action and info.severity in ("info", "warn", "critical"), xid
    assert catalogue[79].severity == "critical" and catalogue[79].kb == "gpu-fallen-off-bus"
    assert catalogue[45].severity == "info"


def test_unknown_xid_gets_the_default_entry() -> None:
    info = xid_info(1234)
    assert info.xid == 1234 and "catalogue" in info.meaning


@pytest.mark.parametrize("line, expected", [
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.", ("0000:3b:00", 79)),
    ("[12345.678] NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.", ("0000:2b:00", 79)),
    ("kernel: NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping", ("0000:10:1c", 63)),
    ("NVRM: Xid (0000:01:00): 3, C 00000005 SC 00000007", ("0000:01:00", 3)),
])
def test_kernel_lines_are_parsed(line: str, expected: tuple[str, int]) -> None:
    pci, xid, _rest = parse_kernel_line(line)
    assert (pci, xid) == expected


def test_non_xid_lines_are_ignored() -> None:
    assert parse_kernel_line("NVRM: GPU at PCI:0000:2b:00: GPU-0b11d014") is None
    assert parse_kernel_line("EXT4-fs (vda): mounted filesystem") is None


def test_pci_ids_from_nvml_and_kernel_match() -> None:
    assert pci_key("00000000:3B:00.0") == pci_key("0000:3b:00") == (0, 0x3B, 0)


def test_log_is_bounded_and_folds_duplicates_from_two_sources() -> None:
    log = XidLog(maxlen=5)
    assert log.add(make_event(79, time_s=100.0, gpu=1, pci_bus_id="00000000:3B:00.0", source="nvml"))
    assert not log.add(make_event(79, time_s=101.0, gpu=1, pci_bus_id="0000:3b:00", source="kernel"))
    assert log.add(make_event(79, time_s=101.5, gpu=1, pci_bus_id="0000:3b:00", source="nvml"))  # a real repeat
    for i in range(10):
        log.add(make_event(13, time_s=200.0 + 10 * i, gpu=0))
    events = log.events()
    assert len(events) == 5 and events[-1].time == 290.0


def fake_dmesg(tmp_path: Path, lines: list[str]) -> tuple[str, ...]:
    log = tmp_path / "dmesg.txt"
    log.write_text("\n".join(lines) + "\n")
    return (sys.executable, "-c", f"print(open({str(log)!r}).read(), end='')")


def test_dmesg_fallback_when_kmsg_is_unreadable(tmp_path: Path) -> None:
    dmesg = fake_dmesg(tmp_path, [
        "[    1.394142] EXT4-fs (vda): mounted",
        "[ 5107.644336] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
    ])
    reader = KernelXidReader(kmsg_path=str(tmp_path / "no-kmsg"), dmesg=dmesg, dmesg_interval=0)
    events = list(kernel_events(reader, lambda pci: 3 if pci_key(pci) == (0, 0x3B, 0) else None))
    assert [(e.xid, e.gpu, e.source) for e in events] == [(79, 3, "kernel")]
    assert "fallen off the bus" in events[0].meaning
    assert reader.source == "dmesg"
    assert list(kernel_events(reader, lambda pci: None)) == []  # already seen


def test_unreadable_kernel_log_is_silent(tmp_path: Path) -> None:
    reader = KernelXidReader(kmsg_path=str(tmp_path / "none"), dmesg=(str(tmp_path / "no-dmesg"),), dmesg_interval=0)
    assert reader.poll() == [] and reader.poll() == []


def test_kmsg_records_are_read_without_blocking(tmp_path: Path) -> None:
    # A FIFO behaves like /dev/kmsg for this purpose: non-blocking reads, EAGAIN when empty.
    import os

    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    reader = KernelXidReader(kmsg_path=str(fifo), dmesg=("false",))
    assert reader.poll() == []  # nothing there yet: returns at once
    os.write(writer_fd, b"3,812,5107644336,-;NVRM: Xid (PCI:0000:3b:00): 94, pid=5, Contained: SM\n")
    (found,) = reader.poll()
    assert found[2] == 94 and reader.source == "kmsg"
    reader.close()
    os.close(writer_fd)
