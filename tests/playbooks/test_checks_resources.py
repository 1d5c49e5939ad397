"""Machine-resource, model-cache, log and smoke-run checks: pass and fail paths."""

from __future__ import annotations

import sys

from pb_builders import GIB, cuda_env, gpu, snapshot

from opsconsole.config import Settings
from opsconsole.telemetry.snapshot import DiskUsage, HostSnapshot

OOM_LOG = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 88, in <module>\n'
    "    loss.backward()\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "39.39 GiB of which 312.00 MiB is free. Process 20778 has 38.10 GiB memory in use.\n"
)


def host_with(*disks: DiskUsage, available_gib: float = 100) -> HostSnapshot:
    return HostSnapshot(memory_total=int(256 * GIB), memory_available=int(available_gib * GIB), disks=disks)


def test_disk_free_reads_the_snapshot_for_labels(run_check):
    full = DiskUsage("hf_cache", "/data/hf", total=1000 * GIB, used=998 * GIB, free=2 * GIB)
    result = run_check("disk_free", snapshot((gpu(),), host=host_with(full)), path="hf_cache", min_gib=10)
    assert result.status == "fail" and "/data/hf" in result.summary and "delete-cache" in result.remedy
    roomy = DiskUsage("hf_cache", "/data/hf", total=1000 * GIB, used=100 * GIB, free=900 * GIB)
    assert run_check("disk_free", snapshot((gpu(),), host=host_with(roomy)), path="hf_cache").status == "pass"
    low = DiskUsage("cwd", "/home/a", total=100 * GIB, used=85 * GIB, free=15 * GIB)
    assert run_check("disk_free", snapshot((gpu(),), host=host_with(low)), path="cwd", min_gib=5, warn_gib=20).status == "warn"


def test_disk_free_on_a_real_path(run_check, tmp_path):
    snap = snapshot((gpu(),), source="nvml")
    ok = run_check("disk_free", snap, path=str(tmp_path / "not" / "created" / "yet"), min_gib=0)
    assert ok.status == "pass" and ok.evidence["free_gib"] > 0
    assert run_check("disk_free", snap, path=str(tmp_path), min_gib=10**9).status == "fail"


def test_shm_size_docker_default_fails(run_check):
    docker = DiskUsage("shm", "/dev/shm", total=64 * 2**20, used=0, free=64 * 2**20)
    result = run_check("shm_size", snapshot((gpu(),), host=host_with(docker)), min_gib=1)
    assert result.status == "fail" and "64 MiB" in result.summary and "--shm-size" in result.remedy
    big = DiskUsage("shm", "/dev/shm", total=128 * GIB, used=GIB, free=127 * GIB)
    assert run_check("shm_size", snapshot((gpu(),), host=host_with(big))).status == "pass"


def test_ram_free(run_check):
    assert run_check("ram_free", snapshot((gpu(),), host=host_with(available_gib=100)), min_gib=8).status == "pass"
    short = run_check("ram_free", snapshot((gpu(),), host=host_with(available_gib=2)), min_gib=8)
    assert short.status == "fail" and short.evidence["available_gib"] == 2.0


def _cache_model(hub, repo: str, weights: bool = True, incomplete: bool = False) -> None:
    folder = hub / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    if weights:
        (snap / "model.safetensors").write_bytes(b"\0" * 1024)
    (folder / "blobs").mkdir()
    if incomplete:
        (folder / "blobs" / "deadbeef.incomplete").write_bytes(b"")


def test_hf_model_cached(run_check, tmp_path):
    hub = tmp_path / "hf" / "hub"
    _cache_model(hub, "google/gemma-2-2b")
    _cache_model(hub, "org/half", incomplete=True)
    env = cuda_env(env=(("HF_HOME", str(tmp_path / "hf")), ("HF_HUB_OFFLINE", "1")))
    snap = snapshot((gpu(),), env=env)
    assert run_check("hf_model_cached", snap, model="google/gemma-2-2b").status == "pass"
    assert run_check("hf_model_cached", snap, model="org/half").status == "warn"
    missing = run_check("hf_model_cached", snap, model="meta-llama/Llama-3-8B")
    assert missing.status == "fail" and "offline" in missing.summary
    assert run_check("hf_model_cached", snap).status == "skip"  # no model named, no log


def test_hf_model_cached_takes_the_model_from_the_log(run_check, tmp_path):
    log = tmp_path / "load.log"
    log.write_text("OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                   "in the cached files. Check your internet connection or see how to run the library in offline mode.\n"
                   "OSError: Can't load the model for 'acme/secret-model'.\n")
    env = cuda_env(env=(("HF_HOME", str(tmp_path / "hf")), ("HF_HUB_OFFLINE", "1")))
    result = run_check("hf_model_cached", snapshot((gpu(),), env=env), log_file=log)
    assert result.evidence["model"] == "acme/secret-model" and result.status == "fail"


def test_hf_model_cached_local_directory(run_check, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = run_check("hf_model_cached", snapshot((gpu(),)), model=str(tmp_path))
    assert result.status == "fail" and "weight files" in result.summary
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    assert run_check("hf_model_cached", snapshot((gpu(),)), model=str(tmp_path)).status == "pass"


def test_hf_offline_and_token(run_check, tmp_path):
    offline = snapshot((gpu(),), env=cuda_env(env=(("HF_HUB_OFFLINE", "1"),)))
    assert run_check("hf_offline", offline).status == "pass"
    assert run_check("hf_offline", offline, expect="online").status == "warn"
    no_token = snapshot((gpu(),), env=cuda_env(env=(("HF_HOME", str(tmp_path)),)))
    result = run_check("hf_token", no_token, environ={})
    assert result.status == "warn" and "huggingface-cli login" in result.remedy
    (tmp_path / "token").write_text("hf_xxx")
    assert run_check("hf_token", no_token, environ={}).status == "pass"


def test_log_matches_kb(run_check, tmp_path):
    log = tmp_path / "train.log"
    log.write_text(OOM_LOG)
    snap = snapshot((gpu(),))
    hit = run_check("log_matches_kb", snap, log_file=log, ids=["cuda_oom"])
    assert hit.status == "fail" and "line 4" in hit.summary and "kb show" in hit.remedy
    other = run_check("log_matches_kb", snap, log_file=log, ids=["nan_inf"])
    assert other.status == "warn" and "different problem" in other.summary
    clean = tmp_path / "clean.log"
    clean.write_text("epoch 1 loss 0.53\nepoch 2 loss 0.41\n")
    assert run_check("log_matches_kb", snap, log_file=clean, ids=["cuda_oom"]).status == "pass"
    assert run_check("log_matches_kb", snap, ids=["cuda_oom"]).status == "skip"


def test_smoke_run_skips_with_a_reason(run_check):
    simulated = run_check("smoke_run", snapshot((gpu(),)), kind="gemma-infer")
    assert simulated.status == "skip" and "simulated" in simulated.summary
    readonly = run_check("smoke_run", snapshot((gpu(),), source="nvml"), kind="gemma-infer",
                         settings=Settings(readonly=True, python=sys.executable))
    assert readonly.status == "skip" and "read-only" in readonly.summary
    no_ml = run_check("smoke_run", snapshot((gpu(),), source="nvml", env=cuda_env(status="no_torch")), kind="gemma-infer")
    assert no_ml.status == "skip" and "[ml] extra" in no_ml.summary


def test_smoke_run_launches_a_real_run(run_check):
    snap = snapshot((gpu(),), source="nvml")
    settings = Settings(python=sys.executable)
    ok = run_check("smoke_run", snap, settings=settings, kind="selftest", args=["--lines", "2"], timeout=120)
    assert ok.status == "pass", ok
    assert ok.evidence["status"] == "ok" and ok.evidence["run_id"]
    failed = run_check("smoke_run", snap, settings=settings, kind="selftest",
                       args=["--lines", "1", "--raise", "CUDA out of memory. Tried to allocate 2.00 GiB"], timeout=120)
    assert failed.status == "fail" and failed.evidence["status"] == "failed"
    assert failed.evidence["run_id"] in failed.remedy
