"""The GPU lock is by UUID: every way of naming a card locks the same card."""

from __future__ import annotations

import pytest

from opsconsole.config import Settings
from opsconsole.errors import UsageError
from opsconsole.runs import RunManager
from opsconsole.runs.launch import gpus_for, nvml_gpu_uuids
from opsconsole.telemetry.fake_nvml import FakeNvml

UUIDS = ["GPU-aaaa1111", "GPU-bbbb2222", "GPU-cccc3333"]


@pytest.mark.parametrize("device, env, expected", [
    ("cuda:1", {}, ["GPU-bbbb2222"]),
    ("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-bbbb2222"}, ["GPU-bbbb2222"]),  # took "GPU 0" before: a free pass
    ("cuda", {"CUDA_VISIBLE_DEVICES": "1"}, ["GPU-bbbb2222"]),
    ("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, ["GPU-bbbb2222"]),   # a unique UUID prefix, as CUDA allows
    ("cuda:1", {"CUDA_VISIBLE_DEVICES": "2,0"}, ["GPU-aaaa1111"]),
    ("cuda", {"CUDA_VISIBLE_DEVICES": ""}, []),                      # no GPU visible: locked GPU 0 before
    ("cuda", {"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ("cuda", {"CUDA_VISIBLE_DEVICES": "0,bogus,1"}, ["GPU-aaaa1111"]),  # CUDA stops at the first invalid entry
    ("cpu", {"CUDA_VISIBLE_DEVICES": "0"}, []),
])
def test_every_name_of_a_card_is_its_uuid(device, env, expected) -> None:
    assert gpus_for(device, 1, env, UUIDS) == expected


def test_without_nvml_indexes_are_the_keys() -> None:
    assert gpus_for("cuda:1", 1, {}, None) == ["1"]
    assert gpus_for("cuda", 2, {}, None) == ["0", "1"]
    assert gpus_for("cuda", 1, {"CUDA_VISIBLE_DEVICES": ""}, None) == []


def test_a_run_by_uuid_and_a_run_by_index_cannot_share_a_card(monkeypatch) -> None:
    machine = FakeNvml(2).install()
    try:
        uuids = nvml_gpu_uuids()
        assert uuids and len(uuids) == 2
        monkeypatch.setattr("opsconsole.runs.launch.cuda_status", lambda python: (True, 2, ""))
        manager = RunManager(Settings())
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuids[1])
        first = manager.launch("selftest", ["--device", "cuda", "--lines", "500", "--interval", "0.05"])
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        with pytest.raises(UsageError) as refused:
            manager.launch("selftest", ["--device", "cuda:1", "--lines", "1"])
        assert f"GPU 1 is in use by run {first.id}" in str(refused.value)
        other = manager.launch("selftest", ["--device", "cuda:0", "--lines", "1"])  # the other card is free
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        cpu_only = manager.launch("selftest", ["--device", "cuda", "--lines", "1"])  # sees no GPU: locks none
        assert cpu_only.gpus == []
        manager.stop(first.id, grace=3)
        for record in (other, cpu_only):
            manager.wait(record.id, timeout=60)
    finally:
        machine.uninstall()
